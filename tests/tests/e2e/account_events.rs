//! The embedding application's view end to end (issue #17), against the real authorization
//! server (npm `oidc-provider`) and a webhook receiver written with the Python `standardwebhooks`
//! library: an account connected from a signed link that carries metadata; its grant revoked at
//! the provider; a worker's call finds it dead; the application's receiver gets exactly one
//! verified `account.reauthorization_required`; the person reconnects through the web flow; one
//! `account.recovered` follows. The inventory (`ListAccounts`, as `tokenvault-admin` reads it)
//! and the event stream (`WatchAccountEvents`) show each state in between.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokenvault_proto::v1::{AccountEventKind, AccountStatus, WatchAccountEventsRequest};
use tokenvault_tests::Backend;
use tokenvault_tests::oidc::Decision;
use tokenvault_tests::services::LINK_SECRET;
use tokenvault_tests::system::{Options, System};
use tokenvault_tests::webhook_receiver::{ReceiverOptions, WebhookReceiver};
use tokenvault_web_frontend::link::{LinkAction, LinkSigner};
use tonic::Code;

const ACCOUNT: &str = "acme:ada";
const METADATA: &str = r#"{"display_name":"Ada","tags":["beta"],"tenant":"acme"}"#;

/// `?account=..&expires=..&metadata=..&sig=..` of a connect link for [`ACCOUNT`] at `oidc`.
fn connect_link(metadata: Option<&str>) -> String {
    let expires = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 300;
    let url = LinkSigner::new(LINK_SECRET.as_bytes(), 3600)
        .unwrap()
        .url(
            &"http://x.test".parse().unwrap(),
            LinkAction::Connect,
            ACCOUNT,
            Some("oidc"),
            expires,
            metadata,
        )
        .unwrap();
    format!("?{}", url.query().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_and_its_reconnect_reach_the_application_once_each() {
    let receiver = WebhookReceiver::start(ReceiverOptions::default())
        .await
        .unwrap();
    let mut f = System::start(Options {
        backend: Backend::Postgres,
        webhooks: vec![receiver.endpoint("app")],
        ..Options::default()
    })
    .await
    .unwrap();
    let admin = f.admin_named("ops").unwrap();
    let mut browser = f.browser().unwrap();

    // Connected from a signed link that carries the account's metadata.
    let page = browser
        .connect(
            &f.oidc,
            "oidc",
            &connect_link(Some(METADATA)),
            "ada",
            Decision::Allow,
        )
        .await
        .unwrap();
    assert_eq!(page.kind().as_deref(), Some("connected"));
    f.remember_connected(ACCOUNT);
    let events = receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(events[0].kind(), "account.connected");
    assert_eq!(events[0].account(), ACCOUNT);
    let metadata = json!({"display_name": "Ada", "tags": ["beta"], "tenant": "acme"});
    assert_eq!(events[0].payload["data"]["metadata"], metadata);
    let listed = admin.account(ACCOUNT, "oidc").await.unwrap().unwrap();
    assert_eq!(listed.status(), AccountStatus::Active);
    assert_eq!(listed.metadata_json, METADATA);
    assert!(listed.connected_at_unix > 0);

    // The person removes the app at the provider; the next refresh finds the grant dead.
    f.oidc.revoke_grant("ada").await.unwrap();
    assert_eq!(f.token(ACCOUNT, 60).await, Err(Code::FailedPrecondition));
    // Workers keep asking: still one event.
    for _ in 0..3 {
        assert_eq!(f.token(ACCOUNT, 60).await, Err(Code::FailedPrecondition));
    }
    let events = receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    assert_eq!(events[1].kind(), "account.reauthorization_required");
    assert_eq!(
        events[1].payload["data"]["status"],
        "reauthorization_required"
    );
    assert!(
        events[1].payload["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{:?}",
        events[1].payload
    );
    assert_eq!(events[1].payload["data"]["metadata"], metadata);
    let listed = admin.account(ACCOUNT, "oidc").await.unwrap().unwrap();
    assert_eq!(listed.status(), AccountStatus::ReauthorizationRequired);

    // The application sends a fresh link (no metadata: the account keeps its own); the person
    // signs in again.
    let page = browser
        .connect(&f.oidc, "oidc", &connect_link(None), "ada", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(page.kind().as_deref(), Some("connected"));
    let events = receiver.wait_for(3, Duration::from_secs(10)).await.unwrap();
    assert_eq!(events[2].kind(), "account.recovered");
    assert_eq!(events[2].payload["data"]["status"], "active");
    assert_eq!(events[2].payload["data"]["metadata"], metadata);
    let listed = admin.account(ACCOUNT, "oidc").await.unwrap().unwrap();
    assert_eq!(listed.status(), AccountStatus::Active);
    assert!(f.token(ACCOUNT, 0).await.is_ok());

    // Nothing more arrives: one event per change, each verified by the Python library.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kinds: Vec<String> = receiver
        .received_once()
        .unwrap()
        .iter()
        .map(|e| e.kind().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "account.connected",
            "account.reauthorization_required",
            "account.recovered"
        ]
    );
    let requests = receiver.requests().unwrap();
    assert!(requests.iter().all(|r| r.verified), "{requests:?}");

    // The event stream says the same, in the same order, with the same ids.
    let mut stream = admin
        .watch_stream(&WatchAccountEventsRequest::default())
        .await
        .unwrap();
    let mut streamed = Vec::new();
    while streamed.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        streamed.push(event);
    }
    assert_eq!(
        streamed.iter().map(|e| e.kind()).collect::<Vec<_>>(),
        [
            AccountEventKind::Connected,
            AccountEventKind::ReauthorizationRequired,
            AccountEventKind::Recovered
        ]
    );
    let ids: Vec<&str> = streamed.iter().map(|e| e.id.as_str()).collect();
    let received = receiver.received_once().unwrap();
    let webhook_ids: Vec<&str> = received.iter().map(|e| e.webhook_id.as_str()).collect();
    assert_eq!(ids, webhook_ids);
    drop(stream);
    f.stop().await.unwrap();
}

/// A provider that says how long its refresh tokens live (oidc-provider told to answer with
/// `refresh_token_expires_in`, as GitHub Apps do): the rotated token's expiry is recorded with
/// it, the inventory shows it, and set-service's expiry watch sends one `account.expiring`
/// event, since it falls within the 7 days' warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_that_expires_soon_is_announced_once() {
    let receiver = WebhookReceiver::start(ReceiverOptions::default())
        .await
        .unwrap();
    let mut f = System::start(Options {
        webhooks: vec![receiver.endpoint("app")],
        ..Options::default()
    })
    .await
    .unwrap();
    f.oidc.set_refresh_token_lifetime(3 * 86_400).await.unwrap();
    let first = f.connect("gh-user").await.unwrap();
    // The worker's refresh rotates the token; its answer says it lives 3 days.
    assert!(f.token("gh-user", 0).await.is_ok());
    f.stored_token_other_than("gh-user", &first.refresh_token, Duration::from_secs(10))
        .await
        .unwrap();
    let events = receiver.wait_for(2, Duration::from_secs(15)).await.unwrap();
    assert_eq!(events[0].kind(), "account.connected");
    assert_eq!(events[1].kind(), "account.expiring");
    assert!(
        events[1].payload["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("expires at"),
        "{:?}",
        events[1].payload
    );
    let listed = f
        .admin_named("ops")
        .unwrap()
        .account("gh-user", "oidc")
        .await
        .unwrap()
        .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expires = listed.refresh_token_expires_at_unix;
    assert!(
        (now + 3 * 86_400 - 60..=now + 3 * 86_400).contains(&expires),
        "{expires} vs {now}"
    );
    // Later scans add nothing for the same token.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received_once().unwrap().len(), 2);
    f.stop().await.unwrap();
}
