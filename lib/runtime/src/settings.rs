//! Loading a service's typed TOML config with environment overrides, shared
//! by every service so that they all behave alike: each override is a named
//! environment variable (`<service prefix>_<name>`) mapped to a dotted
//! setting, a wrong value is reported with the setting's name (and the
//! variable that set it), and tests pass the lookup function instead of
//! touching the process environment.
//!
//! [`ServiceSettings`] are the settings every service has (listeners, trust
//! domain, TLS files, health, audit), parsed once here; each service's config
//! adds only its own.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokenvault_tls::TlsFiles;
use tokio::net::TcpListener;

use crate::audit_gate::{AuditGate, Overflow};
use crate::health::HealthConfig;

/// A setting is missing or wrong; start-up stops with this message, which
/// names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Parse(String),
    #[error("config setting {setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    #[error("{setting}: cannot bind {addr}: {source}")]
    Bind {
        setting: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The settings every tokenvault service has, at the top level of its TOML
/// file (see [`load_service_config`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
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
    /// How often the service's dependencies are checked for the gRPC health
    /// status.
    #[serde(default)]
    pub health: HealthConfig,
    /// The SPIFFE trust domain of every peer.
    pub trust_domain: String,
    /// This service's certificate, key, CA bundle and CRL.
    pub tls: TlsFiles,
    /// The optional append-only audit table.
    #[serde(default)]
    pub audit: AuditConfig,
    /// How a stop is drained.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
}

/// The `[shutdown]` table: how a service stops on SIGTERM or Ctrl-C.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Seconds between turning the health status NOT_SERVING and refusing
    /// new connections, so that load balancers and probes move callers away
    /// first (0–60).
    pub drain_secs: u64,
    /// Seconds, from the signal, within which the service finishes in-flight
    /// calls and its own work (get-service: refreshes and storing rotated
    /// tokens) before it exits (1–600). Keep it below the orchestrator's
    /// grace period (Kubernetes: 30 s by default).
    pub grace_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_secs: 2,
            grace_secs: 25,
        }
    }
}

impl ShutdownConfig {
    /// The drain as a duration.
    pub fn drain(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }

    /// The grace period as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.drain_secs > 60 {
            return Err(ConfigError::Invalid {
                setting: "shutdown.drain_secs",
                reason: "must be between 0 and 60".into(),
            });
        }
        if !(1..=600).contains(&self.grace_secs) || self.grace_secs <= self.drain_secs {
            return Err(ConfigError::Invalid {
                setting: "shutdown.grace_secs",
                reason: "must be between 1 and 600, and longer than shutdown.drain_secs".into(),
            });
        }
        Ok(())
    }
}

impl ServiceSettings {
    /// The top-level keys of the file that belong here.
    pub const KEYS: &[&str] = &[
        "listen",
        "health_listen",
        "metrics_listen",
        "health",
        "trust_domain",
        "tls",
        "audit",
        "shutdown",
    ];

