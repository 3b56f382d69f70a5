//! The web-frontend's only way to store anything: set-service over mutual TLS
//! with the `web-frontend` certificate. It sends sealed tokens (never
//! plaintext) and disconnects.

use std::sync::Arc;
use std::time::Duration;

use tokenvault_mtls::metrics::CertExpiry;
use tokenvault_mtls::reload::{Reloader, reloading_channel_reporting};
use tokenvault_mtls::{IdentityPattern, Role, TlsError, TlsFiles};
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{DisconnectAccountRequest, StoreRefreshTokenRequest};
use tonic::Code;
use tonic::transport::Channel;

/// A set-service call failed.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// set-service could not be reached: nothing was done.
    #[error("set-service is unavailable: {0}")]
    Unavailable(String),
    /// The call timed out or broke off: set-service may or may not have done it.
    #[error("set-service did not confirm the call: {0}")]
    Uncertain(String),
    /// set-service refused the call.
    #[error("set-service refused the call: {code:?}: {message}")]
    Refused {
        /// The gRPC status code.
        code: Code,
        /// set-service's message (it never contains a token).
        message: String,
    },
}

impl From<tonic::Status> for SetError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            Code::Unavailable => SetError::Unavailable(s.message().chars().take(200).collect()),
            Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                SetError::Uncertain(s.message().chars().take(200).collect())
            }
            code => SetError::Refused {
                code,
                message: s.message().chars().take(200).collect(),
            },
        }
    }
}

/// A set-service client.
#[derive(Debug, Clone)]
pub struct SetClient {
    client: SetServiceClient<Channel>,
    timeout: Duration,
    // Follows the certificate, CA bundle and CRL files while the client lives.
    _reload: Arc<Reloader>,
}

impl SetClient {
    /// A client for set-service at `address` (connects lazily).
    pub fn new(
        address: &str,
        tls: &TlsFiles,
        trust_domain: &str,
        timeout: Duration,
    ) -> Result<Self, TlsError> {
        Self::reporting(
            address,
            tls,
            trust_domain,
            timeout,
            &CertExpiry::unregistered(),
        )
    }

    /// [`SetClient::new`] that also reports the client certificate (this
    /// service's only one) to `expiry` at start and on every reload.
    pub fn reporting(
        address: &str,
        tls: &TlsFiles,
        trust_domain: &str,
        timeout: Duration,
        expiry: &CertExpiry,
    ) -> Result<Self, TlsError> {
        let (channel, reload) = reloading_channel_reporting(
            address,
            tls,
            trust_domain,
            IdentityPattern::Role(Role::SetService),
            expiry,
        )?;
        Ok(Self {
            client: SetServiceClient::new(channel),
            timeout,
            _reload: Arc::new(reload),
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Stores a sealed token as the newest version; returns the version.
    pub async fn store(
        &self,
        account: &str,
        provider: &str,
        sealed_token: String,
    ) -> Result<u64, SetError> {
        let response = self
            .client
            .clone()
            .store_refresh_token(self.request(StoreRefreshTokenRequest {
                account: account.to_owned(),
                provider: provider.to_owned(),
                sealed_token,
                expected_version: None,
            }))
            .await?;
        Ok(response.into_inner().version)
    }

    /// Tombstones (account, provider).
    pub async fn disconnect(&self, account: &str, provider: &str) -> Result<(), SetError> {
        self.client
            .clone()
            .disconnect_account(self.request(DisconnectAccountRequest {
                account: account.to_owned(),
                provider: provider.to_owned(),
            }))
            .await?;
        Ok(())
    }
}
