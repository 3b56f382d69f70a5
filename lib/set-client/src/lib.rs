//! The one set-service client, used by the web-frontend (new tokens,
//! disconnects) and by get-service (rotated tokens, account statuses,
//! revocations, re-seals), each with its own certificate.
//!
//! It sends sealed tokens only: this crate never sees a plaintext token, and
//! cannot open one. Its errors say whether set-service may have done the call
//! ([`SetError`]), and never carry a token.
#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokenvault_limits::MAX_STATUS_REASON_LEN;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{
    AccountStatus, DisconnectAccountRequest, RecordAccountStatusRequest, RecordRevocationRequest,
    ResealOutcome, ResealRefreshTokenRequest, RevocationOutcome, ShareAccessTokenRequest,
    StoreRefreshTokenRequest,
};
use tokenvault_tls::reload::{
    CertObserver, Reloader, reloading_channel, reloading_channel_reporting,
};
use tokenvault_tls::{IdentityPattern, Role, TlsError, TlsFiles, never_sent};
use tonic::Code;
use tonic::transport::Channel;

/// The longest message of set-service's kept in an error.
const MAX_MESSAGE_CHARS: usize = 200;

/// The longest prefix of `reason` that set-service accepts: at most
/// [`MAX_STATUS_REASON_LEN`] bytes, ending on a character boundary.
fn cut_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_STATUS_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A set-service call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

impl SetError {
    /// Whether the call may succeed if made again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, SetError::Unavailable(_) | SetError::Uncertain(_))
    }

    /// Whether set-service refused the call with `code`.
    pub fn is_refused(&self, code: Code) -> bool {
        matches!(self, SetError::Refused { code: c, .. } if *c == code)
    }
}

impl From<tonic::Status> for SetError {
    fn from(s: tonic::Status) -> Self {
        let message = s.message().chars().take(MAX_MESSAGE_CHARS).collect();
        match s.code() {
            Code::Unavailable => SetError::Unavailable(message),
            Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                SetError::Uncertain(message)
            }
            code => SetError::Refused { code, message },
        }
    }
}

/// What a stored token carries besides itself (non-secret).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreExtras {
    /// The account's metadata from a signed connect link (a JSON object).
    pub metadata: Option<String>,
    /// When the provider said the refresh token expires, Unix seconds.
    pub refresh_token_expires_at_unix: Option<i64>,
}

/// A set-service client; cheap to clone (clones share one connection).
#[derive(Debug, Clone)]
pub struct SetClient {
    client: SetServiceClient<Channel>,
    timeout: Duration,
    // Follows the certificate, CA bundle and CRL files while the client lives.
    _reload: Arc<Reloader>,
}

impl SetClient {
    /// A client for set-service at `address` (connects lazily), with a time
    /// limit of `timeout` per call.
    pub fn new(
        address: &str,
        tls: &TlsFiles,
        trust_domain: &str,
        timeout: Duration,
    ) -> Result<Self, TlsError> {
        let (channel, reload) = reloading_channel(address, tls, trust_domain, expected_server())?;
        Ok(Self::on(channel, reload, timeout))
    }

    /// [`SetClient::new`] that also logs the client certificate (this
    /// service's only one) and hands it to `observer` at start and on every
    /// reload.
    pub fn reporting(
        address: &str,
        tls: &TlsFiles,
        trust_domain: &str,
        timeout: Duration,
        observer: impl CertObserver,
    ) -> Result<Self, TlsError> {
        let (channel, reload) =
            reloading_channel_reporting(address, tls, trust_domain, expected_server(), observer)?;
        Ok(Self::on(channel, reload, timeout))
    }

