//! The audit trail: each RPC (handled, refused by the allow-list, or refused
//! by tonic while decoding it) and each web connect or disconnect writes
//! exactly one audit event, as a JSON line on the audit target, with who, when, what, where and
//! the outcome; the same events reach the append-only table (PostgreSQL); and
//! no token appears in any audit event, table row or log line.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Connection;
use tokenvault_proto::v1::get_service_client::GetServiceClient;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{GetAccessTokenRequest, StoreRefreshTokenRequest};
use tokenvault_rpc::audit::AUDITED_HEADER;
use tokenvault_store::audit_table::audit_table;
use tokenvault_tests::logs::{audit_table_at, captured_logs, set_audit_sink};
use tokenvault_tests::oidc::Decision;
use tokenvault_tests::services::grpc_channel;
use tokenvault_tests::store::Backend;
use tokenvault_tests::system::{Options, System};
use tokenvault_tls::Role;

/// (action, caller, account, outcome) of one audit event.
type Event = (String, String, String, String);
/// (action, caller, account, outcome, peer, error, at) of one table row.
type TableRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
);

/// The audit events in `logs`, parsed from their JSON lines; every one must
/// carry a timestamp and a peer address.
fn audit_events(logs: &str) -> Vec<Event> {
    logs.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["target"] == "tokenvault::audit")
        .map(|e| {
            assert!(
                e["timestamp"].as_str().is_some_and(|t| t.len() >= 20),
                "{e}"
            );
            assert!(e["peer"].as_str().is_some_and(|p| p.contains(':')), "{e}");
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("rpc"), s("caller"), s("account"), s("outcome"))
        })
        .collect()
}

/// How many times each event occurs, with web sessions' labels replaced by
/// `web-session`, so that expectations can name them.
fn counted(events: &[Event]) -> BTreeMap<Event, usize> {
    let mut counts = BTreeMap::new();
    for (action, caller, account, outcome) in events {
        let caller = if caller.starts_with("web-session:") {
            "web-session".to_owned()
        } else {
            caller.clone()
        };
        *counts
            .entry((action.clone(), caller, account.clone(), outcome.clone()))
            .or_insert(0) += 1;
    }
    counts
}

fn event(action: &str, caller: &str, account: &str, outcome: &str) -> Event {
    let caller = match caller {
        "web-session" => caller.to_owned(),
        role => format!("spiffe://tokenvault.test/{role}"),
    };
    (
        action.to_owned(),
        caller,
        account.to_owned(),
        outcome.to_owned(),
    )
}

