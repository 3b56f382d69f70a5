//! The `[store]` section of set-service's and get-service's configs: where
//! the store is. The URL may carry a database password, so `Debug` redacts
//! it.

use std::fmt;

use serde::Deserialize;
use tokenvault_runtime::settings::{ConfigError, redact_url};

/// The store connection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path/to/tokenvault.db` or `postgres://role@host/db` (the
    /// writer role for set-service, the reader role for get-service, which
    /// opens a SQLite file read-only).
    pub url: String,
}

impl StoreConfig {
    /// Checks the URL's scheme; the error names `store.url`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.url.starts_with("sqlite:") || self.url.starts_with("postgres") {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            setting: "store.url",
            reason: "use sqlite://PATH or postgres://USER@HOST/DB".into(),
        })
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_database_password() {
        let s = StoreConfig {
            url: "postgres://writer:hunter2@db/tokenvault".into(),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("writer:<redacted>@db"));
        assert!(s.validate().is_ok());
        let mysql = StoreConfig {
            url: "mysql://db/x".into(),
        };
        assert!(
            mysql
                .validate()
                .is_err_and(|e| e.to_string().contains("store.url"))
        );
    }
}
