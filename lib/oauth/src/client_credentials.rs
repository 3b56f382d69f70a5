//! The client-credentials grant (RFC 6749 section 4.4): the application's
//! own access token from a provider client configured with
//! `client_credentials = true`, for machine-to-machine calls that act for no
//! user. No refresh token is involved: a new token is simply asked for.
//!
//! Holds the client secret (inside oauth2's client) and returns the access
//! token in a [`Secret`]; a refresh token in the answer (RFC 6749 says there
//! should be none) is dropped unread.

use std::time::Duration;

use crate::classify::Exchange;
use crate::client::{from_oauth, refreshed, timed_out, unix_now};
use crate::transport::Transport;
use crate::{Provider, ProviderError, Refreshed};

impl Provider {
    /// Whether this client is configured for the client-credentials grant.
    pub fn serves_client_credentials(&self) -> bool {
        self.client_credentials
    }

    /// The scopes configured to be asked for (`scopes`).
    pub fn configured_scopes(&self) -> &[String] {
        &self.scopes
    }

    /// One client-credentials attempt within `timeout_secs`, asking for
    /// `scopes`, or the configured ones if `None`. `Unsupported` unless the
    /// client is configured for it. No retries: see
    /// [`Provider::client_credentials_with_retry`].
    pub async fn client_credentials(
        &self,
        scopes: Option<&[String]>,
    ) -> Result<Refreshed, ProviderError> {
        self.client_credentials_within(scopes, self.timeout).await
    }

    /// One attempt within `limit`.
    pub(crate) async fn client_credentials_within(
        &self,
        scopes: Option<&[String]>,
        limit: Duration,
    ) -> Result<Refreshed, ProviderError> {
        if !self.client_credentials {
            return Err(ProviderError::Unsupported(format!(
                "provider {} is not configured for the client-credentials grant \
                 (client_credentials = true)",
                self.name
            )));
        }
        let transport = Transport::new(&self.http, &self.name, Exchange::ClientCredentials)
            .with_shape(&self.shape);
        let scopes = scopes.unwrap_or(&self.scopes);
        let sent_at = unix_now();
        let request = self
            .oauth
            .exchange_client_credentials()
            .add_scopes(self.scope_params(scopes));
        let result = match tokio::time::timeout(limit, request.request_async(&transport)).await {
            Err(_) => Err(timed_out(limit)),
            Ok(answer) => answer.map_err(from_oauth).map(|response| {
                let mut token = refreshed(
                    response,
                    scopes,
                    self.scope_separator,
                    "",
                    sent_at,
                    self.default_lifetime,
                );
                token.refresh_token = None;
                token.refresh_token_expires_at_unix = None;
                token
            }),
        };
        self.trace(
            "client_credentials",
            transport.status(),
            transport.error_code(),
            &result,
        );
        result
    }
}
