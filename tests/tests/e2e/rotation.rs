//! Certificate rotation and revocation with the whole system running
//! in-process: a revoked worker is refused from the next reload (new
//! handshakes and requests on its open connection) while other workers carry
//! on, and every certificate plus the CA itself rotate under a
//! continuous stream of calls with no failed call. Services and clients pick
//! the files up through `tokenvault_tls::reload` (polling or SIGHUP), never
//! by restarting.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokenvault_proto::v1::get_service_client::GetServiceClient;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{GetAccessTokenRequest, StoreRefreshTokenRequest};
use tokenvault_seal::PublicKeySet;
use tokenvault_set_client::SetClient;
use tokenvault_tests::captured_logs;
use tokenvault_tests::pki::TRUST_DOMAIN;
use tokenvault_tests::system::{Options, System};
use tokenvault_tls::reload::{RELOAD_POLL, Reloader, watch_files};
use tokenvault_tls::{IdentityPattern, Role, TlsFiles};
use tokenvault_worker::WorkerClient;
use tonic::Code;

fn worker(f: &System, files: &TlsFiles) -> WorkerClient {
    f.worker_with(files).unwrap()
}

/// One GetAccessToken over a brand-new connection (so a new handshake) made
/// with a new client built from `files`, as a worker starting now would.
async fn fresh_call(f: &System, files: &TlsFiles, account: &str) -> Result<(), tonic::Status> {
    worker(f, files)
        .access_token(account, "oidc", Duration::from_secs(5))
        .await
        .map(|_| ())
        .map_err(|e| match e {
            tokenvault_worker::WorkerError::Status(s) => s,
            other => tonic::Status::internal(other.to_string()),
        })
}

fn send_sighup() {
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP).unwrap();
}

