//! Refresh that survives deploys, crashes and replicas, with the real
//! release binaries as separate processes, a real PostgreSQL and the real
//! authorization server (npm `oidc-provider`), which rotates the refresh
//! token on every refresh and, on reuse of a rotated one, answers
//! `invalid_grant` and revokes the whole grant: a lost rotated refresh token
//! shows up as a revoked grant in its counters.
//!
//! - SIGTERM and SIGKILL of get-service the moment a worker has its token,
//!   20 trials each: no grant lost.
//! - set-service stopped, then a rotating refresh (journaled), then
//!   get-service stopped; both restarted: the journaled token is stored.
//! - 3 replicas, 50 cold accounts, 600 concurrent callers spread over them:
//!   exactly 50 refresh grants.
//! - A rolling restart of 3 replicas under a stream of calls from 16
//!   workers, with forced refreshes; then a SIGKILL of one replica: no call
//!   fails, no grant is lost.
//!
//! The binaries come from `scripts/build-release` (a nextest setup script).
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokenvault_get_service::config::CacheConfig;
use tokenvault_tests::procs::{ProcOptions, ProcSystem};
use tokenvault_tls::Role;

/// The provider name every test system uses.
const PROVIDER: &str = "oidc";

/// The access-token lifetime at the authorization server. A fresh token has
/// 9 or 10 s left; asking for `FORCE` seconds forces a refresh once the
/// cached one is a few seconds old, and a fresh one satisfies it.
const TTL: u64 = 10;
/// A `min_ttl` that forces a refresh of a token more than 2 s old.
const FORCE: u64 = 8;

fn options() -> ProcOptions {
    options_with_ttl(TTL)
}

fn options_with_ttl(ttl: u64) -> ProcOptions {
    ProcOptions {
        access_token_ttl: Duration::from_secs(ttl),
        cache: CacheConfig {
            refresh_ahead_secs: 0,
            negative_ttl_secs: 300,
            refresh_deadline_secs: 10,
            revalidate_secs: 1,
            sweep_secs: 1,
        },
        ..ProcOptions::default()
    }
}

/// A short access-token lifetime, for tests that force a refresh on every
/// call: a fresh token has 3 or 4 s left.
const SHORT_TTL: u64 = 4;

/// Waits until every token handed out so far (cached, or shared between
/// replicas) has less than 3 s left (expiries are whole seconds), then asks
/// for one with 3 s: only a refresh can give it (and the provider rotates
/// the refresh token).
async fn forced(f: &mut ProcSystem, account: &str) -> Result<String, tonic::Code> {
    tokio::time::sleep(Duration::from_millis(2100)).await;
    f.token(account, SHORT_TTL - 1).await
}

/// SIGTERM, then SIGKILL, of get-service the moment a worker has the access
/// token of a refresh that rotated the refresh token, 20 trials each. Each
/// trial's call forces a refresh with whatever is stored: had the previous
/// trial's rotated token been lost, the provider would answer
/// `invalid_grant` and revoke the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_or_a_kill_right_after_a_rotating_refresh_loses_no_grant() {
    const TRIALS: u64 = 20;
    let started = Instant::now();
    let mut f = ProcSystem::start(options_with_ttl(SHORT_TTL))
        .await
        .unwrap();
    let account = f.connect_directly("sam").await.unwrap();
    f.oidc.reset_counters().await.unwrap();
    let mut kills = 0;
    for signal in ["SIGTERM", "SIGKILL"] {
        for trial in 0..TRIALS {
            let token = forced(&mut f, &account).await;
            assert!(token.is_ok(), "{signal} trial {trial}: {token:?}");
            let version = f.stored_version(&account).await.unwrap();
            if signal == "SIGTERM" {
                let status = f.get.stop().await.unwrap();
                assert!(status.success(), "{signal} trial {trial}: {status}");
            } else {
                f.get.kill().unwrap();
                kills += 1;
            }
            f.get.restart().await.unwrap();
            // The rotated token was durable before the answer: stored.
            let after = f.stored_version(&account).await.unwrap();
            assert_eq!(after, version, "{signal} trial {trial}");
            assert!(
                f.stored_token_is_live(&account).await.unwrap(),
                "{signal} trial {trial}: the stored refresh token is not the live one"
            );
        }
    }
    // The last trial's stored token still works.
    let token = forced(&mut f, &account).await.unwrap();
    assert_eq!(f.oidc.userinfo(&token).await.unwrap()["sub"], "sam");
    let counters = f.oidc.counters().await.unwrap();
    assert_eq!(counters.grants_revoked, 0, "{counters:?}");
    assert_eq!(
        counters.refresh_grants_succeeded,
        2 * TRIALS + 1,
        "{counters:?}"
    );
    assert_eq!(counters.refresh_grants, counters.refresh_grants_succeeded);
    // Every SIGTERM drained, saying so in one line.
    let drained = f
        .get
        .logs()
        .matches("get-service drained: every rotated refresh token is stored")
        .count();
    assert_eq!(drained, usize::try_from(TRIALS).unwrap());
    assert_eq!(kills, TRIALS);
    f.stop().await.unwrap();
    println!("took {:?}", started.elapsed());
}

