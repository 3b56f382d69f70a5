//! Connecting from a host without a browser: the device authorization grant
//! (RFC 8628) against the real authorization server with its device flow
//! on. A CLI asks web-frontend for a user code, the person enters it on
//! another device and consents, web-frontend seals and stores the refresh
//! token like a browser connect's, and a worker then gets a token for the
//! new account. Refusing, letting the code expire, a provider not
//! configured for it, a signed link (refused: the person entering the code
//! cannot see the account id), another site's page and set-service down
//! when the grant arrives are covered too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokenvault_proto::v1::AccountStatus;
use tokenvault_tests::logs::{assert_not_logged, captured_audit_events, captured_logs};
use tokenvault_tests::oidc::Decision;
use tokenvault_tests::services::{LINK_SECRET, WebProvider};
use tokenvault_tests::system::{Options, System};
use tokenvault_web_frontend::link::{LinkAction, LinkSigner};

fn options() -> Options {
    Options {
        web_providers: vec![WebProvider::Oidc, WebProvider::Device],
        ..Options::default()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// `POST /device/{provider}{query}` as a CLI would: status and JSON body.
async fn start(system: &System, provider: &str, query: &str) -> (u16, Value) {
    let response = http()
        .post(format!("{}/device/{provider}{query}", system.web_url))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{status}"
    );
    (status, response.json().await.unwrap())
}

/// Polls the flow's status until it is no longer pending.
async fn outcome(status_url: &str) -> Value {
    for _ in 0..300 {
        let body: Value = http()
            .get(status_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["state"] != "pending" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the device flow at {status_url} stayed pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_connects_without_a_browser_and_a_worker_gets_a_token() {
    let system = System::start(options()).await.unwrap();
    system.oidc.set_device_flow(1, 600).await.unwrap();
    let (status, started) = start(&system, "device", "").await;
    assert_eq!(status, 200, "{started}");
    let user_code = started["user_code"].as_str().unwrap();
    assert_eq!(
        started["verification_uri"],
        format!("{}/device", system.oidc.issuer())
    );
    assert_eq!(started["interval"], 1);
    // The device code stays in web-frontend.
    assert!(started.get("device_code").is_none(), "{started}");
    let status_url = started["status_url"].as_str().unwrap();
    assert!(status_url.starts_with(&system.web_url), "{status_url}");
    let pending: Value = http()
        .get(status_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending["state"], "pending");

    system
        .oidc
        .enter_user_code(user_code, "dana", Decision::Allow)
        .await
        .unwrap();
    let done = outcome(status_url).await;
    assert_eq!(done["state"], "connected", "{done}");
    assert_eq!(done["account"], "device:dana");

    // A worker gets a token for the new account, refreshed with the
    // sealed refresh token (get-service has no cached one yet).
    let token = system
        .worker
        .access_token("device:dana", "device", Duration::from_secs(5))
        .await
        .unwrap();
    let introspection = system.oidc.introspect(token.secret()).await.unwrap();
    assert_eq!(introspection["active"], true, "{introspection}");
    assert_eq!(introspection["sub"], "dana");
    assert_eq!(introspection["client_id"], "tokenvault-device");
    let (account_status, _) = system
        .worker
        .account_status("device:dana", "device")
        .await
        .unwrap();
    assert_eq!(account_status, AccountStatus::Active);
    let connects: Vec<_> = captured_audit_events()
        .into_iter()
        .filter(|e| e["rpc"] == "web.connect" && e["provider"] == "device")
        .collect();
    assert_eq!(connects.len(), 1);
    assert_eq!(connects[0]["account"], "device:dana");
    assert_eq!(connects[0]["outcome"], "ok");
    assert_not_logged(user_code, "the user code");
    assert_not_logged(token.secret(), "the access token");
    system.assert_no_secret_logged();
    system.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_expiry_and_what_may_not_start_a_device_flow() {
    let system = System::start(options()).await.unwrap();
    system.oidc.set_device_flow(1, 600).await.unwrap();

    let stored = system.row_counts().await.unwrap();
    // A signed link is refused: whoever enters the code elsewhere could not
    // see which account id it would be filed under.
    let expires = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
        + 600;
    let link = LinkSigner::new(LINK_SECRET.as_bytes(), 3600)
        .unwrap()
        .url(
            &"http://x.test".parse().unwrap(),
            LinkAction::Connect,
            "acme:42",
            Some("device"),
            expires,
            None,
        )
        .unwrap();
    let (status, refused) = start(&system, "device", &format!("?{}", link.query().unwrap())).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("bad-request")),
        "{refused}"
    );
    // Another site's page may not start one.
    let cross_site = http()
        .post(format!("{}/device/device", system.web_url))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);

    // Refused on the other device: nothing stored.
    let (_, started) = start(&system, "device", "").await;
    system
        .oidc
        .enter_user_code(
            started["user_code"].as_str().unwrap(),
            "fay",
            Decision::Deny,
        )
        .await
        .unwrap();
    let done = outcome(started["status_url"].as_str().unwrap()).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"], "denied");

    // Never entered: the code expires.
    system.oidc.set_device_flow(1, 2).await.unwrap();
    let (_, started) = start(&system, "device", "").await;
    let done = outcome(started["status_url"].as_str().unwrap()).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"], "expired");
    assert_eq!(system.row_counts().await.unwrap(), stored);

    // A provider without a device endpoint, an unknown one, a bad link,
    // an unknown flow.
    let (status, refused) = start(&system, "oidc", "").await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("bad-request"))
    );
    let (status, _) = start(&system, "nowhere", "").await;
    assert_eq!(status, 404);
    let unknown = http()
        .get(format!(
            "{}/device/status/{}",
            system.web_url,
            "0".repeat(32)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    system.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_that_arrives_while_set_service_is_down_is_stored_when_it_is_back() {
    let mut system = System::start(options()).await.unwrap();
    system.oidc.set_device_flow(1, 600).await.unwrap();
    let (_, started) = start(&system, "device", "").await;
    let status_url = started["status_url"].as_str().unwrap().to_owned();
    // Down at the worst moment: the person consents, the provider hands
    // over the only refresh token, and there is nowhere to store it.
    system.stop_set_service().await.unwrap();
    system
        .oidc
        .enter_user_code(
            started["user_code"].as_str().unwrap(),
            "gus",
            Decision::Allow,
        )
        .await
        .unwrap();
    // The grant arrived and its sealed token waits for set-service.
    for _ in 0..100 {
        if captured_logs().contains("storing the sealed token again shortly") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(captured_logs().contains("storing the sealed token again shortly"));
    let waiting: Value = http()
        .get(&status_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(waiting["state"], "pending", "{waiting}");
    system.restart_set_service().await.unwrap();
    let done = outcome(&status_url).await;
    assert_eq!(done["state"], "connected", "{done}");
    let token = system
        .worker
        .access_token("device:gus", "device", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        system.oidc.introspect(token.secret()).await.unwrap()["active"],
        true
    );
    system.stop().await.unwrap();
}
