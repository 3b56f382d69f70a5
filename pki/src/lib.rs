//! tokenvault's PKI, for ops: the CA, leaf certificates whose only URI SAN is
//! a SPIFFE ID, and the RSA-4096 token-encryption key pair with its key id;
//! and their life cycle: renewal, revocation (CRLs), and CA rotation.
//!
//! This crate writes private keys (the CA key, leaf keys, token-encryption
//! private keys) only to files of mode 0600 in the state directory, holds them
//! in memory in `Zeroizing` buffers, and never prints them. No service links
//! it: only the `pki` CLI and the tests do.
#![forbid(unsafe_code)]

mod ca;
mod enckey;
mod error;
mod files;
mod leaf;
mod revoke;
mod rotate;
mod state;

pub use ca::{Ca, DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS, IssuedCert, LeafSpec, MAX_LEAF_DAYS};
pub use enckey::{ENCRYPTION_KEY_BITS, EncryptionKeyPair, public_key_info};
pub use error::PkiError;
pub use files::{PRIVATE_MODE, PUBLIC_MODE, write_file};
pub use revoke::{CRL_VALIDITY_DAYS, CrlReport, Revocation};
pub use rotate::{RenewReport, RenewSelection, Renewed, parse_window};
pub use state::{DEFAULT_TRUST_DOMAIN, Entry, StateDir, rfc3339};
