//! get-service configuration: a typed TOML file with environment overrides
//! named as constants. A wrong or missing setting stops start-up with a
//! message that names it. Provider client secrets are held by
//! [`ProviderConfig`] and never printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenvault_mtls::settings::{EnvOverride, load_toml, read_config_file, redact_url};
use tokenvault_mtls::{IdentityPattern, Role, TlsFiles};

use crate::error::ConfigError;
use crate::provider::ProviderConfig;

/// Path of the TOML config file (used by the binary).
pub const ENV_CONFIG: &str = "TOKENVAULT_GET_CONFIG";
/// Overrides `listen`.
pub const ENV_LISTEN: &str = "TOKENVAULT_GET_LISTEN";
/// Overrides `trust_domain`.
pub const ENV_TRUST_DOMAIN: &str = "TOKENVAULT_GET_TRUST_DOMAIN";
/// Overrides `tls.cert`.
pub const ENV_TLS_CERT: &str = "TOKENVAULT_GET_TLS_CERT";
/// Overrides `tls.key`.
pub const ENV_TLS_KEY: &str = "TOKENVAULT_GET_TLS_KEY";
/// Overrides `tls.ca`.
pub const ENV_TLS_CA: &str = "TOKENVAULT_GET_TLS_CA";
/// Overrides `tls.crl`.
pub const ENV_TLS_CRL: &str = "TOKENVAULT_GET_TLS_CRL";
/// Overrides `store.url` (for PostgreSQL, the reader role's URL).
pub const ENV_STORE_URL: &str = "TOKENVAULT_GET_STORE_URL";
/// Overrides `private_keys_dir`.
pub const ENV_PRIVATE_KEYS_DIR: &str = "TOKENVAULT_GET_PRIVATE_KEYS_DIR";
/// Overrides `public_keys_dir`.
pub const ENV_PUBLIC_KEYS_DIR: &str = "TOKENVAULT_GET_PUBLIC_KEYS_DIR";
/// Overrides `set_service.address`.
pub const ENV_SET_SERVICE_ADDRESS: &str = "TOKENVAULT_GET_SET_SERVICE_ADDRESS";
/// Overrides `sealing_kid`.
pub const ENV_SEALING_KID: &str = "TOKENVAULT_GET_SEALING_KID";

/// Overrides `health_listen`.
pub const ENV_HEALTH_LISTEN: &str = "TOKENVAULT_GET_HEALTH_LISTEN";
/// Overrides `metrics_listen`.
pub const ENV_METRICS_LISTEN: &str = "TOKENVAULT_GET_METRICS_LISTEN";

/// Overrides `pkcs11.pin_file` (the PKCS#11 user PIN's file).
pub const ENV_PKCS11_PIN_FILE: &str = "TOKENVAULT_GET_PKCS11_PIN_FILE";

/// Overrides `audit.database_url`.
pub const ENV_AUDIT_DATABASE_URL: &str = "TOKENVAULT_GET_AUDIT_DATABASE_URL";

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
    EnvOverride::scalar(ENV_PRIVATE_KEYS_DIR, "private_keys_dir"),
    EnvOverride::scalar(ENV_PUBLIC_KEYS_DIR, "public_keys_dir"),
    EnvOverride::scalar(ENV_SEALING_KID, "sealing_kid"),
    EnvOverride::scalar(ENV_SET_SERVICE_ADDRESS, "set_service.address"),
    EnvOverride::scalar(ENV_PKCS11_PIN_FILE, "pkcs11.pin_file"),
];

/// The whole get-service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, e.g. `127.0.0.1:7402`.
    pub listen: SocketAddr,
    /// Optional plaintext listener, e.g. `0.0.0.0:7412`, that serves only
    /// `grpc.health.v1.Health` (no TLS, no tokens, no identities) for
    /// orchestrators' probes, which cannot present a client certificate.
    #[serde(default)]
    pub health_listen: Option<SocketAddr>,
    /// Optional plaintext listener, e.g. `127.0.0.1:7422`, that serves only
    /// `GET /metrics` (Prometheus; no tokens, no identities).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// How often the store and the keys are checked for the gRPC health
    /// status.
    #[serde(default)]
    pub health: tokenvault_mtls::health::HealthConfig,
    /// The SPIFFE trust domain of every peer.
    pub trust_domain: String,
    /// This service's certificate, key, CA bundle and CRL; also used as the
    /// client certificate towards set-service.
    pub tls: TlsFiles,
    /// Where sealed tokens are read from (read-only).
    pub store: StoreConfig,
    /// Directory of token-encryption private keys (`<kid>.pem`, mode 0600).
    pub private_keys_dir: PathBuf,
    /// Directory of token-encryption public keys, for sealing rotated tokens.
    pub public_keys_dir: PathBuf,
    /// The key id that seals (rotated tokens, and `get-service reseal`).
    /// Optional: without it the newest file in `public_keys_dir` (by
    /// modification time) seals, and a copy that resets modification times
    /// can change which one that is; naming it makes the choice explicit.
    #[serde(default)]
    pub sealing_kid: Option<String>,
    /// Where rotated refresh tokens and account statuses are written.
    pub set_service: SetServiceConfig,
    /// The provider catalogue.
    pub providers: Vec<ProviderConfig>,
    /// Access-token cache behaviour.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Who may call which RPC.
    #[serde(default)]
    pub allow: AllowConfig,
    /// The optional append-only audit table.
    #[serde(default)]
    pub audit: tokenvault_mtls::audit::AuditConfig,
    /// Revoking disconnected accounts' grants at their providers.
    #[serde(default)]
    pub revocation: RevocationConfig,
    /// Optional: a private key held in a PKCS#11 token, beside (or instead
    /// of) the key files; `private_keys_dir` may then hold no key file.
    #[serde(default)]
    pub pkcs11: Option<crate::pkcs11::Pkcs11Config>,
}

