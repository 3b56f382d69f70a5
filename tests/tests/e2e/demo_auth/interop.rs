//! The `oauth2` crate, which tokenvault's web-frontend and get-service use,
//! against the demo server: code exchange with PKCE and Basic
//! authentication (form-encoded credentials), refresh with
//! `client_secret_post`, and the user API as web-frontend reads it.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    RedirectUrl, RefreshToken, Scope, TokenResponse, TokenUrl,
};
use reqwest::StatusCode;
use serde_json::Value;

use super::{CLIENT, REDIRECT, SECRET, start};

#[tokio::test]
async fn oauth2_crate_client_works_end_to_end() {
    let s = start(None).await;
    let client = |auth_type: AuthType| {
        BasicClient::new(ClientId::new(CLIENT.into()))
            .set_client_secret(ClientSecret::new(SECRET.into()))
            .set_auth_type(auth_type)
            .set_auth_uri(AuthUrl::new(s.url("/authorize")).unwrap())
            .set_token_uri(TokenUrl::new(s.url("/token")).unwrap())
            .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
    };
    let web = client(AuthType::BasicAuth);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = web
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let q = s.consent_at(url, "frank", "allow").await;
    assert_eq!(&q["state"], csrf.secret());
    let tokens = web
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&s.http)
        .await
        .unwrap();
    let refresh = tokens.refresh_token().unwrap().clone();
    assert_eq!(tokens.expires_in().unwrap().as_secs(), 3600);

    let me: Value = s
        .userinfo(tokens.access_token().secret())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "frank");

    let worker = client(AuthType::RequestBody);
    let rotated = worker
        .exchange_refresh_token(&refresh)
        .request_async(&s.http)
        .await
        .unwrap();
    let next = rotated.refresh_token().unwrap();
    assert_ne!(next.secret(), refresh.secret());
    let again = worker
        .exchange_refresh_token(&RefreshToken::new(refresh.secret().clone()))
        .request_async(&s.http)
        .await;
    let err = format!("{:?}", again.unwrap_err());
    assert!(
        err.contains("ServerResponse") && err.contains("error: invalid_grant"),
        "{err}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn wrong_basic_encoding_is_refused() {
    let s = start(None).await;
    // The secret sent without form-encoding decodes to something else.
    let r = s
        .http
        .post(s.url("/token"))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.shutdown().await;
}
