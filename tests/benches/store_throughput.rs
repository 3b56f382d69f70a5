//! Benchmark: `StoreRefreshToken` over mutual TLS into PostgreSQL, against the
//! raw rate of inserting the same rows with sqlx directly, in the same run; then
//! ingest at 64 callers against `pgbench` inserting into the same table as the
//! writer role, each into a fresh database that was never analysed and into an
//! analysed one.
//!
//! Run with `cargo bench -p tokenvault-tests --bench store_throughput`.
//! Needs the PostgreSQL of the test suite (see `tokenvault_tests::store`) and
//! `pgbench` (on `PATH`, or `PGBENCH=/path/to/pgbench`; without it that
//! baseline is skipped). Each level runs a fixed number of stores per caller;
//! prints ops/s, p50 and p99 latency, and the ratios of the rates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::process::Command;
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
use tokenvault_tls::TlsFiles;

/// Concurrent callers per level.
const LEVELS: [usize; 3] = [1, 16, 64];
/// Total stores per level (split across callers).
const OPS_PER_LEVEL: usize = 3200;
/// The writer's pool size in tokenvault-store; the raw baseline uses the same.
const WRITER_POOL: u32 = 16;

/// Rows each ingest run stores, and its callers (pgbench: clients).
const INGEST_ROWS: usize = 20_000;
const INGEST_CALLERS: usize = 64;
/// Rows stored before `ANALYZE` in the analysed database.
const FIRST_BATCH: usize = 2_000;

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

/// Starts set-service on `store`, opens one mTLS channel per caller (warmed up with one store
/// each), and stores `sealed[c][i]` from caller `c`.
async fn rpc_stores(
    pki: &TestPki,
    keys: &PublicKeySet,
    store: &TestStore,
    sealed: &Arc<Vec<Vec<(String, String)>>>,
) -> Figures {
    let (callers, per_caller) = (sealed.len(), sealed[0].len());
    let server = start_set_service(set_service_config(pki, &store.writer_url).unwrap())
        .await
        .unwrap();
    let web: TlsFiles = pki.issue(Role::WebFrontend, None).unwrap();
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
                metadata_json: String::new(),
                refresh_token_expires_at_unix: 0,
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
                    metadata_json: String::new(),
                    refresh_token_expires_at_unix: 0,
                })
                .await
                .unwrap();
        }
    })
    .await;
    server.stop().await.unwrap();
    rpc
}

/// Seals a refresh token for `callers` x `per_caller` distinct accounts named `{prefix}-{c}-{i}`.
fn seal_all(
    keys: &PublicKeySet,
    prefix: &str,
    callers: usize,
    per_caller: usize,
) -> Arc<Vec<Vec<(String, String)>>> {
    Arc::new(
        (0..callers)
            .map(|c| {
                (0..per_caller)
                    .map(|i| {
                        let account = format!("{prefix}-{c}-{i}");
                        let token = keys.seal(&account, "oidc", b"refresh-token").unwrap();
                        (account, token)
                    })
                    .collect()
            })
            .collect(),
    )
}

/// Whether the ingest database gets planner statistics before the measured run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stats {
    /// Fresh and never analysed.
    Fresh,
    /// [`FIRST_BATCH`] rows, then `ANALYZE`.
    Analysed,
}

