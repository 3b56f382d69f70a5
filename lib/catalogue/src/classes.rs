//! Behaviour classes: the fixed set of refresh-token quirks an entry can
//! have, each defined by a rule over the entry's facts, so that an entry's
//! `classes` list can be checked against its facts and a test per class can
//! pick the providers it covers.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::model::{ClientAuth, ExpiresIn, ProviderEntry, ScopeSeparator, TokenResponse};

/// One behaviour class.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A refresh returns a new refresh token that replaces the stored one.
    Rotating,
    /// The refresh token stays the same.
    NonRotating,
    /// Token responses may lack `expires_in`.
    MissingExpiresIn,
    /// The user's tokens are nested in the token response.
    NestedTokenResponse,
    /// Scopes are comma-separated.
    CommaScopes,
    /// The token response carries the refresh token's lifetime.
    RefreshTokenExpiryField,
    /// No revocation endpoint, listed or discoverable.
    NoRevocation,
    /// The client secret goes in the request body.
    ClientAuthBody,
    /// The client secret goes in an HTTP Basic header.
    ClientAuthHeader,
    /// Endpoints come from OIDC discovery.
    OidcDiscovery,
    /// Refresh tokens die when unused for a while.
    IdleExpiry,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 11] = [
        Class::Rotating,
        Class::NonRotating,
        Class::MissingExpiresIn,
        Class::NestedTokenResponse,
        Class::CommaScopes,
        Class::RefreshTokenExpiryField,
        Class::NoRevocation,
        Class::ClientAuthBody,
        Class::ClientAuthHeader,
        Class::OidcDiscovery,
        Class::IdleExpiry,
    ];

    /// The name used in `providers.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Class::Rotating => "rotating",
            Class::NonRotating => "non_rotating",
            Class::MissingExpiresIn => "missing_expires_in",
            Class::NestedTokenResponse => "nested_token_response",
            Class::CommaScopes => "comma_scopes",
            Class::RefreshTokenExpiryField => "refresh_token_expiry_field",
            Class::NoRevocation => "no_revocation",
            Class::ClientAuthBody => "client_auth_body",
            Class::ClientAuthHeader => "client_auth_header",
            Class::OidcDiscovery => "oidc_discovery",
            Class::IdleExpiry => "idle_expiry",
        }
    }

    /// The rule that puts an entry in this class, for error messages.
    pub fn rule(self) -> &'static str {
        match self {
            Class::Rotating => "refresh_token_rotates = true",
            Class::NonRotating => "refresh_token_rotates = false",
            Class::MissingExpiresIn => "expires_in is \"sometimes\" or \"never\"",
            Class::NestedTokenResponse => "token_response = \"nested\"",
            Class::CommaScopes => "scope_separator = \",\"",
            Class::RefreshTokenExpiryField => "refresh_token_expiry_field is set",
            Class::NoRevocation => "neither revocation_endpoint nor issuer is set",
            Class::ClientAuthBody => "client_auth = \"client_secret_post\"",
            Class::ClientAuthHeader => "client_auth = \"client_secret_basic\"",
            Class::OidcDiscovery => "issuer is set",
            Class::IdleExpiry => "refresh_token_idle_days is set",
        }
    }

    /// Whether the entry's facts put it in this class.
    pub fn implied_by(self, entry: &ProviderEntry) -> bool {
        match self {
            Class::Rotating => entry.refresh_token_rotates,
            Class::NonRotating => !entry.refresh_token_rotates,
            Class::MissingExpiresIn => entry.expires_in != ExpiresIn::Always,
            Class::NestedTokenResponse => entry.token_response == TokenResponse::Nested,
            Class::CommaScopes => entry.scope_separator == ScopeSeparator::Comma,
            Class::RefreshTokenExpiryField => entry.refresh_token_expiry_field.is_some(),
            Class::NoRevocation => entry.revocation_endpoint.is_none() && entry.issuer.is_none(),
            Class::ClientAuthBody => entry.client_auth == ClientAuth::ClientSecretPost,
            Class::ClientAuthHeader => entry.client_auth == ClientAuth::ClientSecretBasic,
            Class::OidcDiscovery => entry.issuer.is_some(),
            Class::IdleExpiry => entry.refresh_token_idle_days.is_some(),
        }
    }

    /// The classes an entry's facts imply.
    pub fn implied_set(entry: &ProviderEntry) -> BTreeSet<Class> {
        Class::ALL
            .into_iter()
            .filter(|c| c.implied_by(entry))
            .collect()
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
