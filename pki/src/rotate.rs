//! Rotation: `pki renew` (re-issue leaves that expire soon, or all of them,
//! with the same SPIFFE ID and SANs and a fresh key) and `pki rotate-ca`
//! (a new issuing CA, trusted beside the old one until every leaf has moved).
//!
//! Every file is replaced by writing a temporary file and renaming it, the
//! key before the certificate: a service that reads the pair in between sees
//! a key that does not match its certificate, refuses to load it, keeps its
//! previous config and tries again on its next reload.

use std::path::PathBuf;

use time::{Duration, OffsetDateTime};

use crate::ca::{Ca, LeafSpec};
use crate::error::PkiError;
use crate::files::{PRIVATE_MODE, PUBLIC_MODE, read_text, write_file};
use crate::leaf::CertFacts;
use crate::revoke::{CrlReport, Index};
use crate::state::{StateDir, sorted_files};

/// A CA of the state directory, with the facts of its certificate.
pub(crate) struct StateCa {
    pub(crate) ca: Ca,
    pub(crate) facts: CertFacts,
    /// The CA being rotated out.
    pub(crate) previous: bool,
}

/// Which leaves `renew` re-issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewSelection {
    /// Those whose validity ends within this window from now (or has ended).
    ExpiringWithin(Duration),
    /// Every leaf (to move them all to a new CA).
    All,
}

/// One renewed leaf.
#[derive(Debug, Clone)]
pub struct Renewed {
    /// Its SPIFFE ID.
    pub identity: String,
    /// The new serial, lowercase hex.
    pub serial_hex: String,
    /// The new expiry.
    pub not_after: OffsetDateTime,
    /// The certificate file (the key is beside it).
    pub path: PathBuf,
}

/// What `renew` did.
#[derive(Debug, Clone)]
pub struct RenewReport {
    /// Leaves re-issued.
    pub renewed: Vec<Renewed>,
    /// Leaves left alone on purpose (revoked), with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Leaves that were due but could not be re-issued, with why.
    pub failed: Vec<(PathBuf, String)>,
    /// The fresh CRL file.
    pub crl: CrlReport,
}

/// Parses a window such as `7d`, `12h` or `30m`.
pub fn parse_window(s: &str) -> Result<Duration, PkiError> {
    let bad = || PkiError::BadWindow(s.to_owned());
    let s = s.trim();
    let split = s.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = (
        s.get(..split).ok_or_else(bad)?,
        s.get(split..).ok_or_else(bad)?,
    );
    let n: i64 = number.parse().map_err(|_| bad())?;
    if !(0..=100_000).contains(&n) {
        return Err(bad());
    }
    match unit {
        "d" => Ok(Duration::days(n)),
        "h" => Ok(Duration::hours(n)),
        "m" => Ok(Duration::minutes(n)),
        _ => Err(bad()),
    }
}

impl StateDir {
    /// The issuing CA and, during a rotation, the previous one.
    pub(crate) fn cas(&self) -> Result<Vec<StateCa>, PkiError> {
        let mut out = vec![StateCa {
            ca: self.ca()?,
            facts: CertFacts::read(&self.ca_cert_path())?,
            previous: false,
        }];
        if self.previous_ca_cert_path().exists() {
            let cert = self.previous_ca_cert_path();
            out.push(StateCa {
                ca: Ca::from_pem(
                    &read_text(&cert)?,
                    zeroize::Zeroizing::new(read_text(&self.previous_ca_key_path())?),
                )?,
                facts: CertFacts::read(&cert)?,
                previous: true,
            });
        }
        Ok(out)
    }

    /// Every leaf certificate in `certs/`, read.
    pub(crate) fn leaf_facts(&self) -> Result<Vec<CertFacts>, PkiError> {
        sorted_files(&self.certs_dir(), "pem")?
            .iter()
            .map(|p| CertFacts::read(p))
            .collect()
    }

