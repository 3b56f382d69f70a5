//! Mutual-TLS identity: what every tokenvault gRPC server and client uses to
//! prove who it is and to learn who its peer is.
//!
//! - [`server_config`] / [`client_config`] build TLS 1.3-only rustls configs
//!   from the PEM paths in a service's config ([`TlsFiles`]).
//! - Both sides require the peer's certificate to chain to the CA bundle, be
//!   unexpired and unrevoked, and carry exactly one SPIFFE ID
//!   (`spiffe://<trust-domain>/<role>[/<name>]`, see [`SpiffeId`]); anything
//!   else fails the handshake.
//! - [`incoming`] turns a `TcpListener` into verified connections for tonic,
//!   each tagged with the caller's [`PeerInfo`]; [`channel`] dials a server.
//! - [`IdentityPattern`] names who a peer must be (a role or one exact ID);
//!   what each caller may call is `tokenvault-rpc`'s job.
//! - [`reload`] swaps in new configs when the PEM files change (or on
//!   SIGHUP), without a restart, and logs the certificate in use; with it a
//!   server publishes its [`ClientTrust`], against which open connections
//!   are re-checked (revocations that stick, CAs that leave the bundle).
//!
//! This crate holds certificates and the service's own TLS key only while
//! building a config. It never sees a refresh token or the token-encryption key.
#![forbid(unsafe_code)]

mod client;
mod error;
mod identity;
mod pem;
pub mod reload;
mod revoked;
mod server;
mod trust;
mod verify;

use std::sync::Arc;

pub use client::{CONNECT_TIMEOUT, channel, channel_via, client_config, never_sent};
pub use error::{IdentityError, TlsError};
pub use identity::{IdentityPattern, MAX_SPIFFE_ID_LEN, Role, SpiffeId, validate_trust_domain};
pub use pem::{TlsFiles, read_certs};
pub use revoked::{CertRef, RevokedCerts};
pub use server::{
    HANDSHAKE_TIMEOUT, MtlsIncoming, MtlsStream, Peer, PeerInfo, ServerTls, incoming, server_config,
};
pub use trust::{CertChain, ClientTrust, TrustRx};

/// The tracing target of handshake outcomes.
pub const TLS_TARGET: &str = "tokenvault::tls";

/// The one crypto provider used for TLS: aws-lc-rs.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate's notAfter, in seconds since the Unix epoch.
pub fn not_after_unix(der: &[u8]) -> Result<i64, IdentityError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|_| IdentityError::UnparsableCertificate)?;
    Ok(cert.validity().not_after.timestamp())
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
