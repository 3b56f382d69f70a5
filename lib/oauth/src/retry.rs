//! [`Provider::refresh_with_retry`] (and
//! [`Provider::client_credentials_with_retry`]): retries transient failures
//! with exponential backoff and jitter, honouring `Retry-After`, until a
//! deadline; and the pure backoff arithmetic behind it.
//!
//! Holds a plaintext refresh token (borrowed from the caller) only for the
//! length of one call.
//!
//! Rotating providers: a refresh request the provider received may have
//! rotated the token even if its answer is slow, and an answer abandoned is a
//! rotated refresh token lost: the next attempt sends the old one, which
//! providers with reuse detection (Microsoft, Salesforce, oidc-provider)
//! answer by revoking the whole grant. So an attempt is never cut short by
//! the per-call `timeout_secs`: it may use all the time left before the
//! caller's deadline, and only failures that leave nothing to wait for
//! (refused connections, 5xx and 429 answers) are retried. A dropped
//! connection after the request was sent, or an answer later than the
//! deadline, can still lose a rotation: that window is inherent to the
//! refresh grant; the caller's "re-read the store before declaring the grant
//! dead" covers the case where another writer rotated it meanwhile.

use std::time::Duration;

use tokio::time::Instant;

use crate::{Provider, ProviderError, Refreshed, TRACE_TARGET};

/// First backoff step.
const BASE: Duration = Duration::from_millis(100);
/// Largest backoff step.
const CAP: Duration = Duration::from_secs(2);
/// Least time worth starting an attempt with: no retry is started if less
/// than this would be left before the deadline after the wait.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

impl Provider {
    /// Refreshes, retrying `Transient` failures until `deadline`: waits
    /// 100 ms, 200 ms, 400 ms, … capped at 2 s (each with jitter: between half
    /// and all of the step), or the provider's `Retry-After` if longer. Each
    /// attempt may take all the time left (not only `timeout_secs`: see the
    /// module's note on rotating providers). If the next
    /// wait would reach past the deadline, the last `Transient` error is
    /// returned at once. `GrantDead`, `Misconfigured`, `ScopeRefused`,
    /// `Unsupported` and `InvalidResponse` are returned at once, never
    /// retried.
    ///
    /// `narrowed`: the scopes to ask for instead of the configured ones (a
    /// subset of the grant's, for a provider that
    /// [narrows scopes](Provider::narrows_scopes)).
    pub async fn refresh_with_retry(
        &self,
        refresh_token: &str,
        narrowed: Option<&[String]>,
        deadline: Instant,
    ) -> Result<Refreshed, ProviderError> {
        self.retry_until(deadline, "refresh", |left| {
            self.refresh_within(refresh_token, narrowed, left)
        })
        .await
    }

    /// The client-credentials grant ([`Provider::client_credentials`]),
    /// retried like [`Provider::refresh_with_retry`]; each attempt within
    /// `timeout_secs` or the time left, whichever is shorter (no token is
    /// lost to an abandoned answer: a new one is simply asked for).
    pub async fn client_credentials_with_retry(
        &self,
        scopes: Option<&[String]>,
        deadline: Instant,
    ) -> Result<Refreshed, ProviderError> {
        self.retry_until(deadline, "client_credentials", |left| {
            self.client_credentials_within(scopes, left.min(self.timeout))
        })
        .await
    }

