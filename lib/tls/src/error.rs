//! Errors of the mutual-TLS layer. None of them carries key material.

use std::path::PathBuf;

/// A SPIFFE ID or certificate identity problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the certificate could not be parsed")]
    UnparsableCertificate,
    #[error("the certificate has no SPIFFE ID (URI SAN)")]
    NoSpiffeId,
    #[error("the certificate has {0} URI SANs; exactly one SPIFFE ID is required")]
    SeveralUris(usize),
    #[error("malformed SPIFFE ID: {0}")]
    Malformed(String),
    #[error("unknown role {0:?}; expected one of web-frontend, set-service, get-service, worker")]
    UnknownRole(String),
    #[error("bad trust domain {0:?}: use lowercase letters, digits, '.', '-' and '_'")]
    BadTrustDomain(String),
    #[error("bad name {0:?}: use 1-128 letters, digits, '.', '-' and '_'")]
    BadName(String),
    #[error("SPIFFE ID {id} is not in trust domain {expected}")]
    ForeignTrustDomain { id: String, expected: String },
    #[error("peer is {actual}, expected {expected}")]
    UnexpectedPeer { actual: String, expected: String },
}

/// Failure to build a TLS configuration, or to connect or serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {setting} file {path}: {source}")]
    Read {
        setting: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{setting} file {path} holds no usable {what}")]
    Empty {
        setting: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{setting} file {path} is not valid PEM ({what})")]
    BadPem {
        setting: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{setting}: {source}")]
    Identity {
        setting: &'static str,
        source: IdentityError,
    },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid client certificate verifier: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    #[error("invalid server address {0:?}")]
    BadAddress(String),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
