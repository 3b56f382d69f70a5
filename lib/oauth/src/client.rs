//! [`Provider`]: one configured provider, and the refresh grant through the
//! `oauth2` crate over [`Transport`] (revocation is in `revoke.rs`).
//!
//! Holds the client secret for the life of the `Provider` (inside oauth2's
//! client). Holds a plaintext refresh token only for the length of one call,
//! in a buffer wiped when the call ends (also when it is cancelled), and
//! returns access and rotated refresh tokens in [`Secret`]s. Errors are
//! scrubbed of the token that was sent.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oauth2::StandardRevocableToken;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ErrorResponse, RefreshToken,
    RequestTokenError, Scope, TokenUrl,
};
use reqwest::StatusCode;
use zeroize::Zeroizing;

use crate::classify::{Exchange, classify_oauth_error, sanitize_text};
use crate::config::{ClientAuth, EndpointSource, ProviderConfig, ScopeSeparator};
use crate::discovery::{Endpoints, discover};
use crate::metrics::RefreshMetrics;
use crate::shape::ResponseShape;
use crate::token_body::TokenBody;
use crate::transport::Transport;
use crate::{ProviderError, Refreshed, Secret, TRACE_TARGET};

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenBody,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The HTTP client every [`Provider`] of a process shares: no redirects
/// (see [`Provider::new`]) and a connect timeout.
pub fn http_client() -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| ProviderError::Misconfigured(format!("cannot build the HTTP client: {e}")))
}

