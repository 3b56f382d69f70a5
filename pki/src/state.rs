//! The PKI state directory that ops keep offline:
//!
//! ```text
//! <state>/pki.toml                  trust_domain
//! <state>/ca/ca.pem, ca/ca.key      the CA (key 0600)
//! <state>/ca/bundle.pem             the CA bundle services trust
//! <state>/certs/<name>.pem, .key    leaf certificates and keys (0600)
//! <state>/keys/public/<kid>.pem     token-encryption public keys (for writers)
//! <state>/keys/private/<kid>.pem    token-encryption private keys (0600; get-service only)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokenvault_mtls::{Role, SpiffeId};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use zeroize::Zeroizing;

use crate::ca::{Ca, IssuedCert, LeafSpec};
use crate::enckey::{EncryptionKeyPair, public_key_info};
use crate::error::PkiError;
use crate::files::{PRIVATE_MODE, PUBLIC_MODE, ensure_writable, read_text, write_file};

/// The default trust domain of a new CA.
pub const DEFAULT_TRUST_DOMAIN: &str = "tokenvault.local";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PkiToml {
    trust_domain: String,
}

/// A PKI state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// One row of `pki list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `ca`, `cert` or `key`.
    pub kind: &'static str,
    /// The SPIFFE ID, CA subject, or key id.
    pub identity: String,
    /// Serial number (certificates) or size (keys).
    pub detail: String,
    /// Expiry, RFC 3339, or `-` for keys.
    pub expires: String,
    /// Where it is.
    pub path: PathBuf,
}

