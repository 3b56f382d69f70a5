//! Benchmark: `StoreRefreshToken` over mutual TLS into PostgreSQL, against the
//! raw rate of inserting the same rows with sqlx directly, in the same run.
//!
//! Run with `cargo bench -p tokenvault-tests --bench store_throughput`.
//! Needs the PostgreSQL of the test suite (see `tokenvault_tests::store`).
//! Each level runs a fixed number of stores per caller; prints ops/s, p50 and
//! p99 latency, and the ratio of the two rates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;
use tokenvault_proto::v1::StoreRefreshTokenRequest;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_seal::PublicKeySet;
use tokenvault_tests::services::set_service_config;
use tokenvault_tests::{TestPki, TestStore, grpc_channel, start_set_service};
use tokenvault_tls::Role;

/// Concurrent callers per level.
const LEVELS: [usize; 3] = [1, 16, 64];
/// Total stores per level (split across callers).
const OPS_PER_LEVEL: usize = 3200;
/// The writer's pool size in tokenvault-store; the raw baseline uses the same.
const WRITER_POOL: u32 = 16;

const RAW_INSERT: &str = "INSERT INTO token_events (account, provider, kind, sealed_token, kid, token_hash) \
     VALUES ($1, $2, 'token', $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id";

struct Figures {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Figures {
        ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Runs `callers` tasks, each doing `per_caller` operations from `op`.
async fn drive<F, Fut>(callers: usize, per_caller: usize, op: F) -> Figures
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_caller);
            for i in 0..per_caller {
                let t = Instant::now();
                op(c, i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    figures(all, start.elapsed())
}

#[tokio::main]
async fn main() {
    let pki = TestPki::new().unwrap();
    let keys = Arc::new(PublicKeySet::load_dir(&pki.public_keys_dir()).unwrap());
    println!("StoreRefreshToken over mTLS into PostgreSQL vs raw sqlx INSERT of the same rows");
    println!("{OPS_PER_LEVEL} stores per level; writer pool {WRITER_POOL} connections for both\n");
    println!(
        "{:>7} | {:>10} {:>9} {:>9} | {:>10} {:>9} {:>9} | {:>6}",
        "callers", "rpc ops/s", "p50 ms", "p99 ms", "raw ops/s", "p50 ms", "p99 ms", "ratio"
    );
    for callers in LEVELS {
        let per_caller = OPS_PER_LEVEL / callers;
        // Seal ahead of time: the benchmark measures storing, not sealing.
        let sealed: Arc<Vec<Vec<(String, String)>>> = Arc::new(
            (0..callers)
                .map(|c| {
                    (0..per_caller)
                        .map(|i| {
                            let account = format!("bench-{c}-{i}");
                            let token = keys.seal(&account, "oidc", b"refresh-token").unwrap();
                            (account, token)
                        })
                        .collect()
                })
                .collect(),
        );

        // Through set-service, over mTLS, one channel per caller.
        let store = TestStore::postgres().await;
        let server = start_set_service(set_service_config(&pki, &store.writer_url).unwrap())
            .await
            .unwrap();
        let web = pki.issue(Role::WebFrontend, None).unwrap();
        let clients: Arc<Vec<SetServiceClient<_>>> = Arc::new(
            (0..callers)
                .map(|_| {
                    SetServiceClient::new(
                        grpc_channel(&server.address(), &web, Role::SetService).unwrap(),
                    )
                })
                .collect(),
        );
        // Warm up every connection.
        for (c, client) in clients.iter().enumerate() {
            let mut client = client.clone();
            let account = format!("warm-{c}");
            let sealed_token = keys.seal(&account, "oidc", b"warm").unwrap();
            client
                .store_refresh_token(StoreRefreshTokenRequest {
                    expected_version: None,
                    account,
                    provider: "oidc".into(),
                    sealed_token,
                })
                .await
                .unwrap();
        }
        let (s, cl) = (sealed.clone(), clients.clone());
        let rpc = drive(callers, per_caller, move |c, i| {
            let (account, sealed_token) = s[c][i].clone();
            let mut client = cl[c].clone();
            async move {
                client
                    .store_refresh_token(StoreRefreshTokenRequest {
                        expected_version: None,
                        account,
                        provider: "oidc".into(),
                        sealed_token,
                    })
                    .await
                    .unwrap();
            }
        })
        .await;
        server.stop().await.unwrap();
        drop(store);

        // The same rows, inserted with sqlx directly as the writer role.
        let store = TestStore::postgres().await;
        let pool = PgPoolOptions::new()
            .max_connections(WRITER_POOL)
            .connect(&store.writer_url)
            .await
            .unwrap();
        let kid = pki.kid.clone();
        let (s, p) = (sealed.clone(), pool.clone());
        let raw = drive(callers, per_caller, move |c, i| {
            let (account, token) = s[c][i].clone();
            let (pool, kid) = (p.clone(), kid.clone());
            async move {
                let hash = Sha256::digest(token.as_bytes()).to_vec();
                let _: Option<i64> = sqlx::query_scalar(RAW_INSERT)
                    .bind(account)
                    .bind("oidc")
                    .bind(token)
                    .bind(kid)
                    .bind(hash)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
            }
        })
        .await;
        pool.close().await;
        drop(store);

        println!(
            "{callers:>7} | {:>10.0} {:>9.2} {:>9.2} | {:>10.0} {:>9.2} {:>9.2} | {:>6.2}",
            rpc.ops_per_sec,
            rpc.p50.as_secs_f64() * 1e3,
            rpc.p99.as_secs_f64() * 1e3,
            raw.ops_per_sec,
            raw.p50.as_secs_f64() * 1e3,
            raw.p99.as_secs_f64() * 1e3,
            rpc.ops_per_sec / raw.ops_per_sec
        );
    }
}
