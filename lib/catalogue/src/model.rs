//! The shape of one catalogue entry, as `providers.toml` spells it: plain
//! serde types with every closed set as an enum and no unknown key accepted.
//! What the values must satisfy beyond their types is in [`crate::validate`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::classes::Class;
use crate::facts::SourceKey;

/// One provider's entry (`[providers.<name>]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// Human-readable name, e.g. `Google`.
    pub display_name: String,
    /// The provider's OAuth documentation.
    pub docs: String,
    /// OIDC issuer; endpoints come from discovery. Exclusive with the two
    /// explicit endpoints.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Authorization endpoint (with `token_endpoint`, instead of `issuer`).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Token endpoint (with `authorization_endpoint`, instead of `issuer`).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// RFC 7009 revocation endpoint, when the provider has one.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// RFC 8628 device authorization endpoint, when the provider has one.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// The `{name}` tokens used in the URLs, which the operator fills in.
    #[serde(default)]
    pub placeholders: Vec<String>,
    /// Default scopes, including what the provider needs for a refresh token.
    pub scopes: Vec<String>,
    /// How scopes are joined in the `scope` parameter.
    pub scope_separator: ScopeSeparator,
    /// Extra authorization-request parameters (e.g. `access_type`).
    pub authorization_params: BTreeMap<String, String>,
    /// How the client authenticates at the token endpoint.
    pub client_auth: ClientAuth,
    /// Whether the provider takes PKCE on the authorization-code flow.
    pub pkce: Pkce,
    /// Where the account's stable id is found.
    pub subject: Subject,
    /// Whether a refresh returns a new refresh token to store.
    pub refresh_token_rotates: bool,
    /// Days after consent after which the grant dies however it is used.
    #[serde(default)]
    pub refresh_token_lifetime_days: Option<u32>,
    /// Days of disuse after which a refresh token dies.
    #[serde(default)]
    pub refresh_token_idle_days: Option<u32>,
    /// Documented access-token lifetime.
    #[serde(default)]
    pub access_token_lifetime_secs: Option<u64>,
    /// The token-response field with the refresh token's lifetime (seconds).
    #[serde(default)]
    pub refresh_token_expiry_field: Option<String>,
    /// Whether token responses carry `expires_in`.
    pub expires_in: ExpiresIn,
    /// Where the tokens sit in the token response.
    pub token_response: TokenResponse,
    /// For [`TokenResponse::Nested`]: the dot path of the user's tokens.
    #[serde(default)]
    pub token_response_path: Option<String>,
    /// Other documented quirks.
    #[serde(default)]
    pub notes: Option<String>,
    /// The behaviour classes the facts imply (all of them, no others).
    pub classes: Vec<Class>,
    /// A documentation URL for each fact present.
    pub sources: BTreeMap<SourceKey, String>,
}

/// The `scope` parameter's separator.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum ScopeSeparator {
    /// RFC 6749: space-delimited.
    #[default]
    #[serde(rename = " ")]
    Space,
    /// Comma-delimited (Slack, Strava, ...).
    #[serde(rename = ",")]
    Comma,
}

impl ScopeSeparator {
    /// The separator character.
    pub fn as_char(self) -> char {
        match self {
            Self::Space => ' ',
            Self::Comma => ',',
        }
    }

    /// The separator as config files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Space => " ",
            Self::Comma => ",",
        }
    }

    /// `scopes` joined into one `scope` parameter value.
    pub fn join(self, scopes: &[String]) -> String {
        scopes.join(self.as_str())
    }

    /// A `scope` value split into scopes (a provider with comma-separated
    /// scopes may still put spaces after the commas).
    pub fn split(self, value: &str) -> Vec<String> {
        value
            .split(|c: char| c.is_whitespace() || (self == Self::Comma && c == ','))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Client authentication at the token endpoint.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic `Authorization` header.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost,
}

/// PKCE (RFC 7636) on the authorization-code flow.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Pkce {
    /// The provider refuses a flow without it.
    Required,
    /// Documented and accepted.
    Supported,
    /// Not documented for this flow: send none.
    Unsupported,
}

/// Where the account's stable id comes from.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum Subject {
    /// A claim of the ID token.
    IdToken {
        /// The claim, e.g. `sub`.
        claim: String,
    },
    /// A field of a JSON document fetched with the access token.
    Userinfo {
        /// The URL to GET.
        url: String,
        /// Dot path of the field, e.g. `data.id`.
        field: String,
    },
    /// A field of the token response.
    TokenResponse {
        /// Dot path of the field, e.g. `authed_user.id`.
        field: String,
    },
    /// A query parameter of the authorization redirect.
    Redirect {
        /// The parameter, e.g. `realmId`.
        param: String,
    },
}

/// Whether token responses carry `expires_in`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExpiresIn {
    /// Every token response.
    Always,
    /// Some (e.g. only with an optional feature on).
    Sometimes,
    /// None: assume a lifetime.
    Never,
}

/// The token response's shape.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenResponse {
    /// RFC 6749 section 5.1, at the top level.
    Standard,
    /// The user's tokens sit under `token_response_path`.
    Nested,
}
