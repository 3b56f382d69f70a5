//! set-service configuration: a typed TOML file with environment overrides.
//!
//! Every environment variable is a named constant: the settings every service
//! shares are [`ServiceSettings`], overridden by `TOKENVAULT_SET_` followed
//! by the names in [`tokenvault_runtime::settings::env`] (e.g.
//! `TOKENVAULT_SET_LISTEN`); set-service's own are below. A wrong or missing
//! setting stops start-up with a message that names the setting. The store
//! URL may carry a database password: [`StoreConfig`]'s `Debug` redacts it.

use std::path::PathBuf;

use serde::Deserialize;
use tokenvault_runtime::settings::{EnvOverride, ServiceConfig, ServiceSettings, env};
pub use tokenvault_store::StoreConfig;
use tokenvault_tls::{IdentityPattern, Role};

use crate::error::ConfigError;
pub use crate::expiry::ExpiryConfig;
pub use crate::webhooks::WebhookConfig;
use tokenvault_limits::{MAX_SEALED_TOKEN_LEN, SET_SERVICE_MAX_MESSAGE_BYTES};

/// Path of the TOML config file (used by the binary).
pub const ENV_CONFIG: &str = "TOKENVAULT_SET_CONFIG";
/// The prefix of every set-service environment variable.
pub const ENV_PREFIX: &str = "TOKENVAULT_SET";
/// `TOKENVAULT_SET_PROVIDERS` overrides `providers`, comma-separated.
pub const ENV_PROVIDERS: &str = "PROVIDERS";
/// The owner role's URL for `set-service migrate` (PostgreSQL); not part of
/// the config file, since the running service never needs it.
pub const ENV_OWNER_URL: &str = "TOKENVAULT_SET_OWNER_URL";

/// set-service's own overrides, beside [`ServiceSettings::OVERRIDES`].
const ENV_OVERRIDES: &[EnvOverride] = &[
    EnvOverride::scalar(env::STORE_URL, "store.url"),
    EnvOverride::scalar(env::PUBLIC_KEYS_DIR, "public_keys_dir"),
    EnvOverride::list(ENV_PROVIDERS, "providers"),
];

/// The whole set-service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners, trust domain, TLS files, health, audit.
    pub service: ServiceSettings,
    /// Where sealed tokens go.
    pub store: StoreConfig,
    /// Directory of token-encryption public keys (`<kid>.pem`): a sealed
    /// token must name one of these key ids.
    pub public_keys_dir: PathBuf,
    /// The provider names that may be stored (the provider catalogue).
    pub providers: Vec<String>,
    /// Who may call which RPC.
    #[serde(default)]
    pub allow: AllowConfig,
    /// Size limits.
    #[serde(default)]
    pub limits: Limits,
    /// Webhook endpoints (`[[webhooks]]`) that receive every account event. A list of tables:
    /// no environment variable overrides it.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// When to announce that a refresh token expires (`[expiry]`).
    #[serde(default)]
    pub expiry: ExpiryConfig,
}

/// Per-RPC allow-lists: role names (`worker`) or exact SPIFFE IDs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowConfig {
    /// Who may call `StoreRefreshToken`.
    pub store_refresh_token: Vec<IdentityPattern>,
    /// Who may call `DisconnectAccount`.
    pub disconnect_account: Vec<IdentityPattern>,
    /// Who may call `RecordAccountStatus`.
    pub record_account_status: Vec<IdentityPattern>,
    /// Who may call `RecordRevocation`.
    pub record_revocation: Vec<IdentityPattern>,
    /// Who may call `ResealRefreshToken` (key rotation's re-seal job).
    pub reseal_refresh_token: Vec<IdentityPattern>,
    /// Who may call `ShareAccessToken` (get-service replicas).
    pub share_access_token: Vec<IdentityPattern>,
}

impl Default for AllowConfig {
    fn default() -> Self {
        Self {
            store_refresh_token: vec![
                IdentityPattern::Role(Role::WebFrontend),
                IdentityPattern::Role(Role::GetService),
            ],
            disconnect_account: vec![IdentityPattern::Role(Role::WebFrontend)],
            record_account_status: vec![
                IdentityPattern::Role(Role::GetService),
                IdentityPattern::Role(Role::WebFrontend),
            ],
            record_revocation: vec![IdentityPattern::Role(Role::GetService)],
            reseal_refresh_token: vec![IdentityPattern::Role(Role::GetService)],
            share_access_token: vec![IdentityPattern::Role(Role::GetService)],
        }
    }
}

