//! get-service against the real authorization server (npm `oidc-provider`,
//! started by the harness): access tokens it accepts, min_ttl, rotation,
//! dead grants, provider outages, single-flight, authorization, and no
//! token in any log line.

use std::time::{Duration, Instant};

use tokenvault_proto::v1::AccountStatus;
use tokenvault_tests::Backend;
use tokenvault_tests::logs::captured_audit_events;
use tokenvault_tests::procs::{UNDECODABLE, python_raw_call};
use tokenvault_tests::system::{Options, System};
use tokenvault_tls::Role;
use tokenvault_worker::{WorkerClient, WorkerConfig};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_refresh_token_yields_an_accepted_access_token() {
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect("alice").await.unwrap();
    let token = f.token("alice", 30).await.unwrap();
    let userinfo = f.oidc.userinfo(&token).await.unwrap();
    assert_eq!(userinfo["sub"], "alice");
    let introspection = f.oidc.introspect(&token).await.unwrap();
    assert_eq!(introspection["active"], true);
    // The second call is served from the cache: no second refresh.
    assert_eq!(f.token("alice", 30).await.unwrap(), token);
    assert_eq!(f.refreshes().await.unwrap(), 1);
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ttl_forces_a_refresh_and_rotation_is_stored() {
    let mut f = System::start(Options {
        backend: Backend::Postgres,
        access_token_ttl: Duration::from_secs(10),
        ..Options::default()
    })
    .await
    .unwrap();
    let original = f.connect("bob").await.unwrap();
    let first = f.token("bob", 0).await.unwrap();
    // The provider rotated the refresh token; get-service stored the new one.
    let rotated = f
        .stored_token_other_than("bob", &original.refresh_token, Duration::from_secs(5))
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_secs(3)).await;
    // ~7 s left: asking for 8 forces a refresh, with the rotated token (the
    // old one would be reuse, which revokes the whole grant at this server).
    let second = f.token("bob", 8).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(f.refreshes().await.unwrap(), 2);
    f.stored_token_other_than("bob", &rotated, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(f.oidc.introspect(&second).await.unwrap()["active"], true);
    // More than a fresh token lives: a clear error, not a short token.
    assert_eq!(f.token("bob", 3600).await, Err(Code::InvalidArgument));
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_grant_means_reauthorization_required_and_no_more_provider_calls() {
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect("carol").await.unwrap();
    f.oidc.revoke_grant("carol").await.unwrap();
    let before = f.refreshes().await.unwrap();
    assert_eq!(f.token("carol", 0).await, Err(Code::FailedPrecondition));
    let (status, reason) = f.worker.account_status("carol", "oidc").await.unwrap();
    assert_eq!(status, AccountStatus::ReauthorizationRequired);
    assert!(reason.contains("invalid_grant"), "{reason}");
    let after_first = f.refreshes().await.unwrap();
    assert_eq!(after_first, before + 1);
    for _ in 0..5 {
        assert_eq!(f.token("carol", 0).await, Err(Code::FailedPrecondition));
    }
    assert_eq!(
        f.refreshes().await.unwrap(),
        after_first,
        "the dead grant was retried at the provider"
    );

    // Reconnecting stores a new token, which revives the account at once.
    f.connect("carol").await.unwrap();
    assert!(f.token("carol", 0).await.is_ok());
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_or_slow_is_unavailable_then_recovers() {
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect("dave").await.unwrap();
    f.connect("erin").await.unwrap();
    f.connect("fay").await.unwrap();
    f.oidc.stop().await.unwrap();
    let started = Instant::now();
    assert_eq!(f.token("dave", 0).await, Err(Code::Unavailable));
    // Within the refresh deadline (4 s), plus slack.
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    f.oidc.restart().await.unwrap();
    assert!(f.token("dave", 0).await.is_ok());

    // Slow: every token response takes 3 s, longer than the 1 s per-call
    // timeout but within the 4 s refresh deadline. The one request is waited
    // for, not abandoned and sent again: at a rotating provider the second
    // would reuse a rotated refresh token and cost the grant.
    f.oidc.set_slow(3000).await.unwrap();
    f.oidc.reset_counters().await.unwrap();
    let started = Instant::now();
    assert!(f.token("erin", 0).await.is_ok());
    assert!(
        (Duration::from_secs(3)..Duration::from_secs(7)).contains(&started.elapsed()),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(f.refreshes().await.unwrap(), 1);

    // Slower than the deadline: UNAVAILABLE within it (the provider, seeing
    // the client gone, never processes the request).
    f.oidc.set_slow(6000).await.unwrap();
    let started = Instant::now();
    assert_eq!(f.token("fay", 0).await, Err(Code::Unavailable));
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    f.oidc.set_slow(0).await.unwrap();
    assert!(f.token("fay", 0).await.is_ok());
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_with_retry_after() {
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect("frank").await.unwrap();
    f.oidc.fail_next(503, 1).await.unwrap();
    // One 503 with Retry-After: 1, then success, within the deadline.
    assert!(f.token("frank", 0).await.is_ok());
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_callers_cause_one_refresh() {
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect("grace").await.unwrap();
    f.oidc.reset_counters().await.unwrap();
    let mut calls = Vec::new();
    for _ in 0..200 {
        let worker = f.worker.clone();
        calls.push(tokio::spawn(async move {
            worker
                .access_token("grace", "oidc", Duration::ZERO)
                .await
                .map(|t| t.secret().to_owned())
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for c in calls {
        tokens.insert(c.await.unwrap().unwrap());
    }
    assert_eq!(tokens.len(), 1, "callers got different tokens");
    assert_eq!(f.refreshes().await.unwrap(), 1);
    f.secrets.extend(tokens);
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_workers_may_ask_and_unknown_accounts_are_not_found() {
    let mut f = System::start(Options::default()).await.unwrap();
    assert_eq!(f.token("nobody", 0).await, Err(Code::NotFound));
    let web = f.pki.issue(Role::WebFrontend, None).unwrap();
    let not_a_worker = WorkerClient::new(&WorkerConfig {
        address: f.get.address(),
        trust_domain: tokenvault_tests::pki::TRUST_DOMAIN.to_owned(),
        tls: web,
    })
    .unwrap();
    let err = not_a_worker
        .access_token("alice", "oidc", Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::PermissionDenied));
    assert!(
        err.to_string()
            .contains("spiffe://tokenvault.test/web-frontend")
    );
    f.stop().await.unwrap();
}

/// Bytes that are not the request message (garbage, a field cut short, an
/// account that is not UTF-8), sent by grpcio, get INVALID_ARGUMENT as the
/// `.proto` promises (tonic's prost codec says INTERNAL), each with its one
/// audit event; nothing reaches the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_requests_are_invalid_arguments() {
    let f = System::start(Options::default()).await.unwrap();
    let worker = f.pki.issue(Role::Worker, Some("raw")).unwrap();
    let address = f.get.address().replace("127.0.0.1", "localhost");
    for (rpc, method) in [
        ("GetAccessToken", "/tokenvault.v1.GetService/GetAccessToken"),
        (
            "GetAccountStatus",
            "/tokenvault.v1.GetService/GetAccountStatus",
        ),
    ] {
        for (what, body) in UNDECODABLE {
            let (code, details) = python_raw_call(&address, &worker, method, body)
                .await
                .unwrap();
            assert_eq!(code, "INVALID_ARGUMENT", "{rpc}, {what}: {details}");
            assert!(details.contains("not a well-formed message"), "{details}");
        }
        let refused = captured_audit_events()
            .iter()
            .filter(|e| {
                e["rpc"] == rpc
                    && e["caller"] == "spiffe://tokenvault.test/worker/raw"
                    && e["outcome"] == "invalid_argument"
            })
            .count();
        assert_eq!(
            refused,
            UNDECODABLE.len(),
            "{rpc}: one audit event per call"
        );
    }
    assert_eq!(f.refreshes().await.unwrap(), 0);
    f.stop().await.unwrap();
}

/// A worker written in Python with grpcio, its stubs generated from
/// `proto/` by grpcio-tools, gets an access token over mTLS with its own
/// worker certificate; the authorization server accepts it. With a
/// web-frontend certificate it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_worker_gets_an_accepted_token() {
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect("heidi").await.unwrap();
    let stubs = f.pki.scratch().join("gen");
    std::fs::create_dir_all(&stubs).unwrap();
    // protoc wants the file textually under the -I path: no "..".
    let root = std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .unwrap()
        .display()
        .to_string();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let protoc = std::process::Command::new(&python)
        .args([
            "-m",
            "grpc_tools.protoc",
            "-I",
            &format!("{root}/proto/proto"),
        ])
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .arg(format!("{root}/proto/proto/tokenvault/v1/tokenvault.proto"))
        .output()
        .unwrap();
    assert!(
        protoc.status.success(),
        "grpc_tools.protoc failed (pip install -r tests/requirements.txt?): {}",
        String::from_utf8_lossy(&protoc.stderr)
    );
    let address = format!("localhost:{}", f.get.addr.port());
    let run = |files: tokenvault_tls::TlsFiles| {
        let mut command = std::process::Command::new(&python);
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/interop/python_worker.py"
            ))
            .arg(&stubs)
            .arg(&address)
            .arg(&files.ca)
            .arg(&files.cert)
            .arg(&files.key)
            .args(["heidi", "oidc", "30"]);
        async move {
            let out = tokio::task::spawn_blocking(move || command.output())
                .await
                .unwrap()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        }
    };
    let worker = f.pki.issue(Role::Worker, Some("python")).unwrap();
    let reply = run(worker).await;
    assert_eq!(reply["code"], "OK", "{reply}");
    let token = reply["access_token"].as_str().unwrap().to_owned();
    f.secrets.push(token.clone());
    assert_eq!(f.oidc.userinfo(&token).await.unwrap()["sub"], "heidi");

    let web = f.pki.issue(Role::WebFrontend, None).unwrap();
    let reply = run(web).await;
    assert_eq!(reply["code"], "PERMISSION_DENIED", "{reply}");
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnected_accounts_are_not_found_and_say_so() {
    use tokenvault_proto::v1::DisconnectAccountRequest;
    use tokenvault_proto::v1::set_service_client::SetServiceClient;
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect("ivan").await.unwrap();
    assert!(f.token("ivan", 0).await.is_ok());
    let web = f.pki.issue(Role::WebFrontend, None).unwrap();
    SetServiceClient::new(
        tokenvault_tests::grpc_channel(&f.set.address(), &web, Role::SetService).unwrap(),
    )
    .disconnect_account(DisconnectAccountRequest {
        account: "ivan".into(),
        provider: "oidc".into(),
    })
    .await
    .unwrap();
    // The cached access token stops being served within revalidate_secs (1 s
    // here), without waiting for it to expire.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = f
        .worker
        .access_token("ivan", "oidc", Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound));
    assert!(err.to_string().contains("disconnected"), "{err}");
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_copied_onto_another_row_is_refused_loudly() {
    use tokenvault_store::{Latest, TokenReader, TokenWriter};
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect("judy").await.unwrap();
    let reader = TokenReader::connect(&f.store.reader_url).await.unwrap();
    let Latest::Token {
        sealed_token, kid, ..
    } = reader.latest("judy", "oidc").await.unwrap()
    else {
        panic!("not stored")
    };
    // An attacker with the writer's database access copies judy's token
    // onto mallory's row.
    let writer = TokenWriter::connect(&f.store.writer_url).await.unwrap();
    writer
        .store("mallory", "oidc", &sealed_token, &kid)
        .await
        .unwrap();
    let before = f.refreshes().await.unwrap();
    let err = f
        .worker
        .access_token("mallory", "oidc", Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::Internal));
    assert!(err.to_string().contains("integrity"), "{err}");
    assert!(
        tokenvault_tests::captured_logs()
            .lines()
            .any(|l| l.contains("tokenvault::integrity") && l.contains("ERROR")),
        "no loud integrity log line"
    );
    assert_eq!(
        f.refreshes().await.unwrap(),
        before,
        "the copied token was used"
    );
    f.stop().await.unwrap();
}

/// The `tokenvault-worker` command line, as a shell script would run it
/// (the binary is a thin wrapper around `tokenvault_worker::cli::run`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_cli_prints_a_token_and_exits_with_distinct_codes() {
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect("kim").await.unwrap();
    let files = f.pki.issue(Role::Worker, Some("cli")).unwrap();
    let address = f.get.address();
    let run = |command: &str| {
        let mut args: Vec<std::ffi::OsString> = vec![
            "tokenvault-worker".into(),
            "--address".into(),
            address.clone().into(),
            "--trust-domain".into(),
            tokenvault_tests::pki::TRUST_DOMAIN.into(),
            "--cert".into(),
            files.cert.clone().into(),
            "--key".into(),
            files.key.clone().into(),
            "--ca".into(),
            files.ca.clone().into(),
        ];
        args.extend(command.split(' ').map(std::ffi::OsString::from));
        async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = tokenvault_worker::cli::run(args, &mut out, &mut err).await;
            (
                code,
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        }
    };
    let (code, out, err) = run("token --account kim --provider oidc --json").await;
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = json["access_token"].as_str().unwrap().to_owned();
    f.secrets.push(token.clone());
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(f.oidc.userinfo(&token).await.unwrap()["sub"], "kim");

    let (_, out, _) = run("token --account kim --provider oidc").await;
    assert_eq!(out.trim(), token);
    // --scope: all of the grant's scopes is the same token; fewer, from a
    // provider not configured to narrow them, cannot be had.
    let (code, out, err) = run(
        "token --account kim --provider oidc --scope email --scope openid --scope offline_access",
    )
    .await;
    assert_eq!((code, out.trim()), (0, token.as_str()), "{err}");
    let (code, _, err) = run("token --account kim --provider oidc --scope email").await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("not configured to narrow scopes"), "{err}");
    let (_, out, _) = run("status --account kim --provider oidc").await;
    assert!(out.starts_with("ACCOUNT_STATUS_ACTIVE"), "{out}");
    let (code, _, err) = run("token --account nobody --provider oidc").await;
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = run("token --account kim").await;
    assert_eq!(code, 2);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    f.stop().await.unwrap();
}

/// set-service is down while the provider rotates the refresh token twice:
/// the newest token is kept in memory and used, then stored once set-service
/// is back; nothing reuses a rotated-away token (which would revoke the whole
/// grant at this server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_tokens_survive_set_service_being_down() {
    let mut f = System::start(Options {
        access_token_ttl: Duration::from_secs(10),
        ..Options::default()
    })
    .await
    .unwrap();
    let original = f.connect("liam").await.unwrap();
    f.token("liam", 0).await.unwrap();
    let stored_before = f
        .stored_token_other_than("liam", &original.refresh_token, Duration::from_secs(5))
        .await
        .unwrap();

    f.stop_set_service().await.unwrap();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // ~8 s left: asking for 9 forces a refresh, and a rotation.
        f.token("liam", 9).await.unwrap();
    }
    assert_eq!(f.stored_refresh_token("liam").await.unwrap(), stored_before);

    f.restart_set_service().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    while f.stored_refresh_token("liam").await.unwrap() == stored_before {
        assert!(
            Instant::now() < deadline,
            "the rotated token was never stored"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The stored token is the newest: another refresh works.
    assert!(f.token("liam", 9).await.is_ok());
    assert_eq!(f.refreshes().await.unwrap(), 4);
    f.stop().await.unwrap();
}
