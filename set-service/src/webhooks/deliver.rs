//! One endpoint's delivery loop: resume where the store says the endpoint stands, then POST each
//! account event in cursor order, signed, retrying with exponential backoff up to `max_attempts`,
//! recording every attempt. It holds the endpoint's settings, its signing key (in [`Endpoint`])
//! and events' non-secret data; it logs the endpoint's name, cursors and outcomes, never the URL
//! (its query may carry a credential), a body or the secret.
//!
//! Nothing here can hold up an RPC: the loop runs in its own task, every POST has a time limit,
//! and each poll costs the shared writer pool one short query (two while a backlog is larger than
//! one batch) plus one INSERT per attempt. A store that fails is retried with a growing pause,
//! never given up on. Cancelling the loop at any await (a stop) is safe: an attempt whose row was
//! not written is simply made again later (at least once).

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use tokenvault_store::{AccountEvent, DeliveryOutcome, StoreError, TokenWriter};

use super::metrics::WebhookMetrics;
use super::payload;
use super::secret::WebhookSecret;
use super::settings::WebhookConfig;

/// Events read per poll.
const BATCH: u32 = 100;
/// The first pause after the store failed; it doubles up to [`STORE_RETRY_MAX`].
const STORE_RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest pause between two tries of a failing store.
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);
/// While the store keeps failing, a warning every this many tries.
const STORE_WARN_EVERY: u32 = 50;

/// One configured endpoint, ready to deliver to.
#[derive(Debug)]
pub struct Endpoint {
    /// Its settings.
    pub config: WebhookConfig,
    /// Its signing key.
    pub secret: WebhookSecret,
    /// Its HTTP client (no redirects, the endpoint's time limits).
    pub http: reqwest::Client,
}

/// How one POST ended.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    /// The endpoint answered with this status.
    Status(StatusCode),
    /// No answer: a short, fixed description (`timeout`, `connect: connection refused`, ...).
    Error(String),
}

impl Endpoint {
    /// Delivers the account events to this endpoint, forever (the caller cancels it).
    pub async fn run(&self, store: TokenWriter, metrics: WebhookMetrics) {
        let name = self.config.name.as_str();
        let position = until_stored(name, "reading the endpoint's position", || {
            store.endpoint_position(name)
        })
        .await;
        tracing::info!(
            endpoint = name,
            after_cursor = position.done,
            failed_attempts = position.attempts,
            "webhook deliveries resume"
        );
        let (mut done, mut failed) = (position.done, position.attempts);
        loop {
            let events =
                until_stored(name, "reading events", || store.events_after(done, BATCH)).await;
            let mut pending = if events.len() < BATCH as usize {
                events.len() as i64
            } else {
                until_stored(name, "counting events", || store.count_events_after(done)).await
            };
            metrics.pending(name, pending);
            if events.is_empty() {
                tokio::time::sleep(self.config.poll()).await;
                continue;
            }
            for event in &events {
                self.deliver(event, done, failed, &store, &metrics).await;
                (done, failed) = (event.cursor, 0);
                pending = pending.saturating_sub(1);
                metrics.pending(name, pending);
            }
        }
    }

    /// Attempts `event` (the one after cursor `after`) until it is delivered or its attempts run
    /// out, `failed_before` of them having failed already (before a restart). Every attempt is
    /// recorded before the next; between attempts the pending gauge is brought up to date.
    async fn deliver(
        &self,
        event: &AccountEvent,
        after: i64,
        failed_before: i64,
        store: &TokenWriter,
        metrics: &WebhookMetrics,
    ) {
        let name = self.config.name.as_str();
        let id = payload::message_id(event.cursor);
        let body = payload::body(event);
        let mut failed = u32::try_from(failed_before.max(0)).unwrap_or(u32::MAX);
        loop {
            let attempt = failed.saturating_add(1);
            let sent = self.post(&id, &body).await;
            let (outcome, detail) = match sent {
                Sent::Status(status) if status.is_success() => (
                    DeliveryOutcome::Delivered,
                    format!("HTTP {}", status.as_u16()),
                ),
                Sent::Status(status) => (
                    self.after_failure(attempt),
                    format!("HTTP {}", status.as_u16()),
                ),
                Sent::Error(kind) => (self.after_failure(attempt), kind),
            };
            until_stored(name, "recording a delivery", || {
                store.record_delivery(event.cursor, name, i64::from(attempt), outcome, &detail)
            })
            .await;
            metrics.attempt(name, outcome);
            match outcome {
                DeliveryOutcome::Delivered => {
                    tracing::debug!(
                        endpoint = name,
                        cursor = event.cursor,
                        attempt,
                        "webhook delivered"
                    );
                    return;
                }
                DeliveryOutcome::Failed => {
                    tracing::warn!(
                        endpoint = name,
                        cursor = event.cursor,
                        attempt,
                        detail = %detail,
                        "webhook failed: attempts exhausted, the event is marked failed for this endpoint"
                    );
                    return;
                }
                DeliveryOutcome::Retrying => {
                    let pause = self.config.backoff(attempt);
                    tracing::info!(
                        endpoint = name,
                        cursor = event.cursor,
                        attempt,
                        detail = %detail,
                        retry_in_ms = pause.as_millis() as u64,
                        "webhook attempt failed; retrying"
                    );
                    failed = attempt;
                    // Events keep coming while this one is held up; a store that does not
                    // answer just leaves the gauge as it was.
                    if let Ok(pending) = store.count_events_after(after).await {
                        metrics.pending(name, pending);
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// `failed` for the last allowed attempt, else `retrying`.
    fn after_failure(&self, attempt: u32) -> DeliveryOutcome {
        if attempt >= self.config.max_attempts {
            DeliveryOutcome::Failed
        } else {
            DeliveryOutcome::Retrying
        }
    }

    /// One signed POST of `body` as message `id`, timestamped now.
    async fn post(&self, id: &str, body: &[u8]) -> Sent {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let signature = self.secret.sign(id, timestamp, body);
        let request = self
            .http
            .post(&self.config.url)
            .timeout(self.config.timeout())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec());
        // reqwest's limit covers connecting and the answer's head; this one is a backstop.
        match tokio::time::timeout(self.config.timeout(), request.send()).await {
            Err(_) => Sent::Error("timeout".into()),
            Ok(Err(e)) => Sent::Error(describe(&e)),
            // The answer's body is never read: only its status counts.
            Ok(Ok(response)) => Sent::Status(response.status()),
        }
    }
}

/// A short description of a failed request: what failed and the I/O error kind, never the URL.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut io_kind = None;
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
            break;
        }
        source = err.source();
    }
    let what = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_redirect() {
        "redirect"
    } else if e.is_body() {
        "body"
    } else {
        "request"
    };
    match io_kind {
        Some(kind) if !e.is_timeout() => format!("{what}: {kind}"),
        _ => what.to_owned(),
    }
}

/// Runs `op` until the store answers, pausing longer after each failure; warns at the first
/// failure and every [`STORE_WARN_EVERY`] after it.
async fn until_stored<T, F, Fut>(endpoint: &str, what: &'static str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pause = STORE_RETRY_MIN;
    let mut failures = 0u32;
    loop {
        match op().await {
            Ok(value) => {
                if failures > 0 {
                    tracing::info!(endpoint, failures, "webhooks: the store answers again");
                }
                return value;
            }
            Err(e) => {
                if failures.is_multiple_of(STORE_WARN_EVERY) {
                    tracing::warn!(endpoint, error = %e, "webhooks: {what} failed; retrying");
                }
                failures = failures.saturating_add(1);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(STORE_RETRY_MAX);
            }
        }
    }
}