/// set-service is stopped; a worker's call refreshes, the provider rotates,
/// and get-service journals the rotated token (sealed) and answers; then
/// get-service is stopped too. Both restart: get-service replays its
/// journal, set-service stores the token, and the grant works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_while_set_service_is_down_is_journaled_and_stored_after_both_restart() {
    let started = Instant::now();
    let mut f = ProcSystem::start(ProcOptions {
        get_shutdown: (0, 3),
        ..options_with_ttl(SHORT_TTL)
    })
    .await
    .unwrap();
    let account = f.connect_directly("jo").await.unwrap();
    let connected = f.stored_version(&account).await.unwrap().unwrap();
    f.oidc.reset_counters().await.unwrap();

    f.set.stop().await.unwrap();
    // Nothing is cached yet: this call refreshes.
    let token = f.token(&account, 1).await.unwrap();
    assert_eq!(f.oidc.userinfo(&token).await.unwrap()["sub"], "jo");
    f.get
        .wait_for_log(
            "the rotated refresh token is journaled",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    // The connect-time token is no longer live: only the journal has the
    // newest one.
    assert!(!f.stored_token_is_live(&account).await.unwrap());
    let status = f.get.stop().await.unwrap();
    assert!(status.success(), "{status}");
    assert!(f.get.logs().contains(
        "get-service stopped before set-service stored every rotated refresh token; they are in the rotation journal"
    ));

    f.set.restart().await.unwrap();
    f.get.restart().await.unwrap();
    let stored = f
        .wait_for_version_after(&account, connected, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(stored > connected);
    assert!(f.stored_token_is_live(&account).await.unwrap());
    let again = forced(&mut f, &account).await.unwrap();
    assert_eq!(f.oidc.userinfo(&again).await.unwrap()["sub"], "jo");
    let counters = f.oidc.counters().await.unwrap();
    assert_eq!(
        (counters.refresh_grants_succeeded, counters.grants_revoked),
        (2, 0),
        "{counters:?}"
    );
    f.stop().await.unwrap();
    println!("took {:?}", started.elapsed());
}

/// Three get-service replicas on one PostgreSQL store, 50 accounts none has
/// a token for, and 600 callers at once, each on one replica (round-robin)
/// asking for one account (12 per account, 4 on each replica): every caller
/// gets a token, the authorization server sees exactly one refresh per
/// account, and the replicas hand out the same token per account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_fifty_cold_accounts_six_hundred_callers_one_refresh_each() {
    const ACCOUNTS: usize = 50;
    const CALLERS: usize = 600;
    let started = Instant::now();
    let mut f = ProcSystem::start(options_with_ttl(60)).await.unwrap();
    f.add_get_replicas(2).await.unwrap();
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        accounts.push(f.connect_directly(&format!("cold{i}")).await.unwrap());
    }
    f.oidc.reset_counters().await.unwrap();
    let tls = f.issue(Role::Worker, Some("crowd")).unwrap();
    let addresses: Vec<String> = f.get_addresses().split(',').map(str::to_owned).collect();
    let workers: Vec<_> = addresses
        .iter()
        .map(|a| {
            f.worker_at(a, &tls)
                .unwrap()
                .with_timeout(Duration::from_secs(30))
        })
        .collect();
    let gate = Arc::new(tokio::sync::Barrier::new(CALLERS));
    let mut calls = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let worker = workers[caller % workers.len()].clone();
        let account = accounts[caller % ACCOUNTS].clone();
        let gate = Arc::clone(&gate);
        calls.spawn(async move {
            gate.wait().await;
            let token = worker
                .access_token(&account, PROVIDER, Duration::from_secs(30))
                .await;
            (account, token.map(|t| t.secret().to_owned()))
        });
    }
    let mut tokens: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut failures = Vec::new();
    while let Some(joined) = calls.join_next().await {
        match joined.unwrap() {
            (account, Ok(token)) => {
                tokens.entry(account).or_default().insert(token);
            }
            (account, Err(e)) => failures.push(format!("{account}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(tokens.len(), ACCOUNTS);
    for (account, set) in &tokens {
        assert_eq!(set.len(), 1, "{account} got {} different tokens", set.len());
        f.secrets.extend(set.iter().cloned());
    }
    let counters = f.oidc.counters().await.unwrap();
    assert_eq!(
        (
            counters.refresh_grants,
            counters.refresh_grants_succeeded,
            counters.grants_revoked
        ),
        (50, 50, 0),
        "{counters:?}"
    );
    let any = tokens
        .values()
        .next()
        .and_then(|s| s.iter().next())
        .cloned();
    assert_eq!(
        f.oidc.userinfo(&any.unwrap()).await.unwrap()["sub"],
        "cold0"
    );
    f.stop().await.unwrap();
    println!("took {:?}", started.elapsed());
}

/// What the stream of calls saw.
#[derive(Default)]
struct Stream {
    ok: AtomicU64,
    forced: AtomicU64,
    failed: std::sync::Mutex<Vec<String>>,
}

/// Three replicas; 16 workers (the Rust worker library, each given every
/// replica's address) call for ~20 s over 8 accounts, one call in four
/// forcing a refresh (`min_ttl` [`FORCE`]). Meanwhile each replica
/// in turn is stopped with SIGTERM and started again (a rolling restart),
/// and then one is killed with SIGKILL. No call fails; afterwards every
/// account's stored refresh token is the live one at the provider and no
/// grant was revoked. The forced refreshes pause for the instant of the
/// SIGKILL: a kill between the provider's answer and the store would lose
/// that rotation at any provider that revokes on reuse, and no client can
/// close that window (see docs/ARCHITECTURE.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_and_a_kill_of_replicas_under_load_fail_no_call_and_lose_no_grant() {
    const ACCOUNTS: usize = 8;
    const WORKERS: usize = 16;
    let started = Instant::now();
    let mut f = ProcSystem::start(ProcOptions {
        get_shutdown: (1, 10),
        ..options()
    })
    .await
    .unwrap();
    f.add_get_replicas(2).await.unwrap();
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        accounts.push(f.connect_directly(&format!("roll{i}")).await.unwrap());
    }
    f.oidc.reset_counters().await.unwrap();
    let tls = f.issue(Role::Worker, Some("roll")).unwrap();
    let worker = f
        .worker_at(&f.get_addresses(), &tls)
        .unwrap()
        .with_timeout(Duration::from_secs(20));
    let stream = Arc::new(Stream::default());
    let running = Arc::new(AtomicBool::new(true));
    let forcing = Arc::new(AtomicBool::new(true));
    let in_flight_forced = Arc::new(AtomicU64::new(0));
    let mut callers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let (worker, accounts) = (worker.clone(), accounts.clone());
        let (stream, running) = (Arc::clone(&stream), Arc::clone(&running));
        let (forcing, in_flight_forced) = (Arc::clone(&forcing), Arc::clone(&in_flight_forced));
        callers.spawn(async move {
            let mut tokens = Vec::new();
            let mut n = 0usize;
            while running.load(Ordering::SeqCst) {
                n += 1;
                let account = &accounts[(w + n) % ACCOUNTS];
                let force = n.is_multiple_of(4) && forcing.load(Ordering::SeqCst);
                if force {
                    in_flight_forced.fetch_add(1, Ordering::SeqCst);
                }
                let min_ttl = if force { FORCE } else { 1 };
                let result = worker
                    .access_token(account, PROVIDER, Duration::from_secs(min_ttl))
                    .await;
                if force {
                    in_flight_forced.fetch_sub(1, Ordering::SeqCst);
                    stream.forced.fetch_add(1, Ordering::SeqCst);
                }
                match result {
                    Ok(token) => {
                        stream.ok.fetch_add(1, Ordering::SeqCst);
                        tokens.push(token.secret().to_owned());
                    }
                    Err(e) => stream
                        .failed
                        .lock()
                        .unwrap()
                        .push(format!("{account} (forced {force}): {e}")),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokens
        });
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    // The rolling restart: one replica at a time, SIGTERM then start.
    for i in 0..3 {
        let replica = &mut f.get_replicas()[i];
        let status = replica.stop().await.unwrap();
        assert!(status.success(), "replica {i}: {status}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        replica.restart().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // The kill: forced refreshes pause for the instant (see above).
    forcing.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while in_flight_forced.load(Ordering::SeqCst) > 0 {
        assert!(Instant::now() < deadline, "forced refreshes never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.get_replicas()[1].kill().unwrap();
    forcing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    running.store(false, Ordering::SeqCst);
    while let Some(tokens) = callers.join_next().await {
        f.secrets.extend(tokens.unwrap());
    }

    let failed = stream.failed.lock().unwrap().clone();
    let (ok, forced) = (
        stream.ok.load(Ordering::SeqCst),
        stream.forced.load(Ordering::SeqCst),
    );
    println!(
        "{ok} calls succeeded ({forced} forced a refresh), {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} calls failed: {failed:#?}",
        failed.len()
    );
    assert!(
        ok > 1000 && forced > 200,
        "too few calls: {ok}, {forced} forced"
    );
    // Every rotation the provider made is stored: each account's stored
    // refresh token is the live one, and no grant was revoked.
    f.get_replicas()[1].restart().await.unwrap();
    for account in &accounts {
        assert!(
            f.stored_token_is_live(account).await.unwrap(),
            "{account}: the stored refresh token is not the live one"
        );
    }
    let counters = f.oidc.counters().await.unwrap();
    assert_eq!(counters.grants_revoked, 0, "{counters:?}");
    assert_eq!(counters.refresh_grants, counters.refresh_grants_succeeded);
    f.stop().await.unwrap();
    println!("took {:?}", started.elapsed());
}
