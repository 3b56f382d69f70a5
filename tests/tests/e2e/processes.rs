//! The real release binaries as separate processes (set-service,
//! get-service, web-frontend, the `tokenvault-worker` CLI), a real
//! PostgreSQL, the real authorization server (npm `oidc-provider`) and a
//! Python grpcio worker: the web flow connects an account and other
//! languages' workers use it over mTLS; a wrong certificate is refused;
//! disconnecting gives NOT_FOUND and revokes the grant at the provider; a
//! rotated refresh token survives a SIGKILL of get-service; and a bounded
//! stream of requests survives SIGKILL and restart of set-service,
//! get-service and PostgreSQL, losing no token; a graceful stop right
//! after a burst of calls loses no audit line.
//!
//! The binaries come from `scripts/build-release` (a nextest setup script
//! for `processes::` tests); the harness is `tokenvault_tests::procs`.
#![allow(clippy::print_stdout)]

mod audit_table;
mod graceful_stop;
mod webhooks_kill;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokenvault_get_service::config::CacheConfig;
use tokenvault_proto::v1::AccountStatus;
use tokenvault_store::Latest;
use tokenvault_tests::procs::{Database, ProcOptions, ProcSystem};
use tokenvault_tls::Role;
use tokio::sync::RwLock;

/// A web sign-in stores a token; a Python grpcio worker (stubs generated
/// from `proto/`) with its own worker certificate gets an access token over
/// mTLS that the authorization server accepts; the Rust CLI binary gets the
/// same cached token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_connect_then_python_worker_gets_a_token_userinfo_accepts() {
    let started = Instant::now();
    let mut f = ProcSystem::start(ProcOptions::default()).await.unwrap();
    let account = f.connect("paula").await.unwrap();
    assert_eq!(account, "oidc:paula");
    assert!(matches!(
        f.latest(&account).await.unwrap(),
        Latest::Token { .. }
    ));
    f.oidc.reset_counters().await.unwrap();

    let python = f.issue(Role::Worker, Some("python")).unwrap();
    let reply = f.python_worker(&python, &account, 30).await.unwrap();
    assert_eq!(reply.code, "OK", "{}", reply.raw);
    let token = reply.access_token.clone().unwrap();
    assert_eq!(f.oidc.userinfo(&token).await.unwrap()["sub"], "paula");
    assert_eq!(f.oidc.introspect(&token).await.unwrap()["active"], true);
    assert_eq!(reply.raw["token_type"], "Bearer", "{}", reply.raw);

    // The Rust CLI binary, with a certificate of its own, is served the
    // same token from get-service's cache.
    let rust = f.issue(Role::Worker, Some("rust-cli")).unwrap();
    let out = f
        .worker_cli(
            &rust,
            &[
                "token",
                "--account",
                &account,
                "--provider",
                "oidc",
                "--min-ttl",
                "30",
                "--json",
            ],
        )
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(json["access_token"], token.as_str());
    assert_eq!(f.oidc.counters().await.unwrap().refresh_grants, 1);

    // get-service's audit names each caller.
    let log = f.get.logs_settled().await;
    assert!(
        log.contains("spiffe://tokenvault.test/worker/python"),
        "{log}"
    );
    assert!(
        log.contains("spiffe://tokenvault.test/worker/rust-cli"),
        "{log}"
    );
    f.stop().await.unwrap();
    println!("took {:?}", started.elapsed());
}