    /// The environment overrides of these settings.
    pub const OVERRIDES: &[EnvOverride] = &[
        EnvOverride::scalar(env::AUDIT_DATABASE_URL, "audit.database_url"),
        EnvOverride::scalar(env::AUDIT_ON_OVERFLOW, "audit.on_overflow"),
        EnvOverride::scalar(env::LISTEN, "listen"),
        EnvOverride::scalar(env::HEALTH_LISTEN, "health_listen"),
        EnvOverride::scalar(env::METRICS_LISTEN, "metrics_listen"),
        EnvOverride::scalar(env::TRUST_DOMAIN, "trust_domain"),
        EnvOverride::scalar(env::TLS_CERT, "tls.cert"),
        EnvOverride::scalar(env::TLS_KEY, "tls.key"),
        EnvOverride::scalar(env::TLS_CA, "tls.ca"),
        EnvOverride::scalar(env::TLS_CRL, "tls.crl"),
    ];

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.health.validate()?;
        self.shutdown.validate()?;
        self.audit.validate()?;
        tokenvault_tls::validate_trust_domain(&self.trust_domain).map_err(|e| {
            ConfigError::Invalid {
                setting: "trust_domain",
                reason: e.to_string(),
            }
        })
    }

    /// Refuses the settings a service without a gRPC health service or an
    /// audit table (web-frontend) cannot honour, so that none is silently
    /// ignored.
    pub fn refuse_grpc_only(&self, service: &str) -> Result<(), ConfigError> {
        let refuse = |setting: &'static str| {
            Err(ConfigError::Invalid {
                setting,
                reason: format!("{service} does not use it; remove it"),
            })
        };
        if self.health_listen.is_some() {
            return refuse("health_listen");
        }
        if self.health.check_interval_ms != HealthConfig::default().check_interval_ms {
            return refuse("health.check_interval_ms");
        }
        let audit = AuditConfig::default();
        if self.audit.database_url.is_some() {
            return refuse("audit.database_url");
        }
        if self.audit.on_overflow != audit.on_overflow
            || self.audit.queue_len != audit.queue_len
            || self.audit.overflow_wait_ms != audit.overflow_wait_ms
        {
            return refuse("audit");
        }

        Ok(())
    }
}

/// The `[audit]` table of a service's config.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Where the append-only `audit_events` table is, if audit events should
    /// also go there (they always go to the JSON audit log): a `postgres://`
    /// URL of a role that may INSERT into it (set-service's writer or
    /// get-service's reader role will do), or the store's `sqlite://` file.
    pub database_url: Option<String>,
    /// What happens when the table's queue is full: `block` (callers wait
    /// up to `overflow_wait_ms`, then get UNAVAILABLE; nothing unaudited is
    /// served) or `drop` (the event is left out of the table, counted and
    /// logged). See [`crate::audit_gate`].
    pub on_overflow: Overflow,
    /// How many events wait for the table at most.
    pub queue_len: usize,
    /// How long a call waits for room in the queue under `block`.
    pub overflow_wait_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            on_overflow: Overflow::Block,
            queue_len: 10_000,
            overflow_wait_ms: 2_000,
        }
    }
}

impl AuditConfig {
    /// The gate of the table's queue these settings describe.
    pub fn gate(&self) -> AuditGate {
        AuditGate::new(
            self.queue_len,
            self.on_overflow,
            Duration::from_millis(self.overflow_wait_ms),
        )
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000).contains(&self.queue_len) {
            return Err(ConfigError::Invalid {
                setting: "audit.queue_len",
                reason: "must be between 1 and 1000000".into(),
            });
        }
        if !(1..=60_000).contains(&self.overflow_wait_ms) {
            return Err(ConfigError::Invalid {
                setting: "audit.overflow_wait_ms",
                reason: "must be between 1 and 60000".into(),
            });
        }
        Ok(())
    }
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("on_overflow", &self.on_overflow)
            .field("queue_len", &self.queue_len)
            .field("overflow_wait_ms", &self.overflow_wait_ms)
            .finish()
    }
}

/// A service's listeners: the main one (`listen`) and the optional metrics
/// endpoint (`metrics_listen`). Tests bind both to port 0 themselves.
#[derive(Debug)]
pub struct Listeners {
    /// The service's own listener.
    pub main: TcpListener,
    /// The metrics endpoint's listener, if any.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// Binds `listen` and, if set, `metrics_listen`; the error names the
    /// setting.
    pub async fn bind(settings: &ServiceSettings) -> Result<Self, ConfigError> {
        let bind = |setting: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ConfigError::Bind {
                    setting,
                    addr,
                    source,
                })
        };
        let main = bind("listen", settings.listen).await?;
        let metrics = match settings.metrics_listen {
            Some(addr) => Some(bind("metrics_listen", addr).await?),
            None => None,
        };
        Ok(Self { main, metrics })
    }
}

