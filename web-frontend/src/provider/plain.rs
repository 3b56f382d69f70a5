//! Plain OAuth 2.0 providers (GitHub and the like): configured endpoints, the
//! code exchanged with the `oauth2` crate (the answer's shape fixed first,
//! see [`super::answer`]), and the account named where the provider names
//! it: a user API called with the access token (which is then dropped), the
//! token answer, its ID token, or the callback's query.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use url::Url;

use tokenvault_oauth::shape::ResponseShape;

use super::answer::{AnswerSubject, ShapedHttp, json_subject};
use super::config::{ClientAuth, ProviderConfig, ScopeSeparator, SubjectSource};
use super::error::{ProviderError, root_cause, token_request_error};
use super::{Granted, new_state};

/// The largest user-API answer read.
const MAX_USER_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub(super) struct PlainFlow {
    client_id: ClientId,
    client_secret: ClientSecret,
    auth_type: AuthType,
    authorization: AuthUrl,
    token: TokenUrl,
    /// The user API, for [`SubjectSource::UserApi`].
    user: Option<Url>,
    redirect: RedirectUrl,
    http: reqwest::Client,
    shape: ResponseShape,
    in_answer: AnswerSubject,
}

impl PlainFlow {
    pub(super) fn new(
        config: &ProviderConfig,
        authorization: Url,
        token: Url,
        user: Option<Url>,
        redirect: RedirectUrl,
        http: reqwest::Client,
    ) -> Self {
        let in_answer = match config.subject_from {
            SubjectSource::TokenResponse => AnswerSubject::Field(config.subject_field.clone()),
            SubjectSource::IdToken => AnswerSubject::IdTokenClaim {
                claim: config.subject_claim.clone(),
                client_id: config.client_id.clone(),
            },
            SubjectSource::UserApi | SubjectSource::Redirect => AnswerSubject::Elsewhere,
        };
        Self {
            client_id: ClientId::new(config.client_id.clone()),
            client_secret: ClientSecret::new(config.client_secret.expose().to_owned()),
            auth_type: match config.client_auth {
                ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
                ClientAuth::ClientSecretPost => AuthType::RequestBody,
            },
            authorization: AuthUrl::from_url(authorization),
            token: TokenUrl::from_url(token),
            user,
            redirect,
            http,
            shape: config.response_shape(),
            in_answer,
        }
    }

    fn client(
        &self,
    ) -> BasicClient<
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    > {
        BasicClient::new(self.client_id.clone())
            .set_client_secret(self.client_secret.clone())
            .set_auth_type(self.auth_type.clone())
            .set_auth_uri(self.authorization.clone())
            .set_token_uri(self.token.clone())
            .set_redirect_uri(self.redirect.clone())
    }

    pub(super) fn authorize_url(
        &self,
        config: &ProviderConfig,
        challenge: PkceCodeChallenge,
    ) -> (Url, String, String) {
        let state = new_state();
        let state_for_url = state.clone();
        let client = self.client();
        let mut request = client.authorize_url(move || CsrfToken::new(state_for_url));
        if config.pkce {
            request = request.set_pkce_challenge(challenge);
        }
        request = match config.scope_separator {
            // oauth2 joins scopes with spaces.
            ScopeSeparator::Space => {
                request.add_scopes(config.scopes.iter().cloned().map(Scope::new))
            }
            ScopeSeparator::Comma if config.scopes.is_empty() => request,
            ScopeSeparator::Comma => {
                request.add_scope(Scope::new(ScopeSeparator::Comma.join(&config.scopes)))
            }
        };
        for (name, value) in &config.auth_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, _) = request.url();
        (url, state, String::new())
    }

    /// Exchanges `code`; `callback_query` is the callback's query string,
    /// for a provider that names the account there.
    pub(super) async fn finish(
        &self,
        config: &ProviderConfig,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
        callback_query: Option<&str>,
    ) -> Result<Granted, ProviderError> {
        let http = ShapedHttp::new(&self.http, &self.shape, &self.in_answer);
        let client = self.client();
        let mut request = client.exchange_code(code);
        if config.pkce {
            request = request.set_pkce_verifier(verifier);
        }
        let response = request
            .request_async(&http)
            .await
            .map_err(token_request_error)?;
        let refresh_token = super::refresh_token(&response)?;
        let refresh_token_expires_in = http.refresh_token_expires_in();
        let subject = match (config.subject_from, &self.user) {
            (SubjectSource::UserApi, Some(user)) => {
                self.user_subject(
                    user,
                    response.access_token().secret(),
                    &config.subject_field,
                )
                .await?
            }
            (SubjectSource::Redirect, _) => {
                redirect_subject(callback_query, &config.subject_field)?
            }
            _ => http.found.into_inner().ok().flatten().unwrap_or_else(|| {
                Err(ProviderError::Identity(
                    "the token response does not name the account".into(),
                ))
            })?,
        };
        Ok(Granted {
            subject,
            refresh_token,
            refresh_token_expires_in,
        })
    }

    /// Asks the user API who the access token belongs to.
    async fn user_subject(
        &self,
        user: &Url,
        access_token: &str,
        field: &str,
    ) -> Result<String, ProviderError> {
        let response = self
            .http
            .get(user.clone())
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("user API: {}", root_cause(&e))))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(ProviderError::Unavailable(format!(
                "user API answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(ProviderError::Identity(format!(
                "user API answered {status}"
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("user API: {}", root_cause(&e))))?;
        user_api_subject(&body, field)
    }
}

/// The account named by a user-API answer `body`: its `field` member (a dot
/// path), a non-empty string or a number. Also run by the `user_api` fuzz
/// target.
pub fn user_api_subject(body: &[u8], field: &str) -> Result<String, ProviderError> {
    if body.len() > MAX_USER_BYTES {
        return Err(ProviderError::Identity("user API answer too large".into()));
    }
    json_subject(body, field, "user API answer")
}

/// The account named by the callback's `param` query parameter.
fn redirect_subject(query: Option<&str>, param: &str) -> Result<String, ProviderError> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(name, _)| name == param)
        .map(|(_, value)| value.into_owned())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ProviderError::Identity(format!("the callback has no {param:?} parameter")))
}
