//! tokenvault `get-service`: the only crate that can open a sealed token, and
//! the service that trades stored refresh tokens for short-lived access tokens
//! for workers (`GetService`, mutual TLS, `worker` identities only).
//!
//! - [`PrivateKeyRing`] loads the token-encryption private keys (RSA-4096,
//!   PKCS#8 PEM, `<kid>.pem`, mode 0600) and [opens](PrivateKeyRing::open)
//!   sealed tokens made by `tokenvault-seal`, after checking that the token's
//!   header names the account and provider it was read for.
//! - [`broker`] caches access tokens, runs one refresh per account at a time,
//!   refreshes ahead of expiry, and handles rotated and dead grants.
//! - [`provider`] talks OAuth 2.0 to the providers; [`writer`] stores rotated
//!   refresh tokens and account statuses through set-service.
//! - [`revocation`] revokes disconnected accounts' grants at their
//!   providers (RFC 7009) and has set-service delete the sealed token.
//! - [`pkcs11`] optionally holds a private key in a PKCS#11 token instead
//!   (the key never leaves it; `C_Decrypt` with RSA-OAEP-256 there).
//! - [`reseal`] and [`retire`] are key rotation's `get-service reseal` and
//!   `get-service retire-key` commands.
//! - [`run`] serves it all; `main.rs` also disables core dumps.
//!
//! This crate holds the private keys (in aws-lc-rs, loaded from buffers wiped
//! on drop) and, in the caller's hands, plaintext refresh tokens returned in
//! [`Zeroizing`](zeroize::Zeroizing) buffers. Private-key operations use
//! aws-lc-rs's constant-time RSA-OAEP; the `rsa` crate (RUSTSEC-2023-0071) is
//! deliberately not a direct dependency, so it cannot be called from here.
#![forbid(unsafe_code)]

pub mod broker;
pub mod config;
pub mod error;
mod hardening;
mod health;
mod keyring;
mod open;
pub mod pkcs11;
pub mod provider;
pub mod reseal;
pub mod retire;
pub mod revocation;
mod server;
mod service;
pub mod token;
pub mod writer;

pub use config::Config;
pub use error::{ConfigError, ServeError, TokenError};
pub use hardening::disable_core_dumps;
pub use server::{RPCS, allow_list, run, run_with_metrics};

pub use keyring::{KeyLoadError, PrivateKeyRing};
pub use open::OpenError;
