//! The mutual-TLS identity layer that every tokenvault gRPC server and client
//! uses.
//!
//! - [`server_config`] / [`client_config`] build TLS 1.3-only rustls configs
//!   from the PEM paths in a service's config ([`TlsFiles`]).
//! - Both sides require the peer's certificate to chain to the CA bundle, be
//!   unexpired and unrevoked, and carry exactly one SPIFFE ID
//!   (`spiffe://<trust-domain>/<role>[/<name>]`, see [`SpiffeId`]); anything
//!   else fails the handshake.
//! - [`incoming`] turns a `TcpListener` into verified connections for tonic,
//!   each tagged with the caller's [`PeerInfo`]; [`channel`] dials a server.
//! - [`AuthzLayer`] enforces a per-RPC [`AllowList`] and answers everything
//!   else with `PERMISSION_DENIED`.
//!
//! - [`reload`] swaps in new configs when the PEM files change (or on
//!   SIGHUP), without a restart.
//! - [`logging`] writes text log lines and JSON audit lines; [`process`]
//!   sets them up and the shutdown signal of every binary.
//! - [`settings`] loads a service's TOML config with named environment
//!   overrides, the same way for every service.
//! - [`metrics`] holds the Prometheus metrics every service exposes and the
//!   plaintext `/metrics` endpoint; [`health`] drives the gRPC health status
//!   from periodic checks of the store and keys.
//!
//! This crate holds certificates and the service's own TLS key only while
//! building a config. It never sees a refresh token or the token-encryption key.
#![forbid(unsafe_code)]

pub mod audit;
mod authz;
mod client;
mod error;
pub mod health;
mod identity;
pub mod logging;
pub mod metrics;
mod pem;
pub mod process;
pub mod reload;
mod revoked;
mod server;
pub mod settings;
mod verify;

use std::sync::Arc;

pub use authz::{AUTHZ_TARGET, AllowList, Authz, AuthzLayer, IdentityPattern};
pub use client::{CONNECT_TIMEOUT, channel, client_config};
pub use error::{IdentityError, TlsError};
pub use identity::{MAX_SPIFFE_ID_LEN, Role, SpiffeId, validate_trust_domain};
pub use pem::{TlsFiles, read_certs};
pub use revoked::{CertRef, RevokedCerts};
pub use server::{
    HANDSHAKE_TIMEOUT, MtlsIncoming, MtlsStream, PeerInfo, ServerTls, incoming, server_config,
};

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
