//! tokenvault `get-service`: the only crate that can open a sealed token.
//!
//! For now this is the opening code: [`PrivateKeyRing`] loads the
//! token-encryption private keys (RSA-4096, PKCS#8 PEM, `<kid>.pem`, mode
//! 0600) and [opens](PrivateKeyRing::open) sealed tokens made by
//! `tokenvault-seal`, after checking that the token's header names the
//! account and provider it was read for.
//!
//! This crate holds the private keys (in aws-lc-rs, loaded from buffers wiped
//! on drop) and, in the caller's hands, plaintext refresh tokens returned in
//! [`Zeroizing`](zeroize::Zeroizing) buffers. Private-key operations use
//! aws-lc-rs's constant-time RSA-OAEP; the `rsa` crate (RUSTSEC-2023-0071) is
//! deliberately not a direct dependency, so it cannot be called from here.
#![forbid(unsafe_code)]

mod keyring;
mod open;

pub use keyring::{KeyLoadError, PrivateKeyRing};
pub use open::OpenError;
