//! [`ProviderConfig`]: one provider in the web-frontend's catalogue. Adding a
//! provider is a config entry, not code: `kind = "oidc"` (discovery, ID-token
//! identity) covers Google, Microsoft Entra ID and any OpenID provider;
//! `kind = "oauth2"` (explicit endpoints, identity from a user API) covers
//! GitHub and other plain OAuth 2.0 providers.
//!
//! Holds the provider's client secret in a [`Secret`] (never printed).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
pub use tokenvault_catalogue::ScopeSeparator;
pub use tokenvault_oauth::checks::ClientAuth;
use tokenvault_oauth::checks::{
    check_client, check_endpoint, check_issuer, check_member_path, check_scopes, check_timeout,
};
use tokenvault_oauth::shape::ResponseShape;
use tokenvault_runtime::secret::Secret;
use url::Url;

/// How the account is identified and where the endpoints come from.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenID Connect: endpoints from `<issuer>/.well-known/openid-configuration`,
    /// the account from a validated ID token (signature against the JWKS,
    /// `iss`, `aud`, `exp`, `nonce`).
    #[default]
    Oidc,
    /// Plain OAuth 2.0: configured endpoints, the account from a user API
    /// (e.g. GitHub's `https://api.github.com/user`).
    Oauth2,
}

/// One provider, e.g. (see `deploy/examples/` for Google, GitHub, Microsoft
/// and a generic OpenID provider):
///
/// ```toml
/// [[providers]]
/// name = "google"
/// display_name = "Google"
/// issuer = "https://accounts.google.com"
/// client_id = "..."
/// client_secret = "..."
/// scopes = ["openid", "email"]
/// auth_params = { access_type = "offline", prompt = "consent" }
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider's name as stored with each account (`a-z 0-9 - _`); the
    /// same name as in set-service's and get-service's catalogues.
    pub name: String,
    /// The name shown on the Connect button; defaults to `name`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `oidc` (default) or `oauth2`.
    #[serde(default)]
    pub kind: ProviderKind,
    /// The OIDC issuer (`kind = "oidc"`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The authorization endpoint (`kind = "oauth2"`).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// The token endpoint (`kind = "oauth2"`).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The user API that names the account (`kind = "oauth2"`), called with
    /// the access token as a Bearer token.
    #[serde(default)]
    pub user_endpoint: Option<String>,
    /// Where the account's id comes from (`kind = "oauth2"`): `user_api`
    /// (default), `token_response`, `id_token` or `redirect`.
    #[serde(default)]
    pub subject_from: SubjectSource,
    /// The field that identifies the account (a string or a number): a dot
    /// path into the user API's answer (`id` for GitHub, `data.id`) or into
    /// the token response (`authed_user.id`), or the callback's query
    /// parameter (`realmId`).
    #[serde(default = "default_subject_field")]
    pub subject_field: String,
    /// The ID-token claim that identifies the account: `sub` (default), or
    /// e.g. Microsoft's `oid`.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// How scopes are joined: `" "` (default) or `","` (Slack, Strava).
    #[serde(default)]
    pub scope_separator: ScopeSeparator,
    /// Whether to send PKCE (S256); off only for a provider that refuses it.
    #[serde(default = "default_pkce")]
    pub pkce: bool,
    /// Dot path of the user's tokens in a nested token response (Slack:
    /// `authed_user`), used when the top level has no access token.
    #[serde(default)]
    pub token_response_path: Option<String>,
    /// The token-answer member with the refresh token's lifetime in
    /// seconds, when not `refresh_token_expires_in`; recorded at connect.
    #[serde(default)]
    pub refresh_token_expiry_field: Option<String>,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: Secret,
    /// Client authentication at the token endpoint.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Scopes to ask for, including the provider's way of asking for offline
    /// access where it is a scope (`offline_access`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Extra authorization-request parameters, e.g. Google's
    /// `access_type = "offline"` and `prompt = "consent"`.
    #[serde(default)]
    pub auth_params: BTreeMap<String, String>,
    /// Time limit of each HTTP call to the provider.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The RFC 8628 device authorization endpoint: set, the provider can be
    /// connected from a device without a browser (`POST /device/{provider}`).
    /// OpenID providers only (the ID token names the account).
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
}

