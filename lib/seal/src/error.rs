//! The error type of the seal crate.
//!
//! Messages name what is wrong (a part of the token, a key file, a key id) but
//! never contain token bytes, plaintext or key material.

use std::path::PathBuf;

/// Why a token could not be sealed or parsed, or a public key not loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The sealed token is not a well-formed JWE compact serialization
    /// (wrong number of parts, bad base64url, bad header JSON or fields).
    #[error("malformed sealed token: {0}")]
    Malformed(&'static str),
    /// The sealed token is longer than the limit.
    #[error("sealed token is too large: {len} bytes, the limit is {max}")]
    TooLarge {
        /// The length of the token (or of the token that would be produced).
        len: usize,
        /// [`MAX_SEALED_TOKEN_LEN`](crate::MAX_SEALED_TOKEN_LEN).
        max: usize,
    },
    /// A part of the sealed token has the wrong length (e.g. a cut-off tag).
    #[error("truncated sealed token: {0}")]
    Truncated(&'static str),
    /// The sealed token uses an algorithm or header feature not supported here.
    #[error("unsupported sealed token: {0}")]
    UnsupportedAlgorithm(&'static str),
    /// No loaded key has this key id.
    #[error("unknown token-encryption key id {0:?}")]
    UnknownKey(String),
    /// The header's account or provider differs from the expected one.
    #[error("sealed token's {field} does not match the {field} it was stored or requested for")]
    ContextMismatch {
        /// `"account"` or `"provider"`.
        field: &'static str,
    },
    /// A public key file could not be read or is not an acceptable key.
    #[error("public key {}: {reason}", path.display())]
    KeyLoad {
        /// The file (or, for in-memory keys, a `<pem #i>` label).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The arguments to [`seal`](crate::PublicKeySet::seal) are unusable.
    #[error("cannot seal: {0}")]
    InvalidInput(&'static str),
    /// The cryptographic library failed (random numbers, encryption).
    #[error("cryptographic operation failed")]
    Crypto,
}
