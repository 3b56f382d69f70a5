//! Reading certificates back from the state directory: the facts `renew`,
//! `revoke`, `rotate-ca` and `list` need (SPIFFE ID, SANs, serial, issuer,
//! subject, expiry). Certificates only; this module never reads a key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use tokenvault_tls::SpiffeId;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::error::PkiError;

/// What a certificate file says about itself.
#[derive(Debug, Clone)]
pub(crate) struct CertFacts {
    /// Where it was read from.
    pub(crate) path: PathBuf,
    /// Every URI SAN, in order.
    pub(crate) uris: Vec<String>,
    /// DNS SANs.
    pub(crate) dns: Vec<String>,
    /// IP SANs.
    pub(crate) ips: Vec<IpAddr>,
    /// The serial number, lowercase hex without separators.
    pub(crate) serial_hex: String,
    /// The subject DN, as text.
    pub(crate) subject: String,
    /// The issuer DN, as text.
    pub(crate) issuer: String,
    /// End of validity.
    pub(crate) not_after: OffsetDateTime,
}

impl CertFacts {
    /// Reads the first certificate of a PEM file.
    pub(crate) fn read(path: &Path) -> Result<Self, PkiError> {
        let invalid = |reason: String| PkiError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let certs =
            tokenvault_tls::read_certs("certificate", path).map_err(|e| invalid(e.to_string()))?;
        let der = certs
            .first()
            .ok_or_else(|| invalid("no certificate".into()))?;
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| invalid(e.to_string()))?;
        let (mut uris, mut dns, mut ips) = (Vec::new(), Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => uris.push((*u).to_owned()),
                    GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ips.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            uris,
            dns,
            ips,
            serial_hex: normalize_serial(&cert.raw_serial_as_string()),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_after,
        })
    }

    /// The one SPIFFE ID this certificate carries, or why it has none.
    pub(crate) fn spiffe_id(&self) -> Result<SpiffeId, String> {
        match self.uris.as_slice() {
            [one] => one.parse::<SpiffeId>().map_err(|e| e.to_string()),
            [] => Err("it carries no SPIFFE ID".to_owned()),
            more => Err(format!("it carries {} URI SANs", more.len())),
        }
    }

    /// The SPIFFE ID(s), or the subject when there is none: what `list` shows.
    pub(crate) fn identity(&self) -> String {
        if self.uris.is_empty() {
            self.subject.clone()
        } else {
            self.uris.join(",")
        }
    }

    /// The file stem (`worker-billing`).
    pub(crate) fn stem(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A serial number as `pki` prints it: lowercase hex, no separators, no
/// `0x`. Accepts what users paste (`AB:CD`, `0xabcd`).
pub(crate) fn normalize_serial(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    s.chars()
        .filter(|c| *c != ':')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `s` looks like a serial number (hex digits, optional colons).
pub(crate) fn looks_like_serial(s: &str) -> bool {
    let n = normalize_serial(s);
    n.len() >= 2 && n.chars().all(|c| c.is_ascii_hexdigit())
}

/// A hex serial as bytes, for a CRL entry.
pub(crate) fn serial_bytes(hex: &str) -> Option<Vec<u8>> {
    let hex = normalize_serial(hex);
    let padded = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(padded.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_normalized_and_parsed() {
        assert_eq!(normalize_serial(" 0xAB:cd:01 "), "abcd01");
        assert!(looks_like_serial("ab:cd"));
        assert!(!looks_like_serial("worker-billing"));
        assert!(!looks_like_serial("a"));
        assert_eq!(serial_bytes("AB:cd:01"), Some(vec![0xab, 0xcd, 0x01]));
        assert_eq!(serial_bytes("abc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(serial_bytes("zz"), None);
    }
}