/// A configured provider. Cheap to share behind an `Arc`; every method takes
/// `&self` and may run concurrently.
pub struct Provider {
    pub(crate) name: String,
    pub(crate) endpoints: Endpoints,
    pub(crate) oauth: OAuthClient,
    pub(crate) http: reqwest::Client,
    /// For revocation, which does not go through oauth2 (see `revoke.rs`).
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    pub(crate) client_auth: ClientAuth,
    pub(crate) scopes: Vec<String>,
    pub(crate) scope_separator: ScopeSeparator,
    pub(crate) shape: ResponseShape,
    narrow_scopes: bool,
    pub(crate) client_credentials: bool,
    keep_alive: Option<Duration>,
    pub(crate) timeout: Duration,
    pub(crate) default_lifetime: Duration,
    metrics: RefreshMetrics,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints)
            .field("scopes", &self.scopes)
            .field("scope_separator", &self.scope_separator)
            .field("shape", &self.shape)
            .field("narrow_scopes", &self.narrow_scopes)
            .field("client_credentials", &self.client_credentials)
            .field("keep_alive", &self.keep_alive)
            .field("timeout", &self.timeout)
            .field("default_lifetime", &self.default_lifetime)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// Checks `config` and, if it names an `issuer`, runs OIDC discovery
    /// (within `timeout_secs`). `http` is shared by all providers; build it
    /// with `redirect(reqwest::redirect::Policy::none())` (a followed
    /// redirect would re-send the form with the token and secret elsewhere:
    /// answers from another URL are refused) and a connect timeout.
    ///
    /// Errors: `Misconfigured` for a bad config or discovery document,
    /// `Transient` if the issuer cannot be reached.
    pub async fn new(config: ProviderConfig, http: reqwest::Client) -> Result<Self, ProviderError> {
        let checked = config.check().map_err(ProviderError::Misconfigured)?;
        let mut endpoints = match checked.source {
            EndpointSource::Static { token } => Endpoints {
                issuer: None,
                token,
                revocation: None,
                userinfo: None,
                introspection: None,
            },
            EndpointSource::Discover { issuer } => {
                discover(
                    &http,
                    &config.name,
                    &issuer,
                    config.client_auth,
                    checked.timeout,
                )
                .await?
            }
        };
        if let Some(revocation) = checked.revocation {
            endpoints.revocation = Some(revocation);
        }
        let auth_type = match config.client_auth {
            ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
            ClientAuth::ClientSecretPost => AuthType::RequestBody,
        };
        let oauth = oauth2::Client::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(config.client_secret.expose().to_owned()))
            .set_auth_type(auth_type)
            .set_token_uri(TokenUrl::from_url(endpoints.token.clone()));
        tracing::info!(
            target: TRACE_TARGET,
            provider = %config.name,
            token_endpoint = %endpoints.token,
            revocation_endpoint = endpoints.revocation.as_ref().map(|u| u.as_str()),
            discovered = endpoints.issuer.is_some(),
            "provider configured"
        );
        let keep_alive = config.keep_alive();
        let shape = config.response_shape();
        Ok(Self {
            name: config.name,
            endpoints,
            oauth,
            http,
            client_id: config.client_id,
            client_secret: config.client_secret,
            client_auth: config.client_auth,
            scopes: config.scopes,
            scope_separator: config.scope_separator,
            shape,
            narrow_scopes: config.narrow_scopes,
            client_credentials: config.client_credentials,
            keep_alive,
            timeout: checked.timeout,
            default_lifetime: checked.default_lifetime,
            metrics: RefreshMetrics::default(),
        })
    }

    /// Counts this provider's refresh-grant calls in `metrics`.
    pub fn with_metrics(mut self, metrics: RefreshMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The provider's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoints in use (configured or discovered).
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The per-call time limit (`timeout_secs`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether a refresh may ask for fewer scopes than the grant holds
    /// (`narrow_scopes`).
    pub fn narrows_scopes(&self) -> bool {
        self.narrow_scopes
    }

    /// How long a grant may go unrefreshed before keep-alive refreshes it
    /// (`keep_alive_days`), if at all.
    pub fn keep_alive(&self) -> Option<Duration> {
        self.keep_alive
    }

    /// The lifetime assumed when a response has no `expires_in`.
    pub fn default_lifetime(&self) -> Duration {
        self.default_lifetime
    }

    /// One refresh-grant attempt (RFC 6749 section 6) within `timeout_secs`,
    /// asking for the configured `scopes`. No retries: see
    /// [`Provider::refresh_with_retry`].
    pub async fn refresh(&self, refresh_token: &str) -> Result<Refreshed, ProviderError> {
        self.refresh_within(refresh_token, None, self.timeout).await
    }

    /// One attempt within `limit`, asking for `narrowed` scopes instead of
    /// the configured ones if given.
    pub(crate) async fn refresh_within(
        &self,
        refresh_token: &str,
        narrowed: Option<&[String]>,
        limit: Duration,
    ) -> Result<Refreshed, ProviderError> {
        let transport =
            Transport::new(&self.http, &self.name, Exchange::Refresh).with_shape(&self.shape);
        let started = std::time::Instant::now();
        let scopes = narrowed.unwrap_or(&self.scopes);
        let result = self
            .exchange(refresh_token, scopes, limit, &transport)
            .await
            .map_err(|e| e.scrub(refresh_token));
        self.metrics.record(&self.name, &result, started.elapsed());
        self.trace(
            "refresh",
            transport.status(),
            transport.error_code(),
            &result,
        );
        result
    }

    async fn exchange(
        &self,
        refresh_token: &str,
        scopes: &[String],
        limit: Duration,
        transport: &Transport<'_>,
    ) -> Result<Refreshed, ProviderError> {
        let sent_at = unix_now();
        let token = WipedRefreshToken(RefreshToken::new(refresh_token.to_owned()));
        let request = self
            .oauth
            .exchange_refresh_token(&token.0)
            .add_scopes(self.scope_params(scopes));
        let response = match tokio::time::timeout(limit, request.request_async(transport)).await {
            Err(_) => return Err(timed_out(limit)),
            Ok(result) => result.map_err(from_oauth)?,
        };
        Ok(refreshed(
            response,
            scopes,
            self.scope_separator,
            refresh_token,
            sent_at,
            self.default_lifetime,
        ))
    }

    /// `scopes` as oauth2 sends them: oauth2 joins scopes with spaces, so
    /// comma-separated ones go as one.
    pub(crate) fn scope_params(&self, scopes: &[String]) -> Vec<Scope> {
        match self.scope_separator {
            ScopeSeparator::Space => scopes.iter().cloned().map(Scope::new).collect(),
            ScopeSeparator::Comma if scopes.is_empty() => Vec::new(),
            ScopeSeparator::Comma => vec![Scope::new(ScopeSeparator::Comma.join(scopes))],
        }
    }

    pub(crate) fn trace<T>(
        &self,
        operation: &str,
        status: Option<u16>,
        error_code: Option<&str>,
        result: &Result<T, ProviderError>,
    ) {
        let provider = self.name.as_str();
        match result {
            Ok(_) => {
                tracing::debug!(target: TRACE_TARGET, provider, operation, outcome = "ok", status, error_code, "provider call succeeded");
            }
            Err(e) => {
                let error_code = match e {
                    ProviderError::GrantDead { error, .. } => Some(error.as_str()),
                    _ => error_code,
                };
                let outcome = e.kind();
                if matches!(e, ProviderError::Unsupported(_)) {
                    tracing::info!(target: TRACE_TARGET, provider, operation, outcome, status, error_code, error = %e, "provider call failed");
                } else {
                    tracing::warn!(target: TRACE_TARGET, provider, operation, outcome, status, error_code, error = %e, "provider call failed");
                }
            }
        }
    }
}

/// A refresh token wiped when dropped, also if the call is cancelled.
struct WipedRefreshToken(RefreshToken);

impl Drop for WipedRefreshToken {
    fn drop(&mut self) {
        let token = std::mem::replace(&mut self.0, RefreshToken::new(String::new()));
        drop(Zeroizing::new(token.into_secret()));
    }
}

pub(crate) fn timed_out(limit: Duration) -> ProviderError {
    ProviderError::Transient {
        reason: format!("timed out after {} ms", limit.as_millis()),
        retry_after: None,
    }
}

/// A parsed success answer to what a refresh returns. `asked`: the scopes
/// sent, which a response that names none has (RFC 6749 section 5.1);
/// `sent`: the refresh token sent; `sent_at`: when, in Unix seconds.
pub(crate) fn refreshed(
    mut response: TokenBody,
    asked: &[String],
    separator: ScopeSeparator,
    sent: &str,
    sent_at: i64,
    default_lifetime: Duration,
) -> Refreshed {
    let lifetime = response
        .expires_in
        .map_or(default_lifetime, Duration::from_secs);
    let named: Vec<String> = response
        .scopes
        .take()
        .unwrap_or_default()
        .iter()
        .flat_map(|s| separator.split(s.as_str()))
        .collect();
    // A response that names no scope (or only separators) has those asked.
    let scopes = if named.is_empty() {
        asked.to_vec()
    } else {
        named
    };
    let refresh_token = response
        .refresh_token
        .take()
        .map(|t| Secret::new(t.into_secret()))
        .filter(|t| !t.is_empty() && !same_secret(t.expose(), sent));
    Refreshed {
        access_token: Secret::new(response.take_access_token()),
        token_type: response.token_type.0.clone(),
        expires_at_unix: sent_at
            .saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
        scopes,
        refresh_token,
        refresh_token_expires_at_unix: response
            .refresh_token_expires_in
            .and_then(|secs| i64::try_from(secs).ok())
            .map(|secs| sent_at.saturating_add(secs)),
    }
}

/// oauth2's error to ours. The transport already classified every failed
/// exchange; what is left are success bodies oauth2 could not use.
pub(crate) fn from_oauth<TE: ErrorResponse + 'static>(
    e: RequestTokenError<ProviderError, TE>,
) -> ProviderError {
    match e {
        RequestTokenError::Request(e) => e,
        RequestTokenError::ServerResponse(r) => {
            // Not reached: the transport hands oauth2 successes only.
            let text = sanitize_text(&r.to_string(), 300);
            classify_oauth_error(StatusCode::BAD_REQUEST, &text, None, None)
        }
        RequestTokenError::Parse(e, _body) => {
            // serde's message may quote a value from the body; only say
            // where, and name a missing field.
            let inner = e.inner().to_string();
            let what = if inner.starts_with("missing field") {
                inner
                    .split(" at line")
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            } else {
                format!(
                    "bad value at `{}`",
                    sanitize_text(&e.path().to_string(), 100)
                )
            };
            ProviderError::InvalidResponse(format!("malformed token response: {what}"))
        }
        RequestTokenError::Other(text) => ProviderError::InvalidResponse(sanitize_text(&text, 300)),
    }
}

fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

pub(crate) fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}
