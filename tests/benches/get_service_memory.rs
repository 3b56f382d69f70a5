//! get-service's memory per cached account (issue #14's table): 10k, then
//! 100k accounts, each refreshed once through get-service (raw tonic
//! clients, 64 at a time) from a local token endpoint issuing 43-byte access
//! tokens. For each step it prints the growth per account of
//!
//! - the live heap: bytes allocated and not yet freed, counted by a global
//!   allocator wrapper (what get-service's structures hold, without the
//!   allocator's own overhead), and
//! - the resident set (what the operator sees: the heap with the
//!   allocator's overhead and fragmentation), on the allocator get-service's
//!   binary runs with.
//!
//! The sealed tokens are stored by a child process, so that their bytes are
//! not in this one's heap. The client, set-service and token endpoint run in
//! this process too but hold nothing per account once a call returns.
//!
//! Run with `cargo bench -p tokenvault-tests --bench get_service_memory`.
//! Needs the PostgreSQL of the test suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod hot_path;
mod rig;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cap::Cap;
use rig::{ACCESS_TOKEN_LEN, Rig, SEED_ARG, channels, request, resident_bytes, runtimes, seed};
use tokenvault_get_service::{ALLOCATOR, Allocator};

/// get-service's own allocator, counted.
#[global_allocator]
static HEAP: Cap<Allocator> = Cap::new(ALLOCATOR, usize::MAX);

const ACCOUNT_STEPS: [usize; 2] = [10_000, 100_000];
const CALLERS: usize = 64;

async fn memory(rig: &Rig) {
    seed(rig, *ACCOUNT_STEPS.last().unwrap());
    let clients = channels(rig, &rig.get.address(), CALLERS);
    clients[0]
        .clone()
        .get_access_token(request("mem-0"))
        .await
        .unwrap();
    let (rss_before, heap_before) = (resident_bytes(), HEAP.allocated());
    println!("Memory per cached account (access tokens of {ACCESS_TOKEN_LEN} bytes)\n");
    println!(
        "{:>8} | {:>10} {:>9} | {:>10} {:>9} | {:>9}",
        "accounts", "heap MiB", "B/acct", "RSS MiB", "B/acct", "cold/s"
    );
    let mut cached = 1;
    for step in ACCOUNT_STEPS {
        let start = Instant::now();
        let next = Arc::new(AtomicUsize::new(cached));
        let tasks: Vec<_> = clients
            .iter()
            .map(|client| {
                let (mut client, next) = (client.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= step {
                            break;
                        }
                        client
                            .get_access_token(request(&format!("mem-{i}")))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let cold_per_sec = (step - cached) as f64 / start.elapsed().as_secs_f64();
        cached = step;
        let heap = HEAP.allocated().saturating_sub(heap_before) as f64;
        let rss = resident_bytes().saturating_sub(rss_before) as f64;
        let accounts = (step - 1) as f64;
        println!(
            "{step:>8} | {:>10.1} {:>9.0} | {:>10.1} {:>9.0} | {cold_per_sec:>9.0}",
            heap / 1048576.0,
            heap / accounts,
            rss / 1048576.0,
            rss / accounts,
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == SEED_ARG) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(rig::seed_child(&args[at + 1..]));
        return;
    }
    let (server, client) = runtimes();
    let rig = server.block_on(rig::start_rig());
    client.block_on(memory(&rig));
    let Rig { get, .. } = rig;
    server.block_on(async { get.stop().await.unwrap() });
}