fn default_subject_field() -> String {
    "sub".to_owned()
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

fn default_pkce() -> bool {
    true
}

/// Where a plain OAuth 2.0 provider names the account.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SubjectSource {
    /// `subject_field` of the user API's answer (`user_endpoint`).
    #[default]
    UserApi,
    /// `subject_field` of the token response.
    TokenResponse,
    /// `subject_claim` of the token response's ID token, which came straight
    /// from the token endpoint over TLS (OpenID Connect Core 3.1.3.7); its
    /// `aud` must be this client.
    IdToken,
    /// The callback's `subject_field` query parameter (QuickBooks'
    /// `realmId`).
    Redirect,
}

fn default_timeout_secs() -> u64 {
    10
}

/// The longest per-call time limit, in seconds.
const MAX_TIMEOUT_SECS: u64 = 120;

/// Parameters tokenvault sets itself; `auth_params` may not override them.
const RESERVED_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "request",
    "request_uri",
];

/// A checked provider config.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // built once per provider at start
pub(crate) enum Endpoints {
    Oidc {
        /// Kept as written: discovery compares it with the document's
        /// `issuer` character for character.
        issuer: String,
    },
    Oauth2 {
        authorization: Url,
        token: Url,
        /// The user API, for [`SubjectSource::UserApi`].
        user: Option<Url>,
    },
}

