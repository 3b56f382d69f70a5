//! [`ImportConfig`]: where set-service is, the import's identity, and the
//! public keys, from a TOML file:
//!
//! ```toml
//! trust_domain = "example.org"
//! public_keys_dir = "/etc/tokenvault/public-keys"
//! # sealing_kid = "<kid>"
//!
//! [set_service]
//! address = "set.internal:7401"
//! timeout_secs = 10
//!
//! [tls]                 # a certificate set-service's allow.store_refresh_token admits
//! cert = "import.crt"
//! key = "import.key"
//! ca = "ca.crt"
//!
//! # Only for --verify: get-service's provider entries (the same client ids
//! # and secrets), catalogue references allowed.
//! [[providers]]
//! provider = "google"
//! client_id = "..."
//! client_secret = "..."
//! ```
//!
//! Holds provider client secrets when `[[providers]]` are given (never
//! printed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenvault_catalogue::expand::expand_providers;
use tokenvault_oauth::{Provider, ProviderConfig, RefreshSettings};
use tokenvault_tls::TlsFiles;

use crate::ImportError;

/// The import's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// The token-encryption public keys (never a private key).
    pub public_keys_dir: PathBuf,
    /// The key to seal with; default: the newest file.
    #[serde(default)]
    pub sealing_kid: Option<String>,
    /// set-service.
    pub set_service: SetServiceConfig,
    /// The import's certificate and key, and the CA bundle.
    pub tls: TlsFiles,
    /// Providers to refresh at with `--verify`.
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
}

/// How to reach set-service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetServiceConfig {
    /// `host:port`; the host is checked against set-service's certificate.
    pub address: String,
    /// Time limit of one call.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    10
}

impl ImportConfig {
    /// Reads the TOML file at `path`.
    pub fn load(path: &Path) -> Result<Self, ImportError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ImportError::Config(format!("{}: {e}", path.display())))?;
        let problem = |e: String| ImportError::Config(format!("{}: {e}", path.display()));
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| problem(e.to_string()))?;
        let catalogue = tokenvault_catalogue::catalogue().map_err(|e| problem(e.to_string()))?;
        expand_providers::<RefreshSettings>(&catalogue, &mut table).map_err(problem)?;
        let config: Self = table
            .try_into()
            .map_err(|e: toml::de::Error| problem(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ImportError> {
        if self.set_service.timeout_secs == 0 || self.set_service.timeout_secs > 300 {
            return Err(ImportError::Config(
                "set_service.timeout_secs: must be between 1 and 300".into(),
            ));
        }
        if self.trust_domain.is_empty() {
            return Err(ImportError::Config(
                "trust_domain: must not be empty".into(),
            ));
        }
        for p in &self.providers {
            p.validate().map_err(ImportError::Config)?;
        }
        Ok(())
    }
}

/// The configured providers by name (OIDC discovery runs here).
pub(crate) async fn providers(
    config: &ImportConfig,
) -> Result<HashMap<String, Provider>, ImportError> {
    let http = tokenvault_oauth::http_client().map_err(|e| ImportError::Config(e.to_string()))?;
    let mut providers = HashMap::new();
    for p in &config.providers {
        let provider = Provider::new(p.clone(), http.clone())
            .await
            .map_err(|e| ImportError::Config(format!("providers.{}: {e}", p.name)))?;
        providers.insert(p.name.clone(), provider);
    }
    Ok(providers)
}
