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
pub use tokenvault_oauth::checks::ClientAuth;
use tokenvault_oauth::checks::{
    check_client, check_endpoint, check_issuer, check_scopes, check_timeout,
};
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
    /// The JSON field of the user API's answer that identifies the account
    /// (a string or a number), e.g. `id` for GitHub.
    #[serde(default = "default_subject_field")]
    pub subject_field: String,
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
}

fn default_subject_field() -> String {
    "sub".to_owned()
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
        user: Url,
    },
}

impl ProviderConfig {
    /// The name shown to people.
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
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
                Endpoints::Oauth2 {
                    authorization: required(
                        "authorization_endpoint",
                        &self.authorization_endpoint,
                    )?,
                    token: required("token_endpoint", &self.token_endpoint)?,
                    user: required("user_endpoint", &self.user_endpoint)?,
                }
            }
        };
        check_client(setting, &self.client_id, &self.client_secret)?;
        check_timeout(
            &setting("timeout_secs"),
            self.timeout_secs,
            MAX_TIMEOUT_SECS,
        )?;
        if self.subject_field.is_empty() {
            return Err(format!("{}: must not be empty", setting("subject_field")));
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
