//! What the account policy and scope narrowing cost on the hot path: cached
//! `GetAccessToken` calls from 16 callers (one mTLS connection each), in one
//! run, against
//!
//! - a bare tonic `GetService` on the same mTLS stack (fixed 200-byte token),
//! - get-service with no rules (open),
//! - get-service with 200 rules, the caller's matching only the last one
//!   (the longest scan the first-match rule makes),
//! - the same, asking for a narrowed scope set (`email`), served from the
//!   per-scope-set cache.
//!
//! Run with `cargo bench -p tokenvault-tests --bench policy`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod hot_path;

use std::fmt::Write as _;

use hot_path::{bare_server, clients, drive};
use tokenvault_tests::system::{Options, System};

const CALLERS: usize = 16;
const CALLS: usize = 40_000;
const RULES: usize = 200;

/// `RULES` rules; only the last names `worker/bench`.
fn many_rules() -> String {
    let mut text = String::new();
    for i in 0..RULES - 1 {
        let _ = write!(
            text,
            "[[rules]]\nname = \"tenant-{i}\"\ncallers = [\"worker/team-{i}\"]\naccounts = [\"tenant-{i}:*\"]\nproviders = [\"oidc\"]\n\n"
        );
    }
    text.push_str(
        "[[rules]]\nname = \"bench\"\ncallers = [\"worker/bench\"]\naccounts = [\"acme:*\"]\nproviders = [\"oidc\"]\n",
    );
    text
}

async fn system(policy: Option<String>) -> System {
    let mut system = System::start(Options {
        narrowing_providers: vec!["oidc"],
        policy,
        ..Options::default()
    })
    .await
    .unwrap();
    system.connect("acme:bench").await.unwrap();
    system
}

#[tokio::main]
async fn main() {
    println!(
        "Cached GetAccessToken, {CALLERS} callers, {CALLS} calls per row (after a warm-up of the same)\n"
    );
    println!(
        "{:<44} | {:>9} {:>8} {:>8} | {:>6}",
        "server", "rps", "p50 ms", "p99 ms", "ratio"
    );
    let open = system(None).await;
    let bare_address = bare_server(&open.pki).await;
    let bare = clients(&open, &bare_address, "bench", CALLERS);
    let open_clients = clients(&open, &open.get.address(), "bench", CALLERS);
    let governed = system(Some(many_rules())).await;
    let governed_clients = clients(&governed, &governed.get.address(), "bench", CALLERS);

    let rows: [(&str, &[_], &[&'static str]); 4] = [
        ("bare tonic service (baseline)", &bare, &[]),
        ("get-service, no rules", &open_clients, &[]),
        (
            "get-service, 200 rules, last one matches",
            &governed_clients,
            &[],
        ),
        (
            "same, narrowed to [email] (cached apart)",
            &governed_clients,
            &["email"],
        ),
    ];
    let mut baseline = None;
    for (label, clients, scopes) in rows {
        // Warm the connections and the cache (a narrowed set refreshes once).
        drive(clients, CALLS, "acme:bench", scopes).await;
        let figures = drive(clients, CALLS, "acme:bench", scopes).await;
        let base = *baseline.get_or_insert(figures.rps);
        println!(
            "{label:<44} | {} | {:>6.2}",
            figures.columns(),
            figures.rps / base
        );
    }
    println!(
        "\nrefreshes at the authorization servers: no rules {}, 200 rules {}",
        open.refreshes().await.unwrap(),
        governed.refreshes().await.unwrap()
    );
    governed.stop().await.unwrap();
    open.stop().await.unwrap();
}
