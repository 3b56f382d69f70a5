//! The account inventory (`AccountInventory` on get-service, issue #17)
//! through the real services: `ListAccounts` pages through 10k accounts on
//! PostgreSQL once each, filters by status (recorded through set-service),
//! prefix, provider and change time, refuses a worker identity and malformed
//! requests, and shows an admin that the account policy names only what its
//! rules allow; `WatchAccountEvents` interrupted and resumed after its last
//! cursor delivers exactly the stored event sequence while several tasks
//! write events; get-service stops gracefully with a stream open; and the
//! `tokenvault-admin` binary lists accounts as JSON lines.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokenvault_proto::v1::account_inventory_client::AccountInventoryClient;
use tokenvault_proto::v1::get_service_client::GetServiceClient;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{
    AccountEvent, AccountEventKind, AccountStatus, AccountSummary, GetAccountStatusRequest,
    ListAccountsRequest, RecordAccountStatusRequest, WatchAccountEventsRequest,
};
use tokenvault_store::{TokenReader, TokenWriter};
use tokenvault_tests::Backend;
use tokenvault_tests::logs::captured_audit_events;
use tokenvault_tests::pki::TRUST_DOMAIN;
use tokenvault_tests::services::grpc_channel;
use tokenvault_tests::system::{Options, System};
use tokenvault_tls::{Role, TlsFiles};
use tokenvault_worker::admin::AdminClient;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

/// A stand-in for a sealed token: the inventory never reads one.
fn fake_sealed(account: &str, n: u32) -> String {
    format!("{}.{account}.{n}", "e".repeat(300))
}

fn inventory(system: &System, tls: &TlsFiles) -> AccountInventoryClient<Channel> {
    AccountInventoryClient::new(grpc_channel(&system.get.address(), tls, Role::GetService).unwrap())
}

fn admin_raw(system: &System, name: &str) -> AccountInventoryClient<Channel> {
    inventory(system, &system.pki.issue(Role::Admin, Some(name)).unwrap())
}

async fn writer(system: &System) -> TokenWriter {
    TokenWriter::connect(&system.store.writer_url)
        .await
        .unwrap()
}

/// Stores a token for each `(account, provider)`.
async fn seed(system: &System, keys: &[(&str, &str)]) {
    let writer = writer(system).await;
    for (account, provider) in keys {
        writer
            .store(account, provider, &fake_sealed(account, 0), "kid-1")
            .await
            .unwrap();
    }
    writer.close().await;
}

/// Every account `request`'s filters admit, through every page, as
/// `account@provider`.
async fn list_all(admin: &AdminClient, request: ListAccountsRequest) -> Vec<String> {
    let mut pages = admin.pages(request);
    let mut seen = Vec::new();
    while let Some(page) = pages.next().await.unwrap() {
        seen.extend(page.iter().map(key));
    }
    seen
}

fn key(a: &AccountSummary) -> String {
    format!("{}@{}", a.account, a.provider)
}

fn strings(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

fn audit_policies(rpc: &str, caller: &str) -> Vec<(String, String)> {
    captured_audit_events()
        .iter()
        .filter(|e| e["rpc"] == rpc && e["caller"] == caller)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("policy"), s("outcome"))
        })
        .collect()
}

