//! What the gRPC health status reports: a [`HealthMonitor`] runs a service's
//! named checks (e.g. "the store answers", "the keys seal and open") every
//! `health.check_interval_ms`, and sets the health service's status for the
//! service and for the whole server (`""`) to NOT_SERVING while any check
//! fails ([`FAILED_ROUNDS`] rounds in a row, so one slow round does not drain
//! the instance), and back to SERVING once all pass. Each change is logged as a
//! warning on the `tokenvault::health` target, and each check's state is a
//! metric (`tokenvault_health_check_ok{check}`).
//!
//! A check's error text is logged, so checks must return messages without
//! secrets (store and key errors in this workspace never carry one).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use tokio_util::task::AbortOnDropHandle;

/// The tracing target of health transitions.
pub const HEALTH_TARGET: &str = "tokenvault::health";

/// The longest one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How many check rounds in a row must fail before the status turns
/// NOT_SERVING (after the first round).
pub const FAILED_ROUNDS: u32 = 2;

/// The `[health]` section of a service's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Milliseconds between health checks (100–600000).
    pub check_interval_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval_ms: 5_000,
        }
    }
}

impl HealthConfig {
    /// Checks the range; the error names the setting.
    pub fn validate(&self) -> Result<(), crate::settings::ConfigError> {
        if !(100..=600_000).contains(&self.check_interval_ms) {
            return Err(crate::settings::ConfigError::Invalid {
                setting: "health.check_interval_ms",
                reason: "must be between 100 and 600000".into(),
            });
        }
        Ok(())
    }

    /// The interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.check_interval_ms)
    }
}

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type CheckFn = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: &'static str,
}

/// Runs named checks periodically and drives a [`HealthReporter`].
pub struct HealthMonitor {
    reporter: HealthReporter,
    services: Vec<String>,
    interval: Duration,
    checks: Vec<(&'static str, CheckFn)>,
    gauge: Family<CheckLabel, Gauge>,
}

impl std::fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("services", &self.services)
            .field("interval", &self.interval)
            .field(
                "checks",
                &self.checks.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl HealthMonitor {
    /// A monitor that sets the status of `service` (e.g.
    /// `tokenvault.v1.SetService`) and of the whole server through
    /// `reporter`, checking every `interval`.
    pub fn new(reporter: HealthReporter, service: &str, interval: Duration) -> Self {
        Self {
            reporter,
            services: vec![String::new(), service.to_owned()],
            interval,
            checks: Vec::new(),
            gauge: Family::default(),
        }
    }

    /// Adds the check `name`; `check` returns `Err(reason)` when unusable.
    pub fn check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: CheckFn = Arc::new(move || Box::pin(check()));
        self.checks.push((name, check));
        self
    }

    /// Registers `health_check_ok` (1 while the check passes, 0 while not).
    pub fn register(self, registry: &mut Registry) -> Self {
        registry.register(
            "health_check_ok",
            "Whether a health check passes (1) or not (0); any 0 makes the gRPC health status NOT_SERVING",
            self.gauge.clone(),
        );
        self
    }

    /// Runs every check once and sets the status accordingly, then keeps
    /// checking in a background task until the returned guard is dropped.
    pub async fn start(self) -> AbortOnDropHandle<()> {
        let mut state = State::default();
        self.round(&mut state).await;
        AbortOnDropHandle::new(tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                self.round(&mut state).await;
            }
        }))
    }

    async fn round(&self, state: &mut State) {
        let mut all_ok = true;
        for (name, check) in &self.checks {
            let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("timed out after {} s", CHECK_TIMEOUT.as_secs())),
            };
            let ok = outcome.is_ok();
            all_ok &= ok;
            self.gauge
                .get_or_create(&CheckLabel { check: name })
                .set(i64::from(ok));
            let before = state.checks.insert(name, ok);
            match outcome {
                Err(reason) if before != Some(false) => {
                    tracing::warn!(target: HEALTH_TARGET, check = name, %reason, "health check failed");
                }
                Ok(()) if before == Some(false) => {
                    tracing::warn!(target: HEALTH_TARGET, check = name, "health check passes again");
                }
                _ => {}
            }
        }
        // One failed round (a busy pool, a slow HSM) does not drain the
        // instance: NOT_SERVING takes FAILED_ROUNDS in a row, except at start.
        state.failed_rounds = if all_ok { 0 } else { state.failed_rounds + 1 };
        let all_ok = all_ok || (state.serving.is_some() && state.failed_rounds < FAILED_ROUNDS);
        if state.serving == Some(all_ok) {
            return;
        }
        let (status, label) = if all_ok {
            (ServingStatus::Serving, "SERVING")
        } else {
            (ServingStatus::NotServing, "NOT_SERVING")
        };
        for service in &self.services {
            self.reporter
                .set_service_status(service.as_str(), status)
                .await;
        }
        if state.serving.is_some() || !all_ok {
            tracing::warn!(target: HEALTH_TARGET, services = ?self.services, status = label, "gRPC health status changed");
        }
        state.serving = Some(all_ok);
    }
}

#[derive(Debug, Default)]
struct State {
    serving: Option<bool>,
    failed_rounds: u32,
    checks: HashMap<&'static str, bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn status_follows_the_checks() {
        let (reporter, _service) = tonic_health::server::health_reporter();
        let healthy = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&healthy);
        let mut registry = Registry::default();
        let _running = HealthMonitor::new(reporter, "p.S", Duration::from_millis(20))
            .check("store", move || {
                let ok = flag.load(Ordering::SeqCst);
                async move { if ok { Ok(()) } else { Err("down".into()) } }
            })
            .register(&mut registry)
            .start()
            .await;
        let scrape = |registry: &Registry| {
            let mut text = String::new();
            let _ = prometheus_client::encoding::text::encode(&mut text, registry);
            text
        };
        assert!(scrape(&registry).contains("health_check_ok{check=\"store\"} 0"));
        healthy.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !scrape(&registry).contains("health_check_ok{check=\"store\"} 1") {
            assert!(tokio::time::Instant::now() < deadline, "never recovered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
