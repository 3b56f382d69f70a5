//! The PKI state directory that ops keep offline:
//!
//! ```text
//! <state>/pki.toml                  trust_domain
//! <state>/ca/ca.pem, ca/ca.key      the issuing CA (key 0600)
//! <state>/ca/previous/ca.pem, .key  the CA being rotated out, from `rotate-ca`
//!                                   until `rotate-ca --finish` deletes it
//! <state>/ca/bundle.pem             the CA bundle services trust (issuing CA,
//!                                   then the previous one during a rotation)
//! <state>/ca/crl.pem                one CRL per CA in the bundle (tls.crl)
//! <state>/ca/index.toml             every leaf issued (serial, SPIFFE ID, CA,
//!                                   expiry, revocation time) and the CRL number
//! <state>/certs/<name>.pem, .key    leaf certificates and keys (0600)
//! <state>/keys/public/<kid>.pem     token-encryption public keys (for writers)
//! <state>/keys/private/<kid>.pem    token-encryption private keys (0600; get-service only)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokenvault_tls::{Role, SpiffeId};
use zeroize::Zeroizing;

use crate::ca::{Ca, IssuedCert, LeafSpec};
use crate::enckey::{EncryptionKeyPair, public_key_info};
use crate::error::PkiError;
use crate::files::{PRIVATE_MODE, PUBLIC_MODE, ensure_writable, read_text, write_file};
use crate::leaf::CertFacts;
use crate::revoke::Index;

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
    /// Which CA issued a leaf: `current`, `previous` (being rotated out) or
    /// `unknown`; `-` for CAs and keys.
    pub issuer: String,
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

    /// The CRL file (`tls.crl`): one CRL per CA in the bundle.
    pub fn crl_path(&self) -> PathBuf {
        self.root.join("ca/crl.pem")
    }

    /// Where the CA being rotated out is kept.
    pub fn previous_ca_dir(&self) -> PathBuf {
        self.root.join("ca/previous")
    }

    /// The certificate of the CA being rotated out.
    pub fn previous_ca_cert_path(&self) -> PathBuf {
        self.previous_ca_dir().join("ca.pem")
    }

    /// The key of the CA being rotated out.
    pub fn previous_ca_key_path(&self) -> PathBuf {
        self.previous_ca_dir().join("ca.key")
    }

    /// The index of issued leaves and revocations.
    pub fn index_path(&self) -> PathBuf {
        self.root.join("ca/index.toml")
    }

    /// Where leaf certificates and keys are.
    pub fn certs_dir(&self) -> PathBuf {
        self.root.join("certs")
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
        // A new CA ends any rotation of the one it replaces.
        if force && self.previous_ca_dir().exists() {
            let dir = self.previous_ca_dir();
            std::fs::remove_dir_all(&dir)
                .map_err(|source| PkiError::Write { path: dir, source })?;
        }
        // An empty CRL from the start, so services can name `tls.crl` at once.
        self.write_crl()?;
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
        self.record_issued(&cert_path)?;
        Ok((issued, cert_path))
    }

    /// Records the leaf at `cert_path` in the index, so that it can be
    /// revoked by serial even after it is replaced.
    pub fn record_issued(&self, cert_path: &Path) -> Result<(), PkiError> {
        let facts = CertFacts::read(cert_path)?;
        let mut index = Index::load(self)?;
        index.record(&facts);
        index.save(self)
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
        let index = Index::load(self)?;
        let mut ca_subjects = Vec::new();
        for (path, which) in [
            (self.ca_cert_path(), "issuing CA"),
            (self.previous_ca_cert_path(), "previous CA, rotating out"),
        ] {
            if path.exists() {
                let facts = CertFacts::read(&path)?;
                ca_subjects.push(facts.subject.clone());
                let mut e = entry("ca", &facts, &index, "-");
                e.detail = format!("{} ({which})", e.detail);
                out.push(e);
            }
        }
        for facts in self.leaf_facts()? {
            let issuer = match ca_subjects.iter().position(|s| *s == facts.issuer) {
                Some(0) => "current",
                Some(_) => "previous",
                None => "unknown",
            };
            out.push(entry("cert", &facts, &index, issuer));
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
                issuer: "-".to_owned(),
                expires: "-".to_owned(),
                path,
            });
        }
        Ok(out)
    }
}

fn entry(kind: &'static str, facts: &CertFacts, index: &Index, issuer: &str) -> Entry {
    let expired = if facts.not_after < OffsetDateTime::now_utc() {
        " (EXPIRED)"
    } else {
        ""
    };
    let revoked = if index.is_revoked(&facts.serial_hex) {
        " REVOKED"
    } else {
        ""
    };
    Entry {
        kind,
        identity: facts.identity(),
        detail: format!("serial {}{revoked}", facts.serial_hex),
        issuer: issuer.to_owned(),
        expires: format!("{}{expired}", rfc3339(facts.not_after)),
        path: facts.path.clone(),
    }
}

pub(crate) fn sorted_files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, PkiError> {
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

/// Formats a time as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