/// Disconnecting through the web flow: the Python worker then gets
/// NOT_FOUND, get-service revokes the refresh token at the authorization
/// server (RFC 7009; introspection turns inactive), and the sealed token is
/// deleted from PostgreSQL once the revocation is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_gives_not_found_and_revokes_at_the_provider() {
    let mut f = ProcSystem::start(ProcOptions::default()).await.unwrap();
    let account = f.connect("dora").await.unwrap();
    let python = f.issue(Role::Worker, Some("python")).unwrap();
    let reply = f.python_worker(&python, &account, 30).await.unwrap();
    assert_eq!(reply.code, "OK", "{}", reply.raw);
    // The refresh rotated the token; wait until get-service has stored it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let live = loop {
        if f.stored_token_is_live(&account).await.unwrap() {
            break f.stored_refresh_token(&account).await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the rotated token was not stored"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(f.oidc.refresh_token_is_active(&live).await.unwrap());
    assert_eq!(f.row_counts().await.unwrap().sealed_tokens, 1);

    let page = f.disconnect(&account).await.unwrap();
    assert_eq!(
        page.kind().as_deref(),
        Some("disconnected"),
        "{:?}",
        page.error_code()
    );
    // Cached access tokens stop within revalidate_secs (1 s here).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = f.python_worker(&python, &account, 0).await.unwrap();
    assert_eq!(reply.code, "NOT_FOUND", "{}", reply.raw);

    let deadline = Instant::now() + Duration::from_secs(15);
    while f.oidc.refresh_token_is_active(&live).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "the refresh token was not revoked at the provider"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.row_counts().await.unwrap().sealed_tokens != 0 {
        assert!(
            Instant::now() < deadline,
            "the sealed token was kept after revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, reason) = f.status(&account).await.unwrap();
    assert_eq!(status, AccountStatus::Disconnected);
    assert!(reason.contains("revoked"), "{reason}");
    assert!(
        f.get
            .logs_settled()
            .await
            .contains("disconnected account's grant revoked"),
        "get-service logged the revocation"
    );
    f.stop().await.unwrap();
}

/// The same Python client presenting web-frontend's certificate (valid,
/// same CA, but role `web-frontend`) is refused with PERMISSION_DENIED,
/// before anything reaches the store or the provider; so is the Rust CLI
/// (exit code 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_with_web_frontend_certificate_is_refused() {
    let started = Instant::now();
    let mut f = ProcSystem::start(ProcOptions::default()).await.unwrap();
    let account = f.connect("quinn").await.unwrap();
    f.oidc.reset_counters().await.unwrap();

    let web_tls = f.web_tls.clone();
    let reply = f.python_worker(&web_tls, &account, 0).await.unwrap();
    assert_eq!(reply.code, "PERMISSION_DENIED", "{}", reply.raw);
    assert!(reply.access_token.is_none());
    let details = reply.details.clone().unwrap_or_default();
    assert!(
        details.contains("spiffe://tokenvault.test/web-frontend"),
        "{details}"
    );

    let out = f
        .worker_cli(
            &web_tls,
            &["token", "--account", &account, "--provider", "oidc"],
        )
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains("spiffe://tokenvault.test/web-frontend"),
        "{out:?}"
    );

    // Nothing reached the provider; get-service logged both denials.
    assert_eq!(f.oidc.counters().await.unwrap().refresh_grants, 0);
    let log = f.get.logs_settled().await;
    let denials = log
        .lines()
        .filter(|l| {
            l.contains("caller not on the allow-list")
                && l.contains("spiffe://tokenvault.test/web-frontend")
        })
        .count();
    assert_eq!(denials, 2, "{log}");
    // The account itself is fine for a worker.
    assert!(f.token(&account, 0).await.is_ok());
    f.stop().await.unwrap();
    println!("took {:?}", started.elapsed());
}

/// oidc-provider rotates the refresh token on every use, and a reuse of a
/// rotated one answers `invalid_grant` and revokes the grant. get-service
/// refreshes twice (the rotated tokens are stored), is killed with SIGKILL
/// and restarted: its first refresh then succeeds, so it used the newest
/// stored token, which was therefore persisted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_persisted_across_get_service_restart() {
    let started = Instant::now();
    let mut f = ProcSystem::start(ProcOptions {
        access_token_ttl: Duration::from_secs(10),
        ..ProcOptions::default()
    })
    .await
    .unwrap();
    let account = f.connect("rosa").await.unwrap();
    let connected = f.stored_version(&account).await.unwrap().unwrap();
    f.oidc.reset_counters().await.unwrap();

    // An empty cache: the first call refreshes, and the rotated token is
    // stored through set-service.
    let first = f.token(&account, 0).await.unwrap();
    let v1 = f
        .wait_for_version_after(&account, connected, Duration::from_secs(10))
        .await
        .unwrap();
    // ~7 s left after 3 s: asking for 8 forces another refresh.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = f.token(&account, 8).await.unwrap();
    assert_ne!(second, first);
    let v2 = f
        .wait_for_version_after(&account, v1, Duration::from_secs(10))
        .await
        .unwrap();
    let counters = f.oidc.counters().await.unwrap();
    assert_eq!(
        (counters.refresh_grants_succeeded, counters.grants_revoked),
        (2, 0)
    );

    let pid = f.get.pid().unwrap();
    f.get.kill().unwrap();
    assert!(!f.get.is_running());
    f.get.restart().await.unwrap();
    assert_ne!(f.get.pid().unwrap(), pid);

    // The new process has an empty cache, and once the access token it
    // shared has less than 8 s left this call refreshes, reading the store.
    // Had it read the connect-time or the first rotated token, oidc-provider
    // would have answered invalid_grant and revoked the grant.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let third = f.token(&account, 8).await.unwrap();
    assert_ne!(third, second);
    let counters = f.oidc.counters().await.unwrap();
    assert_eq!(
        (
            counters.refresh_grants,
            counters.refresh_grants_succeeded,
            counters.grants_revoked
        ),
        (3, 3, 0)
    );
    assert_eq!(f.oidc.userinfo(&third).await.unwrap()["sub"], "rosa");
    f.wait_for_version_after(&account, v2, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(f.status(&account).await.unwrap().0, AccountStatus::Active);
    assert_eq!(f.get.starts(), 2);
    f.stop().await.unwrap();
    println!("took {:?}", started.elapsed());
}