impl StateDir {
    /// A state directory at `root` (it need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The CA certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.root.join("ca/ca.pem")
    }

    /// The CA private key.
    pub fn ca_key_path(&self) -> PathBuf {
        self.root.join("ca/ca.key")
    }

    /// The CA bundle that services trust.
    pub fn bundle_path(&self) -> PathBuf {
        self.root.join("ca/bundle.pem")
    }

    /// A leaf certificate, by file stem (`worker-billing`).
    pub fn cert_path(&self, stem: &str) -> PathBuf {
        self.root.join(format!("certs/{stem}.pem"))
    }

    /// A leaf key, by file stem.
    pub fn key_path(&self, stem: &str) -> PathBuf {
        self.root.join(format!("certs/{stem}.key"))
    }

    /// Where token-encryption public keys go.
    pub fn public_keys_dir(&self) -> PathBuf {
        self.root.join("keys/public")
    }

    /// Where token-encryption private keys go.
    pub fn private_keys_dir(&self) -> PathBuf {
        self.root.join("keys/private")
    }

    fn pki_toml(&self) -> PathBuf {
        self.root.join("pki.toml")
    }

    /// Creates a new CA for `trust_domain`.
    pub fn init(&self, trust_domain: &str, days: u32, force: bool) -> Result<Ca, PkiError> {
        for p in [
            self.ca_cert_path(),
            self.ca_key_path(),
            self.bundle_path(),
            self.pki_toml(),
        ] {
            ensure_writable(&p, force)?;
        }
        let ca = Ca::generate(trust_domain, days)?;
        let toml = toml::to_string(&PkiToml {
            trust_domain: trust_domain.to_owned(),
        })
        .map_err(|e| PkiError::KeyEncoding(e.to_string()))?;
        write_file(
            &self.ca_key_path(),
            ca.key_pem().as_bytes(),
            PRIVATE_MODE,
            force,
        )?;
        write_file(
            &self.ca_cert_path(),
            ca.cert_pem().as_bytes(),
            PUBLIC_MODE,
            force,
        )?;
        write_file(
            &self.bundle_path(),
            ca.cert_pem().as_bytes(),
            PUBLIC_MODE,
            force,
        )?;
        write_file(&self.pki_toml(), toml.as_bytes(), PUBLIC_MODE, force)?;
        Ok(ca)
    }

    /// The trust domain chosen at `init`.
    pub fn trust_domain(&self) -> Result<String, PkiError> {
        let path = self.pki_toml();
        if !path.exists() {
            return Err(PkiError::NoCa(self.root.clone()));
        }
        let parsed: PkiToml =
            toml::from_str(&read_text(&path)?).map_err(|e| PkiError::Invalid {
                path: path.clone(),
                reason: e.message().to_owned(),
            })?;
        Ok(parsed.trust_domain)
    }

    /// Loads the CA.
    pub fn ca(&self) -> Result<Ca, PkiError> {
        let (cert, key) = (self.ca_cert_path(), self.ca_key_path());
        if !cert.exists() || !key.exists() {
            return Err(PkiError::NoCa(self.root.clone()));
        }
        Ca::from_pem(&read_text(&cert)?, Zeroizing::new(read_text(&key)?))
    }

    /// The file stem of a leaf: `role` or `role-name`.
    pub fn stem(id: &SpiffeId) -> String {
        match id.name() {
            Some(n) => format!("{}-{n}", id.role()),
            None => id.role().to_string(),
        }
    }

    /// The SPIFFE ID for `role` and `name` in this state's trust domain.
    pub fn spiffe_id(&self, role: Role, name: Option<&str>) -> Result<SpiffeId, PkiError> {
        Ok(SpiffeId::new(&self.trust_domain()?, role, name)?)
    }

    /// Issues a leaf and writes its certificate and key.
    pub fn issue(&self, spec: &LeafSpec, force: bool) -> Result<(IssuedCert, PathBuf), PkiError> {
        let stem = Self::stem(&spec.id);
        let (cert_path, key_path) = (self.cert_path(&stem), self.key_path(&stem));
        ensure_writable(&cert_path, force)?;
        ensure_writable(&key_path, force)?;
        let issued = self.ca()?.issue(spec)?;
        write_file(&key_path, issued.key_pem.as_bytes(), PRIVATE_MODE, force)?;
        write_file(&cert_path, issued.cert_pem.as_bytes(), PUBLIC_MODE, force)?;
        Ok((issued, cert_path))
    }

    /// Generates a token-encryption key pair and writes both halves.
    pub fn keygen(&self, force: bool) -> Result<EncryptionKeyPair, PkiError> {
        let pair = EncryptionKeyPair::generate()?;
        let private = self.private_keys_dir().join(format!("{}.pem", pair.kid));
        let public = self.public_keys_dir().join(format!("{}.pem", pair.kid));
        ensure_writable(&private, force)?;
        ensure_writable(&public, force)?;
        write_file(&private, pair.private_pem.as_bytes(), PRIVATE_MODE, force)?;
        write_file(&public, pair.public_pem.as_bytes(), PUBLIC_MODE, force)?;
        Ok(pair)
    }

    /// Every certificate and key in the state directory.
    pub fn list(&self) -> Result<Vec<Entry>, PkiError> {
        let mut out = Vec::new();
        if self.ca_cert_path().exists() {
            out.push(describe_cert("ca", &self.ca_cert_path())?);
        }
        for path in sorted_files(&self.root.join("certs"), "pem")? {
            out.push(describe_cert("cert", &path)?);
        }
        for path in sorted_files(&self.public_keys_dir(), "pem")? {
            let (kid, bits) =
                public_key_info(&read_text(&path)?).map_err(|reason| PkiError::Invalid {
                    path: path.clone(),
                    reason,
                })?;
            let has_private = self.private_keys_dir().join(format!("{kid}.pem")).exists();
            out.push(Entry {
                kind: "key",
                identity: kid,
                detail: format!(
                    "RSA-{bits}{}",
                    if has_private { "" } else { " (public only)" }
                ),
                expires: "-".to_owned(),
                path,
            });
        }
        Ok(out)
    }
}

fn sorted_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, PkiError> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PkiError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    Ok(files)
}

fn describe_cert(kind: &'static str, path: &Path) -> Result<Entry, PkiError> {
    let invalid = |reason: String| PkiError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let certs =
        tokenvault_mtls::read_certs("certificate", path).map_err(|e| invalid(e.to_string()))?;
    let der = certs
        .first()
        .ok_or_else(|| invalid("no certificate".into()))?;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| invalid(e.to_string()))?;
    let uris: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let identity = if uris.is_empty() {
        cert.subject().to_string()
    } else {
        uris.join(",")
    };
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|e| invalid(e.to_string()))?;
    let expired = if not_after < OffsetDateTime::now_utc() {
        " (EXPIRED)"
    } else {
        ""
    };
    Ok(Entry {
        kind,
        identity,
        detail: format!("serial {}", cert.raw_serial_as_string().replace(':', "")),
        expires: format!("{}{expired}", rfc3339(not_after)),
        path: path.to_owned(),
    })
}

/// Formats a time as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
