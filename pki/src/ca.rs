//! The certificate authority: creating it, loading it from the state
//! directory, and issuing leaf certificates that carry one SPIFFE ID.
//!
//! The CA key lives only in the ops-held state directory (mode 0600); this
//! module holds it in memory while signing and never prints it.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use tokenvault_tls::SpiffeId;
use zeroize::Zeroizing;

use crate::error::PkiError;

/// The longest validity `pki issue` accepts for a leaf certificate.
pub const MAX_LEAF_DAYS: u32 = 397;
/// The default validity of a leaf certificate: short, and renewed routinely.
pub const DEFAULT_LEAF_DAYS: u32 = 30;
/// The default validity of the CA.
pub const DEFAULT_CA_DAYS: u32 = 730;

/// A loaded or freshly created CA.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    key_pem: Zeroizing<String>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A newly issued certificate and its private key.
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM. Wiped on drop.
    pub key_pem: Zeroizing<String>,
    /// The serial number, lowercase hex.
    pub serial_hex: String,
    /// When the certificate stops being valid.
    pub not_after: OffsetDateTime,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What to put in a leaf certificate.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// The one SPIFFE ID, as the only URI SAN.
    pub id: SpiffeId,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A leaf valid from five minutes ago (clock skew) for `days`, with the
    /// loopback names `localhost`, `127.0.0.1` and `::1`.
    pub fn new(id: SpiffeId, days: u32) -> Result<Self, PkiError> {
        if days == 0 || days > MAX_LEAF_DAYS {
            return Err(PkiError::Validity {
                got: days,
                max: MAX_LEAF_DAYS,
            });
        }
        let now = OffsetDateTime::now_utc();
        Ok(Self {
            id,
            dns: vec!["localhost".to_owned()],
            ips: vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ],
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(i64::from(days)),
        })
    }
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| PkiError::KeyGeneration)?;
    bytes[0] &= 0x7f; // keep it positive
    bytes[0] |= 0x01; // and of full length
    Ok(SerialNumber::from_slice(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Ca {
    /// Creates a new CA for `trust_domain`, valid for `days`.
    ///
    /// Its name ends with the start of its serial number, so that two CAs of
    /// one trust domain (the old and the new one during `rotate-ca`) never
    /// share a subject: verifiers pick a CRL by its issuer's name.
    pub fn generate(trust_domain: &str, days: u32) -> Result<Self, PkiError> {
        tokenvault_tls::validate_trust_domain(trust_domain)?;
        let key = KeyPair::generate()?;
        let serial = random_serial()?;
        let tag: String = hex(&serial.to_bytes()).chars().take(8).collect();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("tokenvault CA {trust_domain} {tag}"),
        );
        dn.push(DnType::OrganizationName, "tokenvault");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(i64::from(days.max(1)));
        params.serial_number = Some(serial);
        let cert = params.self_signed(&key)?;
        let key_pem = Zeroizing::new(key.serialize_pem());
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            key_pem,
        })
    }

    /// Loads a CA from its certificate and key PEM.
    pub fn from_pem(cert_pem: &str, key_pem: Zeroizing<String>) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer,
            key_pem,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM, for writing to the state directory only.
    pub fn key_pem(&self) -> &Zeroizing<String> {
        &self.key_pem
    }

    /// Signs a certificate revocation list; returns it as PEM.
    pub(crate) fn sign_crl(
        &self,
        params: &CertificateRevocationListParams,
    ) -> Result<String, PkiError> {
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// Issues a leaf certificate with a new ECDSA P-256 key.
    pub fn issue(&self, spec: &LeafSpec) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.id.to_string());
        dn.push(DnType::OrganizationName, "tokenvault");
        params.distinguished_name = dn;
        params
            .subject_alt_names
            .push(SanType::URI(spec.id.to_string().try_into()?));
        for dns in &spec.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.clone().try_into()?));
        }
        for ip in &spec.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        self.issue_params(params)
    }

    /// Issues a leaf from raw parameters (serial, usages and key filled in).
    /// [`Ca::issue`] is the way to make a proper tokenvault leaf; this one lets
    /// tests make malformed ones too, such as a leaf with no SPIFFE ID.
    pub fn issue_params(&self, mut params: CertificateParams) -> Result<IssuedCert, PkiError> {
        let serial = random_serial()?;
        let serial_hex = hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
            serial_hex,
            not_after: params.not_after,
        })
    }
}
