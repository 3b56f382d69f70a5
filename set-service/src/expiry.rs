//! The expiry watch: when a provider said when a stored refresh token expires
//! (`refresh_token_expires_in`, recorded with the token), one `expiring`
//! account event is appended `warn_days` before, while the token is still the
//! account's newest and the account is active, so that the application can
//! ask its user to reconnect in time. It reads and writes non-secret columns
//! only; several set-service replicas may run it at once (the store keeps
//! one event per token).

use std::time::Duration;

use serde::Deserialize;
use tokenvault_runtime::settings::ConfigError;
use tokenvault_store::TokenWriter;
use tokenvault_tls::now_unix;
use tokio::sync::watch;

/// Tokens looked at per store call.
const BATCH: u32 = 500;

/// `[expiry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpiryConfig {
    /// How many days before a refresh token expires its `expiring` event is
    /// sent (fractions allowed).
    pub warn_days: f64,
    /// How often to look, in seconds.
    pub interval_secs: u64,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self {
            warn_days: 7.0,
            interval_secs: 600,
        }
    }
}

impl ExpiryConfig {
    /// Checks the ranges; errors name the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.warn_days > 0.0 && self.warn_days <= 365.0) {
            return Err(ConfigError::Invalid {
                setting: "expiry.warn_days",
                reason: format!(
                    "must be more than 0 and at most 365, got {}",
                    self.warn_days
                ),
            });
        }
        if !(1..=86_400).contains(&self.interval_secs) {
            return Err(ConfigError::Invalid {
                setting: "expiry.interval_secs",
                reason: format!("must be between 1 and 86400, got {}", self.interval_secs),
            });
        }
        Ok(())
    }

    fn warn(&self) -> i64 {
        // In range (validated): at most 365 days of seconds.
        (self.warn_days * 86_400.0) as i64
    }
}

/// Runs until `stopped` turns true: every interval, appends the due
/// `expiring` events. A store that does not answer is tried again at the
/// next interval.
pub async fn watch_expiries(
    store: TokenWriter,
    config: ExpiryConfig,
    mut stopped: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.interval_secs);
    loop {
        loop {
            match store
                .record_expiring(now_unix().saturating_add(config.warn()), BATCH)
                .await
            {
                Ok(n) if n == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "the expiry watch could not read the store; trying again later");
                    break;
                }
            }
        }
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert!(ExpiryConfig::default().validate().is_ok());
        for (warn_days, interval_secs) in [(0.0, 600), (400.0, 600), (f64::NAN, 600), (7.0, 0)] {
            let bad = ExpiryConfig {
                warn_days,
                interval_secs,
            };
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let tiny = ExpiryConfig {
            warn_days: 1.0 / 86_400.0,
            interval_secs: 1,
        };
        assert_eq!(tiny.warn(), 1);
    }
}
