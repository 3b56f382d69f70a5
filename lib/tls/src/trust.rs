//! What a server trusts of its clients now, for connections already open:
//! TLS checks a client certificate once, at the handshake, while an HTTP/2
//! connection lives for hours. At every reload the server publishes a new
//! [`ClientTrust`] (the chain verifier of the new CA bundle and CRLs, and
//! every certificate revoked since the server started) and re-checks each
//! open connection against it:
//!
//! - a revoked certificate ([`ClientTrust::is_revoked`]) is refused on every
//!   request (`tokenvault-rpc`'s `AuthzLayer`), and stays refused even when
//!   its CA's CRL is no longer configured (after a CA rotation);
//! - a certificate that no longer chains to the bundle (its CA has left it,
//!   or it expired) fails [`ClientTrust::still_issued`], and the server
//!   closes its connection gracefully, so the client reconnects with its
//!   renewed certificate.
//!
//! Holds certificates (public) only.

use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, Error as RustlsError};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::sync::watch;

use crate::revoked::{CertRef, RevokedCerts};

/// The chain a client presented at its handshake: its certificate first,
/// then any intermediates.
#[derive(Clone, PartialEq, Eq)]
pub struct CertChain(Arc<[CertificateDer<'static>]>);

impl CertChain {
    /// The chain of `certs` (the client's certificate first).
    pub fn new(certs: &[CertificateDer<'_>]) -> Self {
        Self(certs.iter().map(|c| c.clone().into_owned()).collect())
    }
}

impl std::fmt::Debug for CertChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertChain({} certificates)", self.0.len())
    }
}

/// A server's trust in its clients at one moment: see the module docs.
#[derive(Debug)]
pub struct ClientTrust {
    verifier: Arc<dyn ClientCertVerifier>,
    revoked: RevokedCerts,
}

/// What open connections read the server's current [`ClientTrust`] from.
pub type TrustRx = watch::Receiver<Arc<ClientTrust>>;

impl ClientTrust {
    pub(crate) fn new(verifier: Arc<dyn ClientCertVerifier>, revoked: RevokedCerts) -> Self {
        Self { verifier, revoked }
    }

    /// This trust, still revoking every certificate `earlier` revoked: a
    /// revocation outlives its CRL (e.g. when a CA rotation removes the old
    /// CA's CRL) for as long as the server runs.
    pub fn keeping_revocations_of(&self, earlier: &ClientTrust) -> Self {
        Self {
            verifier: Arc::clone(&self.verifier),
            revoked: self.revoked.union(&earlier.revoked),
        }
    }

    /// Whether `cert` is revoked.
    pub fn is_revoked(&self, cert: &CertRef) -> bool {
        self.revoked.contains(cert)
    }

    /// How many certificates are revoked.
    pub fn revoked_len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether a connection made with `chain` would be accepted now,
    /// revocation aside (that is refused per request, with a clear status):
    /// `Err(reason)` if the chain no longer leads to a CA in the bundle,
    /// has expired, or fails any other check of the handshake.
    pub fn still_issued(&self, chain: &CertChain) -> Result<(), String> {
        let Some((leaf, intermediates)) = chain.0.split_first() else {
            return Err("no client certificate".to_owned());
        };
        match self
            .verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
        {
            Ok(_) | Err(RustlsError::InvalidCertificate(CertificateError::Revoked)) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}
