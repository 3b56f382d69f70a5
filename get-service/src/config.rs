//! get-service configuration: a typed TOML file with environment overrides
//! named as constants. A wrong or missing setting stops start-up with a
//! message that names it. Provider client secrets are held by
//! [`ProviderConfig`] and never printed.
//!
//! The settings every service shares (listeners, trust domain, TLS files,
//! health, audit) are [`ServiceSettings`]; the variables that override them
//! are `TOKENVAULT_GET_` followed by the names in
//! [`tokenvault_runtime::settings::env`] (e.g. `TOKENVAULT_GET_LISTEN`).

use std::path::PathBuf;

use serde::Deserialize;
use tokenvault_oauth::{ProviderConfig, RefreshSettings};
use tokenvault_opener::pkcs11::Pkcs11Config;
use tokenvault_runtime::settings::{EnvOverride, ServiceConfig, ServiceSettings, env};
pub use tokenvault_store::StoreConfig;
use tokenvault_tls::{IdentityPattern, Role};

use crate::error::ConfigError;

/// Path of the TOML config file (used by the binary).
pub const ENV_CONFIG: &str = "TOKENVAULT_GET_CONFIG";
/// The prefix of every get-service environment variable.
pub const ENV_PREFIX: &str = "TOKENVAULT_GET";
/// `TOKENVAULT_GET_PRIVATE_KEYS_DIR` overrides `private_keys_dir`.
pub const ENV_PRIVATE_KEYS_DIR: &str = "PRIVATE_KEYS_DIR";
/// `TOKENVAULT_GET_PKCS11_PIN_FILE` overrides `pkcs11.pin_file` (the
/// PKCS#11 user PIN's file).
pub const ENV_PKCS11_PIN_FILE: &str = "PKCS11_PIN_FILE";

/// `TOKENVAULT_GET_JOURNAL_DIR` overrides `rotation.journal_dir`.
pub const ENV_JOURNAL_DIR: &str = "JOURNAL_DIR";

/// `TOKENVAULT_GET_POLICY_FILE` overrides `policy.file`.
pub const ENV_POLICY_FILE: &str = "POLICY_FILE";

/// get-service's own overrides, beside [`ServiceSettings::OVERRIDES`].
const ENV_OVERRIDES: &[EnvOverride] = &[
    EnvOverride::scalar(env::STORE_URL, "store.url"),
    EnvOverride::scalar(ENV_PRIVATE_KEYS_DIR, "private_keys_dir"),
    EnvOverride::scalar(env::PUBLIC_KEYS_DIR, "public_keys_dir"),
    EnvOverride::scalar(env::SEALING_KID, "sealing_kid"),
    EnvOverride::scalar(env::SET_SERVICE_ADDRESS, "set_service.address"),
    EnvOverride::scalar(ENV_PKCS11_PIN_FILE, "pkcs11.pin_file"),
    EnvOverride::scalar(ENV_JOURNAL_DIR, "rotation.journal_dir"),
    EnvOverride::scalar(ENV_POLICY_FILE, "policy.file"),
];

/// The whole get-service configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners, trust domain, TLS files (this service's certificate, also
    /// used as the client certificate towards set-service), health, audit.
    pub service: ServiceSettings,
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
    /// Which caller may read which accounts ([`crate::policy`]).
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Revoking disconnected accounts' grants at their providers.
    #[serde(default)]
    pub revocation: RevocationConfig,
    /// Optional: a private key held in a PKCS#11 token, beside (or instead
    /// of) the key files; `private_keys_dir` may then hold no key file.
    #[serde(default)]
    pub pkcs11: Option<Pkcs11Config>,
    /// Rotated refresh tokens.
    #[serde(default)]
    pub rotation: RotationConfig,
    /// The account inventory (`ListAccounts`, `WatchAccountEvents`).
    #[serde(default)]
    pub inventory: InventoryConfig,
}

/// The account inventory's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// How often an open `WatchAccountEvents` stream looks for new events,
    /// in milliseconds (10–60000).
    pub poll_ms: u64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self { poll_ms: 500 }
    }
}

impl InventoryConfig {
    /// [`InventoryConfig::poll_ms`] as a duration.
    pub fn poll(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.poll_ms)
    }
}

/// What happens to a provider's rotated refresh token before the worker gets
/// the access token that came with it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotationConfig {
    /// Where rotated refresh tokens are journaled, sealed with the public
    /// key, while set-service cannot store them (mode 0700, created if
    /// missing; keep it on a disk that outlives the process: a persistent
    /// volume, not a pod's emptyDir). Without it, a rotation set-service
    /// cannot store is kept in memory only, and the worker gets UNAVAILABLE
    /// rather than a token whose grant a crash could lose.
    pub journal_dir: Option<PathBuf>,
}

/// Where the account policy's rules are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The rule file ([`crate::policy`] has its format), re-read when it
    /// changes and on SIGHUP; it must hold at least one rule. Without it
    /// every caller the allow-lists admit may read every account.
    pub file: Option<PathBuf>,
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
    /// Every this many seconds, expired tokens and dead grants no longer
    /// remembered leave the cache (and the cache gauges are updated).
    pub sweep_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            refresh_ahead_secs: 60,
            negative_ttl_secs: 300,
            refresh_deadline_secs: 10,
            revalidate_secs: 5,
            sweep_secs: 30,
        }
    }
}

/// Per-RPC allow-lists: role names (`worker`) or exact SPIFFE IDs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllowConfig {
    /// Who may call `GetAccessToken`.
    pub get_access_token: Vec<IdentityPattern>,
    /// Who may call `GetClientAccessToken` (default `worker`).
    pub get_client_access_token: Vec<IdentityPattern>,
    /// Who may call `GetAccountStatus`.
    pub get_account_status: Vec<IdentityPattern>,
    /// Who may call `AccountInventory.ListAccounts` (default `admin`).
    pub list_accounts: Vec<IdentityPattern>,
    /// Who may call `AccountInventory.WatchAccountEvents` (default `admin`).
    pub watch_account_events: Vec<IdentityPattern>,
}

impl Default for AllowConfig {
    fn default() -> Self {
        Self {
            get_access_token: vec![IdentityPattern::Role(Role::Worker)],
            get_client_access_token: vec![IdentityPattern::Role(Role::Worker)],
            get_account_status: vec![IdentityPattern::Role(Role::Worker)],
            list_accounts: vec![IdentityPattern::Role(Role::Admin)],
            watch_account_events: vec![IdentityPattern::Role(Role::Admin)],
        }
    }
}

impl ServiceConfig for Config {
    const ENV_PREFIX: &'static str = ENV_PREFIX;
    const ENV_OVERRIDES: &'static [EnvOverride] = ENV_OVERRIDES;

    /// `provider = "<catalogue entry>"` entries get the catalogue's facts.
    fn expand(table: &mut toml::Table) -> Result<(), ConfigError> {
        let catalogue = tokenvault_catalogue::catalogue()
            .map_err(|e| ConfigError::Parse(format!("provider catalogue: {e}")))?;
        tokenvault_catalogue::expand::expand_providers::<RefreshSettings>(&catalogue, table)
            .map_err(|reason| ConfigError::Invalid {
                setting: "providers",
                reason,
            })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |setting: &'static str, reason: String| ConfigError::Invalid { setting, reason };
        self.service.validate()?;
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
        self.store.validate()?;
        if self
            .service
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
        if !(10..=60_000).contains(&self.inventory.poll_ms) {
            return Err(invalid(
                "inventory.poll_ms",
                "must be between 10 and 60000".into(),
            ));
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