/// Waits until the captured logs since `start` hold an audit event for `action`.
async fn wait_for_event(start: usize, action: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !audit_events(&captured_logs()[start..])
        .iter()
        .any(|e| e.0 == action)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {action} audit event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rpc_and_web_action_writes_exactly_one_audit_event_and_no_token() {
    let mut f = System::start(Options {
        backend: Backend::Postgres,
        ..Options::default()
    })
    .await
    .unwrap();
    // The table, written with set-service's role. In this one process every
    // service's events reach the one sink, web-frontend's too; in production
    // each gRPC service has its own (web-frontend, without database access,
    // has none: its events are in its JSON log only).
    let (table, writer) = audit_table(&audit_table_at(&f.store.writer_url), "set-service")
        .unwrap()
        .unwrap();
    set_audit_sink(Box::new(table));
    let start = captured_logs().len();

    // A web connect: the browser's action, then web-frontend's RPC.
    let mut browser = f.browser().unwrap();
    let page = browser
        .connect(&f.oidc, "oidc", "", "erin", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(page.kind().as_deref(), Some("connected"));
    f.remember_connected("oidc:erin");
    // A worker's token: a refresh at the provider, whose rotated refresh
    // token get-service stores through set-service.
    let initial = f.stored_refresh_token("oidc:erin").await.unwrap();
    f.token("oidc:erin", 30).await.unwrap();
    f.stored_token_other_than("oidc:erin", &initial, Duration::from_secs(5))
        .await
        .unwrap();
    // An unknown account, and a caller the allow-list refuses.
    assert_eq!(f.token("oidc:nobody", 0).await, Err(tonic::Code::NotFound));
    let web = f.pki.issue(Role::WebFrontend, None).unwrap();
    let mut as_web =
        GetServiceClient::new(grpc_channel(&f.get.address(), &web, Role::GetService).unwrap());
    let denied = as_web
        .get_access_token(GetAccessTokenRequest {
            account: "oidc:erin".into(),
            provider: "oidc".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    // A message over set-service's size limit: tonic refuses it before any
    // handler runs, and the gRPC layer writes the call's one event.
    let mut set_as_web =
        SetServiceClient::new(grpc_channel(&f.set.address(), &web, Role::SetService).unwrap());
    let too_big = set_as_web
        .store_refresh_token(StoreRefreshTokenRequest {
            account: "oidc:erin".into(),
            provider: "oidc".into(),
            sealed_token: "x".repeat(256 * 1024),
            expected_version: None,
            metadata_json: String::new(),
            refresh_token_expires_at_unix: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), tonic::Code::OutOfRange, "{too_big:?}");
    // The server-internal "audited" marker never reaches a client.
    for status in [&denied, &too_big] {
        assert!(status.metadata().get(AUDITED_HEADER).is_none());
    }
    // A worker's status query.
    f.worker.account_status("oidc:erin", "oidc").await.unwrap();
    // A web disconnect, then get-service's revocation at the provider.
    let done = browser
        .post_form(
            "/disconnect",
            &[("account", "oidc:erin"), ("provider", "oidc")],
        )
        .await
        .unwrap();
    assert_eq!(done.kind().as_deref(), Some("disconnected"));
    wait_for_event(start, "RecordRevocation").await;

    let events = audit_events(&captured_logs()[start..]);
    let expected: BTreeMap<Event, usize> = [
        event("web.connect", "web-session", "oidc:erin", "ok"),
        event("StoreRefreshToken", "web-frontend", "oidc:erin", "ok"),
        event("GetAccessToken", "worker/e2e", "oidc:erin", "ok"),
        event("StoreRefreshToken", "get-service", "oidc:erin", "ok"),
        // get-service shares the access token with its other replicas (the
        // store is PostgreSQL).
        event("ShareAccessToken", "get-service", "oidc:erin", "ok"),
        event(
            "GetAccessToken",
            "worker/e2e",
            "oidc:nobody",
            "unknown_account",
        ),
        event("GetAccessToken", "web-frontend", "", "permission_denied"),
        event("StoreRefreshToken", "web-frontend", "", "out_of_range"),
        event("GetAccountStatus", "worker/e2e", "oidc:erin", "ok"),
        event("web.disconnect", "web-session", "oidc:erin", "ok"),
        event("DisconnectAccount", "web-frontend", "oidc:erin", "ok"),
        event("RecordRevocation", "get-service", "oidc:erin", "ok"),
    ]
    .into_iter()
    .map(|e| (e, 1))
    .collect();
    assert_eq!(counted(&events), expected, "{events:#?}");

    // The table holds the same events, in full.
    assert_eq!(writer.drain(Duration::from_secs(10)).await, 0);
    let mut db = sqlx::PgConnection::connect(&f.store.owner_url)
        .await
        .unwrap();
    let rows: Vec<TableRow> = sqlx::query_as(
        "SELECT action, caller, account, outcome, peer, error, at::text \
             FROM audit_events ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let from_table: Vec<Event> = rows
        .iter()
        .map(|r| (r.0.clone(), r.1.clone(), r.2.clone(), r.3.clone()))
        .collect();
    assert_eq!(counted(&from_table), expected, "{rows:#?}");
    assert!(rows.iter().all(|r| r.4.contains(':') && !r.6.is_empty()));
    // Each row names the database role that wrote it, whatever it claims.
    let roles: Vec<String> = sqlx::query_scalar("SELECT DISTINCT db_role FROM audit_events")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(roles, ["tokenvault_writer"]);
    let denial = rows.iter().find(|r| r.3 == "permission_denied").unwrap();
    assert!(
        denial
            .5
            .as_deref()
            .is_some_and(|e| e.contains("not allowed to call")),
        "{denial:?}"
    );
    // The table is append-only, even for its owner.
    for statement in [
        "UPDATE audit_events SET outcome = 'ok'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let refused = sqlx::query(statement).execute(&mut db).await.unwrap_err();
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }

    // No token the test saw (stored, rotated or access) is in a table row;
    // `stop` checks every log line.
    let table_text = format!("{rows:?}");
    for secret in &f.secrets {
        assert!(
            !table_text.contains(secret.as_str()),
            "a token in the audit table"
        );
    }
    f.stop().await.unwrap();
}