/// Size limits on input. Each may only lower the limit the code enforces
/// (`tokenvault_limits`); a config that raises one is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest sealed token accepted, in bytes: at most
    /// [`MAX_SEALED_TOKEN_LEN`] (the default).
    pub max_sealed_token_bytes: usize,
    /// The largest gRPC message accepted, in bytes: at most
    /// [`SET_SERVICE_MAX_MESSAGE_BYTES`] (the default).
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sealed_token_bytes: MAX_SEALED_TOKEN_LEN,
            max_message_bytes: SET_SERVICE_MAX_MESSAGE_BYTES,
        }
    }
}

impl Limits {
    /// Refuses a limit above the code's, or a sealed token that could not fit
    /// in a message.
    fn validate(&self) -> Result<(), ConfigError> {
        let at_most = |setting: &'static str, value: usize, max: usize| {
            if value > max {
                Err(ConfigError::Invalid {
                    setting,
                    reason: format!(
                        "{value} is above {max}, the most tokenvault accepts; \
                         this setting can only lower it"
                    ),
                })
            } else {
                Ok(())
            }
        };
        at_most(
            "limits.max_sealed_token_bytes",
            self.max_sealed_token_bytes,
            MAX_SEALED_TOKEN_LEN,
        )?;
        at_most(
            "limits.max_message_bytes",
            self.max_message_bytes,
            SET_SERVICE_MAX_MESSAGE_BYTES,
        )?;
        if self.max_sealed_token_bytes == 0 || self.max_sealed_token_bytes >= self.max_message_bytes
        {
            return Err(ConfigError::Invalid {
                setting: "limits.max_sealed_token_bytes",
                reason: "must be above 0 and below limits.max_message_bytes".into(),
            });
        }
        Ok(())
    }
}

impl ServiceConfig for Config {
    const ENV_PREFIX: &'static str = ENV_PREFIX;
    const ENV_OVERRIDES: &'static [EnvOverride] = ENV_OVERRIDES;

    fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()?;
        if self.providers.is_empty() {
            return Err(ConfigError::Invalid {
                setting: "providers",
                reason: "list at least one provider name".into(),
            });
        }
        if let Some(bad) = self
            .providers
            .iter()
            .find(|p| crate::validate::provider_name(p).is_err())
        {
            return Err(ConfigError::Invalid {
                setting: "providers",
                reason: format!(
                    "{bad:?} is not a valid provider name (1-64 of a-z, 0-9, '-', '_')"
                ),
            });
        }
        self.store.validate()?;
        self.limits.validate()?;
        self.expiry.validate()?;
        crate::webhooks::settings::validate(&self.webhooks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:7401"
trust_domain = "tokenvault.local"
public_keys_dir = "state/keys/public"
providers = ["google", "github"]
[tls]
cert = "c.pem"
key = "k.pem"
ca = "ca.pem"
[store]
url = "sqlite://state/tokenvault.db"
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn var(suffix: &str) -> String {
        tokenvault_runtime::settings::env_var(ENV_PREFIX, suffix)
    }

    #[test]
    fn parses_and_applies_env_overrides() -> Result<(), ConfigError> {
        let c = Config::from_toml(GOOD, no_env)?;
        assert_eq!(c.service.listen.port(), 7401);
        assert_eq!(
            c.allow.disconnect_account,
            vec![IdentityPattern::Role(Role::WebFrontend)]
        );
        let env = |k: &str| {
            if k == var(env::LISTEN) {
                Some("127.0.0.1:9999".to_owned())
            } else if k == var(ENV_PROVIDERS) {
                Some("a, b".to_owned())
            } else if k == "TOKENVAULT_SET_TLS_CRL" {
                Some("crl.pem".to_owned())
            } else {
                None
            }
        };
        let c = Config::from_toml(GOOD, env)?;
        assert_eq!(c.service.listen.port(), 9999);
        assert_eq!(c.providers, vec!["a", "b"]);
        assert_eq!(c.service.tls.crl, Some(PathBuf::from("crl.pem")));
        Ok(())
    }

    #[test]
    fn errors_name_the_setting() {
        let cases = [
            (GOOD.replace("listen = \"127.0.0.1:7401\"\n", ""), "listen"),
            (GOOD.replace("127.0.0.1:7401", "nowhere"), "in `listen`"),
            (
                GOOD.replace("tokenvault.local", "Bad Domain"),
                "trust_domain",
            ),
            (
                GOOD.replace("cert = \"c.pem\"\n", ""),
                "missing field `cert` in `tls`",
            ),
            (GOOD.replace("sqlite://", "mysql://"), "store.url"),
            (GOOD.replace("[\"google\", \"github\"]", "[]"), "providers"),
            (
                format!("{GOOD}\n[allow]\ndisconnect_account = [\"operator\"]\n"),
                "operator",
            ),
            (format!("{GOOD}\nbogus = 1\n"), "bogus"),
        ];
        for (text, needle) in cases {
            match Config::from_toml(&text, no_env) {
                Ok(_) => unreachable!("accepted a config without {needle}"),
                Err(e) => assert!(e.to_string().contains(needle), "{e} should name {needle}"),
            }
        }
    }

    #[test]
    fn limits_can_only_be_lowered() -> Result<(), ConfigError> {
        let with = |limits: &str| format!("{GOOD}\n[limits]\n{limits}\n");
        let lower = Config::from_toml(
            &with("max_sealed_token_bytes = 4096\nmax_message_bytes = 16384"),
            no_env,
        )?;
        assert_eq!(lower.limits.max_sealed_token_bytes, 4096);
        assert_eq!(lower.limits.max_message_bytes, 16384);
        let default = Config::from_toml(GOOD, no_env)?;
        assert_eq!(default.limits.max_sealed_token_bytes, MAX_SEALED_TOKEN_LEN);
        assert_eq!(
            default.limits.max_message_bytes,
            SET_SERVICE_MAX_MESSAGE_BYTES
        );
        let cases = [
            (
                format!("max_sealed_token_bytes = {}", MAX_SEALED_TOKEN_LEN + 1),
                "limits.max_sealed_token_bytes",
                MAX_SEALED_TOKEN_LEN,
            ),
            (
                format!("max_message_bytes = {}", SET_SERVICE_MAX_MESSAGE_BYTES + 1),
                "limits.max_message_bytes",
                SET_SERVICE_MAX_MESSAGE_BYTES,
            ),
        ];
        for (limits, setting, max) in cases {
            match Config::from_toml(&with(&limits), no_env) {
                Ok(_) => unreachable!("accepted {limits}"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains(setting), "{e} should name {setting}");
                    assert!(e.contains(&format!("above {max}")), "{e} should say {max}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn webhooks_parse_with_defaults_and_are_checked() -> Result<(), ConfigError> {
        let none = Config::from_toml(GOOD, no_env)?;
        assert!(none.webhooks.is_empty());
        let hooks = r#"
[[webhooks]]
name = "crm"
url = "https://hooks.example.com/tokenvault"
secret_file = "state/crm.whsec"

[[webhooks]]
name = "local"
url = "http://127.0.0.1:9000/hook"
secret_file = "state/local.whsec"
max_attempts = 3
initial_backoff_ms = 10
max_backoff_ms = 40
timeout_ms = 250
poll_ms = 20
"#;
        let c = Config::from_toml(&format!("{GOOD}{hooks}"), no_env)?;
        assert_eq!(
            c.webhooks,
            vec![
                WebhookConfig::new(
                    "crm",
                    "https://hooks.example.com/tokenvault",
                    "state/crm.whsec".into()
                ),
                WebhookConfig {
                    max_attempts: 3,
                    initial_backoff_ms: 10,
                    max_backoff_ms: 40,
                    timeout_ms: 250,
                    poll_ms: 20,
                    ..WebhookConfig::new(
                        "local",
                        "http://127.0.0.1:9000/hook",
                        "state/local.whsec".into()
                    )
                },
            ]
        );
        let cases = [
            (
                hooks.replace("https://hooks", "http://hooks"),
                "webhooks.url",
            ),
            (hooks.replace("\"local\"", "\"crm\""), "webhooks.name"),
            (
                hooks.replace("max_attempts = 3", "max_attempts = 0"),
                "webhooks.max_attempts",
            ),
            (
                hooks.replace("poll_ms = 20", "poll_ms = 0"),
                "webhooks.poll_ms",
            ),
            (
                hooks.replace("secret_file = \"state/crm.whsec\"\n", ""),
                "secret_file",
            ),
            (
                hooks.replace("poll_ms = 20", "poll_ms = 20\nsecret = \"x\""),
                "secret",
            ),
        ];
        for (text, needle) in cases {
            match Config::from_toml(&format!("{GOOD}{text}"), no_env) {
                Ok(_) => unreachable!("accepted webhooks without {needle}"),
                Err(e) => assert!(e.to_string().contains(needle), "{e} should name {needle}"),
            }
        }
        Ok(())
    }

    #[test]
    fn a_bad_override_names_the_variable() {
        let env = |k: &str| (k == "TOKENVAULT_SET_LISTEN").then(|| "nowhere".to_owned());
        match Config::from_toml(GOOD, env) {
            Ok(_) => unreachable!("accepted a bad listen address"),
            Err(e) => assert!(e.to_string().contains("TOKENVAULT_SET_LISTEN"), "{e}"),
        }
    }
}
