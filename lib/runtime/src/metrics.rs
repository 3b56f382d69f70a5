//! Prometheus metrics shared by every tokenvault service, and the plaintext
//! endpoint that serves them.
//!
//! - [`new_registry`] makes a service's registry (every name is prefixed
//!   `tokenvault_`); each service registers its families into it once at
//!   start and then hands it to [`serve`].
//! - [`HttpMetrics`] does the same by route and HTTP status for web-frontend.
//! - [`CertExpiry`] reports the seconds until this service's own certificate
//!   expires, updated by `tokenvault_tls::reload` at start and on every
//!   reload.
//! - [`serve`] runs `GET /metrics` (OpenMetrics text) on a separate
//!   plaintext listener, bounded in connections, time and size.
//!
//! Label values come from small fixed sets (RPC paths the service serves,
//! status codes, route templates, configured provider names): never from a
//! token, an account, a caller's identity or free error text.

mod endpoint;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
pub use prometheus_client::registry::Registry;

pub use endpoint::{CONTENT_TYPE, MetricsEndpoint, serve};
use tokenvault_tls::reload::CertObserver;
use tokenvault_tls::{SpiffeId, now_unix};

/// The prefix of every tokenvault metric name.
pub const PREFIX: &str = "tokenvault";

/// An empty registry whose metric names all start with `tokenvault_`.
pub fn new_registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// The buckets of every latency histogram: 1 ms doubling to about 16 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Registers `metric` in `registry` as `name` (prefixed `tokenvault_`) and
/// hands it back: metrics are cheap handles, so the registry and the code
/// that records share one.
pub fn registered<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

/// A family of latency histograms keyed by `L`.
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A new, unregistered [`LatencyFamily`].
pub fn latency_family<L>() -> LatencyFamily<L>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

/// HTTP requests by route template (e.g. `/connect/{provider}`, or
/// `unmatched`) and status code, and their latency by route.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RouteStatus, Counter>,
    duration: LatencyFamily<Route>,
}

impl HttpMetrics {
    /// Registers `http_requests` and `http_request_duration_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            requests: registered(
                registry,
                "http_requests",
                "HTTP requests by route template and status code",
                Family::default(),
            ),
            duration: registered(
                registry,
                "http_request_duration_seconds",
                "Time from request to response head, by route template",
                latency_family(),
            ),
        }
    }

    /// Records one request. `route` must come from a fixed set (a route
    /// template), never from the request's own path.
    pub fn record(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&Route {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// This service's own certificate: seconds until it expires (computed at
/// each scrape) and its notAfter. Nothing is reported before the first
/// certificate is observed (it is a `CertObserver`). Cheap to clone; clones
/// share one value.
#[derive(Debug, Clone)]
pub struct CertExpiry {
    not_after_unix: Arc<AtomicI64>,
}

/// `not_after_unix` before any certificate was observed.
const UNSET: i64 = i64::MIN;

impl CertExpiry {
    /// Registers `tls_cert_expiry_seconds` and
    /// `tls_cert_not_after_timestamp_seconds`.
    pub fn register(registry: &mut Registry) -> Self {
        let expiry = Self {
            not_after_unix: Arc::new(AtomicI64::new(UNSET)),
        };
        registry.register_collector(Box::new(expiry.clone()));
        expiry
    }

    /// The notAfter last observed, in seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> Option<i64> {
        Some(self.not_after_unix.load(Ordering::Relaxed)).filter(|v| *v != UNSET)
    }
}

impl CertObserver for CertExpiry {
    fn observe(&self, _what: &'static str, _identity: &SpiffeId, not_after_unix: i64) {
        self.not_after_unix.store(not_after_unix, Ordering::Relaxed);
    }
}

impl Collector for CertExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(not_after) = self.not_after_unix() else {
            return Ok(());
        };
        let gauges = [
            (
                "tls_cert_expiry_seconds",
                "Seconds until this service's own certificate expires (negative once expired).",
                not_after.saturating_sub(now_unix()),
            ),
            (
                "tls_cert_not_after_timestamp_seconds",
                "When this service's own certificate expires, in seconds since the Unix epoch.",
                not_after,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry)
            .unwrap_or_else(|e| unreachable!("{e}"));
        text
    }

    #[test]
    fn cert_expiry_counts_down_from_the_observed_certificate() {
        let mut registry = new_registry();
        let expiry = CertExpiry::register(&mut registry);
        assert!(
            !scrape(&registry).contains("tls_cert"),
            "nothing before a cert"
        );
        let id: SpiffeId = "spiffe://td/set-service"
            .parse()
            .unwrap_or_else(|e| unreachable!("{e}"));
        let not_after = now_unix() + 3_600;
        expiry.observe("server", &id, not_after);
        let text = scrape(&registry);
        assert!(
            text.contains(&format!(
                "tokenvault_tls_cert_not_after_timestamp_seconds {not_after}\n"
            )),
            "{text}"
        );
        let left: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix("tokenvault_tls_cert_expiry_seconds "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| unreachable!("{text}"));
        assert!((3_590..=3_600).contains(&left), "{left}");
    }

    #[test]
    fn http_metrics_label_route_and_status() {
        let mut registry = new_registry();
        let http = HttpMetrics::register(&mut registry);
        http.record("/connect/{provider}", 303, Duration::from_millis(3));
        http.record("/connect/{provider}", 303, Duration::from_millis(3));
        let text = scrape(&registry);
        assert!(
            text.contains(
                "tokenvault_http_requests_total{route=\"/connect/{provider}\",status=\"303\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tokenvault_http_request_duration_seconds_count{route=\"/connect/{provider}\"} 2\n"
            ),
            "{text}"
        );
    }
}
