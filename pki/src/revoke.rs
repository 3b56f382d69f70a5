//! Revocation: the index of issued leaf certificates (`ca/index.toml`), `pki
//! revoke`, and `ca/crl.pem`, which holds one CRL per CA in the bundle.
//!
//! The index records every leaf this PKI issues (serial, SPIFFE ID, issuing
//! CA, expiry) so that a certificate can be revoked by serial after it has
//! left `certs/` (e.g. the old certificate after a renewal). It holds no key.

use std::path::PathBuf;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::PkiError;
use crate::files::{PUBLIC_MODE, read_text, write_file};
use crate::leaf::{CertFacts, looks_like_serial, normalize_serial, serial_bytes};
use crate::state::StateDir;

/// How long a CRL says it is current (`next_update`); `pki crl`, `pki
/// revoke` and `pki renew` write a fresh one.
pub const CRL_VALIDITY_DAYS: i64 = 7;

/// `ca/index.toml`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Index {
    /// The number of the last CRL written; the next one is one more.
    #[serde(default)]
    pub(crate) crl_number: u64,
    /// Every leaf issued, oldest first.
    #[serde(default, rename = "cert")]
    pub(crate) certs: Vec<IndexEntry>,
}

/// One issued leaf.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IndexEntry {
    /// Serial, lowercase hex.
    pub(crate) serial: String,
    /// The SPIFFE ID (or subject).
    pub(crate) identity: String,
    /// The issuing CA's subject.
    pub(crate) issuer: String,
    /// notAfter, seconds since the epoch.
    pub(crate) not_after: i64,
    /// When it was revoked, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revoked_at: Option<i64>,
}

impl Index {
    pub(crate) fn load(state: &StateDir) -> Result<Self, PkiError> {
        let path = state.index_path();
        if !path.exists() {
            return Ok(Self::default());
        }
        toml::from_str(&read_text(&path)?).map_err(|e| PkiError::Invalid {
            path,
            reason: e.message().to_owned(),
        })
    }

    pub(crate) fn save(&self, state: &StateDir) -> Result<(), PkiError> {
        let text = toml::to_string(self).map_err(|e| PkiError::KeyEncoding(e.to_string()))?;
        write_file(&state.index_path(), text.as_bytes(), PUBLIC_MODE, true)
    }

    /// Whether the leaf with this serial is revoked.
    pub(crate) fn is_revoked(&self, serial: &str) -> bool {
        self.certs
            .iter()
            .any(|e| e.serial == serial && e.revoked_at.is_some())
    }

    /// Records a leaf (once per serial).
    pub(crate) fn record(&mut self, facts: &CertFacts) {
        if self.certs.iter().any(|e| e.serial == facts.serial_hex) {
            return;
        }
        self.certs.push(IndexEntry {
            serial: facts.serial_hex.clone(),
            identity: facts.identity(),
            issuer: facts.issuer.clone(),
            not_after: facts.not_after.unix_timestamp(),
            revoked_at: None,
        });
    }
}

/// What `pki revoke` did.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// The revoked certificate's SPIFFE ID (or subject).
    pub identity: String,
    /// Its serial, lowercase hex.
    pub serial_hex: String,
    /// It was already revoked; nothing changed but a fresh CRL.
    pub already: bool,
    /// Serials of earlier, unexpired certificates of the same identity (e.g.
    /// renewed away) that were revoked with it, when it was named by file stem
    /// or SPIFFE ID: a leaked key may be the older one.
    pub also_revoked: Vec<String>,
    /// The CRL file written.
    pub crl: CrlReport,
}

/// What writing `ca/crl.pem` did.
#[derive(Debug, Clone)]
pub struct CrlReport {
    /// Where.
    pub path: PathBuf,
    /// The CRL number of every CRL in the file.
    pub crl_number: u64,
    /// How many CRLs (one per CA in the bundle).
    pub crls: usize,
    /// How many revoked certificates they list in all.
    pub revoked: usize,
    /// When they stop being current.
    pub next_update: OffsetDateTime,
}

