//! The application's own tokens (client-credentials grant) through
//! get-service's `GetClientAccessToken`, against the real authorization
//! server's client-credentials client: the token is one the server accepts
//! at introspection; 200 callers at once cause one token request; a token
//! near expiry is fetched again ahead of time; the account policy decides
//! who gets one (only `client_token` rules; no rule file, nobody), and
//! with which scopes; a
//! provider that is down for a moment is retried; every call writes one
//! audit event; no token reaches a log line.

use std::sync::Arc;
use std::time::Duration;

use tokenvault_tests::logs::{assert_not_logged, captured_audit_events};
use tokenvault_tests::system::{Options, System};
use tokenvault_worker::WorkerClient;
use tonic::Code;

/// The client-credentials provider the tests configure.
const MACHINE: &str = "machine";

/// The rule that gives the test workers the client token.
const MACHINE_RULE: &str = r#"
[[rules]]
name = "machine"
callers = ["worker/e2e", "worker/cli"]
client_token = true
providers = ["machine"]
"#;

fn options(policy: Option<&str>) -> Options {
    Options {
        client_credentials: vec![MACHINE],
        policy: policy.map(str::to_owned),
        ..Options::default()
    }
}

async fn client_token(
    worker: &WorkerClient,
    provider: &str,
    scopes: &[&str],
) -> Result<String, Code> {
    worker
        .client_access_token(provider, Duration::from_secs(5), scopes)
        .await
        .map(|t| t.secret().to_owned())
        .map_err(|e| e.code().unwrap_or(Code::Unknown))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_callers_cause_one_token_request_and_the_token_introspects_active() {
    let system = System::start(Options {
        // Room for the slow answer on a loaded host: a timed-out attempt
        // would be a second request.
        provider_timeout_secs: 5,
        ..options(Some(MACHINE_RULE))
    })
    .await
    .unwrap();
    system.oidc.reset_counters().await.unwrap();
    // Slow answers, so that every caller arrives while the one request runs.
    system.oidc.set_slow(500).await.unwrap();
    let worker = Arc::new(system.worker.clone());
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let worker = Arc::clone(&worker);
            tokio::spawn(async move { client_token(&worker, MACHINE, &[]).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for call in calls {
        tokens.push(call.await.unwrap().unwrap());
    }
    system.oidc.set_slow(0).await.unwrap();
    let counters = system.oidc.counters().await.unwrap();
    assert_eq!(counters.client_credentials_grants, 1, "{counters:?}");
    assert_eq!(counters.token_requests, 1, "{counters:?}");
    assert!(tokens.iter().all(|t| *t == tokens[0]));

    let introspection = system.oidc.introspect(&tokens[0]).await.unwrap();
    assert_eq!(introspection["active"], true, "{introspection}");
    assert_eq!(introspection["client_id"], "tokenvault-machine");
    assert_eq!(introspection["scope"], "api.read");
    // No `sub`: the token acts for no user.
    assert!(introspection.get("sub").is_none(), "{introspection}");

    // The next caller is served from the cache.
    assert_eq!(
        client_token(&worker, MACHINE, &[]).await.unwrap(),
        tokens[0]
    );
    assert_eq!(
        system
            .oidc
            .counters()
            .await
            .unwrap()
            .client_credentials_grants,
        1
    );
    let events = captured_audit_events();
    let served = events
        .iter()
        .filter(|e| {
            e["rpc"] == "GetClientAccessToken"
                && e["account"] == "(client)"
                && e["provider"] == MACHINE
                && e["outcome"] == "ok"
        })
        .count();
    assert_eq!(served, 201);
    assert_not_logged(&tokens[0], "the client token");
    system.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_near_expiry_is_fetched_again_ahead_of_time() {
    let mut options = options(Some(MACHINE_RULE));
    // 12 s tokens: refreshed ahead once less than a third (4 s) is left.
    options.access_token_ttl = Duration::from_secs(12);
    options.cache.refresh_ahead_secs = 30;
    let system = System::start(options).await.unwrap();
    let worker = &system.worker;
    let first = worker
        .client_access_token(MACHINE, Duration::ZERO, &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    // 2-3 s left: served at once, and a new one is fetched behind it.
    let ahead = worker
        .client_access_token(MACHINE, Duration::ZERO, &[])
        .await
        .unwrap();
    assert_eq!(ahead.secret(), first.secret());
    let mut newer = None;
    while tokenvault_tls::now_unix() < first.expires_at_unix - 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let token = worker
            .client_access_token(MACHINE, Duration::ZERO, &[])
            .await
            .unwrap();
        if token.secret() != first.secret() {
            newer = Some(token);
            break;
        }
    }
    // Before the old one expired: refresh-ahead, not a cache miss.
    let newer = newer.expect("a new client token before the old one expired");
    assert!(newer.expires_at_unix > first.expires_at_unix);
    assert_eq!(
        system
            .oidc
            .counters()
            .await
            .unwrap()
            .client_credentials_grants,
        2
    );
    system.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_rule_file_no_caller_gets_a_client_token() {
    let system = System::start(options(None)).await.unwrap();
    assert_eq!(
        client_token(&system.worker, MACHINE, &[]).await,
        Err(Code::PermissionDenied)
    );
    assert_eq!(
        system
            .oidc
            .counters()
            .await
            .unwrap()
            .client_credentials_grants,
        0
    );
    system.stop().await.unwrap();
}

const RULES: &str = r#"
[[rules]]
name = "reports"
callers = ["worker/reports"]
client_token = true
providers = ["machine"]
scopes = ["api.read"]

[[rules]]
name = "sync"
callers = ["worker/sync"]
client_token = true
accounts = ["acme:*"]
providers = ["*"]

[[rules]]
name = "everything"
callers = ["worker/users"]
accounts = ["*"]
providers = ["*"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_client_token_rules_allow_a_client_token_within_their_scopes() {
    let system = System::start(options(Some(RULES))).await.unwrap();
    let reports = system.worker_named("reports").unwrap();
    let sync = system.worker_named("sync").unwrap();
    let users = system.worker_named("users").unwrap();

    // A rule for every account is still no rule for the client token.
    assert_eq!(
        client_token(&users, MACHINE, &[]).await,
        Err(Code::PermissionDenied)
    );
    // A ceiling: the configured scope is within it; more is refused
    // before the provider is asked.
    let read = client_token(&reports, MACHINE, &[]).await.unwrap();
    assert_eq!(
        client_token(&reports, MACHINE, &["api.write"]).await,
        Err(Code::PermissionDenied)
    );
    // No ceiling: other scopes are a token of their own.
    let write = client_token(&sync, MACHINE, &["api.write"]).await.unwrap();
    assert_ne!(read, write);
    let introspection = system.oidc.introspect(&write).await.unwrap();
    assert_eq!(introspection["scope"], "api.write", "{introspection}");
    // Under a ceiling the configured scopes are asked for by name: the
    // same token as asking for them.
    assert_eq!(
        client_token(&reports, MACHINE, &["api.read"])
            .await
            .unwrap(),
        read
    );
    let default = client_token(&sync, MACHINE, &[]).await.unwrap();
    assert_eq!(
        system.oidc.introspect(&default).await.unwrap()["scope"],
        "api.read"
    );
    // A scope the client may not have: the provider refuses it.
    assert_eq!(
        client_token(&sync, MACHINE, &["api.admin"]).await,
        Err(Code::FailedPrecondition)
    );
    // A provider not configured for the grant, and one not configured.
    assert_eq!(
        client_token(&sync, "oidc", &[]).await,
        Err(Code::InvalidArgument)
    );
    assert_eq!(
        client_token(&sync, "nowhere", &[]).await,
        Err(Code::InvalidArgument)
    );
    let decided: Vec<(String, String)> = captured_audit_events()
        .iter()
        .filter(|e| e["rpc"] == "GetClientAccessToken")
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("policy"), s("outcome"))
        })
        .collect();
    let pair = |p: &str, o: &str| (p.to_owned(), o.to_owned());
    assert_eq!(
        decided[..5],
        [
            pair("none", "permission_denied"),
            pair("rule:reports", "ok"),
            pair("rule:reports", "permission_denied"),
            pair("rule:sync", "ok"),
            pair("rule:reports", "ok"),
        ]
    );
    assert_eq!(decided[5], pair("rule:sync", "ok"));
    assert_eq!(decided[6], pair("rule:sync", "scopes_unavailable"));
    system.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_for_a_moment_is_retried_and_one_down_for_long_is_unavailable() {
    let system = System::start(options(Some(MACHINE_RULE))).await.unwrap();
    system.oidc.fail_next(503, 1).await.unwrap();
    let token = client_token(&system.worker, MACHINE, &[]).await.unwrap();
    assert_eq!(
        system.oidc.introspect(&token).await.unwrap()["active"],
        true
    );
    assert_eq!(
        system
            .oidc
            .counters()
            .await
            .unwrap()
            .client_credentials_grants,
        2
    );
    // Down past the refresh deadline (4 s in tests): UNAVAILABLE, and the
    // next call after it is back gets a token.
    system.oidc.fail_next(503, 1_000).await.unwrap();
    assert_eq!(
        client_token(&system.worker, MACHINE, &["api.write"]).await,
        Err(Code::Unavailable)
    );
    system.oidc.fail_next(503, 0).await.unwrap();
    let write = client_token(&system.worker, MACHINE, &["api.write"])
        .await
        .unwrap();
    assert_eq!(
        system.oidc.introspect(&write).await.unwrap()["active"],
        true
    );
    system.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_command_prints_the_client_token() {
    let system = System::start(options(Some(MACHINE_RULE))).await.unwrap();
    let tls = system
        .pki
        .issue(tokenvault_tls::Role::Worker, Some("cli"))
        .unwrap();
    let path = |p: &std::path::Path| p.as_os_str().to_owned();
    let mut args: Vec<std::ffi::OsString> = [
        "tokenvault-worker",
        "--address",
        &system.get.address(),
        "--trust-domain",
        tokenvault_tests::pki::TRUST_DOMAIN,
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    for (flag, file) in [
        ("--cert", &tls.cert),
        ("--key", &tls.key),
        ("--ca", &tls.ca),
    ] {
        args.push(flag.into());
        args.push(path(file));
    }
    for arg in ["token", "--client", "--provider", MACHINE, "--json"] {
        args.push(arg.into());
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = tokenvault_worker::cli::run(args.clone(), &mut out, &mut err).await;
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let token = printed["access_token"].as_str().unwrap();
    assert_eq!(system.oidc.introspect(token).await.unwrap()["active"], true);
    assert_eq!(printed["scopes"], serde_json::json!(["api.read"]));
    // --client and --account exclude each other; one is required.
    let mut both = args.clone();
    both.extend(["--account".into(), "acme:1".into()]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        tokenvault_worker::cli::run(both, &mut out, &mut err).await,
        2
    );
    let neither: Vec<_> = args.into_iter().filter(|a| a != "--client").collect();
    assert_eq!(
        tokenvault_worker::cli::run(neither, &mut out, &mut err).await,
        2
    );
    system.stop().await.unwrap();
}
