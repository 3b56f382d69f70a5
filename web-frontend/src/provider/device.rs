//! The device authorization grant (RFC 8628) for OpenID providers with a
//! `device_authorization_endpoint`: ask for a device code and a user code,
//! then poll the token endpoint (at the provider's interval, slower on
//! `slow_down`) until the person has entered the code and consented on
//! another device, refused, or let the code expire. The account is the one
//! the token answer's ID token names (it carries no nonce: none was sent).
//!
//! The device code is a bearer secret for the pending grant: it stays in
//! [`DeviceGrant`], whose `Debug` shows none of it, and is never logged.
//! The refresh token leaves here only inside a [`Granted`].

use std::time::Duration;

use openidconnect::core::CoreDeviceAuthorizationResponse;
use openidconnect::{DeviceAuthorizationUrl, Nonce, Scope};

use super::answer::{AnswerSubject, ShapedHttp};
use super::error::{ProviderError, token_request_error};
use super::{Flow, Granted, Provider};

/// The shortest wait between two polls, whatever the provider says.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The most polling a device grant may take, whatever the provider says.
pub const MAX_DEVICE_WAIT: Duration = Duration::from_secs(30 * 60);

/// A started device authorization: what the person is shown, and the
/// pending grant to poll for.
pub struct DeviceGrant {
    answer: CoreDeviceAuthorizationResponse,
}

impl std::fmt::Debug for DeviceGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceGrant")
            .field("verification_uri", &self.verification_uri())
            .field("expires_in", &self.expires_in())
            .finish_non_exhaustive()
    }
}

impl DeviceGrant {
    /// The code the person enters at [`Self::verification_uri`].
    pub fn user_code(&self) -> &str {
        self.answer.user_code().secret()
    }

    /// Where the person enters the code.
    pub fn verification_uri(&self) -> &str {
        self.answer.verification_uri().as_str()
    }

    /// The same with the code filled in, if the provider offers one.
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.answer
            .verification_uri_complete()
            .map(|u| u.secret().as_str())
    }

    /// How long the codes are valid.
    pub fn expires_in(&self) -> Duration {
        self.answer.expires_in().min(MAX_DEVICE_WAIT)
    }

    /// How long to wait between polls.
    pub fn interval(&self) -> Duration {
        self.answer.interval()
    }
}

impl Provider {
    /// Whether this provider can be connected with the device flow.
    pub fn offers_device_flow(&self) -> bool {
        self.config.device_authorization_endpoint.is_some() && matches!(self.flow, Flow::Oidc(_))
    }

    /// Asks the provider for a device code and a user code.
    pub async fn begin_device(&self) -> Result<DeviceGrant, ProviderError> {
        let (Flow::Oidc(flow), Some(endpoint)) =
            (&self.flow, &self.config.device_authorization_endpoint)
        else {
            return Err(ProviderError::Misconfigured(format!(
                "provider {} has no device_authorization_endpoint",
                self.name()
            )));
        };
        let endpoint = DeviceAuthorizationUrl::new(endpoint.clone())
            .map_err(|e| ProviderError::Misconfigured(e.to_string()))?;
        let metadata = flow.metadata(false).await?;
        let client = flow
            .client(&metadata)
            .set_device_authorization_url(endpoint);
        let mut request = client.exchange_device_code();
        // `openid` is added by the client itself.
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let answer = request
            .request_async(flow.http())
            .await
            .map_err(token_request_error)?;
        Ok(DeviceGrant { answer })
    }

    /// Polls until the person has consented (the account and its refresh
    /// token), refused (`Refused("access_denied")`) or let the code expire
    /// (`Refused("expired_token")`).
    pub async fn finish_device(&self, grant: &DeviceGrant) -> Result<Granted, ProviderError> {
        let Flow::Oidc(flow) = &self.flow else {
            return Err(ProviderError::Misconfigured(format!(
                "provider {} offers no device flow",
                self.name()
            )));
        };
        let metadata = flow.metadata(false).await?;
        let client = flow.client(&metadata);
        let shape = self.config.response_shape();
        let http = ShapedHttp::new(flow.http(), &shape, &AnswerSubject::Elsewhere);
        // oauth2 polls until the person is done, slowing down when asked,
        // but ends at the first other failure: a provider unavailable for
        // a moment is polled again (never faster than once a second).
        let deadline = tokio::time::Instant::now() + grant.expires_in();
        let sleep = |d: Duration| tokio::time::sleep(d.max(MIN_INTERVAL));
        let response = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let polled = client
                .exchange_device_access_token(&grant.answer)
                .map_err(|e| ProviderError::Misconfigured(e.to_string()))?
                .request_async(&http, sleep, Some(left))
                .await
                .map_err(token_request_error);
            match polled {
                Err(ProviderError::Unavailable(reason)) if left > MIN_INTERVAL => {
                    tracing::info!(provider = self.name(), %reason, "device flow: provider unavailable, polling again");
                    tokio::time::sleep(grant.interval().max(MIN_INTERVAL)).await;
                }
                other => break other?,
            }
        };
        let refresh_token = super::refresh_token(&response)?;
        let id_token = super::oidc::id_token_of(&response)?;
        // No nonce was sent, so none may come back.
        let no_nonce = |nonce: Option<&Nonce>| match nonce {
            None => Ok(()),
            Some(_) => Err("the ID token carries a nonce nobody sent".to_owned()),
        };
        let subject = flow.account_of(&self.config, id_token, no_nonce).await?;
        tokenvault_proto::ids::check_account(&subject).map_err(|_| {
            ProviderError::Identity(
                "the provider's account identifier has unsupported characters".into(),
            )
        })?;
        Ok(Granted {
            subject,
            refresh_token,
            refresh_token_expires_in: http.refresh_token_expires_in(),
        })
    }
}