/// A fresh store whose token tables autovacuum leaves alone (so nothing analyses them behind the
/// benchmark's back); with [`Stats::Analysed`], [`FIRST_BATCH`] rows inserted as the writer and
/// then `ANALYZE`d.
async fn ingest_store(stats: Stats, sealed_token: &str, kid: &str) -> TestStore {
    let store = TestStore::postgres_never_analysed().await;
    if stats == Stats::Analysed {
        let pool = PgPoolOptions::new()
            .max_connections(WRITER_POOL)
            .connect(&store.writer_url)
            .await
            .unwrap();
        for i in 0..FIRST_BATCH {
            let hash = Sha256::digest(format!("batch-{i}").as_bytes()).to_vec();
            let _: Option<i64> = sqlx::query_scalar(RAW_INSERT)
                .bind(format!("batch-{i}"))
                .bind("oidc")
                .bind(sealed_token)
                .bind(kid)
                .bind(hash)
                .fetch_optional(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
        store.analyse().await;
    }
    store
}

/// What pgbench reported.
struct PgbenchFigures {
    ops_per_sec: f64,
    latency_avg: Duration,
}

/// `pgbench -c INGEST_CALLERS -j 2` as the writer role, each client inserting
/// `INGEST_ROWS / INGEST_CALLERS` rows with [`RAW_INSERT`]'s statement: distinct accounts, a
/// sealed token of the benchmark's length. `None` if pgbench cannot be run.
fn pgbench(store: &TestStore, sealed_token: &str, kid: &str) -> Option<PgbenchFigures> {
    let program = std::env::var("PGBENCH").unwrap_or_else(|_| "pgbench".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("insert.sql");
    // The sealed token and kid are base64url and dots: safe inside a SQL literal.
    assert!(
        sealed_token
            .chars()
            .chain(kid.chars())
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    );
    std::fs::write(
        &script,
        format!(
            "\\set n random(1, 1000000000000)\n\
             INSERT INTO token_events (account, provider, kind, sealed_token, kid, token_hash) \
             VALUES ('pgbench-' || :client_id || '-' || :n, 'oidc', 'token', '{sealed_token}', \
             '{kid}', sha256(convert_to(:client_id || '-' || :n || '-' || random(), 'UTF8'))) \
             ON CONFLICT DO NOTHING RETURNING id;\n"
        ),
    )
    .unwrap();
    let out = match Command::new(&program)
        .args(["-n", "-c", &INGEST_CALLERS.to_string(), "-j", "2"])
        .args(["-t", &(INGEST_ROWS / INGEST_CALLERS).to_string()])
        .arg("-f")
        .arg(&script)
        .arg(&store.writer_url)
        .output()
    {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            println!(
                "pgbench failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Err(e) => {
            println!("pgbench not run ({program}: {e}); set PGBENCH=/path/to/pgbench");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let figure = |prefix: &str| {
        stdout.lines().find_map(|line| {
            line.trim()
                .strip_prefix(prefix)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
    };
    Some(PgbenchFigures {
        ops_per_sec: figure("tps = ")?,
        latency_avg: Duration::from_secs_f64(figure("latency average = ")? / 1e3),
    })
}

/// Ingest of [`INGEST_ROWS`] distinct accounts at [`INGEST_CALLERS`] callers: pgbench vs
/// StoreRefreshToken, into a fresh unanalysed database and into an analysed one.
async fn ingest(pki: &TestPki, keys: &Arc<PublicKeySet>) {
    let per_caller = INGEST_ROWS / INGEST_CALLERS;
    let sealed = seal_all(keys, "ingest", INGEST_CALLERS, per_caller);
    let (sample, kid) = (sealed[0][0].1.clone(), pki.kid.clone());
    println!(
        "\nIngest: {} rows (distinct accounts) at {INGEST_CALLERS} callers; \
         pgbench -c {INGEST_CALLERS} -j 2 -t {per_caller} inserting into token_events as \
         tokenvault_writer;\nautovacuum off on the token tables; analysed = {FIRST_BATCH} rows, \
         ANALYZE, then the run\n",
        per_caller * INGEST_CALLERS
    );
    println!(
        "{:<22} | {:>12} {:>9} | {:>10} {:>9} {:>9} | {:>11}",
        "database", "pgbench tps", "avg ms", "rpc ops/s", "p50 ms", "p99 ms", "rpc/pgbench"
    );
    let mut rpc_rates = Vec::new();
    for stats in [Stats::Fresh, Stats::Analysed] {
        let store = ingest_store(stats, &sample, &kid).await;
        let pg = tokio::task::block_in_place(|| pgbench(&store, &sample, &kid));
        drop(store);
        let store = ingest_store(stats, &sample, &kid).await;
        let rpc = rpc_stores(pki, keys, &store, &sealed).await;
        drop(store);
        let (pg_tps, pg_avg) = match &pg {
            Some(p) => (
                format!("{:.0}", p.ops_per_sec),
                format!("{:.2}", p.latency_avg.as_secs_f64() * 1e3),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let ratio = pg
            .as_ref()
            .map(|p| format!("{:.2}", rpc.ops_per_sec / p.ops_per_sec))
            .unwrap_or_else(|| "-".to_owned());
        let label = match stats {
            Stats::Fresh => "fresh, never analysed",
            Stats::Analysed => "analysed",
        };
        println!(
            "{label:<22} | {pg_tps:>12} {pg_avg:>9} | {:>10.0} {:>9.2} {:>9.2} | {ratio:>11}",
            rpc.ops_per_sec,
            rpc.p50.as_secs_f64() * 1e3,
            rpc.p99.as_secs_f64() * 1e3,
        );
        rpc_rates.push(rpc.ops_per_sec);
    }
    println!(
        "\nStoreRefreshToken at {INGEST_CALLERS} callers, fresh never-analysed vs analysed: {:.2} \
         (goal: no collapse; rpc/pgbench goal >= 0.6)",
        rpc_rates[0] / rpc_rates[1]
    );
}

#[tokio::main]
async fn main() {
    let pki = TestPki::new().unwrap();
    let keys = Arc::new(PublicKeySet::load_dir(&pki.public_keys_dir()).unwrap());
    levels(&pki, &keys).await;
    ingest(&pki, &keys).await;
}

/// StoreRefreshToken vs raw sqlx INSERT at each level of callers.
async fn levels(pki: &TestPki, keys: &Arc<PublicKeySet>) {
    println!("StoreRefreshToken over mTLS into PostgreSQL vs raw sqlx INSERT of the same rows");
    println!("{OPS_PER_LEVEL} stores per level; writer pool {WRITER_POOL} connections for both\n");
    println!(
        "{:>7} | {:>10} {:>9} {:>9} | {:>10} {:>9} {:>9} | {:>6}",
        "callers", "rpc ops/s", "p50 ms", "p99 ms", "raw ops/s", "p50 ms", "p99 ms", "ratio"
    );
    for callers in LEVELS {
        let per_caller = OPS_PER_LEVEL / callers;
        // Seal ahead of time: the benchmark measures storing, not sealing.
        let sealed = seal_all(keys, "bench", callers, per_caller);

        // Through set-service, over mTLS, one channel per caller.
        let store = TestStore::postgres().await;
        let rpc = rpc_stores(pki, keys, &store, &sealed).await;
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
