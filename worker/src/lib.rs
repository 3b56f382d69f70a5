//! The worker client of tokenvault: ask `get-service`, over mutual TLS with
//! the worker's own certificate, for a short-lived access token for an
//! account, then call the provider's API with it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokenvault_worker::WorkerError> {
//! use std::time::Duration;
//! use tokenvault_worker::{WorkerClient, WorkerConfig};
//! let config = WorkerConfig::from_toml_file("worker.toml".as_ref())?;
//! let client = WorkerClient::new(&config)?;
//! let token = client.access_token("google:1234", "google", Duration::from_secs(60)).await?;
//! println!("Authorization: {} {}", token.token_type, token.secret());
//! # Ok(()) }
//! ```
//!
//! get-service may run as several replicas: `address` takes several
//! `host:port`s (comma-separated), and a host name with several DNS records
//! (a Kubernetes headless Service, Docker's service name) reaches each of
//! them; names are resolved again every few seconds, so replicas that come
//! and go during a rolling update are followed. Calls go round-robin, and a
//! call answered UNAVAILABLE (a replica stopping, restarting or unreachable)
//! is retried on the next replica within the call's time limit: both RPCs
//! are idempotent.
//!
//! This crate holds the worker's TLS key while building its config, and
//! access tokens in `Zeroizing` buffers whose `Debug` is redacted. It never
//! sees a refresh token.
//!
//! **The account inventory** ([`admin`], and the `tokenvault-admin` CLI in
//! [`admin_cli`]) lives here too: it is a client of get-service like the
//! worker's, so it shares this crate's connection code (replicas, mutual
//! TLS that follows its files, retries of calls no replica answered) and
//! config file shape. It is a separate binary, so that a worker deployment
//! need not ship it, and runs with a separate identity: an `admin`
//! certificate, which get-service allows the inventory (and nothing else) by
//! default, while a worker's certificate gets `PERMISSION_DENIED` there. It
//! reads statuses and events only, never a token.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_cli;
pub mod cli;

mod targets;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokenvault_proto::v1::get_service_client::GetServiceClient;
use tokenvault_proto::v1::{
    AccountStatus, GetAccessTokenRequest, GetAccessTokenResponse, GetAccountStatusRequest,
    GetClientAccessTokenRequest,
};
use tokenvault_tls::{IdentityPattern, Role, TlsFiles};
use zeroize::Zeroizing;

use crate::targets::Targets;

/// How long one call may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where get-service is and which certificate to present.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// get-service's `host:port`, or several, comma-separated; each host is
    /// checked against the certificate of the server reached through it.
    pub address: String,
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// The worker's certificate and key, and the CA bundle.
    pub tls: TlsFiles,
}

impl WorkerConfig {
    /// Reads a TOML file with `address`, `trust_domain` and a `[tls]` table.
    pub fn from_toml_file(path: &Path) -> Result<Self, WorkerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| WorkerError::Config(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| WorkerError::Config(format!("{}: {e}", path.display())))
    }
}

/// An access token. `Debug` does not print it; [`AccessToken::secret`] does.
pub struct AccessToken {
    secret: Zeroizing<String>,
    /// Usually `Bearer`.
    pub token_type: String,
    /// Seconds since the Unix epoch.
    pub expires_at_unix: i64,
    /// The granted scopes.
    pub scopes: Vec<String>,
}

impl AccessToken {
    /// The token itself, for an `Authorization` header.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_at_unix", &self.expires_at_unix)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("config: {0}")]
    Config(String),
    #[error("tls: {0}")]
    Tls(#[from] tokenvault_tls::TlsError),
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// get-service answered with more scopes than were asked for (an older
    /// get-service that does not know `scopes`); the token is dropped.
    #[error(
        "get-service answered with scopes {0:?}, beyond those asked for; is it older than this client?"
    )]
    BroaderScopes(Vec<String>),
    /// The inventory lists no such account (unknown, or not visible to this
    /// caller under get-service's account policy).
    #[error("get-service lists no account {account:?} at {provider:?}")]
    NoSuchAccount { account: String, provider: String },
}

impl WorkerError {
    /// The gRPC status code, if get-service answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            WorkerError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// A get-service client. Cheap to clone; clones share the connections.
#[derive(Debug, Clone)]
pub struct WorkerClient {
    connection: Connection,
    timeout: Duration,
}

/// The connection to get-service's replicas that [`WorkerClient`] and
/// [`admin::AdminClient`] share: mutual TLS with the configured identity,
/// following its files, to servers whose identity has the `get-service`
/// role.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub(crate) targets: Arc<Targets>,
    // Follows the certificate, CA bundle and CRL files while the client lives.
    _reload: Arc<tokenvault_tls::reload::Reloader>,
}

impl Connection {
    /// Connects lazily, on the first call.
    pub(crate) fn new(config: &WorkerConfig) -> Result<Self, WorkerError> {
        let (tls, reload) = tokenvault_tls::reload::reloading_client(
            &config.tls,
            &config.trust_domain,
            IdentityPattern::Role(Role::GetService),
        )?;
        Ok(Self {
            targets: Arc::new(Targets::new(&config.address, tls)?),
            _reload: Arc::new(reload),
        })
    }
}