    /// Re-issues the selected leaves in `certs/` with the issuing CA: same
    /// SPIFFE ID and SANs, a fresh key, valid for `days`. Revoked leaves are
    /// skipped. Writes a fresh CRL at the end.
    pub fn renew(&self, selection: RenewSelection, days: u32) -> Result<RenewReport, PkiError> {
        let ca = self.ca()?;
        let index = Index::load(self)?;
        let now = OffsetDateTime::now_utc();
        let (mut renewed, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for leaf in self.leaf_facts()? {
            let due = match selection {
                RenewSelection::All => true,
                RenewSelection::ExpiringWithin(window) => leaf.not_after <= now + window,
            };
            if !due {
                continue;
            }
            if index.is_revoked(&leaf.serial_hex) {
                skipped.push((
                    leaf.path.clone(),
                    "revoked; issue a new one with `pki issue --force`".to_owned(),
                ));
                continue;
            }
            let id = match leaf.spiffe_id() {
                Ok(id) => id,
                Err(reason) => {
                    failed.push((leaf.path.clone(), format!("cannot renew: {reason}")));
                    continue;
                }
            };
            let mut spec = LeafSpec::new(id.clone(), days)?;
            spec.dns = leaf.dns.clone();
            spec.ips = leaf.ips.clone();
            let stem = leaf.stem();
            let issued = ca.issue(&spec)?;
            // Key first: until the certificate follows, the pair does not
            // match and services keep their previous config.
            write_file(
                &self.key_path(&stem),
                issued.key_pem.as_bytes(),
                PRIVATE_MODE,
                true,
            )?;
            write_file(
                &self.cert_path(&stem),
                issued.cert_pem.as_bytes(),
                PUBLIC_MODE,
                true,
            )?;
            self.record_issued(&self.cert_path(&stem))?;
            renewed.push(Renewed {
                identity: id.to_string(),
                serial_hex: issued.serial_hex,
                not_after: issued.not_after,
                path: self.cert_path(&stem),
            });
        }
        Ok(RenewReport {
            renewed,
            skipped,
            failed,
            crl: self.write_crl()?,
        })
    }

    /// Starts a CA rotation: the issuing CA moves to `ca/previous/`, a new
    /// CA (valid `days`) becomes the issuing one, and the bundle and CRL
    /// file hold both. Refuses while a rotation is under way.
    pub fn rotate_ca(&self, days: u32) -> Result<Ca, PkiError> {
        let current_cert =
            read_text(&self.ca_cert_path()).map_err(|_| PkiError::NoCa(self.root().to_owned()))?;
        let current_key = zeroize::Zeroizing::new(read_text(&self.ca_key_path())?);
        if self.previous_ca_cert_path().exists() {
            // Resume a rotation that stopped before the new CA was written.
            let stopped_early = read_text(&self.previous_ca_cert_path())? == current_cert;
            if !stopped_early {
                return Err(PkiError::RotationInProgress);
            }
        }
        let new = Ca::generate(&self.trust_domain()?, days)?;
        write_file(
            &self.previous_ca_key_path(),
            current_key.as_bytes(),
            PRIVATE_MODE,
            true,
        )?;
        write_file(
            &self.previous_ca_cert_path(),
            current_cert.as_bytes(),
            PUBLIC_MODE,
            true,
        )?;
        // Trust the new CA before it issues anything.
        let bundle = format!("{}{}", new.cert_pem(), current_cert);
        write_file(&self.bundle_path(), bundle.as_bytes(), PUBLIC_MODE, true)?;
        write_file(
            &self.ca_key_path(),
            new.key_pem().as_bytes(),
            PRIVATE_MODE,
            true,
        )?;
        write_file(
            &self.ca_cert_path(),
            new.cert_pem().as_bytes(),
            PUBLIC_MODE,
            true,
        )?;
        self.write_crl()?;
        Ok(new)
    }

    /// Ends a CA rotation: refuses while a leaf in `certs/` that is not
    /// revoked was issued by the previous CA; otherwise drops the previous
    /// CA from the bundle and the CRL file, and deletes it.
    pub fn finish_ca_rotation(&self) -> Result<(), PkiError> {
        let cas = self.cas()?;
        let Some(previous) = cas.iter().find(|c| c.previous) else {
            return Err(PkiError::NoRotation);
        };
        let index = Index::load(self)?;
        let left: Vec<String> = self
            .leaf_facts()?
            .into_iter()
            .filter(|f| f.issuer == previous.facts.subject && !index.is_revoked(&f.serial_hex))
            .map(|f| f.stem())
            .collect();
        if !left.is_empty() {
            return Err(PkiError::StillOnPreviousCa(left.join(", ")));
        }
        let current = read_text(&self.ca_cert_path())?;
        write_file(&self.bundle_path(), current.as_bytes(), PUBLIC_MODE, true)?;
        let previous_dir = self.previous_ca_dir();
        // The CRL is written from the CAs on disk: remove the old one first.
        std::fs::remove_dir_all(&previous_dir).map_err(|source| PkiError::Write {
            path: previous_dir,
            source,
        })?;
        self.write_crl()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_take_days_hours_or_minutes() -> Result<(), PkiError> {
        assert_eq!(parse_window("7d")?, Duration::days(7));
        assert_eq!(parse_window("12h")?, Duration::hours(12));
        assert_eq!(parse_window(" 30m ")?, Duration::minutes(30));
        assert_eq!(parse_window("0d")?, Duration::ZERO);
        for bad in ["", "d", "7", "7s", "-1d", "1.5d", "999999d"] {
            assert!(parse_window(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }
}
