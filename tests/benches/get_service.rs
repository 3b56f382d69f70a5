//! get-service's hot path and cold opens, each against a baseline in the
//! same run (issue #14's table; memory per account is `get_service_memory`,
//! ingest is `store_throughput`):
//!
//! 1. Cached `GetAccessToken` (and, in the last row, the application's own
//!    token, `GetClientAccessToken`) over mTLS from a light raw tonic client (no
//!    `WorkerClient`), 1 and 64 callers over 1 connection (K=1) or one each
//!    (K=C), against a bare tonic service on the same accept loop and TLS
//!    settings returning a fixed 200-byte token. Server CPU per call is the
//!    CPU time of the server's threads (runtime `srv`, `tokenvault-*`) over
//!    the calls, read from `/proc/self/task`; clients run on their own
//!    runtime (`cli`). get-service logs as its binary does (one JSON audit
//!    line per call), to `/dev/null`, under an account policy of one rule
//!    (every account, and the client token) that each call is checked
//!    against.
//! 2. Cold opens: `PrivateKeyRing::open_async` from 64 tasks against raw
//!    aws-lc-rs RSA-4096 OAEP decryptions on every core.
//! 3. Cached calls (64 callers) alone, then while a burst of 64 tasks keeps
//!    opening sealed tokens on the server's runtime.
//!
//! Run with `cargo bench -p tokenvault-tests --bench get_service [-- hot
//! cold]` (no part named: both). Needs the PostgreSQL of the test suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod hot_path;
mod rig;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use base64::Engine;
use rig::{PROVIDER, Rig, channels, request, runtimes, start_rig};
use tokenvault_opener::PrivateKeyRing;
use tokenvault_proto::v1::GetClientAccessTokenRequest;
use tokenvault_proto::v1::get_service_client::GetServiceClient;
use tokenvault_seal::PublicKeySet;
use tonic::transport::Channel;

/// get-service's binary's allocator (the baseline runs on it too).
#[global_allocator]
static ALLOCATOR: tokenvault_get_service::Allocator = tokenvault_get_service::ALLOCATOR;

const HOT_CALLS: usize = 40_000;
/// Rounds per row, get-service and bare in turn; a row shows each figure's
/// median over its rounds (the host is shared and its speed drifts).
const HOT_ROUNDS: usize = 5;
const COLD_OPS: usize = 600;

/// CPU seconds used so far by the server's threads.
fn server_cpu() -> f64 {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        if !(name.starts_with("srv") || name.starts_with("tokenvault-")) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the name.
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    ticks as f64 / 100.0 // USER_HZ
}

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
    cpu_us: f64,
    /// Calls that got an error (a stalled server's connection timing out).
    failed: usize,
}

impl Figures {
    /// Each figure's median over `rounds`, and every failure.
    fn median(rounds: &[Figures]) -> Figures {
        fn mid<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        }
        Figures {
            rps: mid(rounds.iter().map(|f| f.rps).collect()),
            p50: mid(rounds.iter().map(|f| f.p50).collect()),
            p99: mid(rounds.iter().map(|f| f.p99).collect()),
            cpu_us: mid(rounds.iter().map(|f| f.cpu_us).collect()),
            failed: rounds.iter().map(|f| f.failed).sum(),
        }
    }

    fn columns(&self) -> String {
        let failed = match self.failed {
            0 => String::new(),
            n => format!(" ({n} calls failed)"),
        };
        format!(
            "{:>8.0} {:>7.3} {:>7.3} {:>6.1}{failed}",
            self.rps,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.cpu_us
        )
    }
}

/// What the bench asks for: an account's token, or the application's own
/// client-credentials token.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Account(&'static str),
    Client,
}

/// One call; the token's length.
async fn call(client: &mut GetServiceClient<Channel>, ask: Ask) -> Result<usize, tonic::Status> {
    let answer = match ask {
        Ask::Account(account) => client.get_access_token(request(account)).await,
        Ask::Client => {
            client
                .get_client_access_token(GetClientAccessTokenRequest {
                    provider: PROVIDER.to_owned(),
                    min_ttl_seconds: 1,
                    scopes: vec![],
                })
                .await
        }
    };
    answer.map(|r| r.into_inner().access_token.len())
}