/// Revoking disconnected accounts' grants at their providers (RFC 7009).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {
    /// Seconds between sweeps for disconnected accounts to revoke (1–86400).
    pub interval_secs: u64,
    /// The most tokens handled in one sweep (1–10000).
    pub batch_size: u32,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            interval_secs: 10,
            batch_size: 100,
        }
    }
}

/// The store connection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/tokenvault.db` (opened read-only) or
    /// `postgres://reader@host/db`.
    pub url: String,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// How to reach set-service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetServiceConfig {
    /// `host:port`; the host is checked against set-service's certificate.
    pub address: String,
}

/// Access-token cache behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Refresh in the background once a cached token has less than this
    /// many seconds left, so that workers rarely wait.
    pub refresh_ahead_secs: u64,
    /// How long a dead grant is remembered, so that the provider is not
    /// asked again for it.
    pub negative_ttl_secs: u64,
    /// How long one caller may wait for a refresh, retries included.
    pub refresh_deadline_secs: u64,
    /// A cached token is served without looking at the store for at most
    /// this long; then the store is read once more, so that a disconnect
    /// stops tokens within this many seconds.
    pub revalidate_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            refresh_ahead_secs: 60,
            negative_ttl_secs: 300,
            refresh_deadline_secs: 10,
            revalidate_secs: 5,
        }
    }
}

/// Per-RPC allow-lists: role names (`worker`) or exact SPIFFE IDs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowConfig {
    /// Who may call `GetAccessToken`.
    pub get_access_token: Vec<IdentityPattern>,
    /// Who may call `GetAccountStatus`.
    pub get_account_status: Vec<IdentityPattern>,
}

impl Default for AllowConfig {
    fn default() -> Self {
        Self {
            get_access_token: vec![IdentityPattern::Role(Role::Worker)],
            get_account_status: vec![IdentityPattern::Role(Role::Worker)],
        }
    }
}

impl Config {
    /// Reads `path`, applies overrides from `env`, and checks the result.
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
        let invalid =
            |setting: &'static str, reason: String| ConfigError::Invalid { setting, reason };
        self.health.validate()?;
        tokenvault_mtls::validate_trust_domain(&self.trust_domain)
            .map_err(|e| invalid("trust_domain", e.to_string()))?;
        if self.providers.is_empty() {
            return Err(invalid(
                "providers",
                "configure at least one provider".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.providers {
            p.validate()
                .map_err(|reason| invalid("providers", reason))?;
            if !names.insert(p.name.as_str()) {
                return Err(invalid(
                    "providers",
                    format!("provider {:?} is configured twice", p.name),
                ));
            }
        }
        if !(self.store.url.starts_with("sqlite:") || self.store.url.starts_with("postgres")) {
            return Err(invalid(
                "store.url",
                "use sqlite://PATH or postgres://USER@HOST/DB".into(),
            ));
        }
        if self
            .audit
            .database_url
            .as_deref()
            .is_some_and(|url| url.starts_with("sqlite:"))
        {
            // SQLite has no roles: a writable handle on the store's file would
            // let get-service write tokens, which only set-service may.
            return Err(invalid(
                "audit.database_url",
                "get-service cannot write an audit table in SQLite (it would hold write access to \
                 the token store); use PostgreSQL's reader role, or keep audit events in the JSON log"
                    .into(),
            ));
        }
        if !(1..=86_400).contains(&self.revocation.interval_secs) {
            return Err(invalid(
                "revocation.interval_secs",
                "must be between 1 and 86400".into(),
            ));
        }
        if !(1..=10_000).contains(&self.revocation.batch_size) {
            return Err(invalid(
                "revocation.batch_size",
                "must be between 1 and 10000".into(),
            ));
        }
        if let Some(pkcs11) = &self.pkcs11 {
            pkcs11
                .validate()
                .map_err(|reason| invalid("pkcs11", reason))?;
        }
        if self.cache.refresh_deadline_secs == 0 {
            return Err(invalid(
                "cache.refresh_deadline_secs",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
