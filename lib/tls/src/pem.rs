//! Reading PEM files named in a service's config: certificate chains, the
//! service's own private key, CA bundles and CRLs.
//!
//! Private-key file bytes are held in `Zeroizing` buffers and wiped once
//! parsed; errors name the setting and the path, never the contents.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::TlsError;

/// The PEM files one TLS endpoint needs, as named in a service's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// This endpoint's certificate chain, leaf first.
    pub cert: PathBuf,
    /// This endpoint's private key (PKCS#8 or SEC1 PEM).
    pub key: PathBuf,
    /// The CA bundle that peers must chain to. May hold several CAs.
    pub ca: PathBuf,
    /// An optional certificate revocation list (PEM); revoked peers are refused.
    #[serde(default)]
    pub crl: Option<PathBuf>,
}

/// What a loaded set of files contains.
#[derive(Debug)]
pub(crate) struct LoadedFiles {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    pub(crate) roots: RootCertStore,
    pub(crate) crls: Vec<CertificateRevocationListDer<'static>>,
}

impl TlsFiles {
    pub(crate) fn load(&self) -> Result<LoadedFiles, TlsError> {
        Ok(LoadedFiles {
            chain: read_certs("tls.cert", &self.cert)?,
            key: read_key("tls.key", &self.key)?,
            roots: read_roots("tls.ca", &self.ca)?,
            crls: match &self.crl {
                Some(p) => read_crls("tls.crl", p)?,
                None => Vec::new(),
            },
        })
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsError::Read {
            setting,
            path: path.to_owned(),
            source,
        })
}

fn bad_pem(setting: &'static str, path: &Path, what: &'static str) -> TlsError {
    TlsError::BadPem {
        setting,
        path: path.to_owned(),
        what,
    }
}

/// Reads every certificate in a PEM file; at least one is required.
pub fn read_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad_pem(setting, path, "certificates"))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            setting,
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(setting: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| bad_pem(setting, path, "private key"))
}

fn read_roots(setting: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(setting, path)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

fn read_crls(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(setting, path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad_pem(setting, path, "certificate revocation lists"))?;
    // A configured CRL file with no CRL in it would silently turn revocation off.
    if crls.is_empty() {
        return Err(TlsError::Empty {
            setting,
            path: path.to_owned(),
            what: "certificate revocation list",
        });
    }
    Ok(crls)
}