    /// Runs `attempt` (given the time left) until it ends in anything but
    /// `Transient`, or the next wait would reach past `deadline`.
    async fn retry_until<F, Fut>(
        &self,
        deadline: Instant,
        operation: &str,
        attempt_within: F,
    ) -> Result<Refreshed, ProviderError>
    where
        F: Fn(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<Refreshed, ProviderError>>,
    {
        let mut attempt: u32 = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProviderError::Transient {
                    reason: "the deadline passed before the provider could be asked".into(),
                    retry_after: None,
                });
            }
            let error = match attempt_within(left).await {
                Err(error @ ProviderError::Transient { .. }) => error,
                other => return other,
            };
            let wait = retry_wait(attempt, error.retry_after(), random_u32());
            if !fits(Instant::now(), deadline, wait) {
                return Err(error);
            }
            attempt = attempt.saturating_add(1);
            tracing::debug!(
                target: TRACE_TARGET,
                provider = self.name(),
                operation,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "retrying after a transient failure"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// The backoff step for retry number `attempt` (0-based): 100 ms doubling,
/// capped at 2 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP)
}

/// `step` with "equal jitter": between half of it and all of it, by `random`.
pub(crate) fn jittered(step: Duration, random: u32) -> Duration {
    let half = step / 2;
    let nanos = half.as_nanos().saturating_mul(u128::from(random)) >> 32;
    half + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The wait before retry `attempt`: the jittered backoff, or the provider's
/// `Retry-After` if that is longer.
pub(crate) fn retry_wait(attempt: u32, retry_after: Option<Duration>, random: u32) -> Duration {
    jittered(backoff(attempt), random).max(retry_after.unwrap_or(Duration::ZERO))
}

/// Whether waiting `wait` from `now` still leaves an attempt's worth of time
/// before `deadline`.
pub(crate) fn fits(now: Instant, deadline: Instant, wait: Duration) -> bool {
    now.checked_add(wait + MIN_ATTEMPT)
        .is_some_and(|start| start <= deadline)
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => u32::from_le_bytes(bytes),
        Err(_) => u32::MAX / 2,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ProviderConfig;

    #[test]
    fn backoff_doubles_and_caps() {
        let steps: Vec<u64> = (0..8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(backoff(u32::MAX), CAP);
    }

    #[test]
    fn jitter_stays_between_half_and_full() {
        let step = Duration::from_millis(400);
        assert_eq!(jittered(step, 0), Duration::from_millis(200));
        assert!(jittered(step, u32::MAX) <= step);
        assert!(jittered(step, u32::MAX) > Duration::from_millis(399));
        let mid = jittered(step, 1 << 31);
        assert_eq!(mid, Duration::from_millis(300));
    }

    #[test]
    fn retry_after_wins_when_longer() {
        assert_eq!(
            retry_wait(0, Some(Duration::from_secs(3)), u32::MAX),
            Duration::from_secs(3)
        );
        assert_eq!(
            retry_wait(2, Some(Duration::ZERO), 0),
            Duration::from_millis(200)
        );
        assert_eq!(retry_wait(9, None, 0), Duration::from_secs(1));
    }

    #[test]
    fn deadline_is_respected() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(1);
        assert!(fits(now, deadline, Duration::from_millis(900)));
        assert!(!fits(now, deadline, Duration::from_millis(990)));
        assert!(!fits(now, deadline, Duration::from_secs(3600)));
        assert!(!fits(now, now, Duration::ZERO));
    }

    /// Provider futures can be spawned on a multi-threaded runtime.
    #[allow(dead_code)]
    fn futures_are_send(p: &Provider) {
        fn send<T: Send>(_: T) {}
        send(p.refresh("x"));
        send(p.refresh_with_retry("x", None, Instant::now()));
        send(p.revoke("x"));
        send(Provider::new(
            serde_json::from_value(serde_json::Value::Null).unwrap(),
            reqwest::Client::new(),
        ));
        fn shared<T: Send + Sync>() {}
        shared::<Provider>();
    }

    /// Against a closed loopback port (connection refused: a real socket,
    /// no mock): transient failures are retried, and the last one is
    /// returned before the deadline.
    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let config: ProviderConfig = serde_json::from_value(serde_json::json!({
            "name": "closed",
            "token_endpoint": format!("http://127.0.0.1:{port}/token"),
            "client_id": "cid",
            "client_secret": "secret-value",
            "timeout_secs": 1,
        }))
        .unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let provider = Provider::new(config, http).await.unwrap();
        let started = Instant::now();
        let err = provider
            .refresh_with_retry(
                "refresh-token-value",
                None,
                started + Duration::from_millis(700),
            )
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(err.is_transient(), "{err:?}");
        assert!(!err.to_string().contains("refresh-token-value"));
        assert!(elapsed < Duration::from_millis(700), "{elapsed:?}");
        assert!(
            elapsed >= Duration::from_millis(100),
            "no retry? {elapsed:?}"
        );

        let err = provider.revoke("refresh-token-value").await.unwrap_err();
        assert!(matches!(err, ProviderError::Unsupported(_)), "{err:?}");
    }

    /// A provider slower than `timeout_secs` (a real socket that answers
    /// after 1.5 s): the one request is waited for until the deadline, never
    /// abandoned and sent again with the same refresh token (which a rotating
    /// provider would take for reuse and answer by revoking the grant).
    #[tokio::test]
    async fn a_slow_answer_is_waited_for_not_retried() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let _ = socket.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    let body = r#"{"access_token":"at","token_type":"Bearer","expires_in":60,"refresh_token":"rotated"}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        let config: ProviderConfig = serde_json::from_value(serde_json::json!({
            "name": "slow",
            "token_endpoint": format!("http://127.0.0.1:{port}/token"),
            "client_id": "cid",
            "client_secret": "secret-value",
            "timeout_secs": 1,
        }))
        .unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let provider = Provider::new(config, http).await.unwrap();
        let refreshed = provider
            .refresh_with_retry("old", None, Instant::now() + Duration::from_secs(4))
            .await
            .unwrap();
        assert_eq!(
            refreshed
                .refresh_token
                .as_ref()
                .map(|t| t.expose().to_owned()),
            Some("rotated".to_owned())
        );
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
