//! set-service configuration: a typed TOML file with environment overrides.
//!
//! Every environment variable is a named constant below. A wrong or missing
//! setting stops start-up with a message that names the setting. The store URL
//! may carry a database password, so `Debug` redacts it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenvault_mtls::settings::{EnvOverride, load_toml, read_config_file, redact_url};
use tokenvault_mtls::{IdentityPattern, Role, TlsFiles};

use crate::error::ConfigError;

/// Path of the TOML config file (used by the binary).
pub const ENV_CONFIG: &str = "TOKENVAULT_SET_CONFIG";
/// Overrides `listen`.
pub const ENV_LISTEN: &str = "TOKENVAULT_SET_LISTEN";
/// Overrides `trust_domain`.
pub const ENV_TRUST_DOMAIN: &str = "TOKENVAULT_SET_TRUST_DOMAIN";
/// Overrides `tls.cert`.
pub const ENV_TLS_CERT: &str = "TOKENVAULT_SET_TLS_CERT";
/// Overrides `tls.key`.
pub const ENV_TLS_KEY: &str = "TOKENVAULT_SET_TLS_KEY";
/// Overrides `tls.ca`.
pub const ENV_TLS_CA: &str = "TOKENVAULT_SET_TLS_CA";
/// Overrides `tls.crl`.
pub const ENV_TLS_CRL: &str = "TOKENVAULT_SET_TLS_CRL";
/// Overrides `store.url` (for PostgreSQL, the writer role's URL).
pub const ENV_STORE_URL: &str = "TOKENVAULT_SET_STORE_URL";
/// Overrides `public_keys_dir`.
pub const ENV_PUBLIC_KEYS_DIR: &str = "TOKENVAULT_SET_PUBLIC_KEYS_DIR";
/// Overrides `providers`, comma-separated.
pub const ENV_PROVIDERS: &str = "TOKENVAULT_SET_PROVIDERS";

/// Which setting each environment variable overrides.
/// The owner role's URL for `set-service migrate` (PostgreSQL); not part of
/// the config file, since the running service never needs it.
pub const ENV_OWNER_URL: &str = "TOKENVAULT_SET_OWNER_URL";
/// Overrides `health_listen`.
pub const ENV_HEALTH_LISTEN: &str = "TOKENVAULT_SET_HEALTH_LISTEN";
/// Overrides `metrics_listen`.
pub const ENV_METRICS_LISTEN: &str = "TOKENVAULT_SET_METRICS_LISTEN";

/// Overrides `audit.database_url`.
pub const ENV_AUDIT_DATABASE_URL: &str = "TOKENVAULT_SET_AUDIT_DATABASE_URL";

const ENV_OVERRIDES: &[EnvOverride] = &[
    EnvOverride::scalar(ENV_AUDIT_DATABASE_URL, "audit.database_url"),
    EnvOverride::scalar(ENV_LISTEN, "listen"),
    EnvOverride::scalar(ENV_HEALTH_LISTEN, "health_listen"),
    EnvOverride::scalar(ENV_METRICS_LISTEN, "metrics_listen"),
    EnvOverride::scalar(ENV_TRUST_DOMAIN, "trust_domain"),
    EnvOverride::scalar(ENV_TLS_CERT, "tls.cert"),
    EnvOverride::scalar(ENV_TLS_KEY, "tls.key"),
    EnvOverride::scalar(ENV_TLS_CA, "tls.ca"),
    EnvOverride::scalar(ENV_TLS_CRL, "tls.crl"),
    EnvOverride::scalar(ENV_STORE_URL, "store.url"),
    EnvOverride::scalar(ENV_PUBLIC_KEYS_DIR, "public_keys_dir"),
    EnvOverride::list(ENV_PROVIDERS, "providers"),
];

