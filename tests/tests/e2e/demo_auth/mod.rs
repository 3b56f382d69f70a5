//! End-to-end tests of the demo authorization server
//! (`tokenvault-demo-auth`, DEVELOPMENT ONLY): the harness that starts it
//! in-process on 127.0.0.1:0 and drives it with reqwest; the tests are in
//! `flow` (the endpoints) and `interop` (the `oauth2` crate as a client).
//! The tokens here are throwaway demo tokens.

mod flow;
mod interop;

use std::collections::HashMap;
use std::path::PathBuf;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;
use tokenvault_demo_auth::{Config, Error, run};
use tokenvault_runtime::secret::Secret;
use tokio::sync::oneshot;
use url::Url;

const CLIENT: &str = "tokenvault-demo";
/// Characters that Basic authentication must form-encode (RFC 6749 2.3.1).
const SECRET: &str = "demo secret+/=:%&";
const REDIRECT: &str = "http://127.0.0.1:7403/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

struct Server {
    base: String,
    http: reqwest::Client,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

async fn start(state_file: Option<PathBuf>) -> Server {
    tokenvault_tests::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = Config {
        client_id: CLIENT.into(),
        client_secret: Secret::new(SECRET.into()),
        redirect_uri: REDIRECT.into(),
        issuer: None,
        state_file,
        access_token_ttl_secs: 3600,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, config, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Server {
        base,
        http,
        stop,
        task,
    }
}

impl Server {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorize_query(&self, verifier: &str) -> Vec<(&'static str, String)> {
        let challenge = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
        vec![
            ("response_type", "code".into()),
            ("client_id", CLIENT.into()),
            ("redirect_uri", REDIRECT.into()),
            ("state", "st4te".into()),
            ("scope", "profile".into()),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256".into()),
        ]
    }

    /// Shows the consent page and submits it; returns the redirect's query.
    async fn consent(
        &self,
        verifier: &str,
        username: &str,
        decision: &str,
    ) -> HashMap<String, String> {
        let mut url = Url::parse(&self.url("/authorize")).unwrap();
        url.query_pairs_mut()
            .extend_pairs(self.authorize_query(verifier));
        self.consent_at(url, username, decision).await
    }

    /// Opens `authorize_url` (as a client made it), then submits the form
    /// with the same parameters.
    async fn consent_at(
        &self,
        authorize_url: Url,
        username: &str,
        decision: &str,
    ) -> HashMap<String, String> {
        let mut form: Vec<(String, String)> = authorize_url.query_pairs().into_owned().collect();
        let page = self.http.get(authorize_url).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["x-frame-options"], "DENY");
        let html = page.text().await.unwrap();
        assert!(html.contains("development only"), "{html}");
        assert!(html.contains("value=\"alice\""), "{html}");
        let consent = html
            .split("name=\"consent\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_owned();
        form.extend([
            ("consent".into(), consent),
            ("username".into(), username.into()),
            ("decision".into(), decision.into()),
        ]);
        let answer = self
            .http
            .post(self.url("/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        redirect_query(&answer)
    }

    /// Signs `username` in and returns the code.
    async fn code(&self, verifier: &str, username: &str) -> String {
        let q = self.consent(verifier, username, "allow").await;
        assert_eq!(q["state"], "st4te");
        assert_eq!(q["iss"], self.base);
        q["code"].clone()
    }

    async fn token(&self, form: &[(&str, &str)], basic: bool) -> (StatusCode, Value) {
        let mut request = self.http.post(self.url("/token"));
        let mut form = form.to_vec();
        if basic {
            request = request.basic_auth(CLIENT, Some(basic_secret()));
        } else {
            form.extend([("client_id", CLIENT), ("client_secret", SECRET)]);
        }
        let response = request.form(&form).send().await.unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store");
        (response.status(), response.json().await.unwrap())
    }

    async fn exchange(&self, code: &str, verifier: &str) -> (StatusCode, Value) {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ];
        self.token(&form, true).await
    }

    async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        self.token(&form, false).await
    }

    async fn userinfo(&self, access_token: &str) -> reqwest::Response {
        self.http
            .get(self.url("/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    async fn revoke(&self, token: &str) -> StatusCode {
        let form = [("token", token), ("token_type_hint", "refresh_token")];
        let r = self
            .http
            .post(self.url("/revoke"))
            .basic_auth(CLIENT, Some(basic_secret()))
            .form(&form);
        r.send().await.unwrap().status()
    }

    /// A fresh grant for `username`: (access token, refresh token).
    async fn connect(&self, username: &str) -> (String, String) {
        let code = self.code(VERIFIER, username).await;
        let (status, body) = self.exchange(&code, VERIFIER).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            str_of(&body, "access_token"),
            str_of(&body, "refresh_token"),
        )
    }
}

fn redirect_query(response: &reqwest::Response) -> HashMap<String, String> {
    let location = response.headers()["location"].to_str().unwrap();
    let url = Url::parse(location).unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    url.query_pairs().into_owned().collect()
}

/// The secret form-encoded for `client_secret_basic`.
fn basic_secret() -> String {
    url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect()
}

fn str_of(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .to_owned()
}