/// What the request stream saw.
#[derive(Default)]
struct Tally {
    /// The phase calls are made in now (an index into `phases`).
    phase: usize,
    /// The phases' names.
    phases: Vec<String>,
    /// (phase, outcome: `OK`, a gRPC code name, or `HUNG`) → count.
    counts: BTreeMap<(usize, String), u64>,
    /// One message per phase and error code, for the report.
    samples: BTreeMap<(usize, String), String>,
    /// The access tokens handed out (to check the logs for).
    tokens: HashSet<String>,
}

impl Tally {
    fn enter(&mut self, phase: String) {
        self.phases.push(phase);
        self.phase = self.phases.len() - 1;
    }

    /// Outcome → count over every phase.
    fn totals(&self) -> BTreeMap<String, u64> {
        let mut totals = BTreeMap::new();
        for ((_, outcome), n) in &self.counts {
            *totals.entry(outcome.clone()).or_default() += n;
        }
        totals
    }
}

/// Waits until the refresh token stored for every account is the live one
/// at the provider (introspection: active; the provider rotates on every
/// refresh, so an older stored token would be inactive) while no refresh
/// runs (the provider's count stays the same meanwhile); returns the number
/// of refreshes. With the workers paused, that means get-service holds no
/// unstored rotated token: none is pending, none was lost.
async fn settled(f: &mut ProcSystem, accounts: &[String], within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let before = f.oidc.counters().await.unwrap();
        let mut stale = Vec::new();
        for account in accounts {
            if !f.stored_token_is_live(account).await.unwrap_or(false) {
                stale.push(account.as_str());
            }
        }
        let after = f.oidc.counters().await.unwrap();
        if stale.is_empty() && before == after {
            return after.refresh_grants_succeeded;
        }
        assert!(
            Instant::now() < deadline,
            "not settled within {within:?}: the stored tokens of {stale:?} are not live; {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many lines of `log` contain `needle`.
fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Five accounts connected through the web flow; four workers ask for
/// tokens for ~28 s (a third of the calls force a refresh, whose rotated
/// token get-service stores through set-service), while set-service, then
/// get-service, then PostgreSQL are killed with SIGKILL and restarted.
/// Every call ends in success or a clear status within its deadline;
/// afterwards every rotation the provider made is stored, no grant was
/// revoked, and every account refreshes again.
///
/// - set-service is down for 5 s, longer than an account's refresh period
///   (at most 4 s), so that rotated tokens wait in get-service's journal
///   until it is back.
/// - get-service is killed at a moment when it holds no unstored rotated
///   token (the workers pause for the instant it takes to check): a SIGKILL
///   between the provider's answer and the store would lose that token at
///   any provider that revokes a rotated refresh token on reuse, and no
///   service can close that window.
/// - PostgreSQL is down for 4 s, longer than the services wait for a
///   connection (3 s); the provider answers slowly (1.5 s) around the crash,
///   so that refreshes that read the store before it try to store their
///   rotated token while it is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_each_part_during_a_bounded_request_stream() {
    const ACCOUNTS: usize = 5;
    const CALLERS: usize = 4;
    const TTL: u64 = 20;
    // A cached token 5 to 6 s old no longer satisfies this: a forced
    // refresh (yet a fresh token does, even after a slow refresh (1.5 s)
    // whose rotated token waited up to 1 s for set-service before it was
    // journaled instead).
    const FORCE: u64 = TTL - 5;
    const CALL_DEADLINE: Duration = Duration::from_secs(15);
    const MAX_CALLS_PER_CALLER: usize = 4000;
    let started = Instant::now();
    let mut f = ProcSystem::start(ProcOptions {
        database: Database::Private,
        access_token_ttl: Duration::from_secs(TTL),
        cache: CacheConfig {
            refresh_ahead_secs: 0,
            negative_ttl_secs: 300,
            refresh_deadline_secs: 8,
            revalidate_secs: 1,
            sweep_secs: 1,
        },
        provider_timeout_secs: 5,
        ..ProcOptions::default()
    })
    .await
    .unwrap();
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        accounts.push(f.connect(&format!("stream-{i}")).await.unwrap());
    }
    let connected_rows = f.row_counts().await.unwrap().token_events;
    assert_eq!(connected_rows, ACCOUNTS as i64);
    f.oidc.reset_counters().await.unwrap();
    let setup = started.elapsed();

    let gate = Arc::new(RwLock::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t0 = Instant::now();
    let enter = |what: &str| {
        tally
            .lock()
            .unwrap()
            .enter(format!("{:>5.1}s {what}", t0.elapsed().as_secs_f64()));
    };
    enter("all up");
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let worker = f.worker.clone().with_timeout(Duration::from_secs(10));
        let (gate, stop, tally) = (gate.clone(), stop.clone(), tally.clone());
        let accounts = accounts.clone();
        callers.push(tokio::spawn(async move {
            for n in 0..MAX_CALLS_PER_CALLER {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let account = &accounts[(caller + n) % accounts.len()];
                let min_ttl = if n % 3 == 0 { FORCE } else { 0 };
                let outcome = {
                    let _running = gate.read().await;
                    tokio::time::timeout(
                        CALL_DEADLINE,
                        worker.access_token(account, "oidc", Duration::from_secs(min_ttl)),
                    )
                    .await
                };
                {
                    let mut t = tally.lock().unwrap();
                    let key = match outcome {
                        Ok(Ok(token)) => {
                            t.tokens.insert(token.secret().to_owned());
                            "OK".to_owned()
                        }
                        Ok(Err(e)) => {
                            let key = format!("{:?}", e.code().unwrap_or(tonic::Code::Unknown));
                            let phase = t.phase;
                            t.samples
                                .entry((phase, key.clone()))
                                .or_insert_with(|| e.to_string());
                            key
                        }
                        Err(_) => "HUNG".to_owned(),
                    };
                    let phase = t.phase;
                    *t.counts.entry((phase, key)).or_default() += 1;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    enter("set-service killed (SIGKILL)");
    f.set.kill().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    f.set.restart().await.unwrap();
    enter("set-service back");
    tokio::time::sleep(Duration::from_secs(3)).await;

    {
        let pause = Instant::now();
        let _paused = tokio::time::timeout(Duration::from_secs(20), gate.write())
            .await
            .expect("in-flight calls did not finish");
        let refreshes = settled(&mut f, &accounts, Duration::from_secs(20)).await;
        enter(&format!(
            "get-service killed (SIGKILL; nothing unstored after {refreshes} refreshes, \
             checked in a {:.0?} pause)",
            pause.elapsed()
        ));
        f.get.kill().unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.get.restart().await.unwrap();
    enter("get-service back");
    tokio::time::sleep(Duration::from_secs(2)).await;

    enter("provider slow (1.5 s per token response)");
    f.oidc.set_slow(1500).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    enter("PostgreSQL crashed (SIGKILL to postmaster and backends)");
    f.postgres().unwrap().crash().unwrap();
    // Longer than the services' 3 s wait for a database connection.
    tokio::time::sleep(Duration::from_secs(4)).await;
    f.oidc.set_slow(0).await.unwrap();
    f.postgres().unwrap().start().await.unwrap();
    enter("PostgreSQL back (crash recovery done), provider fast");
    tokio::time::sleep(Duration::from_secs(5)).await;

    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        tokio::time::timeout(CALL_DEADLINE + Duration::from_secs(5), caller)
            .await
            .expect("a caller did not stop")
            .unwrap();
    }
    let stream = t0.elapsed();

    // Every rotation the provider made is stored; nothing is pending.
    let refreshes = settled(&mut f, &accounts, Duration::from_secs(40)).await;
    let counters = f.oidc.counters().await.unwrap();
    assert_eq!(counters.grants_revoked, 0, "{counters:?}");
    assert_eq!(counters.refresh_grants, counters.refresh_grants_succeeded);

    // Each stored row is a rotation the provider made (a rotated token
    // superseded in memory by a newer one before it could be stored is
    // never stored, rightly).
    let rotations_stored = f.row_counts().await.unwrap().token_events - connected_rows;
    assert!(
        rotations_stored > 0 && rotations_stored <= refreshes as i64,
        "{rotations_stored} rows for {refreshes} refreshes"
    );

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let totals = tally.totals();
    let total: u64 = totals.values().sum();
    let log = f.get.logs_settled().await;
    let kept = count_lines(&log, "the rotated refresh token is journaled");
    let late = count_lines(&log, "stored a rotated refresh token after retrying");
    let failed_stores = count_lines(&log, "storing a rotated refresh token failed");
    println!(
        "stream of {stream:?} after {setup:?} of setup: {total} calls, {refreshes} refreshes at \
         the provider, {rotations_stored} rotated tokens stored; {failed_stores} failed store \
         attempts, {kept} rotated tokens journaled, {late} stored by the retry loop"
    );
    for (i, phase) in tally.phases.iter().enumerate() {
        let counts: Vec<String> = tally
            .counts
            .iter()
            .filter(|((p, _), _)| *p == i)
            .map(|((_, outcome), n)| format!("{outcome} {n}"))
            .collect();
        println!("  [{i}] {phase}: {}", counts.join(", "));
    }
    println!("  total: {totals:?}");
    for ((phase, code), message) in &tally.samples {
        println!("  e.g. {code} in phase {phase}: {message}");
    }
    f.secrets.extend(tally.tokens.iter().cloned());

    assert!(!totals.contains_key("HUNG"), "{totals:?}");
    // A call whose connection died under it (get-service killed mid-call)
    // is UNAVAILABLE: the worker library turns tonic's CANCELLED and
    // UNKNOWN "transport error" into it.
    let allowed = ["OK", "Unavailable", "DeadlineExceeded"];
    for outcome in totals.keys() {
        assert!(
            allowed.contains(&outcome.as_str()),
            "unexpected outcome {outcome}: {:?}",
            tally.samples
        );
    }
    assert!(
        totals.get("OK").copied().unwrap_or(0) > total / 2,
        "{totals:?}"
    );
    assert!(refreshes >= 15, "only {refreshes} refreshes");
    assert!(
        totals.get("Unavailable").copied().unwrap_or(0) > 0,
        "no call saw a part down: {totals:?}"
    );
    // set-service's outage outlasted the refresh period: rotated tokens
    // were journaled before their callers got a token, and were stored once
    // it was back (counted above).
    assert!(kept > 0, "no rotation happened while set-service was down");

    // No lost token: every account is active and refreshes again (its
    // cached token is then 5 s old, so asking for FORCE refreshes).
    tokio::time::sleep(Duration::from_secs(5)).await;
    for account in &accounts {
        assert!(
            matches!(f.latest(account).await.unwrap(), Latest::Token { .. }),
            "{account}"
        );
        assert_eq!(
            f.status(account).await.unwrap().0,
            AccountStatus::Active,
            "{account}"
        );
        let token = f.token(account, FORCE).await.unwrap();
        let login = account.trim_start_matches("oidc:");
        assert_eq!(f.oidc.userinfo(&token).await.unwrap()["sub"], login);
    }
    let after = settled(&mut f, &accounts, Duration::from_secs(20)).await;
    assert_eq!(after, refreshes + ACCOUNTS as u64);
    assert_eq!(f.oidc.counters().await.unwrap().grants_revoked, 0);
    assert_eq!(
        (
            f.set.starts(),
            f.get.starts(),
            f.postgres().unwrap().starts()
        ),
        (2, 2, 2)
    );
    f.stop().await.unwrap();
    println!("took {:?}", started.elapsed());
}
