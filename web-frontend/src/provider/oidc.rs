//! OpenID Connect providers: discovery (metadata and JWKS, cached for an hour
//! and fetched again when an ID token names an unknown key), the code
//! exchange, and the account named by a validated ID token (signature
//! against the provider's JWKS, `iss`, `aud`, `exp` and `nonce`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreClient, CoreIdToken, CoreProviderMetadata, CoreResponseType, CoreTokenResponse,
};
use openidconnect::{
    AuthType, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, IssuerUrl, Nonce, NonceVerifier, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope,
};
use tokio::sync::Mutex;
use url::Url;

use super::answer::{AnswerSubject, ShapedHttp, id_token_claim};
use super::config::{ClientAuth, ProviderConfig};
use super::error::{ProviderError, root_cause, token_request_error};
use super::{Granted, new_state};

/// How long discovered metadata and keys are used before fetching them again.
const METADATA_TTL: Duration = Duration::from_secs(3600);

pub(super) struct OidcFlow {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: ClientSecret,
    auth_type: AuthType,
    redirect: RedirectUrl,
    http: reqwest::Client,
    metadata: Mutex<Option<(Instant, Arc<CoreProviderMetadata>)>>,
}

impl std::fmt::Debug for OidcFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcFlow")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id.as_str())
            .finish_non_exhaustive()
    }
}

impl OidcFlow {
    pub(super) fn new(
        config: &ProviderConfig,
        issuer: String,
        redirect: RedirectUrl,
        http: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            issuer: IssuerUrl::new(issuer)
                .map_err(|e| ProviderError::Misconfigured(e.to_string()))?,
            client_id: ClientId::new(config.client_id.clone()),
            client_secret: ClientSecret::new(config.client_secret.expose().to_owned()),
            auth_type: match config.client_auth {
                ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
                ClientAuth::ClientSecretPost => AuthType::RequestBody,
            },
            redirect,
            http,
            metadata: Mutex::new(None),
        })
    }

    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(super) fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The provider's metadata, discovered now if not cached or if `fresh`.
    pub(super) async fn metadata(
        &self,
        fresh: bool,
    ) -> Result<Arc<CoreProviderMetadata>, ProviderError> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, m)) = cached.as_ref()
            && !fresh
            && at.elapsed() < METADATA_TTL
        {
            return Ok(Arc::clone(m));
        }
        let discovered = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| match e {
                openidconnect::DiscoveryError::Request(e) => {
                    ProviderError::Unavailable(format!("discovery: {}", root_cause(&e)))
                }
                openidconnect::DiscoveryError::Response(status, _, _) => {
                    ProviderError::Unavailable(format!("discovery answered HTTP {status}"))
                }
                other => ProviderError::Misconfigured(format!("discovery: {other}")),
            })?;
        let discovered = Arc::new(discovered);
        *cached = Some((Instant::now(), Arc::clone(&discovered)));
        Ok(discovered)
    }

    pub(super) fn client(
        &self,
        metadata: &CoreProviderMetadata,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            metadata.clone(),
            self.client_id.clone(),
            Some(self.client_secret.clone()),
        )
        .set_auth_type(self.auth_type.clone())
        .set_redirect_uri(self.redirect.clone())
    }

    pub(super) async fn authorize_url(
        &self,
        config: &ProviderConfig,
        challenge: PkceCodeChallenge,
    ) -> Result<(Url, String, String), ProviderError> {
        let metadata = self.metadata(false).await?;
        let state = new_state();
        let state_for_url = state.clone();
        let client = self.client(&metadata);
        let mut request = client.authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            move || CsrfToken::new(state_for_url),
            Nonce::new_random,
        );
        if config.pkce {
            request = request.set_pkce_challenge(challenge);
        }
        for scope in config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (name, value) in &config.auth_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, _, nonce) = request.url();
        Ok((url, state, nonce.secret().clone()))
    }

    pub(super) async fn finish(
        &self,
        config: &ProviderConfig,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
        nonce: &str,
    ) -> Result<Granted, ProviderError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata);
        let mut request = client
            .exchange_code(code)
            .map_err(|e| ProviderError::Misconfigured(e.to_string()))?;
        if config.pkce {
            request = request.set_pkce_verifier(verifier);
        }
        let shape = config.response_shape();
        let http = ShapedHttp::new(&self.http, &shape, &AnswerSubject::Elsewhere);
        let response = request
            .request_async(&http)
            .await
            .map_err(token_request_error)?;
        let refresh_token = super::refresh_token(&response)?;
        let id_token = id_token_of(&response)?;
        let nonce = Nonce::new(nonce.to_owned());
        let subject = self.account_of(config, id_token, &nonce).await?;
        Ok(Granted {
            subject,
            refresh_token,
            refresh_token_expires_in: http.refresh_token_expires_in(),
        })
    }
}

impl OidcFlow {
    /// The account an ID token straight from the token endpoint names: its
    /// `subject_claim`, once its signature (against the provider's keys,
    /// fetched again once for an unknown key), `iss`, `aud`, `exp` and
    /// nonce (as `nonce` checks it) are valid.
    pub(super) async fn account_of<N: NonceVerifier + Copy>(
        &self,
        config: &ProviderConfig,
        id_token: &CoreIdToken,
        nonce: N,
    ) -> Result<String, ProviderError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata);
        let subject = match id_token.claims(&client.id_token_verifier(), nonce) {
            Ok(claims) => claims.subject().to_string(),
            // The provider may have rotated its signing keys: fetch them once more.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let metadata = self.metadata(true).await?;
                let client = self.client(&metadata);
                id_token
                    .claims(&client.id_token_verifier(), nonce)
                    .map_err(id_token_error)?
                    .subject()
                    .to_string()
            }
            Err(e) => return Err(id_token_error(e)),
        };
        // Validated above: another claim may now be read from it.
        if config.subject_claim == "sub" {
            return Ok(subject);
        }
        id_token_claim(
            &id_token.to_string(),
            &config.subject_claim,
            self.client_id.as_str(),
        )
    }
}

/// The ID token of a token answer; an OpenID provider's always has one.
pub(super) fn id_token_of(response: &CoreTokenResponse) -> Result<&CoreIdToken, ProviderError> {
    response
        .extra_fields()
        .id_token()
        .ok_or_else(|| ProviderError::Identity("the token response has no ID token".into()))
}

fn id_token_error(e: ClaimsVerificationError) -> ProviderError {
    ProviderError::Identity(format!("the ID token is not valid: {e}"))
}