/// Reads a config file.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// One environment override: the variable's name after the service's prefix
/// (`LISTEN` in `TOKENVAULT_SET_LISTEN`), the dotted setting it replaces, and
/// whether its value is a comma-separated list.
#[derive(Debug, Clone, Copy)]
pub struct EnvOverride {
    /// The variable's name after the prefix and `_`, e.g. `TLS_CERT`.
    pub suffix: &'static str,
    /// The dotted setting, e.g. `tls.cert`.
    pub key: &'static str,
    /// Whether the value is a comma-separated list.
    pub list: bool,
}

impl EnvOverride {
    /// A scalar override.
    pub const fn scalar(suffix: &'static str, key: &'static str) -> Self {
        Self {
            suffix,
            key,
            list: false,
        }
    }

    /// A comma-separated list override.
    pub const fn list(suffix: &'static str, key: &'static str) -> Self {
        Self {
            suffix,
            key,
            list: true,
        }
    }
}

/// The full name of an environment variable: `<prefix>_<suffix>`, e.g.
/// `env_var("TOKENVAULT_SET", env::LISTEN)` is `TOKENVAULT_SET_LISTEN`.
pub fn env_var(prefix: &str, suffix: &str) -> String {
    format!("{prefix}_{suffix}")
}

/// The variable names (after a service's prefix) that mean the same setting
/// in every service that has it.
pub mod env {
    /// `listen`.
    pub const LISTEN: &str = "LISTEN";
    /// `health_listen`.
    pub const HEALTH_LISTEN: &str = "HEALTH_LISTEN";
    /// `metrics_listen`.
    pub const METRICS_LISTEN: &str = "METRICS_LISTEN";
    /// `trust_domain`.
    pub const TRUST_DOMAIN: &str = "TRUST_DOMAIN";
    /// `tls.cert`.
    pub const TLS_CERT: &str = "TLS_CERT";
    /// `tls.key`.
    pub const TLS_KEY: &str = "TLS_KEY";
    /// `tls.ca`.
    pub const TLS_CA: &str = "TLS_CA";
    /// `tls.crl`.
    pub const TLS_CRL: &str = "TLS_CRL";
    /// `audit.database_url`.
    pub const AUDIT_DATABASE_URL: &str = "AUDIT_DATABASE_URL";
    /// `audit.on_overflow`.
    pub const AUDIT_ON_OVERFLOW: &str = "AUDIT_ON_OVERFLOW";
    /// `store.url`.
    pub const STORE_URL: &str = "STORE_URL";
    /// `public_keys_dir`.
    pub const PUBLIC_KEYS_DIR: &str = "PUBLIC_KEYS_DIR";
    /// `sealing_kid`.
    pub const SEALING_KID: &str = "SEALING_KID";
    /// `set_service.address`.
    pub const SET_SERVICE_ADDRESS: &str = "SET_SERVICE_ADDRESS";
}

/// Parses `text`, applies the overrides (`<prefix>_<suffix>`) found by `env`,
/// and deserializes. The error message names the setting (`... in
/// `tls.cert``) and, where an override supplied the value, the variable.
pub fn load_toml<T: DeserializeOwned>(
    text: &str,
    prefix: &str,
    overrides: &[EnvOverride],
    env: impl Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    let (table, applied) = parse_with_overrides(text, prefix, overrides, &env)?;
    deserialize(table, &applied)
}

/// A service's config: [`ServiceSettings`] at the top level of the file
/// beside the service's own settings. The service's config struct has a
/// field `service: ServiceSettings` and its own fields; the file stays flat.
/// The overrides are [`ServiceSettings::OVERRIDES`] and `own`.
/// `expand` sees the file's table, overrides applied, before it is
/// deserialized (a service expands its `provider = "<catalogue entry>"`
/// entries there).
pub fn load_service_config<T: DeserializeOwned>(
    text: &str,
    prefix: &str,
    own: &[EnvOverride],
    env: impl Fn(&str) -> Option<String>,
    expand: impl FnOnce(&mut toml::Table) -> Result<(), ConfigError>,
) -> Result<T, ConfigError> {
    let all: Vec<EnvOverride> = ServiceSettings::OVERRIDES
        .iter()
        .chain(own)
        .copied()
        .collect();
    let (mut table, applied) = parse_with_overrides(text, prefix, &all, &env)?;
    if table.contains_key(SERVICE_KEY) {
        return Err(ConfigError::Parse(format!("unknown field `{SERVICE_KEY}`")));
    }
    expand(&mut table)?;
    let mut service = toml::Table::new();
    for key in ServiceSettings::KEYS {
        if let Some(value) = table.remove(*key) {
            service.insert((*key).to_owned(), value);
        }
    }
    table.insert(SERVICE_KEY.to_owned(), toml::Value::Table(service));
    deserialize(table, &applied)
}

