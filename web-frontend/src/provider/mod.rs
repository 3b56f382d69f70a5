//! The provider catalogue: starting an authorization-code flow (state, PKCE
//! S256, nonce, the provider's way of asking for offline access) and
//! finishing it (code exchange with the `oauth2`/`openidconnect` crates, then
//! identifying the account); and the device flow ([`DeviceGrant`]).
//!
//! The refresh token leaves here only inside a [`Secret`], on its way to be
//! sealed; the access and ID tokens are dropped after identifying the
//! account. Nothing here logs or formats a token.

mod answer;
mod config;
mod device;
mod error;
mod from_catalogue;
mod oidc;
mod plain;

use std::collections::HashMap;
use std::sync::Arc;

use oauth2::{CsrfToken, PkceCodeChallenge, PkceCodeVerifier};
use tokenvault_runtime::secret::Secret;
use url::Url;
use zeroize::Zeroizing;

pub use config::{ClientAuth, ProviderConfig, ProviderKind, ScopeSeparator, SubjectSource};
pub use device::{DeviceGrant, MAX_DEVICE_WAIT};
pub use error::ProviderError;
pub use from_catalogue::ConnectSettings;
pub use plain::user_api_subject;

use config::Endpoints;

/// A started authorization: where to send the browser, and what the callback
/// must be checked against. `Debug` shows none of the secrets.
pub struct Authorization {
    /// The provider's authorization URL with every parameter.
    pub url: Url,
    /// The `state` parameter.
    pub state: String,
    /// The PKCE verifier.
    pub verifier: Zeroizing<String>,
    /// The OIDC nonce (empty for plain OAuth 2.0).
    pub nonce: String,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization").finish_non_exhaustive()
    }
}

/// A finished authorization: who the account is at the provider, and its
/// refresh token.
#[derive(Debug)]
pub struct Granted {
    /// The provider's stable identifier of the account (`sub`, GitHub's `id`).
    pub subject: String,
    /// The refresh token.
    pub refresh_token: Secret,
    /// How long the provider said the refresh token lives, in seconds.
    pub refresh_token_expires_in: Option<u64>,
}

/// The refresh token of a code exchange's answer: without one, the account
/// cannot be kept, so the sign-in fails.
fn refresh_token(response: &impl oauth2::TokenResponse) -> Result<Secret, ProviderError> {
    response
        .refresh_token()
        .map(|t| Secret::new(t.secret().clone()))
        .ok_or(ProviderError::NoRefreshToken)
}

/// One configured provider.
#[derive(Debug)]
pub struct Provider {
    config: ProviderConfig,
    flow: Flow,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per provider, built at start
enum Flow {
    Oidc(oidc::OidcFlow),
    Plain(plain::PlainFlow),
}

impl Provider {
    /// Builds a provider; no network yet (OIDC discovery happens at the first
    /// sign-in, so that a provider being down never stops the frontend).
    pub fn new(config: ProviderConfig, redirect_uri: &Url) -> Result<Self, ProviderError> {
        let endpoints = config.endpoints().map_err(ProviderError::Misconfigured)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout())
            .user_agent(concat!(
                "tokenvault-web-frontend/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| ProviderError::Misconfigured(error::root_cause(&e)))?;
        let redirect = oauth2::RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| ProviderError::Misconfigured(e.to_string()))?;
        let flow = match endpoints {
            Endpoints::Oidc { issuer } => {
                Flow::Oidc(oidc::OidcFlow::new(&config, issuer, redirect, http)?)
            }
            Endpoints::Oauth2 {
                authorization,
                token,
                user,
            } => Flow::Plain(plain::PlainFlow::new(
                &config,
                authorization,
                token,
                user,
                redirect,
                http,
            )),
        };
        Ok(Self { config, flow })
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The name shown to people.
    pub fn display_name(&self) -> &str {
        self.config.display_name()
    }

    /// Whether an authorization response's `iss` (RFC 9207) is this
    /// provider's issuer; plain OAuth 2.0 providers have none to compare.
    pub fn issuer_matches(&self, iss: &str) -> bool {
        match &self.flow {
            Flow::Oidc(f) => f.issuer() == iss,
            Flow::Plain(_) => true,
        }
    }

    /// Starts an authorization-code flow.
    pub async fn begin(&self) -> Result<Authorization, ProviderError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = match &self.flow {
            Flow::Oidc(f) => f.authorize_url(&self.config, challenge).await?,
            Flow::Plain(f) => f.authorize_url(&self.config, challenge),
        };
        Ok(Authorization {
            url,
            state,
            verifier: Zeroizing::new(verifier.secret().clone()),
            nonce,
        })
    }

    /// Exchanges `code`, checks that a refresh token came back, and
    /// identifies the account (`callback_query`: the callback's query
    /// string, where some providers name it).
    pub async fn finish(
        &self,
        code: String,
        verifier: &str,
        nonce: &str,
        callback_query: Option<&str>,
    ) -> Result<Granted, ProviderError> {
        let code = oauth2::AuthorizationCode::new(code);
        let verifier = PkceCodeVerifier::new(verifier.to_owned());
        let granted = match &self.flow {
            Flow::Oidc(f) => f.finish(&self.config, code, verifier, nonce).await?,
            Flow::Plain(f) => {
                f.finish(&self.config, code, verifier, callback_query)
                    .await?
            }
        };
        tokenvault_proto::ids::check_account(&granted.subject).map_err(|_| {
            ProviderError::Identity(
                "the provider's account identifier has unsupported characters".into(),
            )
        })?;
        Ok(granted)
    }
}

/// A fresh random `state`.
fn new_state() -> String {
    CsrfToken::new_random().secret().clone()
}

/// The configured providers, in configuration order.
#[derive(Debug, Clone)]
pub struct Catalogue {
    ordered: Vec<Arc<Provider>>,
    by_name: HashMap<String, Arc<Provider>>,
}

impl Catalogue {
    /// Builds every provider; `redirect_uri` is `<public_url>/callback`.
    pub fn new(configs: &[ProviderConfig], redirect_uri: &Url) -> Result<Self, ProviderError> {
        let mut ordered = Vec::new();
        let mut by_name = HashMap::new();
        for c in configs {
            let p = Arc::new(Provider::new(c.clone(), redirect_uri)?);
            by_name.insert(c.name.clone(), Arc::clone(&p));
            ordered.push(p);
        }
        Ok(Self { ordered, by_name })
    }

    /// A provider by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }

    /// Every provider, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.ordered.iter()
    }
}
