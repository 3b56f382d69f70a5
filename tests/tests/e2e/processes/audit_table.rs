//! The audit table with the documented deployment: both gRPC services write
//! `audit_events` (set-service as `tokenvault_writer`, get-service as
//! `tokenvault_reader`, whose sessions `deploy/postgres/setup.sql` makes
//! read-only by default), one row per call, whatever bytes a caller sends;
//! and under a flood of calls `on_overflow = "block"` keeps every event
//! while `"drop"` counts every event it leaves out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokenvault_limits::audit_columns::ID_CHARS;
use tokenvault_proto::v1::get_service_client::GetServiceClient;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{GetAccessTokenRequest, StoreRefreshTokenRequest};
use tokenvault_store::audit_table::column_text;
use tokenvault_tests::grpc_channel;
use tokenvault_tests::procs::{
    AuditTable, AuditTableRow, Database, ProcOptions, ProcSystem, UNDECODABLE, python_raw_call,
};
use tokenvault_tls::Role;

/// The ordinary calls that run while the hostile caller sends its calls.
const ORDINARY_CALLS: usize = 20;

/// (service, action, caller, account, outcome) of a row or an audit line.
type Key = (String, String, String, String, String);

/// The audit lines in `logs` (a service's JSON audit events), keyed as the
/// table stores them, counted.
fn logged(service: &str, logs: &str) -> BTreeMap<Key, usize> {
    let mut counted = BTreeMap::new();
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["target"] != "tokenvault::audit" {
            continue;
        }
        let text = |name: &str| event[name].as_str().unwrap_or_default().to_owned();
        let key = (
            service.to_owned(),
            text("rpc"),
            text("caller"),
            column_text(&text("account"), ID_CHARS),
            text("outcome"),
        );
        *counted.entry(key).or_insert(0) += 1;
    }
    counted
}

fn tabled(rows: &[AuditTableRow]) -> BTreeMap<Key, usize> {
    let mut counted = BTreeMap::new();
    for r in rows {
        let key = (
            r.service.clone(),
            r.action.clone(),
            r.caller.clone(),
            r.account.clone(),
            r.outcome.clone(),
        );
        *counted.entry(key).or_insert(0) += 1;
    }
    counted
}