impl WorkerClient {
    /// A client that connects lazily, on the first call.
    pub fn new(config: &WorkerConfig) -> Result<Self, WorkerError> {
        Ok(Self {
            connection: Connection::new(config)?,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets the time limit of a call, retries on other replicas included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// An access token for (`account`, `provider`) valid for at least `min_ttl`.
    pub async fn access_token(
        &self,
        account: &str,
        provider: &str,
        min_ttl: Duration,
    ) -> Result<AccessToken, WorkerError> {
        self.access_token_scoped(account, provider, min_ttl, &[])
            .await
    }

    /// An access token for (`account`, `provider`) valid for at least
    /// `min_ttl` that carries no more than `scopes` (none: the grant's, within
    /// what this worker's policy rule allows). Asking for a scope the grant or
    /// the rule lacks is `PERMISSION_DENIED`; fewer scopes than the grant
    /// holds, from a provider get-service cannot narrow, `FAILED_PRECONDITION`.
    pub async fn access_token_scoped(
        &self,
        account: &str,
        provider: &str,
        min_ttl: Duration,
        scopes: &[&str],
    ) -> Result<AccessToken, WorkerError> {
        let message = GetAccessTokenRequest {
            account: account.to_owned(),
            provider: provider.to_owned(),
            min_ttl_seconds: u32::try_from(min_ttl.as_secs()).unwrap_or(u32::MAX),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        let response = self
            .connection
            .targets
            .call(self.timeout, |channel, timeout| {
                let mut request = tonic::Request::new(message.clone());
                request.set_timeout(timeout);
                async move {
                    GetServiceClient::new(channel)
                        .get_access_token(request)
                        .await
                }
            })
            .await?
            .into_inner();
        within(response, scopes)
    }

    /// The application's own client-credentials token at `provider`
    /// (`GetClientAccessToken`), valid for at least `min_ttl`, with `scopes`
    /// (empty: the provider's configured ones; an answer with more is
    /// refused, as for [`Self::access_token_scoped`]).
    pub async fn client_access_token(
        &self,
        provider: &str,
        min_ttl: Duration,
        scopes: &[&str],
    ) -> Result<AccessToken, WorkerError> {
        let message = GetClientAccessTokenRequest {
            provider: provider.to_owned(),
            min_ttl_seconds: u32::try_from(min_ttl.as_secs()).unwrap_or(u32::MAX),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        let response = self
            .connection
            .targets
            .call(self.timeout, |channel, timeout| {
                let mut request = tonic::Request::new(message.clone());
                request.set_timeout(timeout);
                async move {
                    GetServiceClient::new(channel)
                        .get_client_access_token(request)
                        .await
                }
            })
            .await?
            .into_inner();
        within(response, scopes)
    }

    /// The account's status and its reason.
    pub async fn account_status(
        &self,
        account: &str,
        provider: &str,
    ) -> Result<(AccountStatus, String), WorkerError> {
        let message = GetAccountStatusRequest {
            account: account.to_owned(),
            provider: provider.to_owned(),
        };
        let response = self
            .connection
            .targets
            .call(self.timeout, |channel, timeout| {
                let mut request = tonic::Request::new(message.clone());
                request.set_timeout(timeout);
                async move {
                    GetServiceClient::new(channel)
                        .get_account_status(request)
                        .await
                }
            })
            .await?
            .into_inner();
        let status = AccountStatus::try_from(response.status).unwrap_or(AccountStatus::Unspecified);
        Ok((status, response.reason))
    }
}

/// The answer's token, refused if it carries a scope beyond `scopes` (when
/// any were asked for). The token text is moved, never copied.
fn within(response: GetAccessTokenResponse, scopes: &[&str]) -> Result<AccessToken, WorkerError> {
    if !scopes.is_empty()
        && response
            .scopes
            .iter()
            .any(|s| !scopes.contains(&s.as_str()))
    {
        return Err(WorkerError::BroaderScopes(response.scopes));
    }
    Ok(AccessToken {
        secret: Zeroizing::new(response.access_token),
        token_type: response.token_type,
        expires_at_unix: response.expires_at_unix,
        scopes: response.scopes,
    })
}

/// Where the CLI found its settings; exposed for the binary.
#[derive(Debug, Clone, Default)]
pub struct PartialConfig {
    /// get-service's `host:port`.
    pub address: Option<String>,
    /// The trust domain.
    pub trust_domain: Option<String>,
    /// The worker certificate.
    pub cert: Option<PathBuf>,
    /// The worker key.
    pub key: Option<PathBuf>,
    /// The CA bundle.
    pub ca: Option<PathBuf>,
}

impl PartialConfig {
    /// Fills what is missing here from `file`, then requires everything.
    pub fn complete(self, file: Option<WorkerConfig>) -> Result<WorkerConfig, WorkerError> {
        let missing = |what: &str| {
            WorkerError::Config(format!(
                "{what} is not set (flag, environment or config file)"
            ))
        };
        let (f_addr, f_td, f_tls) = match file {
            Some(f) => (Some(f.address), Some(f.trust_domain), Some(f.tls)),
            None => (None, None, None),
        };
        Ok(WorkerConfig {
            address: self.address.or(f_addr).ok_or_else(|| missing("address"))?,
            trust_domain: self
                .trust_domain
                .or(f_td)
                .ok_or_else(|| missing("trust domain"))?,
            tls: TlsFiles {
                cert: self
                    .cert
                    .or(f_tls.as_ref().map(|t| t.cert.clone()))
                    .ok_or_else(|| missing("certificate"))?,
                key: self
                    .key
                    .or(f_tls.as_ref().map(|t| t.key.clone()))
                    .ok_or_else(|| missing("key"))?,
                ca: self
                    .ca
                    .or(f_tls.as_ref().map(|t| t.ca.clone()))
                    .ok_or_else(|| missing("CA bundle"))?,
                crl: f_tls.and_then(|t| t.crl),
            },
        })
    }
}
