//! The `[[webhooks]]` entries of set-service's config: where each endpoint is, the file its
//! signing secret is in, and how deliveries are paced. Holds paths and numbers only, never the
//! secret itself (see [`super::secret`]); `Debug` shows nothing secret.
//!
//! The entries are a list of tables, so no environment variable overrides them (as with
//! get-service's `[[providers]]`): set them in the file.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::{Host, Url};

use crate::error::ConfigError;

/// The most endpoints: each has its own delivery task, and every attempt is a row in the store.
pub const MAX_WEBHOOKS: usize = 16;
/// The longest endpoint name (the store's `endpoint` column and a metric label).
pub const MAX_NAME_CHARS: usize = 64;
/// The most attempts per event.
pub const MAX_ATTEMPTS: u32 = 1000;
/// The longest pause between attempts: a day.
pub const MAX_BACKOFF_MS: u64 = 86_400_000;
/// The longest time one POST may take.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// The shortest time one POST may take.
pub const MIN_TIMEOUT_MS: u64 = 10;
/// The poll interval's bounds.
pub const MIN_POLL_MS: u64 = 10;
/// The longest poll interval.
pub const MAX_POLL_MS: u64 = 60_000;

/// One webhook endpoint (`[[webhooks]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The endpoint's name: 1-64 of `A-Z a-z 0-9 . _ -`, unique. Deliveries are recorded and
    /// counted under it, so renaming an endpoint starts it again from the first event.
    pub name: String,
    /// Where events are POSTed: `https://`, or `http://` to a loopback address.
    pub url: String,
    /// A file (mode 0600 or 0400) holding the Standard Webhooks secret, `whsec_<base64>`.
    pub secret_file: PathBuf,
    /// Attempts per event before it is recorded `failed` and the next one goes out.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// The pause after the first failed attempt; it doubles with each further one.
    #[serde(default = "defaults::initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// The longest pause between two attempts.
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// The time limit of one POST, connecting included.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// How often the store is asked for new events while there are none.
    #[serde(default = "defaults::poll_ms")]
    pub poll_ms: u64,
}

mod defaults {
    pub fn max_attempts() -> u32 {
        12
    }
    pub fn initial_backoff_ms() -> u64 {
        1000
    }
    pub fn max_backoff_ms() -> u64 {
        300_000
    }
    pub fn timeout_ms() -> u64 {
        5000
    }
    pub fn poll_ms() -> u64 {
        500
    }
}

impl WebhookConfig {
    /// An endpoint with the default pacing.
    pub fn new(name: &str, url: &str, secret_file: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            secret_file,
            max_attempts: defaults::max_attempts(),
            initial_backoff_ms: defaults::initial_backoff_ms(),
            max_backoff_ms: defaults::max_backoff_ms(),
            timeout_ms: defaults::timeout_ms(),
            poll_ms: defaults::poll_ms(),
        }
    }

    /// The pause after `failed` failed attempts of one event (at least 1): the initial backoff,
    /// doubled for each further failure, at most the maximum.
    pub fn backoff(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(63);
        let ms = self
            .initial_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_ms);
        Duration::from_millis(ms)
    }

    /// The time limit of one POST.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The poll interval.
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }

    /// Checks one entry; the error names the setting and the endpoint.
    fn validate(&self) -> Result<(), ConfigError> {
        let name = &self.name;
        let bad = |setting: &'static str, reason: String| ConfigError::Invalid {
            setting,
            reason: format!("endpoint {name:?}: {reason}"),
        };
        let name_ok = !name.is_empty()
            && name.chars().count() <= MAX_NAME_CHARS
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            return Err(ConfigError::Invalid {
                setting: "webhooks.name",
                reason: format!(
                    "{name:?} is not 1-{MAX_NAME_CHARS} characters of A-Z, a-z, 0-9, '.', '_', '-'"
                ),
            });
        }
        check_url(&self.url).map_err(|reason| bad("webhooks.url", reason))?;
        if self.secret_file.as_os_str().is_empty() {
            return Err(bad("webhooks.secret_file", "is empty".into()));
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(bad(
                "webhooks.max_attempts",
                format!("must be 1 to {MAX_ATTEMPTS}"),
            ));
        }
        if !(1..=MAX_BACKOFF_MS).contains(&self.max_backoff_ms) {
            return Err(bad(
                "webhooks.max_backoff_ms",
                format!("must be 1 to {MAX_BACKOFF_MS}"),
            ));
        }
        if !(1..=self.max_backoff_ms).contains(&self.initial_backoff_ms) {
            return Err(bad(
                "webhooks.initial_backoff_ms",
                "must be at least 1 and at most webhooks.max_backoff_ms".into(),
            ));
        }
        if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(bad(
                "webhooks.timeout_ms",
                format!("must be {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}"),
            ));
        }
        if !(MIN_POLL_MS..=MAX_POLL_MS).contains(&self.poll_ms) {
            return Err(bad(
                "webhooks.poll_ms",
                format!("must be {MIN_POLL_MS} to {MAX_POLL_MS}"),
            ));
        }
        Ok(())
    }
}

