//! Loading a service's typed TOML config with environment overrides, shared
//! by every service so that they all behave alike: each override is a named
//! environment variable mapped to a dotted setting, a wrong value is reported
//! with the setting's name (and the variable that set it), and tests pass the
//! lookup function instead of touching the process environment.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

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
