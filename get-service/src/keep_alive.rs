//! Keep-alive: grants nobody has used for their provider's `keep_alive_days` are refreshed in
//! the background, before a provider that expires idle refresh tokens (Microsoft after 90 days
//! of disuse, Xero after 60) lets them die. A grant counts as idle when its newest refresh token
//! was stored (connected, or rotated by a refresh) before the window and this get-service has not
//! refreshed it within the window either; after a restart that errs towards one refresh too
//! many, never one too few. Each refresh goes through the broker: single-flight with workers'
//! refreshes, the rotated token durable as usual, a dead grant recorded (and its event sent) as
//! usual. This module holds no token.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokenvault_runtime::metrics::{Registry, registered};
use tokenvault_store::{AccountFilter, TokenStatus};
use tokenvault_tls::now_unix;
use tokio_util::sync::CancellationToken;

use crate::account::AccountKey;
use crate::broker::Broker;
use crate::error::TokenError;

/// Accounts read from the store per page.
const PAGE: u32 = 500;
/// The longest pause between two scans.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest (for windows of seconds, as in tests).
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// `tokenvault_keep_alive_refreshes_total{provider, outcome}` (the registry adds the prefix).
#[derive(Debug, Clone, Default)]
pub struct KeepAliveMetrics {
    refreshes: Family<Labels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    provider: String,
    outcome: &'static str,
}

impl KeepAliveMetrics {
    /// Registers the counter.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            refreshes: registered(
                registry,
                "keep_alive_refreshes",
                "Background refreshes of idle grants, by provider and outcome (refreshed, dead, failed)",
                Family::default(),
            ),
        }
    }
}

/// How often to look for idle grants: a tenth of the shortest window, within bounds.
fn interval(windows: &[(Arc<str>, Duration)]) -> Duration {
    windows
        .iter()
        .map(|(_, idle)| *idle / 10)
        .min()
        .unwrap_or(MAX_INTERVAL)
        .clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Runs until `stop`: every interval, refreshes each active account idle for its provider's
/// window, one at a time.
pub async fn run(broker: Broker, metrics: KeepAliveMetrics, stop: CancellationToken) {
    let windows = broker.keep_alive_providers();
    if windows.is_empty() {
        return;
    }
    let every = interval(&windows);
    tracing::info!(
        providers = ?windows.iter().map(|(p, idle)| format!("{p}: {}s", idle.as_secs())).collect::<Vec<_>>(),
        interval_secs = every.as_secs(),
        "keep-alive refreshes idle grants"
    );
    loop {
        for (provider, idle) in &windows {
            if stop.is_cancelled() {
                return;
            }
            scan(&broker, &metrics, provider, *idle, &stop).await;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One pass over `provider`'s active accounts.
async fn scan(
    broker: &Broker,
    metrics: &KeepAliveMetrics,
    provider: &Arc<str>,
    idle: Duration,
    stop: &CancellationToken,
) {
    let since = now_unix().saturating_sub(i64::try_from(idle.as_secs()).unwrap_or(i64::MAX));
    let filter = AccountFilter {
        provider: Some(provider.to_string()),
        status: Some(TokenStatus::Active),
        ..AccountFilter::default()
    };
    let mut after: Option<(String, String)> = None;
    loop {
        let page = match broker
            .reader()
            .list_accounts(
                &filter,
                after.as_ref().map(|(a, p)| (a.as_str(), p.as_str())),
                PAGE,
            )
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(%provider, error = %e, "keep-alive could not read the accounts; trying again at the next scan");
                return;
            }
        };
        let full = page.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
        after = page.last().map(|s| (s.account.clone(), s.provider.clone()));
        for summary in page {
            if stop.is_cancelled() {
                return;
            }
            let key = AccountKey::with_provider(&summary.account, Arc::clone(provider));
            if summary.token_stored_at_unix >= since || broker.refreshed_since(&key, since) {
                continue;
            }
            let outcome = match broker.refresh_now(key).await {
                Ok(_) => "refreshed",
                Err(TokenError::ReauthorizationRequired(_)) => "dead",
                Err(e) => {
                    tracing::warn!(account = %summary.account, %provider, error = %e, "keep-alive refresh failed; trying again at the next scan");
                    "failed"
                }
            };
            if outcome != "failed" {
                tracing::info!(account = %summary.account, %provider, outcome, "keep-alive refresh of an idle grant");
            }
            metrics
                .refreshes
                .get_or_create(&Labels {
                    provider: provider.to_string(),
                    outcome,
                })
                .inc();
        }
        if !full {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_a_tenth_of_the_shortest_window_within_bounds() {
        let w = |secs: u64| (Arc::from("p"), Duration::from_secs(secs));
        assert_eq!(interval(&[w(90 * 86_400)]), MAX_INTERVAL);
        assert_eq!(interval(&[w(90 * 86_400), w(600)]), Duration::from_secs(60));
        assert_eq!(interval(&[w(2)]), MIN_INTERVAL);
    }
}