/// Waits until the table holds as many rows as the services' logs hold
/// audit lines (at most 20 s), then returns both, counted.
async fn table_and_logs(f: &ProcSystem) -> (BTreeMap<Key, usize>, BTreeMap<Key, usize>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut logs = logged("set-service", &f.set.logs_settled().await);
        logs.extend(logged("get-service", &f.get.logs_settled().await));
        let table = tabled(&f.audit_rows().await.unwrap());
        if table == logs || Instant::now() > deadline {
            return (table, logs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// With `setup.sql`'s roles and the documented URLs, a caller that sends a
/// NUL byte, control characters, a 1 MB account and a request that is not
/// UTF-8 once a second, while 20 ordinary calls run: the table holds one
/// row per call of both services (the same events as their JSON audit
/// logs), every ordinary and every hostile one, each written by its
/// service's own role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_keep_one_row_per_call_whatever_a_caller_sends() {
    let mut f = ProcSystem::start(ProcOptions {
        database: Database::Private,
        audit: Some(AuditTable::default()),
        ..ProcOptions::default()
    })
    .await
    .unwrap();
    let account = f.connect_directly("hilda").await.unwrap();
    f.token(&account, 0).await.unwrap();

    let hostile_worker = f.issue(Role::Worker, Some("hostile")).unwrap();
    let get_address = f.get.address();
    let hostile_accounts = [
        "oidc:nul\0in\0the\0middle".to_owned(),
        "oidc:\u{1b}[2J\r\n{\"outcome\":\"ok\"}\t\u{7}\\".to_owned(),
        format!("oidc:{}", "m".repeat(1 << 20)),
    ];
    let hostile = {
        let (tls, web_tls, set_address) =
            (hostile_worker.clone(), f.web_tls.clone(), f.set.address());
        let (get_address, accounts) = (get_address.clone(), hostile_accounts.clone());
        tokio::spawn(async move {
            let mut get =
                GetServiceClient::new(grpc_channel(&get_address, &tls, Role::GetService).unwrap());
            let mut set = SetServiceClient::new(
                grpc_channel(&set_address, &web_tls, Role::SetService).unwrap(),
            );
            let mut sent = 0;
            for round in 0..3 {
                for account in &accounts {
                    let refused = get
                        .get_access_token(GetAccessTokenRequest {
                            account: account.clone(),
                            provider: "oidc".into(),
                            ..Default::default()
                        })
                        .await
                        .unwrap_err();
                    assert_ne!(refused.code(), tonic::Code::Ok);
                    sent += 1;
                }
                let refused = set
                    .store_refresh_token(StoreRefreshTokenRequest {
                        account: accounts[0].clone(),
                        provider: "oidc".into(),
                        sealed_token: "not a sealed token".into(),
                        expected_version: None,
                        metadata_json: String::new(),
                        refresh_token_expires_at_unix: 0,
                    })
                    .await
                    .unwrap_err();
                assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
                sent += 1;
                let (code, details) = python_raw_call(
                    &get_address,
                    &tls,
                    "/tokenvault.v1.GetService/GetAccessToken",
                    UNDECODABLE[2].1,
                )
                .await
                .unwrap();
                assert_eq!(code, "INVALID_ARGUMENT", "{details}");
                sent += 1;
                if round < 2 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            sent
        })
    };
    for _ in 0..ORDINARY_CALLS {
        f.token(&account, 0).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hostile_calls = hostile.await.unwrap();

    let (table, logs) = table_and_logs(&f).await;
    assert_eq!(table, logs, "the table and the audit logs differ");
    let count = |service: &str, action: &str, caller: &str, account: &str| {
        table
            .iter()
            .filter(|((s, a, c, acc, _), _)| {
                s == service && a == action && c.ends_with(caller) && acc == account
            })
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    // Every ordinary call (and the first, which refreshed).
    assert_eq!(
        count("get-service", "GetAccessToken", "/worker/e2e", &account),
        ORDINARY_CALLS + 1
    );
    // Every hostile call, each with its account as sent (escaped, cut).
    let hostile_rows: usize = table
        .iter()
        .filter(|((_, _, c, _, _), _)| {
            c.ends_with("/worker/hostile") || c.ends_with("/web-frontend")
        })
        .filter(|((_, _, _, _, outcome), _)| outcome != "ok")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(hostile_rows, hostile_calls);
    assert_eq!(
        count(
            "get-service",
            "GetAccessToken",
            "/worker/hostile",
            "oidc:nul\\0in\\0the\\0middle"
        ),
        3
    );
    assert_eq!(
        count(
            "set-service",
            "StoreRefreshToken",
            "/web-frontend",
            "oidc:nul\\0in\\0the\\0middle"
        ),
        3
    );
    // Each row names the role that wrote it: each service its own.
    let rows = f.audit_rows().await.unwrap();
    for row in &rows {
        let role = match row.service.as_str() {
            "set-service" => "tokenvault_writer",
            _ => "tokenvault_reader",
        };
        assert_eq!(row.db_role, role, "{row:?}");
    }
    assert!(rows.iter().any(|r| r.service == "get-service"));
    assert_eq!(
        f.get_metric("tokenvault_audit_events_dropped_total")
            .await
            .unwrap(),
        0.0
    );
    f.stop().await.unwrap();
}

/// Calls in a flood, and how many are in flight at once.
const FLOOD: usize = 20_000;
const IN_FLIGHT: usize = 32;

/// Starts a system whose services write the table with `audit`, connects
/// an account and warms get-service's cache; returns it and the account.
async fn flood_system(audit: AuditTable) -> (ProcSystem, String) {
    let mut f = ProcSystem::start(ProcOptions {
        audit: Some(audit),
        ..ProcOptions::default()
    })
    .await
    .unwrap();
    let account = f.connect_directly("flood").await.unwrap();
    f.token(&account, 0).await.unwrap();
    (f, account)
}

/// [`FLOOD`] cached `GetAccessToken` calls from a `worker/flood` caller, as
/// fast as [`IN_FLIGHT`] concurrent calls on one connection go; every one
/// must succeed. Returns how long the flood took.
async fn flood(f: &ProcSystem, account: &str) -> Duration {
    let tls = f.issue(Role::Worker, Some("flood")).unwrap();
    let channel = grpc_channel(&f.get.address(), &tls, Role::GetService).unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let mut client = GetServiceClient::new(channel.clone());
            let account = account.to_owned();
            tokio::spawn(async move {
                for _ in 0..FLOOD / IN_FLIGHT {
                    client
                        .get_access_token(GetAccessTokenRequest {
                            account: account.clone(),
                            provider: "oidc".into(),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// The flood's rows in the table.
async fn flood_rows(f: &ProcSystem) -> usize {
    f.audit_rows()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.action == "GetAccessToken" && r.caller.ends_with("/worker/flood"))
        .count()
}

/// 20,000 calls as fast as the test sends them through a 32-event queue
/// with `on_overflow = "block"`: calls wait for room, none is refused, and
/// every call's event is in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_with_block_waits_for_room_and_keeps_every_event() {
    let (f, account) = flood_system(AuditTable {
        on_overflow: "block",
        queue_len: 32,
    })
    .await;
    let took = flood(&f, &account).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while flood_rows(&f).await < FLOOD && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(flood_rows(&f).await, FLOOD);
    let metric = |name: &'static str| f.get_metric(name);
    assert_eq!(
        metric("tokenvault_audit_events_dropped_total")
            .await
            .unwrap(),
        0.0
    );
    assert_eq!(
        metric("tokenvault_audit_refused_calls_total")
            .await
            .unwrap(),
        0.0
    );
    println!("{FLOOD} calls with block and a 32-event queue in {took:?}");
    f.stop().await.unwrap();
}

/// The same flood through a one-event queue with `on_overflow = "drop"`:
/// no call waits or fails, events are left out, and
/// `tokenvault_audit_events_dropped_total` counts exactly the events that
/// are missing from the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_with_drop_counts_exactly_the_events_left_out() {
    let (f, account) = flood_system(AuditTable {
        on_overflow: "drop",
        queue_len: 1,
    })
    .await;
    let dropped = || f.get_metric("tokenvault_audit_events_dropped_total");
    let before = dropped().await.unwrap();
    let took = flood(&f, &account).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut rows, mut left_out);
    loop {
        rows = flood_rows(&f).await;
        left_out = dropped().await.unwrap() - before;
        if rows + left_out as usize == FLOOD || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(left_out > 0.0, "a one-event queue left nothing out");
    assert_eq!(
        rows + left_out as usize,
        FLOOD,
        "{rows} rows, {left_out} counted as dropped"
    );
    assert!(
        f.get
            .logs()
            .contains("audit table: events left out of the table")
    );
    println!(
        "{FLOOD} calls with drop and a 1-event queue in {took:?}: {rows} rows, {left_out} dropped"
    );
    f.stop().await.unwrap();
}
