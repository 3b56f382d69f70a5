//! Loading a service's typed TOML config with environment overrides, shared
//! by every service so that they all behave alike: each override is a named
//! environment variable mapped to a dotted setting, a wrong value is reported
//! with the setting's name (and the variable that set it), and tests pass the
//! lookup function instead of touching the process environment.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use url::{Host, Url};
use zeroize::Zeroizing;

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
}

/// Reads a config file.
pub fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// One environment override: the variable, the dotted setting it replaces,
/// and whether its value is a comma-separated list.
#[derive(Debug, Clone, Copy)]
pub struct EnvOverride {
    /// The environment variable, e.g. `TOKENVAULT_SET_LISTEN`.
    pub var: &'static str,
    /// The dotted setting, e.g. `tls.cert`.
    pub key: &'static str,
    /// Whether the value is a comma-separated list.
    pub list: bool,
}

impl EnvOverride {
    /// A scalar override.
    pub const fn scalar(var: &'static str, key: &'static str) -> Self {
        Self {
            var,
            key,
            list: false,
        }
    }

    /// A comma-separated list override.
    pub const fn list(var: &'static str, key: &'static str) -> Self {
        Self {
            var,
            key,
            list: true,
        }
    }
}

/// Parses `text`, applies the overrides found by `env`, and deserializes.
/// The error message names the setting (`... in `tls.cert``) and, where an
/// override supplied the value, the variable.
pub fn load_toml<T: DeserializeOwned>(
    text: &str,
    overrides: &[EnvOverride],
    env: impl Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let mut applied = Vec::new();
    for o in overrides {
        if let Some(value) = env(o.var) {
            applied.push(*o);
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
        }
    }
    table.try_into().map_err(|e: toml::de::Error| {
        let mut msg = e.to_string().trim().replace('\n', " ");
        if let Some(o) = applied
            .iter()
            .find(|o| msg.ends_with(&format!("in `{}`", o.key)))
        {
            msg.push_str(&format!(" (set by {})", o.var));
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

/// A secret string (client secret, access token, refresh token): wiped on
/// drop, printed as `<redacted>` by `Debug`, and without `Display`.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`, which is wiped when the `Secret` is dropped.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself. Do not log it or put it in an error.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// How the client authenticates at the token (and revocation) endpoints; shared by every
/// service that talks to providers.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the URL-encoded client id and secret (RFC 6749 2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// Checks one OAuth scope token (RFC 6749 3.3: printable ASCII without
/// spaces, quotes or backslashes).
pub fn check_scope(scope: &str) -> Result<(), String> {
    let ok = !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{scope:?} is not a valid scope (printable ASCII, no spaces, quotes or backslashes)"
        ))
    }
}

/// Parses an endpoint URL and applies the transport rule: https, or http only
/// to a loopback host (127.0.0.0/8, ::1, `localhost`); no credentials in the
/// URL and no fragment. `setting` names the setting in the error.
pub fn check_endpoint(setting: &str, value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("{setting}: not a URL ({e}): {value:?}"))?;
    let Some(host) = url.host() else {
        return Err(format!("{setting}: {value:?} has no host"));
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(format!(
                "{setting}: must use https ({value:?}); plain http is allowed only to a loopback address"
            ));
        }
        other => {
            return Err(format!(
                "{setting}: must be an https URL, not {other}: ({value:?})"
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{setting}: must not contain credentials; use client_id and client_secret"
        ));
    }
    if url.fragment().is_some() {
        return Err(format!(
            "{setting}: must not contain a fragment ({value:?})"
        ));
    }
    Ok(url)
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).to_canonical().is_loopback(),
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
