//! SPIFFE identities: `spiffe://<trust-domain>/<role>[/<name>]`.
//!
//! Every tokenvault certificate carries exactly one of these as its only URI
//! SAN. This module parses them, extracts the one from a DER certificate,
//! and matches them against [`IdentityPattern`]s. It holds no secrets.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::error::IdentityError;

/// The longest SPIFFE ID accepted, in bytes (the SPIFFE spec's URI limit).
pub use tokenvault_limits::MAX_SPIFFE_ID_LEN;

/// What a certificate holder is allowed to be in tokenvault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The public signup flow. May store and disconnect; holds only the public key.
    WebFrontend,
    /// Write-only ingest.
    SetService,
    /// The only holder of the private key.
    GetService,
    /// A background job worker that asks `get-service` for access tokens.
    Worker,
    /// The embedding application's operators and back office: reads the account inventory and
    /// its events, never a token.
    Admin,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 5] = [
        Role::WebFrontend,
        Role::SetService,
        Role::GetService,
        Role::Worker,
        Role::Admin,
    ];

    /// The role's path segment in a SPIFFE ID.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::WebFrontend => "web-frontend",
            Role::SetService => "set-service",
            Role::GetService => "get-service",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::UnknownRole(s.to_owned()))
    }
}

/// A parsed tokenvault SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    role: Role,
    name: Option<String>,
}

impl SpiffeId {
    /// Builds an ID, checking the trust domain and name syntax.
    pub fn new(trust_domain: &str, role: Role, name: Option<&str>) -> Result<Self, IdentityError> {
        validate_trust_domain(trust_domain)?;
        if let Some(n) = name {
            validate_segment(n)?;
        }
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            role,
            name: name.map(str::to_owned),
        })
    }

    /// The trust domain, e.g. `tokenvault.local`.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The role, the first path segment.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The optional name, the second path segment.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Extracts the one SPIFFE ID from a DER-encoded X.509 certificate.
    ///
    /// The certificate must carry exactly one URI SAN, and it must be a
    /// tokenvault SPIFFE ID; anything else is an error.
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|_| IdentityError::UnparsableCertificate)?;
        let san = cert
            .subject_alternative_name()
            .map_err(|_| IdentityError::UnparsableCertificate)?;
        let uris: Vec<&str> = san
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) => Some(*u),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        match uris.as_slice() {
            [] => Err(IdentityError::NoSpiffeId),
            [one] => one.parse(),
            many => Err(IdentityError::SeveralUris(many.len())),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/{}", self.trust_domain, self.role)?;
        if let Some(name) = &self.name {
            write!(f, "/{name}")?;
        }
        Ok(())
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(IdentityError::Malformed("longer than 2048 bytes".into()));
        }
        let rest = s
            .strip_prefix("spiffe://")
            .ok_or_else(|| IdentityError::Malformed("does not start with spiffe://".into()))?;
        let mut parts = rest.split('/');
        let trust_domain = parts.next().unwrap_or_default();
        let role = parts
            .next()
            .ok_or_else(|| IdentityError::Malformed("has no role path segment".into()))?;
        let role: Role = role.parse()?;
        let name = parts.next();
        if parts.next().is_some() {
            return Err(IdentityError::Malformed(
                "has more than two path segments".into(),
            ));
        }
        SpiffeId::new(trust_domain, role, name)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks a trust domain: lowercase letters, digits, `.`, `-` and `_`.
pub fn validate_trust_domain(td: &str) -> Result<(), IdentityError> {
    let ok = !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadTrustDomain(td.to_owned()))
    }
}

fn validate_segment(seg: &str) -> Result<(), IdentityError> {
    let ok = !seg.is_empty()
        && seg.len() <= 128
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadName(seg.to_owned()))
    }
}

/// One allow-list entry: a role (any ID with that role in the trust domain,
/// written `worker`) or one exact SPIFFE ID (written `spiffe://td/worker/billing`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityPattern {
    /// Any identity with this role.
    Role(Role),
    /// Exactly this identity.
    Exact(SpiffeId),
}

impl IdentityPattern {
    /// Whether `id` is covered by this pattern.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            IdentityPattern::Role(r) => id.role() == *r,
            IdentityPattern::Exact(e) => e == id,
        }
    }
}

impl fmt::Display for IdentityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityPattern::Role(r) => write!(f, "any {r}"),
            IdentityPattern::Exact(id) => write!(f, "{id}"),
        }
    }
}

impl FromStr for IdentityPattern {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("spiffe://") {
            s.parse().map(IdentityPattern::Exact)
        } else {
            s.parse().map(IdentityPattern::Role)
        }
    }
}

impl<'de> Deserialize<'de> for IdentityPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() -> Result<(), IdentityError> {
        for s in [
            "spiffe://tokenvault.local/worker",
            "spiffe://tokenvault.local/worker/billing-1",
            "spiffe://example.org/web-frontend",
        ] {
            assert_eq!(s.parse::<SpiffeId>()?.to_string(), s);
        }
        Ok(())
    }

    #[test]
    fn rejects_bad_ids() {
        for s in [
            "https://tokenvault.local/worker",
            "spiffe://tokenvault.local",
            "spiffe://tokenvault.local/operator",
            "spiffe://tokenvault.local/worker/a/b",
            "spiffe://Tokenvault.local/worker",
            "spiffe:///worker",
            "spiffe://tokenvault.local/worker/",
            "spiffe://tokenvault.local/worker/..",
            "spiffe://tokenvault.local/worker/a b",
        ] {
            assert!(s.parse::<SpiffeId>().is_err(), "{s} should be rejected");
        }
    }
}
