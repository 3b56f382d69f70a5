//! [`RefreshMetrics`]: refresh-grant calls per provider, how long they took,
//! and the failed ones by reason. The reason is [`ProviderError::kind`], a
//! fixed set (`grant_dead`, `transient`, `misconfigured`, `unsupported`,
//! `invalid_response`), never a provider's error text; the provider label is
//! a configured provider name.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokenvault_runtime::metrics::{LatencyFamily, Registry, latency_family, registered};

use crate::ProviderError;

/// The `provider` label (a configured provider name), of these metrics and
/// the broker's cache metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    provider: String,
}

impl ProviderLabel {
    /// The label of `provider`.
    pub fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderReason {
    provider: String,
    reason: &'static str,
}

/// Refresh-grant metrics, shared by every provider. Cheap to clone; the
/// default reports nowhere.
#[derive(Debug, Clone)]
pub struct RefreshMetrics {
    refreshes: Family<ProviderLabel, Counter>,
    failures: Family<ProviderReason, Counter>,
    duration: LatencyFamily<ProviderLabel>,
}

impl Default for RefreshMetrics {
    fn default() -> Self {
        Self {
            refreshes: Family::default(),
            failures: Family::default(),
            duration: latency_family(),
        }
    }
}

impl RefreshMetrics {
    /// Registers `provider_refreshes`, `provider_refresh_failures` and
    /// `provider_refresh_duration_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            refreshes: registered(
                registry,
                "provider_refreshes",
                "Refresh-grant requests sent to a provider's token endpoint (each retry counts)",
                Family::default(),
            ),
            failures: registered(
                registry,
                "provider_refresh_failures",
                "Failed refresh-grant requests by provider and reason (grant_dead, transient, misconfigured, unsupported, invalid_response)",
                Family::default(),
            ),
            duration: registered(
                registry,
                "provider_refresh_duration_seconds",
                "Time of one refresh-grant request, by provider",
                latency_family(),
            ),
        }
    }

    /// Records one refresh-grant attempt at `provider`.
    pub(crate) fn record<T>(
        &self,
        provider: &str,
        result: &Result<T, ProviderError>,
        took: Duration,
    ) {
        let label = ProviderLabel::new(provider);
        self.refreshes.get_or_create(&label).inc();
        self.duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if let Err(e) = result {
            self.failures
                .get_or_create(&ProviderReason {
                    provider: provider.to_owned(),
                    reason: e.kind(),
                })
                .inc();
        }
    }
}
