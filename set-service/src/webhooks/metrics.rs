//! The webhook dispatcher's metrics, registered in set-service's registry at start. Labels are
//! configured endpoint names and a closed list of outcomes: never an account, a URL or error text.
//!
//! - `tokenvault_webhook_deliveries_total{endpoint,outcome}`: delivery attempts, by how they
//!   ended (`delivered`, `retrying`, `failed`);
//! - `tokenvault_webhook_events_failed_total{endpoint}`: events given up after `max_attempts`;
//! - `tokenvault_webhook_pending_events{endpoint}`: events after the endpoint's position, as of
//!   its last poll.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokenvault_runtime::metrics::{Registry, registered};
use tokenvault_store::DeliveryOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointOutcome {
    endpoint: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: String,
}

/// The dispatcher's metric families (cheap handles, shared with the registry).
#[derive(Clone, Debug, Default)]
pub struct WebhookMetrics {
    deliveries: Family<EndpointOutcome, Counter>,
    failed: Family<Endpoint, Counter>,
    pending: Family<Endpoint, Gauge>,
}

impl WebhookMetrics {
    /// Registers the families, with a zero series for each of `endpoints`.
    pub fn register(registry: &mut Registry, endpoints: &[&str]) -> Self {
        let metrics = Self {
            deliveries: registered(
                registry,
                "webhook_deliveries",
                "Webhook delivery attempts, by endpoint and outcome (delivered, retrying, failed)",
                Family::default(),
            ),
            failed: registered(
                registry,
                "webhook_events_failed",
                "Account events given up for a webhook endpoint after max_attempts",
                Family::default(),
            ),
            pending: registered(
                registry,
                "webhook_pending_events",
                "Account events not yet delivered to (or given up for) a webhook endpoint, as of its last poll",
                Family::default(),
            ),
        };
        for endpoint in endpoints {
            for outcome in [
                DeliveryOutcome::Delivered,
                DeliveryOutcome::Retrying,
                DeliveryOutcome::Failed,
            ] {
                metrics
                    .deliveries
                    .get_or_create(&EndpointOutcome {
                        endpoint: (*endpoint).to_owned(),
                        outcome: outcome.as_str(),
                    })
                    .inc_by(0);
            }
            metrics.failed.get_or_create(&label(endpoint)).inc_by(0);
            metrics.pending.get_or_create(&label(endpoint)).set(0);
        }
        metrics
    }

    /// Counts one attempt of `endpoint` that ended with `outcome`; a `failed` one also counts a
    /// failed event.
    pub fn attempt(&self, endpoint: &str, outcome: DeliveryOutcome) {
        self.deliveries
            .get_or_create(&EndpointOutcome {
                endpoint: endpoint.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
        if outcome == DeliveryOutcome::Failed {
            self.failed.get_or_create(&label(endpoint)).inc();
        }
    }

    /// Sets `endpoint`'s pending events.
    pub fn pending(&self, endpoint: &str, events: i64) {
        self.pending.get_or_create(&label(endpoint)).set(events);
    }
}

fn label(endpoint: &str) -> Endpoint {
    Endpoint {
        endpoint: endpoint.to_owned(),
    }
}