/// `calls` cached calls for `ask` from `callers` tasks over `clients`.
async fn drive(
    clients: &[GetServiceClient<Channel>],
    callers: usize,
    calls: usize,
    ask: Ask,
) -> Figures {
    for c in clients {
        // A stalled server may fail this too; the run below counts failures.
        let _ = call(&mut c.clone(), ask).await;
    }
    let per_caller = calls / callers;
    let (cpu, start) = (server_cpu(), Instant::now());
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            tokio::spawn(async move {
                let (mut lat, mut failed) = (Vec::with_capacity(per_caller), 0);
                for _ in 0..per_caller {
                    let t = Instant::now();
                    match call(&mut client, ask).await {
                        Ok(len) => {
                            assert!(len > 0);
                            lat.push(t.elapsed());
                        }
                        Err(_) => failed += 1,
                    }
                }
                (lat, failed)
            })
        })
        .collect();
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (lat, f) = t.await.unwrap();
        all.extend(lat);
        failed += f;
    }
    let (elapsed, cpu) = (start.elapsed(), server_cpu() - cpu);
    all.sort();
    let at = |q: f64| {
        let i = ((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1));
        all.get(i).copied().unwrap_or_default()
    };
    Figures {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
        cpu_us: cpu * 1e6 / all.len().max(1) as f64,
        failed,
    }
}

