//! web-frontend configuration: a typed TOML file with environment overrides
//! named as constants. A wrong or missing setting stops start-up with a
//! message that names it. Provider client secrets live in [`ProviderConfig`]
//! and are never printed; the cookie key and the link secret are read from
//! files named here, never written into the config itself.

use std::path::PathBuf;

use serde::Deserialize;
use tokenvault_oauth::checks::check_endpoint;
use tokenvault_runtime::settings::{ConfigError, EnvOverride, ServiceConfig, ServiceSettings, env};
use url::Url;

use crate::provider::{ConnectSettings, ProviderConfig};

/// Path of the TOML config file (used by the binary).
pub const ENV_CONFIG: &str = "TOKENVAULT_WEB_CONFIG";
/// The prefix of every web-frontend environment variable: the shared
/// settings' names ([`tokenvault_runtime::settings::env`]) and those below
/// follow it, e.g. `TOKENVAULT_WEB_LISTEN`.
pub const ENV_PREFIX: &str = "TOKENVAULT_WEB";
/// `TOKENVAULT_WEB_PUBLIC_URL` overrides `public_url`.
pub const ENV_PUBLIC_URL: &str = "PUBLIC_URL";
/// `TOKENVAULT_WEB_COOKIE_KEY_FILE` overrides `session.cookie_key_file`.
pub const ENV_COOKIE_KEY_FILE: &str = "COOKIE_KEY_FILE";
/// `TOKENVAULT_WEB_LINK_SECRET_FILE` overrides `links.secret_file`.
pub const ENV_LINK_SECRET_FILE: &str = "LINK_SECRET_FILE";

/// web-frontend's own overrides, beside [`ServiceSettings::OVERRIDES`].
const ENV_OVERRIDES: &[EnvOverride] = &[
    EnvOverride::scalar(ENV_PUBLIC_URL, "public_url"),
    EnvOverride::scalar(env::SET_SERVICE_ADDRESS, "set_service.address"),
    EnvOverride::scalar(env::PUBLIC_KEYS_DIR, "public_keys_dir"),
    EnvOverride::scalar(env::SEALING_KID, "sealing_kid"),
    EnvOverride::scalar(ENV_COOKIE_KEY_FILE, "session.cookie_key_file"),
    EnvOverride::scalar(ENV_LINK_SECRET_FILE, "links.secret_file"),
];

/// The whole web-frontend configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `listen` (plain HTTP, e.g. `127.0.0.1:7400`: put a TLS-terminating
    /// proxy in front of it anywhere but loopback), `metrics_listen` (keep it
    /// off the public network), the trust domain, and `tls`: the
    /// `web-frontend` client certificate, key, CA bundle and CRL used towards
    /// set-service. The web-frontend has no gRPC health listener and no
    /// audit table: `health_listen`, `[health]` and `[audit]` are refused.
    pub service: ServiceSettings,
    /// The URL browsers use, e.g. `https://connect.example.com`. The
    /// redirect URI registered at every provider is `<public_url>/callback`.
    /// When it is https, every response carries HSTS.
    pub public_url: String,
    /// Where sealed tokens are sent.
    pub set_service: SetServiceConfig,
    /// Directory of token-encryption public keys; the newest seals.
    pub public_keys_dir: PathBuf,
    /// The key id that seals. Optional: without it the newest file in
    /// `public_keys_dir` (by modification time) seals, and a copy that
    /// resets modification times can change which one that is; naming it
    /// makes the choice explicit.
    #[serde(default)]
    pub sealing_kid: Option<String>,
    /// The provider catalogue.
    pub providers: Vec<ProviderConfig>,
    /// Sign-in cookies.
    #[serde(default)]
    pub session: SessionConfig,
    /// Connect links signed by the embedding application.
    #[serde(default)]
    pub links: LinkConfig,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
}

/// How to reach set-service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetServiceConfig {
    /// `host:port`; the host is checked against set-service's certificate.
    pub address: String,
    /// Time limit of one call.
    #[serde(default = "default_set_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_set_timeout_secs() -> u64 {
    10
}

/// Sign-in cookies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// How long a started sign-in stays valid (its `state`), in seconds.
    pub sign_in_ttl_secs: u64,
    /// How long this browser may disconnect an account it just connected.
    pub connected_ttl_secs: u64,
    /// A file of at least 64 random bytes that encrypts the cookies. Without
    /// it a random key is made at start, so sign-ins in progress do not
    /// survive a restart, and replicas cannot share sign-ins.
    pub cookie_key_file: Option<PathBuf>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            sign_in_ttl_secs: 600,
            connected_ttl_secs: 3600,
            cookie_key_file: None,
        }
    }
}

