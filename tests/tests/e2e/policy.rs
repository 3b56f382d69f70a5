//! get-service's account policy through the real services: each worker
//! identity reads only the accounts and providers its rule names, a caller
//! no rule names reads nothing, both RPCs are governed, every audit event
//! (JSON log and table) names the deciding rule or its absence, no rules
//! means today's open behaviour with a warning, and a rule file replaced
//! under load applies without a restart or a failed call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Connection;
use tokenvault_get_service::config::PolicyConfig;
use tokenvault_store::audit_table::audit_table;
use tokenvault_tests::logs::{
    audit_table_at, captured_audit_events, captured_logs, set_audit_sink,
};
use tokenvault_tests::services::{
    get_service_config, get_service_start_error, oidc_provider_config,
};
use tokenvault_tests::store::Backend;
use tokenvault_tests::system::{Options, System};
use tokenvault_worker::{WorkerClient, WorkerError};
use tonic::Code;

const TWO_TENANTS: &str = r#"
[[rules]]
name = "billing"
callers = ["worker/billing"]
accounts = ["acme:*"]
providers = ["google"]

[[rules]]
name = "crm"
callers = ["spiffe://tokenvault.test/worker/crm"]
accounts = ["globex:*"]
providers = ["*"]
"#;

fn options(policy: Option<&str>) -> Options {
    Options {
        get_providers: vec!["oidc", "google"],
        policy: policy.map(str::to_owned),
        ..Options::default()
    }
}

async fn token(worker: &WorkerClient, account: &str, provider: &str) -> Result<String, Code> {
    worker
        .access_token(account, provider, Duration::ZERO)
        .await
        .map(|t| t.secret().to_owned())
        .map_err(|e| e.code().unwrap_or(Code::Unknown))
}

async fn status(worker: &WorkerClient, account: &str, provider: &str) -> Result<(), WorkerError> {
    worker.account_status(account, provider).await.map(|_| ())
}

/// The `policy` of the audit events of `rpc` by `worker/<who>` for `account`.
fn policies(rpc: &str, who: &str, account: &str) -> Vec<(String, String)> {
    let caller = format!("spiffe://tokenvault.test/worker/{who}");
    captured_audit_events()
        .iter()
        .filter(|e| e["rpc"] == rpc && e["caller"] == caller.as_str() && e["account"] == account)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("policy"), s("outcome"))
        })
        .collect()
}