/// The whole set-service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, e.g. `127.0.0.1:7401`.
    pub listen: SocketAddr,
    /// Optional plaintext listener, e.g. `0.0.0.0:7411`, that serves only
    /// `grpc.health.v1.Health` (no TLS, no tokens, no identities) for
    /// orchestrators' probes, which cannot present a client certificate.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// Optional plaintext listener, e.g. `127.0.0.1:7421`, that serves only
    /// `GET /metrics` (Prometheus; no tokens, no identities).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// How often the store is checked for the gRPC health status.
    #[serde(default)]
    pub health: tokenvault_mtls::health::HealthConfig,
    /// The SPIFFE trust domain of every peer.
    pub trust_domain: String,
    /// This service's certificate, key, CA bundle and CRL.
    pub tls: TlsFiles,
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
    /// The optional append-only audit table.
    #[serde(default)]
    pub audit: tokenvault_mtls::audit::AuditConfig,
    /// Size limits.
    #[serde(default)]
    pub limits: Limits,
}

/// The store connection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/tokenvault.db` or `postgres://writer@host/db`.
    pub url: String,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .finish()
    }
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
        }
    }
}

/// Size limits on input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest sealed token accepted, in bytes.
    pub max_sealed_token_bytes: usize,
    /// The largest gRPC message accepted, in bytes.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sealed_token_bytes: 8 * 1024,
            max_message_bytes: 64 * 1024,
        }
    }
}

impl Config {
    /// Reads `path`, applies overrides from `env` (a lookup such as
    /// `|k| std::env::var(k).ok()`), and checks the result.
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = read_config_file(path)?;
        Self::from_toml(&text, env)
    }

    /// Parses TOML text, applies overrides from `env`, and checks the result.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let config: Config = load_toml(text, ENV_OVERRIDES, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.health.validate()?;
        tokenvault_mtls::validate_trust_domain(&self.trust_domain).map_err(|e| {
            ConfigError::Invalid {
                setting: "trust_domain",
                reason: e.to_string(),
            }
        })?;
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
        if !(self.store.url.starts_with("sqlite:") || self.store.url.starts_with("postgres")) {
            return Err(ConfigError::Invalid {
                setting: "store.url",
                reason: "use sqlite://PATH or postgres://USER@HOST/DB".into(),
            });
        }
        if self.limits.max_sealed_token_bytes == 0
            || self.limits.max_sealed_token_bytes >= self.limits.max_message_bytes
        {
            return Err(ConfigError::Invalid {
                setting: "limits.max_sealed_token_bytes",
                reason: "must be above 0 and below limits.max_message_bytes".into(),
            });
        }
        Ok(())
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

    #[test]
    fn parses_and_applies_env_overrides() -> Result<(), ConfigError> {
        let c = Config::from_toml(GOOD, no_env)?;
        assert_eq!(c.listen.port(), 7401);
        assert_eq!(
            c.allow.disconnect_account,
            vec![IdentityPattern::Role(Role::WebFrontend)]
        );
        let env = |k: &str| match k {
            ENV_LISTEN => Some("127.0.0.1:9999".to_owned()),
            ENV_PROVIDERS => Some("a, b".to_owned()),
            ENV_TLS_CRL => Some("crl.pem".to_owned()),
            _ => None,
        };
        let c = Config::from_toml(GOOD, env)?;
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.providers, vec!["a", "b"]);
        assert_eq!(c.tls.crl, Some(PathBuf::from("crl.pem")));
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
                format!("{GOOD}\n[allow]\ndisconnect_account = [\"admin\"]\n"),
                "admin",
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
    fn a_bad_override_names_the_variable() {
        let env = |k: &str| (k == ENV_LISTEN).then(|| "nowhere".to_owned());
        match Config::from_toml(GOOD, env) {
            Ok(_) => unreachable!("accepted a bad listen address"),
            Err(e) => assert!(e.to_string().contains(ENV_LISTEN), "{e}"),
        }
    }

    #[test]
    fn debug_redacts_the_database_password() {
        let s = StoreConfig {
            url: "postgres://writer:hunter2@db/tokenvault".into(),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("writer:<redacted>@db"));
    }
}