async fn hot_path(rig: &Rig) {
    println!("1. Cached GetAccessToken over mTLS, raw tonic client, vs a bare tonic mTLS service");
    println!(
        "   ({HOT_ROUNDS} rounds of {HOT_CALLS} calls per row, medians; cpu = server CPU µs per call)\n"
    );
    println!(
        "{:>7} {:>4} | {:>8} {:>7} {:>7} {:>6} | {:>8} {:>7} {:>7} {:>6} | {:>5}",
        "callers",
        "K",
        "get rps",
        "p50 ms",
        "p99 ms",
        "cpu",
        "bare rps",
        "p50 ms",
        "p99 ms",
        "cpu",
        "ratio"
    );
    let hot = Ask::Account("hot");
    for (callers, k, ask) in [
        (1, 1, hot),
        (64, 1, hot),
        (64, 64, hot),
        (64, 64, Ask::Client),
    ] {
        let (get_channels, bare_channels) = (
            channels(rig, &rig.get.address(), k),
            channels(rig, &rig.bare, k),
        );
        let (mut get, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..HOT_ROUNDS {
            get.push(drive(&get_channels, callers, HOT_CALLS, ask).await);
            bare.push(drive(&bare_channels, callers, HOT_CALLS, ask).await);
        }
        let (get, bare) = (Figures::median(&get), Figures::median(&bare));
        println!(
            "{callers:>7} {k:>4} | {} | {} | {:>5.2}{}",
            get.columns(),
            bare.columns(),
            get.rps / bare.rps,
            if matches!(ask, Ask::Client) {
                "  (GetClientAccessToken)"
            } else {
                ""
            }
        );
    }
}

/// Raw RSA-4096 OAEP-SHA256 decryptions per second on every core.
fn raw_decrypts_per_sec(rig: &Rig) -> f64 {
    let pem = std::fs::read_to_string(
        rig.pki
            .private_keys_dir()
            .join(format!("{}.pem", rig.pki.kid)),
    )
    .unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let private = PrivateDecryptingKey::from_pkcs8(&der).unwrap();
    let public = OaepPublicEncryptingKey::new(private.public_key()).unwrap();
    let mut ciphertext = vec![0u8; public.ciphertext_size()];
    let ciphertext = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 32], &mut ciphertext, None)
        .unwrap()
        .to_vec();
    let oaep = Arc::new(OaepPrivateDecryptingKey::new(private).unwrap());
    let cores = std::thread::available_parallelism().unwrap().get();
    let start = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let (oaep, ciphertext) = (oaep.clone(), ciphertext.clone());
            std::thread::spawn(move || {
                let mut out = vec![0u8; oaep.min_output_size()];
                for _ in 0..COLD_OPS / cores {
                    oaep.decrypt(&OAEP_SHA256_MGF1SHA256, &ciphertext, &mut out, None)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (COLD_OPS / cores * cores) as f64 / start.elapsed().as_secs_f64()
}

/// Keeps 64 tasks on `server` opening sealed tokens until `stop`; returns
/// how many opened.
fn open_burst(
    rig: &Rig,
    server: &tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    limit: usize,
) -> tokio::task::JoinHandle<usize> {
    let ring = Arc::new(PrivateKeyRing::load_dir(&rig.pki.private_keys_dir()).unwrap());
    let keys = PublicKeySet::load_dir(&rig.pki.public_keys_dir()).unwrap();
    let sealed = Arc::new(keys.seal("cold", PROVIDER, b"refresh-token").unwrap());
    let opened = Arc::new(AtomicU64::new(0));
    server.spawn(async move {
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (ring, sealed, stop, opened) =
                    (ring.clone(), sealed.clone(), stop.clone(), opened.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed)
                        && opened.fetch_add(1, Ordering::Relaxed) < limit as u64
                    {
                        ring.open_async(&sealed, "cold", PROVIDER).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (opened.load(Ordering::Relaxed) as usize).min(limit)
    })
}

async fn cold_opens(rig: &Rig, server: &tokio::runtime::Handle) {
    let raw = raw_decrypts_per_sec(rig);
    let start = Instant::now();
    let done = open_burst(rig, server, Arc::new(AtomicBool::new(false)), COLD_OPS)
        .await
        .unwrap();
    let opens = done as f64 / start.elapsed().as_secs_f64();
    println!("\n2. Cold opens, {COLD_OPS} each, every core");
    println!("   raw RSA-4096 OAEP-SHA256 decrypts (aws-lc-rs): {raw:>6.0}/s");
    println!(
        "   PrivateKeyRing::open_async from 64 tasks:      {opens:>6.0}/s  ratio {:.2}",
        opens / raw
    );

    let clients = channels(rig, &rig.get.address(), 64);
    let alone = drive(&clients, 64, HOT_CALLS, Ask::Account("hot")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let burst = open_burst(rig, server, stop.clone(), usize::MAX);
    let during = drive(&clients, 64, HOT_CALLS, Ask::Account("hot")).await;
    stop.store(true, Ordering::Relaxed);
    let opened = burst.await.unwrap();
    println!("\n3. Cached calls (64 callers, K=64) alone and during a burst of opens");
    println!(
        "{:>8} | {:>8} {:>7} {:>7} {:>6}",
        "", "rps", "p50 ms", "p99 ms", "cpu"
    );
    println!("{:>8} | {}", "alone", alone.columns());
    println!("{:>8} | {}", "burst", during.columns());
    println!(
        "   rps {:.2}x, p99 {:.2}x of alone; {opened} opens during the burst",
        during.rps / alone.rps,
        during.p99.as_secs_f64() / alone.p99.as_secs_f64()
    );
}

/// get-service's log stack as its binary installs it (text lines at `info`,
/// one JSON audit line per call, buffered and written by the
/// `tokenvault-log` thread, whose CPU counts as the server's), writing to
/// `/dev/null`. The bare baseline logs nothing.
fn production_logging() -> tokenvault_runtime::log_buffer::LogFlusher {
    let null = std::fs::File::create("/dev/null").unwrap();
    let (writer, flusher) = tokenvault_runtime::log_buffer::buffered(Box::new(null));
    let subscriber = tokenvault_runtime::logging::subscriber(
        tracing_subscriber::EnvFilter::new("info"),
        writer,
        false,
        None,
    );
    tracing::subscriber::set_global_default(subscriber).unwrap();
    flusher
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let _logs = production_logging();
    let (server, client) = runtimes();
    let rig = server.block_on(start_rig());
    // `cargo bench ... -- hot cold` runs only those parts (e.g. under perf);
    // no argument runs both.
    let wanted: Vec<&str> = ["hot", "cold"]
        .into_iter()
        .filter(|part| args.iter().any(|a| a == part))
        .collect();
    let run = |part: &str| wanted.is_empty() || wanted.contains(&part);
    client.block_on(async {
        if run("hot") {
            hot_path(&rig).await;
        }
        if run("cold") {
            cold_opens(&rig, server.handle()).await;
        }
    });
    let Rig { get, .. } = rig;
    server.block_on(async { get.stop().await.unwrap() });
}