/// Polls (bounded by `limit`) with new connections from `files` until one
/// is refused; returns how long that took. Each refusal must be a transport
/// failure (the handshake), never an answer from get-service. In TLS 1.3 the
/// server checks the client certificate after the client has finished its
/// side of the handshake, so the client may see the refusal as its first
/// request's connection closing (`CANCELLED`) rather than as `UNAVAILABLE`.
async fn until_refused(f: &System, files: &TlsFiles, account: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match fresh_call(f, files, account).await {
            Ok(()) => {}
            Err(status) => {
                assert!(
                    matches!(
                        status.code(),
                        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
                    ),
                    "expected a refused handshake, got {status:?}"
                );
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < limit,
            "still accepted {:?} after the revocation",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_worker_certificate_is_refused_after_one_reload_while_others_carry_on() {
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect("acct-revoke").await.unwrap();
    let (a_files, b_files, c_files) = (
        f.pki.issue(Role::Worker, Some("a")).unwrap(),
        f.pki.issue(Role::Worker, Some("b")).unwrap(),
        f.pki.issue(Role::Worker, Some("c")).unwrap(),
    );
    let (a, b) = (worker(&f, &a_files), worker(&f, &b_files));
    for client in [&a, &b] {
        client
            .access_token("acct-revoke", "oidc", Duration::from_secs(5))
            .await
            .unwrap();
    }

    // By polling alone: within one reload (2 s poll) new connections from
    // worker A are refused, while B, old connection and new, carries on.
    let revoked = f.pki.revoke("worker-a").unwrap();
    assert!(!revoked.already);
    let took = until_refused(&f, &a_files, "acct-revoke", RELOAD_POLL * 3).await;
    eprintln!("worker A refused {took:?} after `revoke` (file watch, poll {RELOAD_POLL:?})");
    assert!(
        took < RELOAD_POLL * 2 + Duration::from_millis(500),
        "{took:?}"
    );
    // The client may see the refused handshake before the server's task
    // has written its line.
    let logged = || {
        captured_logs()
            .lines()
            .any(|l| l.contains("TLS handshake refused") && l.contains("Revoked"))
    };
    let started = Instant::now();
    while !logged() {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "get-service did not log the revoked certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fresh_call(&f, &b_files, "acct-revoke").await.unwrap();
    b.access_token("acct-revoke", "oidc", Duration::from_secs(5))
        .await
        .unwrap();
    // A's connection made before the revocation is still open (HTTP/2), but
    // its requests are refused too: the reloaded CRL is checked per request.
    let refused = a
        .access_token("acct-revoke", "oidc", Duration::from_secs(5))
        .await
        .expect_err("a revoked certificate's open connection is refused");
    assert_eq!(refused.code(), Some(Code::Unauthenticated), "{refused:?}");
    assert!(refused.to_string().contains("revoked"), "{refused}");

    // With SIGHUP: worker C is refused at once, without waiting for a poll.
    fresh_call(&f, &c_files, "acct-revoke").await.unwrap();
    let forced = || captured_logs().matches("forced=true").count();
    let before = forced();
    f.pki.revoke("spiffe://tokenvault.test/worker/c").unwrap();
    send_sighup();
    let took = until_refused(&f, &c_files, "acct-revoke", RELOAD_POLL * 3).await;
    eprintln!("worker C refused {took:?} after `revoke` and SIGHUP");
    assert!(forced() > before, "SIGHUP forced no reload");
    assert!(took < RELOAD_POLL, "{took:?}");
    fresh_call(&f, &b_files, "acct-revoke").await.unwrap();
    f.stop().await.unwrap();
}

/// Successes and failures per (kind of call, phase).
type Counts = BTreeMap<(&'static str, usize), (u64, u64)>;

/// Call counts per (kind, phase), and what failed.
#[derive(Default)]
struct Tally {
    counts: Mutex<Counts>,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn record<T>(&self, kind: &'static str, phase: usize, result: Result<T, String>) {
        let mut counts = self.counts.lock().unwrap();
        let entry = counts.entry((kind, phase)).or_default();
        match result {
            Ok(_) => entry.0 += 1,
            Err(e) => {
                entry.1 += 1;
                self.failures
                    .lock()
                    .unwrap()
                    .push(format!("{kind} in phase {phase}: {e}"));
            }
        }
    }
}

const PHASES: [&str; 6] = [
    "steady",
    "renew --within 8d (every leaf)",
    "rotate-ca (bundle: old + new)",
    "renew --all (leaves move to the new CA)",
    "rotate-ca --finish (bundle: new only)",
    "after",
];

/// A client config for `files` that follows them (a reloading client), and
/// the receiver a new channel per call dials through.
fn reloading_client(
    files: &TlsFiles,
    server: Role,
) -> (
    tokio::sync::watch::Receiver<Arc<rustls::ClientConfig>>,
    Reloader,
) {
    let pattern = IdentityPattern::Role(server);
    let config = tokenvault_tls::client_config(files, TRUST_DOMAIN, pattern.clone()).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(config);
    let reloader = watch_files("client", files.clone(), tx, move |files| {
        tokenvault_tls::client_config(files, TRUST_DOMAIN, pattern.clone())
    });
    (rx, reloader)
}

struct Stream {
    tally: Arc<Tally>,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Stream {
    fn spawn<F, Fut>(&mut self, kind: &'static str, pause: Duration, mut call: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let (tally, phase, stop) = (self.tally.clone(), self.phase.clone(), self.stop.clone());
        self.tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let at = phase.load(Ordering::SeqCst);
                let result = call().await;
                tally.record(kind, at, result);
                tokio::time::sleep(pause).await;
            }
        }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_the_ca_rotate_under_a_continuous_stream_with_zero_failed_calls() {
    let mut f = System::start(Options::default()).await.unwrap();
    let names = ["s1", "s2", "s3"];
    for name in names {
        f.connect(&format!("stream-{name}")).await.unwrap();
    }
    let original = f.connect("stream-rotating").await.unwrap().refresh_token;
    let workers: Vec<TlsFiles> = names
        .iter()
        .map(|n| f.pki.issue(Role::Worker, Some(n)).unwrap())
        .collect();
    let web_files = f.pki.files("web-frontend");
    // A worker certificate from the old CA kept outside certs/, to show at
    // the end that the old CA is no longer trusted.
    let old_ca_worker = f
        .pki
        .issue_detached("old-ca-worker", Role::Worker, Some("old"))
        .unwrap();
    let old_ca_only = f.pki.scratch().join("old-ca.pem");
    std::fs::copy(f.pki.state().ca_cert_path(), &old_ca_only).unwrap();

    let mut stream = Stream {
        tally: Arc::new(Tally::default()),
        phase: Arc::new(AtomicUsize::new(0)),
        stop: Arc::new(AtomicBool::new(false)),
        tasks: Vec::new(),
    };
    let get_addr = f.get.address();
    let set_addr = f.set.address();
    let mut reloaders = Vec::new();
    for (i, files) in workers.iter().enumerate() {
        let account = format!("stream-{}", names[i]);
        // A long-lived worker client, built before any rotation.
        let client = worker(&f, files);
        let acct = account.clone();
        stream.spawn(
            "GetAccessToken, long-lived client",
            Duration::from_millis(20),
            move || {
                let (client, acct) = (client.clone(), acct.clone());
                async move {
                    client
                        .access_token(&acct, "oidc", Duration::from_secs(5))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
        );
        // A new connection (new handshake) per call through a reloading
        // client config.
        let (rx, reloader) = reloading_client(files, Role::GetService);
        reloaders.push(reloader);
        let addr = get_addr.clone();
        stream.spawn(
            "GetAccessToken, new connection",
            Duration::from_millis(40),
            move || {
                let (rx, addr, acct) = (rx.clone(), addr.clone(), account.clone());
                async move {
                    let channel = tokenvault_tls::channel(&addr, rx).map_err(|e| e.to_string())?;
                    let mut request = tonic::Request::new(GetAccessTokenRequest {
                        account: acct,
                        provider: "oidc".into(),
                        min_ttl_seconds: 5,
                        ..Default::default()
                    });
                    request.set_timeout(Duration::from_secs(10));
                    GetServiceClient::new(channel)
                        .get_access_token(request)
                        .await
                        .map(|_| ())
                        .map_err(|s| format!("{s:?}"))
                }
            },
        );
    }
    // A refresh forced every 2.5 s (access tokens live 60 s; min_ttl is 59 s):
    // get-service stores each rotated refresh token through set-service (its
    // own reloading client). A rotated token that failed to be stored would
    // make the next refresh fail.
    let refresher = f.worker.clone();
    stream.spawn(
        "GetAccessToken, forced refresh",
        Duration::from_millis(2500),
        move || {
            let client = refresher.clone();
            async move {
                client
                    .access_token("stream-rotating", "oidc", Duration::from_secs(59))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    );
    // StoreRefreshToken as web-frontend: its SetClient, built once, and a new
    // connection per call.
    let set_client =
        SetClient::new(&set_addr, &web_files, TRUST_DOMAIN, Duration::from_secs(10)).unwrap();
    let keys = Arc::new(PublicKeySet::load_dir(&f.pki.public_keys_dir()).unwrap());
    let counter = Arc::new(AtomicUsize::new(0));
    let (k, c) = (keys.clone(), counter.clone());
    stream.spawn(
        "StoreRefreshToken, long-lived client",
        Duration::from_millis(50),
        move || {
            let (client, keys, n) = (
                set_client.clone(),
                k.clone(),
                c.fetch_add(1, Ordering::SeqCst),
            );
            async move {
                let account = format!("web-long-{}", n % 20);
                let sealed = keys
                    .seal(&account, "oidc", format!("rt-long-{n}").as_bytes())
                    .map_err(|e| e.to_string())?;
                client
                    .store(&account, "oidc", sealed, None)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        },
    );
    let (rx, reloader) = reloading_client(&web_files, Role::SetService);
    reloaders.push(reloader);
    let (k, c) = (keys.clone(), counter.clone());
    stream.spawn(
        "StoreRefreshToken, new connection",
        Duration::from_millis(60),
        move || {
            let (rx, addr, keys) = (rx.clone(), set_addr.clone(), k.clone());
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                let account = format!("web-fresh-{}", n % 20);
                let sealed = keys
                    .seal(&account, "oidc", format!("rt-fresh-{n}").as_bytes())
                    .map_err(|e| e.to_string())?;
                let channel = tokenvault_tls::channel(&addr, rx).map_err(|e| e.to_string())?;
                let mut request = tonic::Request::new(StoreRefreshTokenRequest {
                    expected_version: None,
                    account,
                    provider: "oidc".into(),
                    sealed_token: sealed,
                    metadata_json: String::new(),
                    refresh_token_expires_at_unix: 0,
                });
                request.set_timeout(Duration::from_secs(10));
                SetServiceClient::new(channel)
                    .store_refresh_token(request)
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("{s:?}"))
            }
        },
    );

    // The rotation, one step per phase, each followed by time for every
    // reloader to poll (2 s) and retry once if it caught a half-written pair.
    let settle = RELOAD_POLL * 3;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let step = |n: usize| {
        stream.phase.store(n, Ordering::SeqCst);
        eprintln!("{:>5.1?} phase {n}: {}", started.elapsed(), PHASES[n]);
    };
    step(1);
    let report = f.pki.renew_within(time::Duration::days(8), 7).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let renewed: Vec<&str> = report.renewed.iter().map(|r| r.identity.as_str()).collect();
    for id in ["set-service", "get-service", "web-frontend", "worker/e2e"]
        .into_iter()
        .map(str::to_owned)
        .chain(names.iter().map(|n| format!("worker/{n}")))
    {
        let id = format!("spiffe://{TRUST_DOMAIN}/{id}");
        assert!(
            renewed.contains(&id.as_str()),
            "{id} not renewed: {renewed:?}"
        );
    }
    tokio::time::sleep(settle).await;
    step(2);
    f.pki.rotate_ca().unwrap();
    tokio::time::sleep(settle).await;
    step(3);
    let report = f.pki.renew_all().unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    tokio::time::sleep(settle).await;
    step(4);
    f.pki.finish_ca_rotation().unwrap();
    tokio::time::sleep(settle).await;
    step(5);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stream.stop.store(true, Ordering::SeqCst);
    for task in stream.tasks {
        task.await.unwrap();
    }
    let streamed = started.elapsed();

    let counts = stream.tally.counts.lock().unwrap().clone();
    let (mut total, mut failed) = (0, 0);
    eprintln!("calls over {streamed:.1?} (ok / failed):");
    for ((kind, phase), (ok, bad)) in &counts {
        eprintln!(
            "  {kind:<40} phase {phase} {:<42} {ok:>6} / {bad}",
            PHASES[*phase]
        );
        total += ok + bad;
        failed += bad;
    }
    let mut per_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for ((kind, _), (ok, bad)) in &counts {
        *per_kind.entry(kind).or_default() += ok + bad;
    }
    eprintln!("  per kind: {per_kind:?}; total {total}, failed {failed}");
    eprintln!(
        "  reloads logged: {}; files that did not load yet (half-written pair, retried): {}",
        captured_logs().matches("reloaded TLS certificate").count(),
        captured_logs()
            .matches("do not load; keeping the previous config")
            .count()
    );
    // The forced refreshes reached the provider, and get-service stored each
    // rotated refresh token through set-service.
    let refreshes = f.refreshes().await.unwrap();
    eprintln!("  refresh grants at the provider: {refreshes}");
    let forced = per_kind["GetAccessToken, forced refresh"];
    assert!(
        refreshes >= forced,
        "{refreshes} refreshes for {forced} forced calls"
    );
    assert_ne!(
        f.stored_refresh_token("stream-rotating").await.unwrap(),
        original
    );
    let failures = stream.tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed calls: {failures:#?}",
        failures.len()
    );
    assert!(streamed >= Duration::from_secs(30), "{streamed:?}");
    for phase in 0..PHASES.len() {
        for kind in per_kind.keys() {
            assert!(
                counts.get(&(*kind, phase)).is_some_and(|c| c.0 > 0),
                "no {kind} call in phase {phase}"
            );
        }
    }

    // The services now present new-CA certificates: a client that trusts
    // only the new CA connects to both servers ...
    let new_ca_only = f.pki.scratch().join("new-ca.pem");
    std::fs::copy(f.pki.state().ca_cert_path(), &new_ca_only).unwrap();
    let trusting_new = TlsFiles {
        ca: new_ca_only.clone(),
        ..workers[0].clone()
    };
    fresh_call(&f, &trusting_new, "stream-s1").await.unwrap();
    let web_new = TlsFiles {
        ca: new_ca_only,
        ..web_files.clone()
    };
    SetClient::new(
        &f.set.address(),
        &web_new,
        TRUST_DOMAIN,
        Duration::from_secs(10),
    )
    .unwrap()
    .store(
        "web-long-0",
        "oidc",
        keys.seal("web-long-0", "oidc", b"rt-final").unwrap(),
        None,
    )
    .await
    .unwrap();
    // ... one that trusts only the old CA does not, and a certificate from
    // the old CA is refused.
    let trusting_old = TlsFiles {
        ca: old_ca_only,
        ..workers[0].clone()
    };
    assert!(fresh_call(&f, &trusting_old, "stream-s1").await.is_err());
    let refused = fresh_call(&f, &old_ca_worker, "stream-s1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.code(),
            Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
        ),
        "{refused:?}"
    );
    drop(reloaders);
    f.stop().await.unwrap();
}