/// Checks every entry, and that names are unique and there are not too many.
pub fn validate(webhooks: &[WebhookConfig]) -> Result<(), ConfigError> {
    if webhooks.len() > MAX_WEBHOOKS {
        return Err(ConfigError::Invalid {
            setting: "webhooks",
            reason: format!("at most {MAX_WEBHOOKS} endpoints"),
        });
    }
    let mut names = HashSet::new();
    for webhook in webhooks {
        webhook.validate()?;
        if !names.insert(webhook.name.as_str()) {
            return Err(ConfigError::Invalid {
                setting: "webhooks.name",
                reason: format!("{:?} names two endpoints", webhook.name),
            });
        }
    }
    Ok(())
}

/// An absolute `https://` URL, or `http://` to a loopback address (`127.0.0.0/8`, `[::1]`,
/// `localhost`); no user name or password in it (the secret signs, nothing else authenticates),
/// no fragment. The reason does not echo the URL.
fn check_url(text: &str) -> Result<(), String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => return Err("has no host".into()),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("must be https:// (http:// only to a loopback address)".into()),
        other => Err(format!("scheme {other:?}: must be https://")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn entry() -> WebhookConfig {
        WebhookConfig::new("crm", "https://hooks.example.com/tv", "whsec.txt".into())
    }

    #[test]
    fn defaults_and_backoff() {
        let w = entry();
        assert_eq!(
            (w.max_attempts, w.initial_backoff_ms, w.max_backoff_ms),
            (12, 1000, 300_000)
        );
        assert_eq!((w.timeout_ms, w.poll_ms), (5000, 500));
        let ms = |n| w.backoff(n).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [1000, 2000, 4000, 8000]);
        assert_eq!(ms(9), 256_000);
        assert_eq!(ms(10), 300_000);
        assert_eq!(ms(u32::MAX), 300_000);
        assert_eq!(ms(0), 1000);
        let small = WebhookConfig {
            initial_backoff_ms: 30,
            max_backoff_ms: 100,
            ..entry()
        };
        assert_eq!(
            (1..=4)
                .map(|n| small.backoff(n).as_millis())
                .collect::<Vec<_>>(),
            [30, 60, 100, 100]
        );
    }

    #[test]
    fn urls() {
        for good in [
            "https://hooks.example.com/x?y=1",
            "http://127.0.0.1:8080/hook",
            "http://127.9.9.9/",
            "http://[::1]:9/",
            "http://localhost:3000/",
            "https://10.0.0.1/",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("http://hooks.example.com/", "https"),
            ("http://10.0.0.1/", "https"),
            ("ftp://127.0.0.1/", "scheme"),
            ("https://user:pw@example.com/", "password"),
            ("https://example.com/#x", "fragment"),
            ("not a url", "not a URL"),
            ("/relative", "not a URL"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: Vec<(WebhookConfig, &str)> = vec![
            (
                WebhookConfig {
                    name: String::new(),
                    ..entry()
                },
                "webhooks.name",
            ),
            (
                WebhookConfig {
                    name: "x".repeat(65),
                    ..entry()
                },
                "webhooks.name",
            ),
            (
                WebhookConfig {
                    name: "a b".into(),
                    ..entry()
                },
                "webhooks.name",
            ),
            (
                WebhookConfig {
                    url: "http://example.com/".into(),
                    ..entry()
                },
                "webhooks.url",
            ),
            (
                WebhookConfig {
                    secret_file: PathBuf::new(),
                    ..entry()
                },
                "webhooks.secret_file",
            ),
            (
                WebhookConfig {
                    max_attempts: 0,
                    ..entry()
                },
                "webhooks.max_attempts",
            ),
            (
                WebhookConfig {
                    initial_backoff_ms: 0,
                    ..entry()
                },
                "webhooks.initial_backoff_ms",
            ),
            (
                WebhookConfig {
                    initial_backoff_ms: 500_000,
                    ..entry()
                },
                "webhooks.initial_backoff_ms",
            ),
            (
                WebhookConfig {
                    max_backoff_ms: MAX_BACKOFF_MS + 1,
                    ..entry()
                },
                "webhooks.max_backoff_ms",
            ),
            (
                WebhookConfig {
                    timeout_ms: 5,
                    ..entry()
                },
                "webhooks.timeout_ms",
            ),
            (
                WebhookConfig {
                    timeout_ms: MAX_TIMEOUT_MS + 1,
                    ..entry()
                },
                "webhooks.timeout_ms",
            ),
            (
                WebhookConfig {
                    poll_ms: 0,
                    ..entry()
                },
                "webhooks.poll_ms",
            ),
        ];
        for (webhook, setting) in cases {
            match validate(std::slice::from_ref(&webhook)) {
                Ok(()) => panic!("accepted {webhook:?}"),
                Err(e) => assert!(e.to_string().contains(setting), "{e} should name {setting}"),
            }
        }
        let twice = validate(&[entry(), entry()]).unwrap_err().to_string();
        assert!(
            twice.contains("webhooks.name") && twice.contains("two"),
            "{twice}"
        );
        let many: Vec<WebhookConfig> = (0..=MAX_WEBHOOKS)
            .map(|i| WebhookConfig {
                name: format!("e{i}"),
                ..entry()
            })
            .collect();
        assert!(validate(&many).is_err());
        assert!(validate(&many[..MAX_WEBHOOKS]).is_ok());
    }
}