fn admin_id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/admin/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_accounts_over_10k_accounts_pages_through_every_account_once_and_a_worker_is_refused()
{
    const ACCOUNTS: usize = 10_000;
    const TASKS: usize = 16;
    let system = System::start(Options {
        backend: Backend::Postgres,
        ..Options::default()
    })
    .await
    .unwrap();
    let writer = writer(&system).await;
    let seeding = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in (task..ACCOUNTS).step_by(TASKS) {
                let account = format!("tenant{}:user-{i:05}", i % 7);
                writer
                    .store(&account, "oidc", &fake_sealed(&account, 0), "kid-1")
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let seeded = seeding.elapsed();
    writer.close().await;

    let admin = system.admin_named("ops").unwrap();
    for page_size in [1000, 0] {
        let paging = Instant::now();
        let mut pages = admin.pages(ListAccountsRequest {
            page_size,
            ..ListAccountsRequest::default()
        });
        let (mut seen, mut page_count) = (Vec::new(), 0);
        while let Some(page) = pages.next().await.unwrap() {
            page_count += 1;
            let last_page = pages.page_token().is_empty();
            let expected_len = if page_size == 0 { 100 } else { 1000 };
            assert!(
                page.len() == expected_len || last_page,
                "a short page ({}) that is not the last",
                page.len()
            );
            for a in &page {
                assert_eq!(a.status, AccountStatus::Active as i32);
                assert!(a.connected_at_unix > 0 && a.token_stored_at_unix > 0);
                assert!(a.updated_at_unix > 0);
            }
            seen.extend(page.iter().map(key));
        }
        let took = paging.elapsed();
        eprintln!(
            "ListAccounts over {ACCOUNTS} accounts (seeded in {seeded:?}): page_size {page_size}: \
             {page_count} pages in {took:?}"
        );
        assert_eq!(seen.len(), ACCOUNTS, "every account once");
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, seen, "in (account, provider) order");
        sorted.dedup();
        assert_eq!(sorted.len(), ACCOUNTS, "no account twice");
        assert_eq!(
            page_count,
            ACCOUNTS / if page_size == 0 { 100 } else { 1000 }
        );
    }
    assert!(
        audit_policies("ListAccounts", &admin_id("ops"))
            .iter()
            .all(|p| *p == ("open".to_owned(), "ok".to_owned()))
    );

    // A worker identity may not list or watch; an admin may not get tokens.
    let worker = system.pki.issue(Role::Worker, Some("e2e")).unwrap();
    let mut as_worker = inventory(&system, &worker);
    let refused = as_worker
        .list_accounts(ListAccountsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("worker/e2e") && refused.message().contains("ListAccounts"),
        "{refused:?}"
    );
    let refused = as_worker
        .watch_account_events(WatchAccountEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let worker_id = format!("spiffe://{TRUST_DOMAIN}/worker/e2e");
    for rpc in ["ListAccounts", "WatchAccountEvents"] {
        assert_eq!(
            audit_policies(rpc, &worker_id),
            [(String::new(), "permission_denied".to_owned())],
            "{rpc}"
        );
    }
    let admin_tls = system.pki.issue(Role::Admin, Some("ops")).unwrap();
    let mut get = GetServiceClient::new(
        grpc_channel(&system.get.address(), &admin_tls, Role::GetService).unwrap(),
    );
    let refused = get
        .get_account_status(GetAccountStatusRequest {
            account: "tenant0:user-00000".into(),
            provider: "oidc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    system.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_status_prefix_provider_and_change_time() {
    let system = System::start(Options {
        get_providers: vec!["oidc", "google"],
        ..Options::default()
    })
    .await
    .unwrap();
    seed(
        &system,
        &[
            ("acme:1", "oidc"),
            ("acme:1", "google"),
            ("acme:2", "oidc"),
            ("acme:3", "oidc"),
            ("acme:30", "oidc"),
            ("globex:1", "oidc"),
            ("globex:2", "oidc"),
        ],
    )
    .await;
    // Whole seconds later, acme:2's grant dies: get-service (whose identity
    // set-service lets record statuses) records it through set-service.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let changed_at = tokenvault_tls::now_unix();
    let get_tls = system.pki.issue(Role::GetService, None).unwrap();
    let mut set = SetServiceClient::new(
        grpc_channel(&system.set.address(), &get_tls, Role::SetService).unwrap(),
    );
    set.record_account_status(RecordAccountStatusRequest {
        account: "acme:2".into(),
        provider: "oidc".into(),
        status: AccountStatus::ReauthorizationRequired as i32,
        reason: "invalid_grant".into(),
    })
    .await
    .unwrap();
    let writer = writer(&system).await;
    writer.disconnect("globex:2", "oidc").await.unwrap();
    writer.close().await;

    let admin = system.admin_named("ops").unwrap();
    let list = |request: ListAccountsRequest| list_all(&admin, request);
    assert_eq!(
        list(ListAccountsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await,
        strings(&[
            "acme:1@google",
            "acme:1@oidc",
            "acme:2@oidc",
            "acme:3@oidc",
            "acme:30@oidc",
            "globex:1@oidc",
            "globex:2@oidc",
        ])
    );
    let reauth = admin
        .list_page(&ListAccountsRequest {
            status: AccountStatus::ReauthorizationRequired as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reauth.accounts.len(), 1);
    let dead = &reauth.accounts[0];
    assert_eq!(key(dead), "acme:2@oidc");
    assert_eq!(dead.reason, "invalid_grant");
    assert!(dead.updated_at_unix >= changed_at);
    assert!(reauth.next_page_token.is_empty());
    assert_eq!(
        list(ListAccountsRequest {
            status: AccountStatus::Disconnected as i32,
            ..Default::default()
        })
        .await,
        strings(&["globex:2@oidc"])
    );
    assert_eq!(
        list(ListAccountsRequest {
            status: AccountStatus::Active as i32,
            account_prefix: "acme:".into(),
            provider: "oidc".into(),
            ..Default::default()
        })
        .await,
        strings(&["acme:1@oidc", "acme:3@oidc", "acme:30@oidc"])
    );
    assert_eq!(
        list(ListAccountsRequest {
            provider: "google".into(),
            ..Default::default()
        })
        .await,
        strings(&["acme:1@google"])
    );
    assert_eq!(
        list(ListAccountsRequest {
            account_prefix: "acme:3".into(),
            page_size: 1,
            ..Default::default()
        })
        .await,
        strings(&["acme:3@oidc", "acme:30@oidc"])
    );
    assert_eq!(
        list(ListAccountsRequest {
            changed_since_unix: changed_at,
            ..Default::default()
        })
        .await,
        strings(&["acme:2@oidc", "globex:2@oidc"])
    );
    assert!(
        list(ListAccountsRequest {
            changed_since_unix: changed_at + 3600,
            ..Default::default()
        })
        .await
        .is_empty()
    );
    // `accounts show`: one account by an exact-prefix listing.
    let shown = admin.account("acme:3", "oidc").await.unwrap().unwrap();
    assert_eq!(key(&shown), "acme:3@oidc");
    assert!(admin.account("acme:", "oidc").await.unwrap().is_none());
    assert!(admin.account("acme:4", "oidc").await.unwrap().is_none());

    // Malformed requests: INVALID_ARGUMENT naming the field, nothing read.
    let mut raw = admin_raw(&system, "ops");
    for (request, field) in [
        (
            ListAccountsRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListAccountsRequest {
                provider: "github".into(),
                ..Default::default()
            },
            "provider",
        ),
        (
            ListAccountsRequest {
                status: 42,
                ..Default::default()
            },
            "status",
        ),
        (
            ListAccountsRequest {
                account_prefix: "acme/".into(),
                ..Default::default()
            },
            "account_prefix",
        ),
        (
            ListAccountsRequest {
                changed_since_unix: -1,
                ..Default::default()
            },
            "changed_since_unix",
        ),
        (
            ListAccountsRequest {
                page_token: "bm90IGEgdG9rZW4".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ] {
        let e = raw.list_accounts(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {e:?}");
    }
    let e = raw
        .watch_account_events(WatchAccountEventsRequest {
            provider: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        audit_policies("ListAccounts", &admin_id("ops"))
            .contains(&(String::new(), "invalid_argument".to_owned()))
    );
    system.stop().await.unwrap();
}

const OPS_POLICY: &str = r#"
[[rules]]
name = "ops-acme"
callers = ["admin/ops"]
accounts = ["acme:*"]
providers = ["oidc"]

[[rules]]
name = "workers"
callers = ["worker/*"]
accounts = ["*"]
providers = ["*"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_names_the_admin_limits_what_it_lists_and_watches() {
    let system = System::start(Options {
        get_providers: vec!["oidc", "google"],
        policy: Some(OPS_POLICY.to_owned()),
        ..Options::default()
    })
    .await
    .unwrap();
    let mut keys = Vec::new();
    for i in 0..5 {
        keys.push((format!("acme:{i}"), "oidc"));
        keys.push((format!("acme:{i}"), "google"));
        keys.push((format!("aaa:{i}"), "oidc"));
        keys.push((format!("globex:{i}"), "oidc"));
    }
    let keys: Vec<(&str, &str)> = keys.iter().map(|(a, p)| (a.as_str(), *p)).collect();
    seed(&system, &keys).await;

    // admin/ops is named: only acme:* at oidc, in full pages.
    let ops = system.admin_named("ops").unwrap();
    let acme_oidc: Vec<String> = (0..5).map(|i| format!("acme:{i}@oidc")).collect();
    for page_size in [1, 2, 0] {
        let mut pages = ops.pages(ListAccountsRequest {
            page_size,
            ..Default::default()
        });
        let mut seen = Vec::new();
        while let Some(page) = pages.next().await.unwrap() {
            if !pages.page_token().is_empty() {
                assert_eq!(page.len() as u32, page_size, "pages stay full");
            }
            seen.extend(page.iter().map(key));
        }
        assert_eq!(seen, acme_oidc, "page_size {page_size}");
    }
    assert!(ops.account("globex:1", "oidc").await.unwrap().is_none());
    // admin/audit is not named by any rule: everything.
    let audit = system.admin_named("audit").unwrap();
    assert_eq!(
        list_all(&audit, ListAccountsRequest::default()).await.len(),
        20
    );
    assert!(
        audit_policies("ListAccounts", &admin_id("ops"))
            .iter()
            .all(|p| p.0 == "filtered" && p.1 == "ok")
    );
    assert!(
        audit_policies("ListAccounts", &admin_id("audit"))
            .iter()
            .all(|p| p.0 == "unnamed" && p.1 == "ok")
    );

    // Its event stream is limited the same way, for stored and new events.
    let mut stream = admin_raw(&system, "ops")
        .watch_account_events(WatchAccountEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut connected = Vec::new();
    for _ in 0..5 {
        let e = next_event(&mut stream).await;
        assert_eq!(e.kind, AccountEventKind::Connected as i32);
        connected.push(format!("{}@{}", e.account, e.provider));
    }
    assert_eq!(connected, acme_oidc);
    let writer = writer(&system).await;
    for (account, provider) in [
        ("globex:1", "oidc"),
        ("acme:1", "google"),
        ("acme:3", "oidc"),
    ] {
        writer
            .record_status(
                account,
                provider,
                tokenvault_store::TokenStatus::ReauthorizationRequired,
                "invalid_grant",
            )
            .await
            .unwrap();
    }
    writer.close().await;
    let e = next_event(&mut stream).await;
    assert_eq!(
        (e.kind, e.account.as_str(), e.provider.as_str()),
        (
            AccountEventKind::ReauthorizationRequired as i32,
            "acme:3",
            "oidc"
        )
    );
    assert_eq!(e.status, AccountStatus::ReauthorizationRequired as i32);
    assert_eq!(e.reason, "invalid_grant");
    assert_eq!(e.id, format!("evt_{}", e.cursor));
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), stream.message())
            .await
            .is_err(),
        "nothing else is visible to admin/ops"
    );
    assert_eq!(
        audit_policies("WatchAccountEvents", &admin_id("ops")),
        [("filtered".to_owned(), "ok".to_owned())]
    );
    drop(stream);
    system.stop().await.unwrap();
}

async fn next_event(stream: &mut Streaming<AccountEvent>) -> AccountEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within 10 s")
        .expect("the stream stays open")
        .expect("the stream does not end")
}

/// What the test compares of an event.
fn fields(e: &AccountEvent) -> (u64, String, i32, String, String, i32, String, i64) {
    (
        e.cursor,
        e.id.clone(),
        e.kind,
        e.account.clone(),
        e.provider.clone(),
        e.status,
        e.reason.clone(),
        e.occurred_at_unix,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_interrupted_and_resumed_from_its_last_cursor_is_exactly_the_event_sequence_on_postgres()
 {
    interrupted_and_resumed(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_interrupted_and_resumed_from_its_last_cursor_is_exactly_the_event_sequence_on_sqlite()
 {
    interrupted_and_resumed(Backend::Sqlite).await;
}

/// Several tasks change accounts (connected, reconnected, reauthorization
/// required, recovered) while a watcher reads; the watcher drops its stream
/// mid-way and resumes after the last cursor it received.
async fn interrupted_and_resumed(backend: Backend) {
    const TASKS: usize = 4;
    const ACCOUNTS_PER_TASK: usize = 20;
    const EVENTS: usize = TASKS * ACCOUNTS_PER_TASK * 4;
    let system = System::start(Options {
        backend,
        ..Options::default()
    })
    .await
    .unwrap();
    let writer = writer(&system).await;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..ACCOUNTS_PER_TASK {
                let account = format!("w{task}:{i}");
                writer
                    .store(&account, "oidc", &fake_sealed(&account, 1), "kid-1")
                    .await
                    .unwrap();
                writer
                    .store(&account, "oidc", &fake_sealed(&account, 2), "kid-1")
                    .await
                    .unwrap();
                writer
                    .record_status(
                        &account,
                        "oidc",
                        tokenvault_store::TokenStatus::ReauthorizationRequired,
                        "invalid_grant",
                    )
                    .await
                    .unwrap();
                writer
                    .store(&account, "oidc", &fake_sealed(&account, 3), "kid-1")
                    .await
                    .unwrap();
                // Spread the writes over several of the watcher's polls.
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }));
    }

    let mut admin = admin_raw(&system, "watcher");
    let mut received = Vec::new();
    let mut stream = admin
        .watch_account_events(WatchAccountEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    while received.len() < EVENTS / 3 {
        received.push(next_event(&mut stream).await);
    }
    // Interrupted mid-way (the writers are still writing).
    drop(stream);
    let interrupted_at = received.len();
    let still_writing = tasks.iter().any(|t| !t.is_finished());
    let last = received.last().unwrap().cursor;
    let mut stream = admin
        .watch_account_events(WatchAccountEventsRequest {
            after_cursor: last,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while received.len() < EVENTS {
        received.push(next_event(&mut stream).await);
    }
    for task in tasks {
        task.await.unwrap();
    }
    writer.close().await;

    system.store.settle_events().await;
    let reader = TokenReader::connect(&system.store.reader_url)
        .await
        .unwrap();
    let stored = reader.events_after(0, 100_000).await.unwrap();
    assert_eq!(
        stored.len(),
        EVENTS,
        "the writers made 4 events per account"
    );
    let expected: Vec<_> = stored
        .into_iter()
        .map(|e| {
            (
                u64::try_from(e.cursor).unwrap(),
                format!("evt_{}", e.cursor),
                kind(e.kind) as i32,
                e.account,
                e.provider,
                status(e.status) as i32,
                e.reason,
                e.occurred_at_unix,
            )
        })
        .collect();
    let got: Vec<_> = received.iter().map(fields).collect();
    assert_eq!(got, expected, "no gap, no duplicate, in cursor order");
    // Nothing more arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(1200), stream.message())
            .await
            .is_err()
    );
    eprintln!(
        "{backend:?}: {EVENTS} events; interrupted after {interrupted_at} (writers still \
         writing: {still_writing}), resumed after cursor {last}"
    );
    let kinds: BTreeSet<i32> = received.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            AccountEventKind::Connected,
            AccountEventKind::Reconnected,
            AccountEventKind::ReauthorizationRequired,
            AccountEventKind::Recovered,
        ]
        .map(|k| k as i32)
        .into_iter()
        .collect()
    );
    drop(stream);
    system.stop().await.unwrap();
}

fn kind(k: tokenvault_store::EventKind) -> AccountEventKind {
    use tokenvault_store::EventKind as K;
    match k {
        K::Connected => AccountEventKind::Connected,
        K::Reconnected => AccountEventKind::Reconnected,
        K::ReauthorizationRequired => AccountEventKind::ReauthorizationRequired,
        K::Recovered => AccountEventKind::Recovered,
        K::Disconnected => AccountEventKind::Disconnected,
        K::Revoked => AccountEventKind::Revoked,
        K::Expiring => AccountEventKind::Expiring,
    }
}

fn status(s: tokenvault_store::TokenStatus) -> AccountStatus {
    use tokenvault_store::TokenStatus as S;
    match s {
        S::Active => AccountStatus::Active,
        S::ReauthorizationRequired => AccountStatus::ReauthorizationRequired,
        S::Disconnected => AccountStatus::Disconnected,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_service_stops_gracefully_with_a_watch_stream_open() {
    let mut system = System::start(Options::default()).await.unwrap();
    seed(&system, &[("acme:1", "oidc")]).await;
    let mut stream = admin_raw(&system, "ops")
        .watch_account_events(WatchAccountEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut stream).await.account, "acme:1");
    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(8), system.stop_get_service())
        .await
        .expect("get-service stops with a watch stream open")
        .unwrap();
    let took = stopping.elapsed();
    let ended = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends");
    let status = ended.expect_err("the stream ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("stopping"), "{status:?}");
    eprintln!("get-service stopped in {took:?} with a watch stream open");
    system.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_lists_accounts_as_json_lines() {
    // The release binary (scripts/build-release builds it with the worker's).
    let binary = tokenvault_tests::procs::binary("tokenvault-admin").unwrap();
    let system = System::start(Options::default()).await.unwrap();
    let writer = writer(&system).await;
    let expires_at = tokenvault_tls::now_unix() + 90 * 86_400;
    writer
        .store_with(
            "acme:1",
            "oidc",
            &fake_sealed("acme:1", 0),
            "kid-1",
            tokenvault_store::TokenFacts {
                metadata: Some(r#"{"tenant":"acme","display_name":"Alice"}"#),
                refresh_token_expires_at: Some(expires_at),
            },
        )
        .await
        .unwrap();
    for account in ["acme:2", "globex:1"] {
        writer
            .store(account, "oidc", &fake_sealed(account, 0), "kid-1")
            .await
            .unwrap();
    }
    writer
        .record_status(
            "acme:2",
            "oidc",
            tokenvault_store::TokenStatus::ReauthorizationRequired,
            "invalid_grant",
        )
        .await
        .unwrap();
    writer.close().await;
    let tls = system.pki.issue(Role::Admin, Some("cli")).unwrap();
    let mut command = std::process::Command::new(binary);
    command
        .args(["--address", &system.get.address()])
        .args(["--trust-domain", TRUST_DOMAIN])
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .arg("--ca")
        .arg(&tls.ca)
        .args(["accounts", "list", "--json", "--page-size", "2"]);
    let output = tokio::task::spawn_blocking(move || {
        tokenvault_tests::procs::run_with_timeout(command, Duration::from_secs(20))
    })
    .await
    .unwrap()
    .unwrap()
    .success("tokenvault-admin accounts list --json")
    .unwrap();
    let lines: Vec<serde_json::Value> = output
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let accounts: Vec<&str> = lines
        .iter()
        .map(|l| l["account"].as_str().unwrap())
        .collect();
    assert_eq!(
        accounts,
        ["acme:1", "acme:2", "globex:1"],
        "{}",
        output.stdout
    );
    assert_eq!(lines[0]["provider"], "oidc");
    assert_eq!(lines[0]["status"], "active");
    assert_eq!(lines[0]["metadata"]["tenant"], "acme");
    assert!(lines[0]["token_stored_at_unix"].as_i64().unwrap() > 0);
    assert_eq!(lines[0]["refresh_token_expires_at_unix"], expires_at);
    assert_eq!(lines[1]["status"], "reauthorization_required");
    assert_eq!(lines[1]["reason"], "invalid_grant");
    assert!(lines[2]["metadata"].is_null());
    assert!(output.stderr.is_empty(), "{}", output.stderr);
    system.stop().await.unwrap();
}

/// An admin whose certificate is revoked while its event stream is open: the stream ends with
/// `UNAUTHENTICATED` at the next reload, not when the caller next reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_admin_s_open_event_stream_ends() {
    let f = System::start(Options::default()).await.unwrap();
    let mut admin = admin_raw(&f, "leaver");
    let mut stream = admin
        .watch_account_events(WatchAccountEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    seed(&f, &[("leaver-1", "oidc")]).await;
    next_event(&mut stream).await;
    f.pki
        .revoke(&format!("spiffe://{TRUST_DOMAIN}/admin/leaver"))
        .unwrap();
    // The servers poll their TLS files every 2 s.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends within 10 s of the revocation");
    let status = ended.expect_err("ends with a status");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{status:?}");
    f.stop().await.unwrap();
}
