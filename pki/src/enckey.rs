//! The RSA-4096 token-encryption key pair and its key id.
//!
//! Generation uses aws-lc-rs (fast, constant-time); PEM encoding and the
//! RFC 7638 JWK thumbprint use the `rsa` crate. The private key PEM is held in
//! a `Zeroizing` buffer and goes only to a 0600 file.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::PkiError;

/// The size of every token-encryption key.
pub const ENCRYPTION_KEY_BITS: usize = 4096;

/// A newly generated token-encryption key pair.
pub struct EncryptionKeyPair {
    /// The key id: the RFC 7638 JWK SHA-256 thumbprint of the public key.
    pub kid: String,
    /// The public key, SPKI PEM.
    pub public_pem: String,
    /// The private key, PKCS#8 PEM. Wiped on drop.
    pub private_pem: Zeroizing<String>,
}

impl fmt::Debug for EncryptionKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKeyPair")
            .field("kid", &self.kid)
            .field("private_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl EncryptionKeyPair {
    /// Generates a new RSA-4096 key pair.
    pub fn generate() -> Result<Self, PkiError> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa4096)
            .map_err(|_| PkiError::KeyGeneration)?;
        let der = key.as_der().map_err(|_| PkiError::KeyGeneration)?;
        let private = RsaPrivateKey::from_pkcs8_der(der.as_ref())
            .map_err(|e| PkiError::KeyEncoding(e.to_string()))?;
        let public = RsaPublicKey::from(&private);
        let private_pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| PkiError::KeyEncoding(e.to_string()))?;
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| PkiError::KeyEncoding(e.to_string()))?;
        Ok(Self {
            kid: thumbprint(&public),
            public_pem,
            private_pem,
        })
    }
}

/// The RFC 7638 JWK SHA-256 thumbprint of an RSA public key, base64url.
pub fn thumbprint(public: &RsaPublicKey) -> String {
    let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
    // Members in lexicographic order, no whitespace (RFC 7638 section 3).
    let jwk = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// Reads a public key PEM and returns it with its key id and size in bits.
pub fn public_key_info(pem: &str) -> Result<(String, usize), String> {
    let public = RsaPublicKey::from_public_key_pem(pem).map_err(|e| e.to_string())?;
    Ok((thumbprint(&public), public.size() * 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() -> Result<(), Box<dyn std::error::Error>> {
        // The example key of RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let n = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(n)?);
        let e = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode("AQAB")?);
        let public = RsaPublicKey::new(n, e)?;
        assert_eq!(
            thumbprint(&public),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        Ok(())
    }
}
