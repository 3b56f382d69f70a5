//! The RSA-4096 token-encryption key pair and its key id.
//!
//! Generation uses aws-lc-rs (fast, constant-time); PEM encoding uses the
//! `rsa` crate; the key id is `tokenvault-seal`'s RFC 7638 JWK thumbprint, the
//! one every service computes. The private key PEM is held in a `Zeroizing`
//! buffer and goes only to a 0600 file.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use tokenvault_seal::thumbprint;
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

/// Reads a public key PEM and returns it with its key id and size in bits.
pub fn public_key_info(pem: &str) -> Result<(String, usize), String> {
    let public = RsaPublicKey::from_public_key_pem(pem).map_err(|e| e.to_string())?;
    Ok((thumbprint(&public), public.size() * 8))
}