/// Connect links signed by the embedding application (see `docs/CONNECT_LINKS.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkConfig {
    /// A file holding the shared HMAC secret (at least 32 bytes; surrounding
    /// whitespace is ignored). Without it, signed links are refused and every
    /// account id is derived from the provider identity.
    pub secret_file: Option<PathBuf>,
    /// The longest lifetime a link may claim, in seconds.
    pub max_lifetime_secs: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            secret_file: None,
            max_lifetime_secs: 3600,
        }
    }
}

/// Request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 * 1024,
        }
    }
}

impl Config {
    /// The public URL, parsed and checked.
    pub fn public_url(&self) -> Result<Url, ConfigError> {
        let url = check_endpoint("public_url", &self.public_url).map_err(invalid("public_url"))?;
        if url.query().is_some() || url.path() != "/" {
            return Err(ConfigError::Invalid {
                setting: "public_url",
                reason: "give scheme, host and port only, e.g. https://connect.example.com".into(),
            });
        }
        Ok(url)
    }
}

impl ServiceConfig for Config {
    const ENV_PREFIX: &'static str = ENV_PREFIX;
    const ENV_OVERRIDES: &'static [EnvOverride] = ENV_OVERRIDES;

    /// `provider = "<catalogue entry>"` entries get the catalogue's facts.
    fn expand(table: &mut toml::Table) -> Result<(), ConfigError> {
        let catalogue = tokenvault_catalogue::catalogue()
            .map_err(|e| ConfigError::Parse(format!("provider catalogue: {e}")))?;
        tokenvault_catalogue::expand::expand_providers::<ConnectSettings>(&catalogue, table)
            .map_err(invalid("providers"))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()?;
        self.service.refuse_grpc_only("web-frontend")?;
        self.public_url()?;
        if self.providers.is_empty() {
            return Err(invalid("providers")(
                "configure at least one provider".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.providers {
            p.validate().map_err(invalid("providers"))?;
            if !names.insert(p.name.as_str()) {
                return Err(invalid("providers")(format!(
                    "provider {:?} is configured twice",
                    p.name
                )));
            }
        }
        if !(1..=3600).contains(&self.session.sign_in_ttl_secs) {
            return Err(invalid("session.sign_in_ttl_secs")(
                "must be between 1 and 3600 seconds".into(),
            ));
        }
        if self.session.connected_ttl_secs == 0 {
            return Err(invalid("session.connected_ttl_secs")(
                "must be at least 1".into(),
            ));
        }
        if self.links.max_lifetime_secs == 0 || self.links.max_lifetime_secs > 7 * 86_400 {
            return Err(invalid("links.max_lifetime_secs")(
                "must be between 1 second and 7 days".into(),
            ));
        }
        if self.set_service.timeout_secs == 0 || self.set_service.timeout_secs > 300 {
            return Err(invalid("set_service.timeout_secs")(
                "must be between 1 and 300 seconds".into(),
            ));
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(invalid("limits.max_body_bytes")(
                "must be at least 1024".into(),
            ));
        }
        Ok(())
    }
}

fn invalid(setting: &'static str) -> impl Fn(String) -> ConfigError {
    move |reason| ConfigError::Invalid { setting, reason }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../deploy/examples/web-frontend.toml");
        let config = Config::from_toml(text, |_| None).unwrap();
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["google", "microsoft", "github", "oidc"]);
    }

    #[test]
    fn overrides_and_errors_name_the_setting() {
        let text = include_str!("../../deploy/examples/web-frontend.toml");
        let config = Config::from_toml(text, |k| {
            (k == "TOKENVAULT_WEB_PUBLIC_URL").then(|| "http://127.0.0.1:7400".to_owned())
        })
        .unwrap();
        assert_eq!(config.public_url, "http://127.0.0.1:7400");
        let err = Config::from_toml(text, |k| {
            (k == "TOKENVAULT_WEB_PUBLIC_URL").then(|| "http://connect.example.com".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("public_url") && err.contains("https"), "{err}");
        let err = Config::from_toml(
            &text.replace("sign_in_ttl_secs = 600", "sign_in_ttl_secs = 0"),
            |_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("session.sign_in_ttl_secs"), "{err}");
    }
}