impl ProviderConfig {
    /// The name shown to people.
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }

    /// Where the provider puts the tokens in its token answers.
    pub fn response_shape(&self) -> ResponseShape {
        ResponseShape {
            nested_path: self.token_response_path.clone(),
            expiry_field: self.refresh_token_expiry_field.clone(),
        }
    }

    /// The per-call time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Checks everything that can be checked without the network; the error
    /// names the setting.
    pub fn validate(&self) -> Result<(), String> {
        self.endpoints().map(|_| ())
    }

    pub(crate) fn endpoints(&self) -> Result<Endpoints, String> {
        tokenvault_proto::ids::check_provider(&self.name)
            .map_err(|e| format!("providers.name {:?}: {e}", self.name))?;
        let setting = |field: &str| format!("providers.{}.{field}", self.name);
        let required = |field: &str, value: &Option<String>| {
            value
                .as_deref()
                .ok_or_else(|| format!("{}: required for kind = {:?}", setting(field), self.kind))
                .and_then(|v| check_endpoint(&setting(field), v))
        };
        let forbidden = |field: &str, value: &Option<String>| match value {
            Some(_) => Err(format!(
                "{}: not used with kind = {:?}",
                setting(field),
                self.kind
            )),
            None => Ok(()),
        };
        let endpoints = match self.kind {
            ProviderKind::Oidc => {
                forbidden("authorization_endpoint", &self.authorization_endpoint)?;
                forbidden("token_endpoint", &self.token_endpoint)?;
                forbidden("user_endpoint", &self.user_endpoint)?;
                let issuer = self.issuer.as_deref().ok_or_else(|| {
                    format!("{}: required for kind = {:?}", setting("issuer"), self.kind)
                })?;
                check_issuer(&setting("issuer"), issuer)?;
                Endpoints::Oidc {
                    issuer: self.issuer.clone().unwrap_or_default(),
                }
            }
            ProviderKind::Oauth2 => {
                forbidden("issuer", &self.issuer)?;
                let user = if self.subject_from == SubjectSource::UserApi {
                    Some(required("user_endpoint", &self.user_endpoint)?)
                } else {
                    if self.user_endpoint.is_some() {
                        return Err(format!(
                            "{}: only used with subject_from = \"user_api\"",
                            setting("user_endpoint")
                        ));
                    }
                    None
                };
                Endpoints::Oauth2 {
                    authorization: required(
                        "authorization_endpoint",
                        &self.authorization_endpoint,
                    )?,
                    token: required("token_endpoint", &self.token_endpoint)?,
                    user,
                }
            }
        };
        if let Some(device) = &self.device_authorization_endpoint {
            check_endpoint(&setting("device_authorization_endpoint"), device)?;
            if self.kind != ProviderKind::Oidc {
                return Err(format!(
                    "{}: the device flow is offered for OpenID providers only (their ID \
                     token names the account)",
                    setting("device_authorization_endpoint")
                ));
            }
        }
        check_client(setting, &self.client_id, &self.client_secret)?;
        check_timeout(
            &setting("timeout_secs"),
            self.timeout_secs,
            MAX_TIMEOUT_SECS,
        )?;
        check_member_path(&setting("subject_field"), &self.subject_field)?;
        check_member_path(&setting("subject_claim"), &self.subject_claim)?;
        for (field, value) in [
            ("token_response_path", &self.token_response_path),
            (
                "refresh_token_expiry_field",
                &self.refresh_token_expiry_field,
            ),
        ] {
            if let Some(value) = value {
                check_member_path(&setting(field), value)?;
            }
        }
        if self.kind == ProviderKind::Oidc && self.subject_from != SubjectSource::UserApi {
            return Err(format!(
                "{}: an OpenID provider names the account in its validated ID token (see subject_claim)",
                setting("subject_from")
            ));
        }
        check_scopes(setting, &self.scopes)?;
        if self.kind == ProviderKind::Oidc && !self.scopes.iter().any(|s| s == "openid") {
            return Err(format!(
                "{}: an OpenID provider needs the \"openid\" scope for the ID token",
                setting("scopes")
            ));
        }
        for (name, value) in &self.auth_params {
            if RESERVED_PARAMS.contains(&name.as_str()) {
                return Err(format!(
                    "{}: {name:?} is set by tokenvault itself",
                    setting("auth_params")
                ));
            }
            if name.is_empty() || value.chars().chain(name.chars()).any(char::is_control) {
                return Err(format!(
                    "{}: {name:?} must be a non-empty name without control characters",
                    setting("auth_params")
                ));
            }
        }
        Ok(endpoints)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> ProviderConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn checks_each_kind() {
        let google = parse(
            r#"name = "google"
               issuer = "https://accounts.google.com"
               client_id = "id"
               client_secret = "s"
               scopes = ["openid", "email"]
               auth_params = { access_type = "offline", prompt = "consent" }"#,
        );
        assert!(matches!(google.endpoints(), Ok(Endpoints::Oidc { .. })));
        let github = parse(
            r#"name = "github"
               kind = "oauth2"
               authorization_endpoint = "https://github.com/login/oauth/authorize"
               token_endpoint = "https://github.com/login/oauth/access_token"
               user_endpoint = "https://api.github.com/user"
               subject_field = "id"
               client_id = "id"
               client_secret = "s""#,
        );
        assert!(matches!(github.endpoints(), Ok(Endpoints::Oauth2 { .. })));
    }

    #[test]
    fn refuses_what_would_misbehave() {
        let secret = "client_id = \"id\"\nclient_secret = \"s\"\n";
        for (bad, expect) in [
            (
                "name = \"g\"\nissuer = \"http://a.example\"\nscopes = [\"openid\"]",
                "https",
            ),
            (
                "name = \"G\"\nissuer = \"https://a.example\"\nscopes = [\"openid\"]",
                "providers.name",
            ),
            ("name = \"g\"\nissuer = \"https://a.example\"", "openid"),
            (
                "name = \"g\"\nkind = \"oauth2\"\nauthorization_endpoint = \"https://a.example/a\"\ntoken_endpoint = \"https://a.example/t\"",
                "user_endpoint",
            ),
            (
                "name = \"g\"\nissuer = \"https://a.example\"\nscopes = [\"openid\"]\nauth_params = { state = \"x\" }",
                "set by tokenvault",
            ),
        ] {
            let err = parse(&format!("{secret}{bad}")).validate().unwrap_err();
            assert!(err.contains(expect), "{bad}: {err}");
        }
    }
}
