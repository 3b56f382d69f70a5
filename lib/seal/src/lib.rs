//! Sealing OAuth refresh tokens for storage, and checking a sealed token's
//! shape without any key.
//!
//! A sealed token is a JWE (RFC 7516) in compact serialization, encrypted with
//! `RSA-OAEP-256` key wrapping and `A256GCM` content encryption under an
//! RSA-4096 token-encryption public key. Its protected header (the AES-GCM
//! additional authenticated data) names the key (`kid`, the RFC 7638 JWK
//! SHA-256 thumbprint) and the `account` and `provider` it belongs to:
//!
//! ```text
//! {"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"<kid>","account":"<account>","provider":"<provider>"}
//! ```
//!
//! A sealed *access token* (get-service shares one between its replicas)
//! also carries `"token_use":"access"`; a header without `token_use` is a
//! refresh token. The member is authenticated with the rest of the header,
//! so neither kind can pass for the other ([`TokenUse`]).
//!
//! - [`PublicKeySet`] loads the public keys and [seals](PublicKeySet::seal)
//!   plaintext under the sealing key.
//! - [`SealedToken::parse`] validates a sealed token's structure and exposes
//!   its header, so a writer can refuse bad input before storing it.
//!
//! This crate holds only public keys and, briefly, the plaintext being sealed
//! and its content-encryption key (wiped on drop). It never holds a private key
//! and cannot open a sealed token: that is `tokenvault-opener`'s job.
#![forbid(unsafe_code)]

mod error;
mod keys;
mod seal;
mod token;

pub use error::SealError;
pub use keys::{PublicKeySet, kid_from_spki_der, pem_files, thumbprint};
pub use token::{SealedToken, TokenUse};

/// The JWE key-management algorithm of every sealed token.
pub const ALG: &str = "RSA-OAEP-256";
/// The JWE content-encryption algorithm of every sealed token.
pub const ENC: &str = "A256GCM";
/// The size of every token-encryption key, in bits.
pub const KEY_BITS: usize = 4096;
/// The length of the RSA-OAEP encrypted content-encryption key, in bytes.
pub const ENCRYPTED_KEY_LEN: usize = KEY_BITS / 8;
/// The length of the AES-256-GCM content-encryption key (CEK), in bytes.
pub const CEK_LEN: usize = 32;
/// The length of the AES-GCM initialization vector, in bytes.
pub const IV_LEN: usize = 12;
/// The length of the AES-GCM authentication tag, in bytes.
pub const TAG_LEN: usize = 16;
/// The largest sealed token accepted or produced, in bytes (characters).
pub use tokenvault_limits::MAX_SEALED_TOKEN_LEN;
