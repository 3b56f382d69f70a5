//! Which facts an entry states, named by the keys of its `sources` table:
//! every fact present needs a source, and every source must name a fact that
//! is present. Facts every entry must state are always required.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::model::ProviderEntry;

/// A key of an entry's `sources` table: one fact, or a group of keys that
/// one documentation page states together.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SourceKey {
    /// `issuer`, or `authorization_endpoint` and `token_endpoint`, and
    /// `placeholders`.
    Endpoints,
    /// `revocation_endpoint`.
    Revocation,
    /// `device_authorization_endpoint`.
    DeviceAuthorization,
    /// `scopes` and `authorization_params`: how to ask for offline access.
    OfflineAccess,
    /// `scope_separator`.
    ScopeSeparator,
    /// `client_auth`.
    ClientAuth,
    /// `pkce`.
    Pkce,
    /// `subject`.
    Subject,
    /// `refresh_token_rotates`.
    Rotation,
    /// `refresh_token_lifetime_days`.
    RefreshTokenLifetime,
    /// `refresh_token_idle_days`.
    RefreshTokenIdle,
    /// `access_token_lifetime_secs`.
    AccessTokenLifetime,
    /// `refresh_token_expiry_field`.
    RefreshTokenExpiryField,
    /// `expires_in`.
    ExpiresIn,
    /// `token_response` and `token_response_path`.
    TokenResponse,
    /// `notes`.
    Notes,
}

impl SourceKey {
    /// The key as written in `providers.toml`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKey::Endpoints => "endpoints",
            SourceKey::Revocation => "revocation",
            SourceKey::DeviceAuthorization => "device_authorization",
            SourceKey::OfflineAccess => "offline_access",
            SourceKey::ScopeSeparator => "scope_separator",
            SourceKey::ClientAuth => "client_auth",
            SourceKey::Pkce => "pkce",
            SourceKey::Subject => "subject",
            SourceKey::Rotation => "rotation",
            SourceKey::RefreshTokenLifetime => "refresh_token_lifetime",
            SourceKey::RefreshTokenIdle => "refresh_token_idle",
            SourceKey::AccessTokenLifetime => "access_token_lifetime",
            SourceKey::RefreshTokenExpiryField => "refresh_token_expiry_field",
            SourceKey::ExpiresIn => "expires_in",
            SourceKey::TokenResponse => "token_response",
            SourceKey::Notes => "notes",
        }
    }

    /// The facts the entry states, each of which needs a source.
    pub fn required_by(entry: &ProviderEntry) -> BTreeSet<SourceKey> {
        let mut keys: BTreeSet<SourceKey> = [
            SourceKey::Endpoints,
            SourceKey::OfflineAccess,
            SourceKey::ScopeSeparator,
            SourceKey::ClientAuth,
            SourceKey::Pkce,
            SourceKey::Subject,
            SourceKey::Rotation,
            SourceKey::ExpiresIn,
            SourceKey::TokenResponse,
        ]
        .into_iter()
        .collect();
        let optional = [
            (entry.revocation_endpoint.is_some(), SourceKey::Revocation),
            (
                entry.device_authorization_endpoint.is_some(),
                SourceKey::DeviceAuthorization,
            ),
            (
                entry.refresh_token_lifetime_days.is_some(),
                SourceKey::RefreshTokenLifetime,
            ),
            (
                entry.refresh_token_idle_days.is_some(),
                SourceKey::RefreshTokenIdle,
            ),
            (
                entry.access_token_lifetime_secs.is_some(),
                SourceKey::AccessTokenLifetime,
            ),
            (
                entry.refresh_token_expiry_field.is_some(),
                SourceKey::RefreshTokenExpiryField,
            ),
            (entry.notes.is_some(), SourceKey::Notes),
        ];
        keys.extend(
            optional
                .into_iter()
                .filter(|(present, _)| *present)
                .map(|(_, key)| key),
        );
        keys
    }
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
