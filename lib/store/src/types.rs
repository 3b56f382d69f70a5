//! Public value types of the store API. May hold a sealed token ([`Latest::Token`]), never a
//! plaintext one; `Debug` output redacts the sealed token.

use std::fmt;
use std::str::FromStr;

pub use tokenvault_limits::{
    MAX_ACCOUNT_LEN, MAX_KEY_ID_LEN, MAX_METADATA_LEN, MAX_PROVIDER_LEN, MAX_SEALED_TOKEN_LEN,
    MAX_SHARED_SCOPES_LEN, MAX_STATUS_REASON_LEN, MAX_TOKEN_TYPE_LEN,
};

/// What a stored token carries besides itself ([`crate::TokenWriter::store_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenFacts<'a> {
    /// The account's metadata from a signed connect link (a JSON object, at most
    /// [`MAX_METADATA_LEN`] bytes; the caller checks its shape): stored with the account and
    /// carried by its events from then on. Connects only.
    pub metadata: Option<&'a str>,
    /// When the provider said this refresh token expires (`refresh_token_expires_in`), Unix
    /// seconds.
    pub refresh_token_expires_at: Option<i64>,
}

/// What [`crate::TokenWriter::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOutcome {
    /// The version (row id) holding this sealed token.
    pub version: i64,
    /// True when exactly this sealed token was already stored for this (account, provider), e.g. a
    /// retried request: nothing was inserted and `version` is the existing row's. That row may
    /// since have been superseded; a retry never makes an old token the newest version again.
    pub already_stored: bool,
}

/// What [`crate::TokenWriter::disconnect`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisconnectOutcome {
    /// The version (row id) of the tombstone.
    pub version: i64,
    /// True when the newest row already was a tombstone: nothing was inserted.
    pub already_disconnected: bool,
}

/// The newest row of an (account, provider).
#[derive(Clone, PartialEq, Eq)]
pub enum Latest {
    /// The newest row is a sealed token.
    Token {
        /// Its version (row id).
        version: i64,
        /// The sealed token (JWE compact serialization).
        sealed_token: String,
        /// The id of the key it is sealed with.
        kid: String,
    },
    /// The newest row is a tombstone: the account was disconnected.
    Disconnected,
    /// Nothing was ever stored for this (account, provider).
    NotFound,
}

impl fmt::Debug for Latest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Latest::Token { version, kid, .. } => f
                .debug_struct("Token")
                .field("version", version)
                .field("sealed_token", &"<redacted>")
                .field("kid", kid)
                .finish(),
            Latest::Disconnected => f.write_str("Disconnected"),
            Latest::NotFound => f.write_str("NotFound"),
        }
    }
}

/// Status of an (account, provider)'s grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenStatus {
    /// A token is stored and usable (implied by storing a token).
    Active,
    /// The provider rejected the grant (`invalid_grant`); the user must reconnect.
    ReauthorizationRequired,
    /// The account was disconnected (implied by a tombstone).
    Disconnected,
}

impl TokenStatus {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::ReauthorizationRequired => "reauthorization_required",
            TokenStatus::Disconnected => "disconnected",
        }
    }
}

impl fmt::Display for TokenStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is not one of [`TokenStatus`]'s values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown token status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for TokenStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(TokenStatus::Active),
            "reauthorization_required" => Ok(TokenStatus::ReauthorizationRequired),
            "disconnected" => Ok(TokenStatus::Disconnected),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// The current status of an (account, provider): its newest status record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecord {
    /// The status.
    pub status: TokenStatus,
    /// Why (free text from the recorder, or "token stored" / "disconnected").
    pub reason: String,
    /// When it was recorded, in seconds since the Unix epoch.
    pub updated_at_unix: i64,
}

/// What the provider said when a disconnected account's refresh token was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationOutcome {
    /// The provider's RFC 7009 revocation endpoint accepted the revocation.
    Revoked,
    /// The provider offers no revocation endpoint; the sealed token is deleted anyway.
    Unsupported,
}

impl RevocationOutcome {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationOutcome::Revoked => "revoked",
            RevocationOutcome::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for RevocationOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`crate::TokenWriter::reseal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResealOutcome {
    /// The version now holds the new sealed token, under the new key.
    Resealed,
    /// The version no longer holds a sealed token (a newer token was stored — a rotation or a
    /// reconnect — or it was revoked after a disconnect): nothing changed, and nothing needs to.
    Superseded,
    /// The version is no longer sealed under the key it was read under (re-sealed already):
    /// nothing changed.
    KeyChanged,
}

impl ResealOutcome {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ResealOutcome::Resealed => "resealed",
            ResealOutcome::Superseded => "superseded",
            ResealOutcome::KeyChanged => "key_changed",
        }
    }
}

impl fmt::Display for ResealOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored sealed token that someone may still need to open: the newest token of a connected
/// account, or a disconnected account's token waiting for revocation. `Debug` output redacts the
/// sealed token.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRow {
    /// The account.
    pub account: String,
    /// The provider.
    pub provider: String,
    /// The version (row id).
    pub version: i64,
    /// The sealed token (JWE compact serialization).
    pub sealed_token: String,
    /// The id of the key it is sealed with.
    pub kid: String,
}

/// A disconnected account's last refresh token, still sealed, waiting for get-service to revoke it
/// at the provider ([`crate::TokenReader::pending_revocations`]): a [`SealedRow`].
pub type PendingRevocation = SealedRow;

impl fmt::Debug for SealedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRow")
            .field("account", &self.account)
            .field("provider", &self.provider)
            .field("version", &self.version)
            .field("sealed_token", &"<redacted>")
            .field("kid", &self.kid)
            .finish()
    }
}

/// An access token one get-service replica obtained and shared, sealed with the public key
/// (`"token_use":"access"`), for the other replicas to serve
/// ([`crate::TokenReader::shared_access_token`]). `Debug` output redacts the sealed token.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedAccessToken {
    /// The stored refresh-token version it was obtained with (the account's newest).
    pub version: i64,
    /// The sealed access token (JWE compact serialization).
    pub sealed_token: String,
    /// The id of the key it is sealed with.
    pub kid: String,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_at_unix: i64,
    /// Its whole lifetime when it was obtained, in seconds.
    pub lifetime_secs: i64,
    /// Usually `Bearer`.
    pub token_type: String,
    /// The scopes it was granted.
    pub scopes: Vec<String>,
}

impl fmt::Debug for SharedAccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAccessToken")
            .field("version", &self.version)
            .field("sealed_token", &"<redacted>")
            .field("kid", &self.kid)
            .field("expires_at_unix", &self.expires_at_unix)
            .field("lifetime_secs", &self.lifetime_secs)
            .field("token_type", &self.token_type)
            .field("scopes", &self.scopes)
            .finish()
    }
}