fn pair(policy: &str, outcome: &str) -> (String, String) {
    (policy.to_owned(), outcome.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_reads_only_its_tenants_accounts_and_the_audit_names_the_rule() {
    let mut f = System::start(Options {
        backend: Backend::Postgres,
        ..options(Some(TWO_TENANTS))
    })
    .await
    .unwrap();
    // The table, written with get-service's role (the reader's one grant
    // besides SELECT is INSERT on audit_events, policy column included).
    let (table, writer) = audit_table(&audit_table_at(&f.store.reader_url), "get-service")
        .unwrap()
        .unwrap();
    set_audit_sink(Box::new(table));
    for (account, provider) in [
        ("acme:alice", "google"),
        ("acme:bob", "oidc"),
        ("globex:carol", "google"),
        ("globex:dan", "oidc"),
    ] {
        f.connect_at(account, provider).await.unwrap();
    }
    let billing = f.worker_named("billing").unwrap();
    let crm = f.worker_named("crm").unwrap();
    let refreshes_before = f.refreshes().await.unwrap();

    // Each reads its own tenant's accounts, at the providers its rule names.
    let alice = token(&billing, "acme:alice", "google").await.unwrap();
    assert_eq!(f.oidc.userinfo(&alice).await.unwrap()["sub"], "acme:alice");
    status(&billing, "acme:alice", "google").await.unwrap();
    for provider in ["google", "oidc"] {
        let account = if provider == "google" {
            "globex:carol"
        } else {
            "globex:dan"
        };
        token(&crm, account, provider).await.unwrap();
        status(&crm, account, provider).await.unwrap();
    }
    f.secrets.push(alice);
    assert_eq!(f.refreshes().await.unwrap(), refreshes_before + 3);

    // And nothing else: the other tenant, another provider, or a worker no
    // rule names (worker/e2e). Refused before anything is read, refreshed
    // or written (once the reads' shares with other replicas are written).
    let mut rows_before = f.row_counts().await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = f.row_counts().await.unwrap();
        if now == rows_before {
            break;
        }
        rows_before = now;
    }
    let refused = [
        (&billing, "globex:carol", "google"),
        (&billing, "acme:bob", "oidc"),
        (&crm, "acme:alice", "google"),
        (&f.worker, "acme:alice", "google"),
        (&f.worker, "globex:dan", "oidc"),
    ];
    let refreshes = f.refreshes().await.unwrap();
    for (worker, account, provider) in refused {
        assert_eq!(
            token(worker, account, provider).await,
            Err(Code::PermissionDenied)
        );
        let e = status(worker, account, provider).await.unwrap_err();
        assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
        assert!(e.to_string().contains(account), "{e}");
        assert!(
            e.to_string().contains("spiffe://tokenvault.test/worker/"),
            "{e}"
        );
        assert!(e.to_string().contains("no account policy rule"), "{e}");
    }
    assert_eq!(f.refreshes().await.unwrap(), refreshes);
    assert_eq!(f.row_counts().await.unwrap(), rows_before);

    // The audit events name the rule that allowed each read, or its absence.
    assert_eq!(
        policies("GetAccessToken", "billing", "acme:alice"),
        [pair("rule:billing", "ok")]
    );
    assert_eq!(
        policies("GetAccountStatus", "billing", "acme:alice"),
        [pair("rule:billing", "ok")]
    );
    assert_eq!(
        policies("GetAccessToken", "crm", "globex:dan"),
        [pair("rule:crm", "ok")]
    );
    for (who, account) in [
        ("billing", "globex:carol"),
        ("billing", "acme:bob"),
        ("crm", "acme:alice"),
        ("e2e", "acme:alice"),
    ] {
        for rpc in ["GetAccessToken", "GetAccountStatus"] {
            assert_eq!(
                policies(rpc, who, account),
                [pair("none", "permission_denied")],
                "{rpc} {who} {account}"
            );
        }
    }
    // So do the table's rows.
    assert_eq!(writer.drain(Duration::from_secs(10)).await, 0);
    let mut db = sqlx::PgConnection::connect(&f.store.owner_url)
        .await
        .unwrap();
    let rows: Vec<(String, String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT action, caller, account, policy, outcome FROM audit_events \
         WHERE action LIKE 'Get%' ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2 + 4 + 2 * refused.len(), "{rows:#?}");
    for (action, caller, account, policy, outcome) in &rows {
        let want = match (
            caller.rsplit('/').next(),
            account.split(':').next(),
            outcome.as_str(),
        ) {
            (Some("billing"), Some("acme"), "ok") => "rule:billing",
            (Some("crm"), Some("globex"), "ok") => "rule:crm",
            (_, _, "permission_denied") => "none",
            other => panic!("unexpected row {other:?}"),
        };
        assert_eq!(policy.as_deref(), Some(want), "{action} {caller} {account}");
    }
    let roles: Vec<String> = sqlx::query_scalar("SELECT DISTINCT db_role FROM audit_events")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(roles, ["tokenvault_reader"]);
    // Other services' events are governed by no account policy.
    let ungoverned: Option<String> = sqlx::query_scalar(
        "SELECT policy FROM audit_events WHERE action = 'StoreRefreshToken' LIMIT 1",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(ungoverned, None);
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rules_every_worker_reads_every_account_and_get_service_warns() {
    let mut f = System::start(options(None)).await.unwrap();
    assert!(
        captured_logs().contains(
            "no account policy rules: every caller the allow-lists admit may read every account"
        ),
        "get-service did not warn"
    );
    f.connect_at("acme:alice", "google").await.unwrap();
    let other = f.worker_named("anyone").unwrap();
    let t = token(&other, "acme:alice", "google").await.unwrap();
    f.secrets.push(t);
    assert_eq!(
        policies("GetAccessToken", "anyone", "acme:alice"),
        [pair("open", "ok")]
    );

    // A rule file that does not load stops get-service at start, naming it.
    let bad = f.pki.scratch().join("bad-policy.toml");
    std::fs::write(&bad, "[[rules]]\nname = \"x\"\ncallers = [\"worker\"]\naccounts = [\"*\"]\nproviders = [\"*\"]\n").unwrap();
    let mut config = get_service_config(
        &f.pki,
        &f.store.reader_url,
        &f.set.address(),
        vec![oidc_provider_config(&f.oidc, 1).unwrap()],
    )
    .unwrap();
    config.policy = PolicyConfig { file: Some(bad) };
    let e = get_service_start_error(config).await.unwrap();
    assert!(
        e.starts_with("policy.file: ") && e.contains("worker/*"),
        "{e}"
    );
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_file_replaced_under_load_applies_without_a_restart_or_a_failed_call() {
    let mut f = System::start(options(Some(TWO_TENANTS))).await.unwrap();
    for account in ["acme:alice", "acme:bob"] {
        f.connect_at(account, "google").await.unwrap();
    }
    let billing = f.worker_named("billing").unwrap();
    let ops = f.worker_named("ops").unwrap();
    assert_eq!(
        token(&ops, "acme:alice", "google").await,
        Err(Code::PermissionDenied)
    );

    // Eight billing callers, each a bounded stream of calls, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut callers = Vec::new();
    for i in 0..8 {
        let (billing, stop, calls, failures) = (
            billing.clone(),
            stop.clone(),
            calls.clone(),
            failures.clone(),
        );
        callers.push(tokio::spawn(async move {
            let account = if i % 2 == 0 { "acme:alice" } else { "acme:bob" };
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Err(code) = token(&billing, account, "google").await {
                    eprintln!("billing call failed: {code:?}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Let ops read acme too: applied within the poll interval.
    let with_ops = format!(
        "{TWO_TENANTS}\n[[rules]]\nname = \"ops\"\ncallers = [\"worker/ops\"]\naccounts = [\"acme:*\"]\nproviders = [\"google\"]\n"
    );
    f.replace_policy(&with_ops).unwrap();
    let ops_allowed =
        wait_for(|| async { token(&ops, "acme:alice", "google").await.is_ok() }).await;
    assert!(ops_allowed, "the new rule was not applied");
    // A broken file keeps the rules in force, and says so.
    f.replace_policy("[[rules]]\nname = ").unwrap();
    let complained = wait_for(|| async {
        captured_logs().contains(
            "the account policy file changed but does not load; keeping the rules in force",
        )
    })
    .await;
    assert!(complained, "the broken file was not reported");
    token(&ops, "acme:bob", "google").await.unwrap();
    // Back to the first rules: ops is refused again.
    f.replace_policy(TWO_TENANTS).unwrap();
    let ops_refused = wait_for(|| async {
        token(&ops, "acme:alice", "google").await == Err(Code::PermissionDenied)
    })
    .await;
    assert!(ops_refused, "the rule's removal was not applied");

    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }
    let calls = calls.load(Ordering::Relaxed);
    eprintln!("billing calls during the reloads: {calls}");
    assert!(calls > 100, "only {calls} calls");
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(
        policies("GetAccessToken", "billing", "acme:bob")
            .iter()
            .all(|p| *p == pair("rule:billing", "ok"))
    );
    f.stop().await.unwrap();
}

/// Polls `check` every 100 ms for up to 15 s.
async fn wait_for<F, Fut>(check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