/// A service's whole config: [`ServiceSettings`] beside its own settings,
/// loaded by [`load_service_config`] and then checked.
pub trait ServiceConfig: DeserializeOwned {
    /// The prefix of its environment variables, e.g. `TOKENVAULT_SET`.
    const ENV_PREFIX: &'static str;
    /// Its own overrides, beside [`ServiceSettings::OVERRIDES`].
    const ENV_OVERRIDES: &'static [EnvOverride];

    /// Checks what serde cannot; the error names the setting.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Rewrites the file's table before it is deserialized; by default
    /// nothing. Services with providers fill `provider = "<name>"` entries
    /// from the provider catalogue here.
    fn expand(_table: &mut toml::Table) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Reads `path`, applies overrides from `env` (a lookup such as
    /// `|k| std::env::var(k).ok()`), and checks the result.
    fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_toml(&read_config_file(path)?, env)
    }

    /// Parses TOML text, applies overrides from `env`, and checks the result.
    fn from_toml(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let config: Self = load_service_config(
            text,
            Self::ENV_PREFIX,
            Self::ENV_OVERRIDES,
            env,
            Self::expand,
        )?;
        config.validate()?;
        Ok(config)
    }
}

/// The field of a service's config struct that holds [`ServiceSettings`].
const SERVICE_KEY: &str = "service";

/// The overrides applied: each setting and the variable that set it.
type Applied = Vec<(&'static str, String)>;

fn parse_with_overrides(
    text: &str,
    prefix: &str,
    overrides: &[EnvOverride],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(toml::Table, Applied), ConfigError> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let mut applied = Vec::new();
    for o in overrides {
        let var = env_var(prefix, o.suffix);
        if let Some(value) = env(&var) {
            let value = if o.list {
                toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                )
            } else {
                toml::Value::String(value)
            };
            set_dotted(&mut table, o.key, value);
            applied.push((o.key, var));
        }
    }
    Ok((table, applied))
}

fn deserialize<T: DeserializeOwned>(
    table: toml::Table,
    applied: &Applied,
) -> Result<T, ConfigError> {
    table.try_into().map_err(|e: toml::de::Error| {
        let mut msg = e.to_string().trim().replace('\n', " ");
        // ServiceSettings sit at the top level of the file.
        msg = msg.replace(&format!("`{SERVICE_KEY}."), "`");
        if let Some(stripped) = msg.strip_suffix(&format!(" in `{SERVICE_KEY}`")) {
            msg = stripped.to_owned();
        }
        if let Some((_, var)) = applied
            .iter()
            .find(|(key, _)| msg.ends_with(&format!("in `{key}`")))
        {
            msg.push_str(&format!(" (set by {var})"));
        }
        ConfigError::Parse(msg)
    })
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        Some((head, rest)) => {
            let entry = table
                .entry(head)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set_dotted(inner, rest, value);
            }
        }
        None => {
            table.insert(key.to_owned(), value);
        }
    }
}

/// Hides a password in a `scheme://user:password@host` URL, and drops the
/// query string (which may carry `password=`).
pub fn redact_url(url: &str) -> String {
    if let Some((base, _)) = url.split_once('?') {
        return format!("{}?<redacted>", redact_url(base));
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:<redacted>{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://w:hunter2@db/tv"),
            "postgres://w:<redacted>@db/tv"
        );
        assert!(!redact_url("postgres://db/tv?password=hunter2").contains("hunter2"));
        assert_eq!(redact_url("sqlite://state/x.db"), "sqlite://state/x.db");
    }
}
