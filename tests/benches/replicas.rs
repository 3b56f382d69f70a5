//! get-service with one and with three replicas on one PostgreSQL store, as
//! separate release processes with the real authorization server:
//!
//! - cold calls per second: every account asked for once, at once, with
//!   nothing cached anywhere (read the sealed row, open it, refresh at the
//!   provider, store the rotated token, share the access token);
//! - cached `GetAccessToken` calls per second, 16 callers, spread over the
//!   replicas by the worker library;
//! - what the cross-replica coordination adds to a cold call: the advisory
//!   lock taken and released and the look for a shared token (on the cold
//!   caller's path), and the `ShareAccessToken` call (after the caller has
//!   its token, before the lock is released), each timed on its own against
//!   the same store and set-service;
//! - the window no client can close: a provider refresh's round trip (the
//!   provider rotated; its answer is on the way) plus making the rotated
//!   token durable (set-service's store), from get-service's own timings.
//!
//! Needs the release binaries (`scripts/build-release`), PostgreSQL on
//! 127.0.0.1:5432 and the test authorization server (`tests/oidc`, npm ci).
//! Run with `cargo bench -p tokenvault-tests --bench replicas`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use tokenvault_get_service::config::CacheConfig;
use tokenvault_store::TokenReader;
use tokenvault_store::coordination::{Coordinator, LockName};
use tokenvault_tests::procs::{ProcOptions, ProcSystem};
use tokenvault_tls::Role;
use tokenvault_worker::WorkerClient;

const ACCOUNTS: usize = 60;
const CACHED_CALLS: usize = 12_000;
const CALLERS: usize = 16;
const PROBES: usize = 400;
const SEQUENTIAL: usize = 20;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn start(replicas: usize) -> (ProcSystem, Vec<String>, WorkerClient) {
    let mut f = ProcSystem::start(ProcOptions {
        access_token_ttl: Duration::from_secs(600),
        cache: CacheConfig {
            refresh_ahead_secs: 0,
            negative_ttl_secs: 300,
            refresh_deadline_secs: 30,
            revalidate_secs: 5,
            ..CacheConfig::default()
        },
        ..ProcOptions::default()
    })
    .await
    .unwrap();
    f.add_get_replicas(replicas - 1).await.unwrap();
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        accounts.push(f.connect_directly(&format!("bench{i}")).await.unwrap());
    }
    let tls = f.issue(Role::Worker, Some("bench")).unwrap();
    let worker = f
        .worker_at(&f.get_addresses(), &tls)
        .unwrap()
        .with_timeout(Duration::from_secs(60));
    (f, accounts, worker)
}

/// Every account once, all at once: cold calls per second and latencies.
async fn cold(worker: &WorkerClient, accounts: &[String]) -> (f64, Duration, Duration) {
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for account in accounts {
        let (worker, account) = (worker.clone(), account.clone());
        calls.spawn(async move {
            let t = Instant::now();
            worker
                .access_token(&account, "oidc", Duration::from_secs(60))
                .await
                .unwrap();
            t.elapsed()
        });
    }
    let mut lat: Vec<Duration> = calls.join_all().await;
    let rate = accounts.len() as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    (rate, percentile(&lat, 0.5), percentile(&lat, 0.99))
}

/// Cached calls from `CALLERS` callers: calls per second and p99.
async fn cached(worker: &WorkerClient, accounts: &[String]) -> (f64, Duration) {
    let per = CACHED_CALLS / CALLERS;
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for c in 0..CALLERS {
        let (worker, accounts) = (worker.clone(), accounts.to_vec());
        calls.spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                worker
                    .access_token(
                        &accounts[(c + i) % accounts.len()],
                        "oidc",
                        Duration::from_secs(60),
                    )
                    .await
                    .unwrap();
                lat.push(t.elapsed());
            }
            lat
        });
    }
    let mut lat: Vec<Duration> = calls.join_all().await.into_iter().flatten().collect();
    let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    lat.sort();
    (rate, percentile(&lat, 0.99))
}

/// The coordination a cold call pays before its refresh: take the
/// account's advisory lock, look for a shared token, release the lock.
async fn coordination(f: &ProcSystem) -> (Duration, Duration) {
    let coordinator = Coordinator::connect_lazy(&f.urls.reader).unwrap().unwrap();
    let reader = TokenReader::connect(&f.urls.reader).await.unwrap();
    let mut lat = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        let account = format!("oidc:probe{i}");
        let t = Instant::now();
        let lease = coordinator
            .try_lock(LockName::Refresh {
                account: &account,
                provider: "oidc",
            })
            .await
            .unwrap()
            .unwrap();
        reader.shared_access_token(&account, "oidc").await.unwrap();
        lease.release().await;
        lat.push(t.elapsed());
    }
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

/// Medians of get-service's own timings in its log, over its last `last`
/// refreshes: the provider's refresh round trip and storing the rotated
/// token.
fn window(f: &mut ProcSystem, last: usize) -> String {
    let logs = f.get.logs();
    let millis = |needle: &str| -> Vec<f64> {
        logs.lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| {
                let at = l.find("elapsed_ms=")? + "elapsed_ms=".len();
                l[at..].split_whitespace().next()?.parse().ok()
            })
            .collect::<Vec<f64>>()
            .into_iter()
            .rev()
            .take(last)
            .collect()
    };
    let median = |mut v: Vec<f64>| -> String {
        if v.is_empty() {
            return "n/a".into();
        }
        v.sort_by(f64::total_cmp);
        format!("{:.1} ms (n={})", v[v.len() / 2], v.len())
    };
    format!(
        "provider refresh round trip {}, rotated token made durable {}",
        median(millis("refreshed an access token")),
        median(millis("stored a rotated refresh token"))
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("get-service replicas: {ACCOUNTS} accounts, release binaries, one PostgreSQL");
    for replicas in [1, 3] {
        let (mut f, accounts, worker) = start(replicas).await;
        let (cold_rate, cold_p50, cold_p99) = cold(&worker, &accounts).await;
        // Warm: every replica has every token (shared or cached).
        cached(&worker, &accounts).await;
        let (rate, p99) = cached(&worker, &accounts).await;
        println!(
            "{replicas} replica(s): cold {cold_rate:.0} calls/s (p50 {cold_p50:?}, p99 {cold_p99:?}); \
             cached {rate:.0} calls/s with {CALLERS} callers (p99 {p99:?})"
        );
        if replicas == 1 {
            let (p50, p99) = coordination(&f).await;
            println!(
                "coordination on a cold call's path (try_lock + shared-token look + unlock): \
                 p50 {p50:?}, p99 {p99:?}"
            );
            println!(
                "the window no client can close, {ACCOUNTS} cold calls at once: {}",
                window(&mut f, ACCOUNTS)
            );
            // One cold call at a time.
            for i in 0..SEQUENTIAL {
                let account = f.connect_directly(&format!("alone{i}")).await.unwrap();
                worker
                    .access_token(&account, "oidc", Duration::from_secs(60))
                    .await
                    .unwrap();
            }
            println!(
                "the window no client can close, one cold call at a time: {}",
                window(&mut f, SEQUENTIAL)
            );
        }
        f.stop().await.unwrap();
    }
}
