//! The one place in tokenvault that can open a sealed token: the
//! token-encryption private keys and the code that uses them. Only
//! get-service links this crate; set-service, web-frontend and their clients
//! cannot open what they seal or store.
//!
//! - [`PrivateKeyRing`] loads the private keys (RSA-4096, PKCS#8 PEM,
//!   `<kid>.pem`, owner-only files) and, optionally, one key held in a
//!   PKCS#11 token ([`pkcs11`]), by key id.
//! - [`PrivateKeyRing::open`] opens a sealed token made by `tokenvault-seal`
//!   after checking that its header names the account and provider it was
//!   read for: RSA-OAEP-256 key unwrap (aws-lc-rs's constant-time
//!   implementation, or `C_Decrypt` inside the token), then AES-256-GCM.
//!   [`PrivateKeyRing::open_async`] does it off the async workers, on
//!   [`pool`]'s threads (one per core, at a lower priority).
//!
//! This crate holds the private keys (in aws-lc-rs, loaded from buffers wiped
//! on drop), the PKCS#11 PIN, and plaintext refresh tokens, which it returns
//! to the caller in [`Zeroizing`](zeroize::Zeroizing) buffers. Nothing here
//! logs, prints or returns key bytes. The `rsa` crate (RUSTSEC-2023-0071) is
//! deliberately not a dependency, so its decryption cannot be called from
//! here.
#![forbid(unsafe_code)]

mod keyring;
mod open;
pub mod pkcs11;
pub mod pool;

pub use keyring::{KeyLoadError, PrivateKeyRing, RingLoadError};
pub use open::OpenError;