    fn on(channel: Channel, reload: Reloader, timeout: Duration) -> Self {
        Self {
            client: SetServiceClient::new(channel),
            timeout,
            _reload: Arc::new(reload),
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Makes one call with `rpc`, and once more if it never left this
    /// client ([`never_sent`]: its connection was closing, e.g. set-service
    /// closed it gracefully after a trust change).
    async fn call<T, R, F, Fut>(&self, message: T, rpc: F) -> Result<tonic::Response<R>, SetError>
    where
        T: Clone,
        F: Fn(SetServiceClient<Channel>, tonic::Request<T>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let first = rpc(self.client.clone(), self.request(message.clone())).await;
        Ok(match first {
            Err(status) if never_sent(&status) => {
                rpc(self.client.clone(), self.request(message)).await?
            }
            other => other?,
        })
    }

    /// Stores a sealed token as the newest version; returns the version.
    /// With `expected_version`, only while that is still the newest
    /// (otherwise set-service refuses with `ABORTED`).
    pub async fn store(
        &self,
        account: &str,
        provider: &str,
        sealed_token: String,
        expected_version: Option<u64>,
    ) -> Result<u64, SetError> {
        let extras = StoreExtras::default();
        self.store_request(account, provider, sealed_token, expected_version, &extras)
            .await
    }

    /// [`Self::store`] with what the token carries besides itself: the
    /// account's metadata (a connect's, non-secret JSON from a signed connect
    /// link; set-service checks its shape) and when the provider said the
    /// refresh token expires.
    pub async fn store_with(
        &self,
        account: &str,
        provider: &str,
        sealed_token: String,
        expected_version: Option<u64>,
        extras: &StoreExtras,
    ) -> Result<u64, SetError> {
        self.store_request(account, provider, sealed_token, expected_version, extras)
            .await
    }

    async fn store_request(
        &self,
        account: &str,
        provider: &str,
        sealed_token: String,
        expected_version: Option<u64>,
        extras: &StoreExtras,
    ) -> Result<u64, SetError> {
        let response = self
            .call(
                StoreRefreshTokenRequest {
                    account: account.to_owned(),
                    provider: provider.to_owned(),
                    sealed_token,
                    expected_version,
                    metadata_json: extras.metadata.clone().unwrap_or_default(),
                    refresh_token_expires_at_unix: extras
                        .refresh_token_expires_at_unix
                        .unwrap_or_default(),
                },
                |mut client, request| async move { client.store_refresh_token(request).await },
            )
            .await?;
        Ok(response.into_inner().version)
    }

    /// Tombstones (account, provider).
    pub async fn disconnect(&self, account: &str, provider: &str) -> Result<(), SetError> {
        self.call(
            DisconnectAccountRequest {
                account: account.to_owned(),
                provider: provider.to_owned(),
            },
            |mut client, request| async move { client.disconnect_account(request).await },
        )
        .await?;
        Ok(())
    }

    /// Records an account's status, with a reason (cut to set-service's
    /// limit, [`MAX_STATUS_REASON_LEN`] bytes).
    pub async fn record_status(
        &self,
        account: &str,
        provider: &str,
        status: AccountStatus,
        reason: &str,
    ) -> Result<(), SetError> {
        self.call(
            RecordAccountStatusRequest {
                account: account.to_owned(),
                provider: provider.to_owned(),
                status: status as i32,
                reason: cut_reason(reason).to_owned(),
            },
            |mut client, request| async move { client.record_account_status(request).await },
        )
        .await?;
        Ok(())
    }

    /// Records that a disconnected account's token `version` was revoked at
    /// the provider (or that the provider offers no revocation).
    pub async fn record_revocation(
        &self,
        account: &str,
        provider: &str,
        version: u64,
        outcome: RevocationOutcome,
    ) -> Result<(), SetError> {
        self.call(
            RecordRevocationRequest {
                account: account.to_owned(),
                provider: provider.to_owned(),
                token_version: version,
                outcome: outcome as i32,
            },
            |mut client, request| async move { client.record_revocation(request).await },
        )
        .await?;
        Ok(())
    }

    /// Asks set-service to replace stored token `request.token_version`,
    /// sealed under `request.previous_kid`, with the same token re-sealed.
    pub async fn reseal(
        &self,
        request: ResealRefreshTokenRequest,
    ) -> Result<ResealOutcome, SetError> {
        let response = self
            .call(request, |mut client, request| async move {
                client.reseal_refresh_token(request).await
            })
            .await?;
        Ok(response.into_inner().outcome())
    }
}

impl SetClient {
    /// Shares a sealed access token with the other get-service replicas;
    /// `false` if its `token_version` is no longer the account's newest.
    pub async fn share_access_token(
        &self,
        request: ShareAccessTokenRequest,
    ) -> Result<bool, SetError> {
        let response = self
            .call(request, |mut client, request| async move {
                client.share_access_token(request).await
            })
            .await?;
        Ok(response.into_inner().shared)
    }
}

/// The only server a set-service client talks to.
fn expected_server() -> IdentityPattern {
    IdentityPattern::Role(Role::SetService)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_say_whether_the_call_may_have_happened() {
        let unavailable = SetError::from(tonic::Status::unavailable("down"));
        assert!(unavailable.is_transient());
        assert!(matches!(unavailable, SetError::Unavailable(_)));
        let timed_out = SetError::from(tonic::Status::deadline_exceeded("slow"));
        assert!(matches!(timed_out, SetError::Uncertain(_)));
        let aborted = SetError::from(tonic::Status::aborted("newer version stored"));
        assert!(aborted.is_refused(Code::Aborted));
        assert!(!aborted.is_transient());
        let long = SetError::from(tonic::Status::invalid_argument("x".repeat(1000)));
        assert!(long.to_string().len() < 300);
    }

    #[test]
    fn reasons_are_cut_to_what_set_service_accepts() {
        assert_eq!(cut_reason("invalid_grant"), "invalid_grant");
        let ascii = "r".repeat(MAX_STATUS_REASON_LEN + 10);
        assert_eq!(cut_reason(&ascii).len(), MAX_STATUS_REASON_LEN);
        // Three-byte characters: cut before the one that would cross the limit.
        let wide = "€".repeat(MAX_STATUS_REASON_LEN);
        let cut = cut_reason(&wide);
        assert!(cut.len() <= MAX_STATUS_REASON_LEN && cut.len() > MAX_STATUS_REASON_LEN - 3);
        assert!(cut.chars().all(|c| c == '€'));
    }
}
