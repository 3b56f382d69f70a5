//! Plain OAuth 2.0 providers (GitHub and the like): configured endpoints, the
//! code exchanged with the `oauth2` crate, and the account named by a user
//! API called with the access token (which is then dropped).

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde_json::Value;
use url::Url;

use super::config::{ClientAuth, ProviderConfig};
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
    user: Url,
    redirect: RedirectUrl,
    http: reqwest::Client,
}

impl PlainFlow {
    pub(super) fn new(
        config: &ProviderConfig,
        authorization: Url,
        token: Url,
        user: Url,
        redirect: RedirectUrl,
        http: reqwest::Client,
    ) -> Self {
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
        let mut request = client
            .authorize_url(move || CsrfToken::new(state_for_url))
            .set_pkce_challenge(challenge)
            .add_scopes(config.scopes.iter().cloned().map(Scope::new));
        for (name, value) in &config.auth_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, _) = request.url();
        (url, state, String::new())
    }

    pub(super) async fn finish(
        &self,
        config: &ProviderConfig,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
    ) -> Result<Granted, ProviderError> {
        let response = self
            .client()
            .exchange_code(code)
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(token_request_error)?;
        let refresh_token = super::refresh_token(&response)?;
        let subject = self
            .user_subject(response.access_token().secret(), &config.subject_field)
            .await?;
        Ok(Granted {
            subject,
            refresh_token,
        })
    }

    /// Asks the user API who the access token belongs to.
    async fn user_subject(&self, access_token: &str, field: &str) -> Result<String, ProviderError> {
        let response = self
            .http
            .get(self.user.clone())
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

/// The account named by a user-API answer `body`: its `field` member, a
/// non-empty string or a number. Also run by the `user_api` fuzz target.
pub fn user_api_subject(body: &[u8], field: &str) -> Result<String, ProviderError> {
    if body.len() > MAX_USER_BYTES {
        return Err(ProviderError::Identity("user API answer too large".into()));
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|_| ProviderError::Identity("user API answer is not JSON".into()))?;
    match json.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(ProviderError::Identity(format!(
            "user API answer has no {field:?} field"
        ))),
    }
}
