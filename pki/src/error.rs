//! Errors of the pki library. None of them carries key material.

use std::path::PathBuf;

/// What can go wrong creating or reading the PKI state.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(PathBuf),
    #[error("no CA in {0}; run `pki init` first")]
    NoCa(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("key generation failed")]
    KeyGeneration,
    #[error("key encoding failed: {0}")]
    KeyEncoding(String),
    #[error(transparent)]
    Identity(#[from] tokenvault_tls::IdentityError),
    #[error("validity must be between 1 and {max} days, got {got}")]
    Validity { got: u32, max: u32 },
    #[error("{0}")]
    UnknownCertificate(String),
    #[error("invalid window {0:?}: use a number and a unit, d, h or m (e.g. 7d)")]
    BadWindow(String),
    #[error(
        "a CA rotation is already under way; move every leaf with `pki renew --all`, then `pki rotate-ca --finish`"
    )]
    RotationInProgress,
    #[error("no CA rotation is under way; start one with `pki rotate-ca`")]
    NoRotation,
    #[error("still issued by the previous CA: {0}; run `pki renew --all` (or revoke them) first")]
    StillOnPreviousCa(String),
}