impl StateDir {
    /// Revokes the leaf named by `target`: a file stem in `certs/`
    /// (`worker-billing`), a SPIFFE ID, or a serial number this PKI issued;
    /// then writes a fresh `ca/crl.pem`. Named by stem or SPIFFE ID, every
    /// other unexpired certificate of that identity is revoked too.
    pub fn revoke(&self, target: &str) -> Result<Revocation, PkiError> {
        let mut index = Index::load(self)?;
        let by_name = target.starts_with("spiffe://")
            || (!target.contains('/') && self.cert_path(target).exists());
        let entry = self.resolve(target, &index)?;
        let known = self
            .cas()?
            .into_iter()
            .any(|ca| ca.facts.subject == entry.issuer);
        if !known {
            return Err(PkiError::UnknownCertificate(format!(
                "{target} was issued by {}, which is not a CA in the bundle (nothing to revoke)",
                entry.issuer
            )));
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let already = match index.certs.iter_mut().find(|e| e.serial == entry.serial) {
            Some(e) if e.revoked_at.is_some() => true,
            Some(e) => {
                e.revoked_at = Some(now);
                false
            }
            None => {
                index.certs.push(IndexEntry {
                    revoked_at: Some(now),
                    ..entry.clone()
                });
                false
            }
        };
        let mut also_revoked = Vec::new();
        if by_name {
            for e in index.certs.iter_mut().filter(|e| {
                e.identity == entry.identity
                    && e.serial != entry.serial
                    && e.revoked_at.is_none()
                    && e.not_after > now
            }) {
                e.revoked_at = Some(now);
                also_revoked.push(e.serial.clone());
            }
        }
        index.save(self)?;
        let crl = self.write_crl()?;
        Ok(Revocation {
            identity: entry.identity,
            serial_hex: entry.serial,
            already,
            also_revoked,
            crl,
        })
    }

    /// Finds the certificate `target` names.
    fn resolve(&self, target: &str, index: &Index) -> Result<IndexEntry, PkiError> {
        let entry = |f: &CertFacts| IndexEntry {
            serial: f.serial_hex.clone(),
            identity: f.identity(),
            issuer: f.issuer.clone(),
            not_after: f.not_after.unix_timestamp(),
            revoked_at: None,
        };
        let by_stem = self.cert_path(target);
        if !target.contains('/') && by_stem.exists() {
            return Ok(entry(&CertFacts::read(&by_stem)?));
        }
        let leaves = self.leaf_facts()?;
        if target.starts_with("spiffe://") {
            let found: Vec<&CertFacts> = leaves
                .iter()
                .filter(|f| f.uris.iter().any(|u| u == target))
                .collect();
            return match found.as_slice() {
                [one] => Ok(entry(one)),
                [] => Err(PkiError::UnknownCertificate(format!(
                    "no certificate in {} has the SPIFFE ID {target}",
                    self.certs_dir().display()
                ))),
                many => Err(PkiError::UnknownCertificate(format!(
                    "{} certificates have the SPIFFE ID {target}; revoke one by serial",
                    many.len()
                ))),
            };
        }
        if looks_like_serial(target) {
            let serial = normalize_serial(target);
            if let Some(f) = leaves.iter().find(|f| f.serial_hex == serial) {
                return Ok(entry(f));
            }
            if let Some(e) = index.certs.iter().find(|e| e.serial == serial) {
                return Ok(e.clone());
            }
            return Err(PkiError::UnknownCertificate(format!(
                "no certificate with serial {serial} was issued by this PKI"
            )));
        }
        Err(PkiError::UnknownCertificate(format!(
            "no certificate named {target} in {} (give a file stem, a SPIFFE ID or a serial)",
            self.certs_dir().display()
        )))
    }

    /// Writes `ca/crl.pem`: one CRL per CA in the bundle, each listing the
    /// revoked leaves that CA issued, all with the next CRL number.
    pub fn write_crl(&self) -> Result<CrlReport, PkiError> {
        let mut index = Index::load(self)?;
        index.crl_number += 1;
        let now = OffsetDateTime::now_utc();
        let next_update = now + Duration::days(CRL_VALIDITY_DAYS);
        let mut pem = String::new();
        let (mut crls, mut revoked) = (0, 0);
        for ca in self.cas()? {
            let mut revoked_certs = Vec::new();
            for e in index.certs.iter().filter(|e| e.issuer == ca.facts.subject) {
                let (Some(at), Some(bytes)) = (e.revoked_at, serial_bytes(&e.serial)) else {
                    continue;
                };
                revoked_certs.push(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: OffsetDateTime::from_unix_timestamp(at).unwrap_or(now),
                    reason_code: None,
                    invalidity_date: None,
                });
            }
            revoked += revoked_certs.len();
            pem.push_str(&ca.ca.sign_crl(&CertificateRevocationListParams {
                this_update: now - Duration::minutes(5),
                next_update,
                crl_number: SerialNumber::from(index.crl_number),
                issuing_distribution_point: None,
                revoked_certs,
                key_identifier_method: KeyIdMethod::Sha256,
            })?);
            crls += 1;
        }
        index.save(self)?;
        write_file(&self.crl_path(), pem.as_bytes(), PUBLIC_MODE, true)?;
        Ok(CrlReport {
            path: self.crl_path(),
            crl_number: index.crl_number,
            crls,
            revoked,
            next_update,
        })
    }
}
