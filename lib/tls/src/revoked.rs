//! Which certificates the configured CRLs revoke, by issuer and serial, so
//! that requests on connections accepted before a revocation are refused too
//! (the TLS verifier only checks at the handshake, and HTTP/2 connections
//! live long). Holds certificate names and serial numbers only.

use std::collections::HashSet;

use rustls_pki_types::CertificateRevocationListDer;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::IdentityError;

/// A certificate's issuer (DER of its name) and serial number (DER INTEGER
/// content bytes): what a CRL entry names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertRef {
    issuer: Vec<u8>,
    serial: Vec<u8>,
}

impl CertRef {
    /// The issuer and serial of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|_| IdentityError::UnparsableCertificate)?;
        Ok(Self {
            issuer: cert.tbs_certificate.issuer.as_raw().to_vec(),
            serial: cert.tbs_certificate.raw_serial().to_vec(),
        })
    }
}

/// Every certificate revoked by a set of CRLs.
#[derive(Debug, Default)]
pub struct RevokedCerts(HashSet<CertRef>);

impl RevokedCerts {
    /// The certificates `crls` revoke; `None` if one does not parse (rustls
    /// has accepted them already, so this does not happen in practice).
    pub(crate) fn from_crls(crls: &[CertificateRevocationListDer<'_>]) -> Option<Self> {
        let mut revoked = HashSet::new();
        for der in crls {
            let (_, crl) = CertificateRevocationList::from_der(der.as_ref()).ok()?;
            let issuer = crl.tbs_cert_list.issuer.as_raw().to_vec();
            for entry in crl.iter_revoked_certificates() {
                revoked.insert(CertRef {
                    issuer: issuer.clone(),
                    serial: entry.raw_serial().to_vec(),
                });
            }
        }
        Some(Self(revoked))
    }

    /// Every certificate revoked by `self` or `other`.
    pub fn union(&self, other: &Self) -> Self {
        Self(self.0.union(&other.0).cloned().collect())
    }

    /// Whether `cert` is revoked.
    pub fn contains(&self, cert: &CertRef) -> bool {
        self.0.contains(cert)
    }

    /// How many certificates are revoked.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
