//! Webhooks: set-service POSTs every account event to each configured endpoint, signed as the
//! Standard Webhooks specification says, at least once, in cursor order (so in order per
//! account), with retries and exponential backoff, recording every attempt in the store.
//!
//! set-service sends them because it writes the events (the outbox) and already holds the
//! writer role that may append delivery rows, while holding no key that could open a token: its
//! new egress to the application's endpoints carries nothing usable if abused. get-service keeps
//! no new egress and no write right (docs/ARCHITECTURE.md, *Account events and webhooks*).
//!
//! This module holds the endpoints' settings and signing keys ([`secret`], wiped on drop, never
//! logged) and non-secret event data; never a token.
//!
//! - [`settings`]: the `[[webhooks]]` config entries and their checks;
//! - [`secret`]: the `whsec_` secret and the signature;
//! - [`payload`]: the message id and JSON body of an event;
//! - [`deliver`]: one endpoint's delivery loop;
//! - [`metrics`]: the dispatcher's metrics;
//! - here: [`prepare`] (read the secrets, build the HTTP clients) and [`Dispatcher`] (one
//!   background task that, while this replica holds the store's dispatch lock, runs a delivery
//!   task per endpoint, and stops with set-service's shutdown future).

mod deliver;
pub mod metrics;
pub mod payload;
pub mod secret;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use tokenvault_store::TokenWriter;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;

pub use deliver::Endpoint;
pub use metrics::WebhookMetrics;
pub use secret::WebhookSecret;
pub use settings::WebhookConfig;

use crate::error::{ConfigError, ServeError};

/// How often a replica that does not hold the dispatch lock (or could not reach the store) tries
/// to take it.
const LOCK_RETRY: Duration = Duration::from_secs(5);
/// How often the holder checks that its lock session is still alive.
const LOCK_CHECK: Duration = Duration::from_secs(5);
/// The longest that check may take before the lock counts as lost.
const LOCK_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stop waits for the dispatcher before abandoning it.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Reads each endpoint's secret file and builds its HTTP client. The error names the setting
/// and the endpoint, never the secret.
pub fn prepare(configs: &[WebhookConfig]) -> Result<Vec<Arc<Endpoint>>, ServeError> {
    configs
        .iter()
        .map(|config| {
            let secret = WebhookSecret::read(&config.secret_file).map_err(|reason| {
                ConfigError::Invalid {
                    setting: "webhooks.secret_file",
                    reason: format!(
                        "endpoint {:?}: {}: {reason}",
                        config.name,
                        config.secret_file.display()
                    ),
                }
            })?;
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(config.timeout())
                .timeout(config.timeout())
                .pool_max_idle_per_host(1)
                .user_agent(concat!(
                    "tokenvault-set-service/",
                    env!("CARGO_PKG_VERSION")
                ))
                .build()
                .map_err(|e| ServeError::Webhooks(format!("endpoint {:?}: {e}", config.name)))?;
            Ok(Arc::new(Endpoint {
                config: config.clone(),
                secret,
                http,
            }))
        })
        .collect()
}

/// The running dispatcher; aborted if dropped.
#[derive(Debug)]
pub struct Dispatcher {
    task: Option<AbortOnDropHandle<()>>,
}

impl Dispatcher {
    /// Starts delivering to `endpoints` (nothing, for none) until `stop` turns true or its sender
    /// is dropped.
    pub fn start(
        endpoints: Vec<Arc<Endpoint>>,
        store: TokenWriter,
        metrics: WebhookMetrics,
        mut stop: watch::Receiver<bool>,
    ) -> Self {
        if endpoints.is_empty() {
            return Self { task: None };
        }
        let task = tokio::spawn(async move {
            tokio::select! {
                () = stopped(&mut stop) => {}
                () = supervise(endpoints, store, metrics) => {}
            }
        });
        Self {
            task: Some(AbortOnDropHandle::new(task)),
        }
    }

    /// Waits (briefly) for the dispatcher to finish after its stop; a POST in flight is
    /// abandoned and sent again after the next start.
    pub async fn join(mut self) {
        if let Some(task) = self.task.take()
            && tokio::time::timeout(STOP_WAIT, task).await.is_err()
        {
            tracing::warn!("the webhook dispatcher did not stop in time; abandoned");
        }
    }
}

/// Resolves once `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Forever: take the dispatch lock (one replica dispatches), run one delivery task per endpoint
/// while it is held, stop them when it is lost, and try again. Dropping this future (the stop)
/// aborts the delivery tasks and releases the lock.
async fn supervise(endpoints: Vec<Arc<Endpoint>>, store: TokenWriter, metrics: WebhookMetrics) {
    let mut standing_by = false;
    loop {
        let mut lock = match store.try_dispatch_lock().await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                if !standing_by {
                    tracing::info!(
                        "another set-service replica dispatches the webhooks; standing by"
                    );
                    standing_by = true;
                }
                tokio::time::sleep(LOCK_RETRY).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: cannot take the dispatch lock; retrying");
                tokio::time::sleep(LOCK_RETRY).await;
                continue;
            }
        };
        standing_by = false;
        tracing::info!(endpoints = endpoints.len(), "dispatching webhooks");
        let mut tasks = JoinSet::new();
        for endpoint in &endpoints {
            let (endpoint, store, metrics) = (endpoint.clone(), store.clone(), metrics.clone());
            tasks.spawn(async move { endpoint.run(store, metrics).await });
        }
        loop {
            tokio::time::sleep(LOCK_CHECK).await;
            let held = tokio::time::timeout(LOCK_CHECK_TIMEOUT, lock.still_held())
                .await
                .unwrap_or(false);
            if !held {
                tracing::warn!(
                    "webhooks: the dispatch lock's database session broke; \
                     pausing deliveries until the lock is taken again"
                );
                break;
            }
        }
        tasks.shutdown().await;
        drop(lock);
    }
}
