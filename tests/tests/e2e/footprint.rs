//! Per-account state in get-service is freed when idle: after many accounts
//! refresh at once, the cache, the refreshes in flight and the account locks
//! grow with them, while the tokens' type and scope list are held once for
//! all of them; once the tokens expire the periodic sweep brings every one
//! back to zero (read from get-service's `/metrics` gauges, as an operator
//! would).

use std::time::{Duration, Instant};

use tokenvault_tests::system::{Options, System};

const ACCOUNTS: usize = 40;
const TTL_SECS: u64 = 8;

/// The value of an unlabelled gauge `tokenvault_<name>` at `url`.
async fn gauge(url: &str, name: &str) -> f64 {
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    let series = format!("tokenvault_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

/// The four gauges, once the next sweep (every second) has run.
async fn footprint(url: &str) -> [f64; 4] {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    [
        gauge(url, "access_token_cache_entries").await,
        gauge(url, "refreshes_in_flight").await,
        gauge(url, "account_lock_entries").await,
        gauge(url, "access_token_shared_values").await,
    ]
}

/// 40 accounts refresh concurrently (each a decrypt, a provider call and a
/// stored rotation under its account lock); tokens live 8 s. While cached,
/// the cache holds 40 entries sharing one token type and one scope list;
/// after expiry every gauge is 0 again, and the accounts still refresh
/// afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_flights_and_locks_shrink_back_to_nothing_once_tokens_expire() {
    let mut f = System::start(Options {
        access_token_ttl: Duration::from_secs(TTL_SECS),
        ..Options::default()
    })
    .await
    .unwrap();
    let url = f.get.metrics_url().unwrap();
    let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("idle-{i}")).collect();
    for account in &accounts {
        f.connect(account).await.unwrap();
    }
    let worker = f.worker_named("footprint").unwrap();
    let refreshed = Instant::now();
    let calls: Vec<_> = accounts
        .iter()
        .map(|account| {
            let (worker, account) = (worker.clone(), account.clone());
            tokio::spawn(async move {
                worker
                    .access_token(&account, "oidc", Duration::from_secs(1))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let cached = footprint(&url).await;
    assert!(
        refreshed.elapsed() < Duration::from_secs(TTL_SECS),
        "too slow to see the cache full"
    );
    assert_eq!(cached, [ACCOUNTS as f64, 0.0, 0.0, 2.0]);

    // Every token has expired, and a sweep has run since.
    tokio::time::sleep(Duration::from_secs(TTL_SECS).saturating_sub(refreshed.elapsed())).await;
    assert_eq!(footprint(&url).await, [0.0, 0.0, 0.0, 0.0]);

    // Nothing an account needs was lost with its entries.
    let again = worker
        .access_token(&accounts[0], "oidc", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(!again.secret().is_empty());
    f.stop().await.unwrap();
}
