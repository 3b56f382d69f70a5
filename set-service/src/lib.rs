//! set-service: write-only ingest of sealed refresh tokens over mutual-TLS
//! gRPC.
//!
//! It holds a database role that can only INSERT and the token-encryption
//! *public* keys (to check a sealed token's key id). It never holds a
//! plaintext token or the private key, and cannot read back a stored
//! ciphertext. Only `web-frontend` and `get-service` identities may store, and
//! only `web-frontend` may disconnect (by default; see [`config::AllowConfig`]).
//!
//! It also sends the account events to the application's webhook endpoints ([`webhooks`]):
//! non-secret data, signed with each endpoint's secret; and appends the `expiring` event of a
//! refresh token the provider said expires soon ([`expiry`]).
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod expiry;
mod server;
pub mod service;
pub mod validate;
pub mod webhooks;

pub use config::Config;
pub use error::{ConfigError, RpcError, ServeError};
pub use server::{RPCS, allow_list, run};
