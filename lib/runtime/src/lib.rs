//! The service runtime every tokenvault binary shares: what runs around a
//! service rather than inside it.
//!
//! - [`settings`]: the typed TOML config with environment overrides, and
//!   [`ServiceSettings`](settings::ServiceSettings), the settings every
//!   service has (listeners, trust domain, TLS files, health, audit).
//! - [`secret`]: [`Secret`](secret::Secret) strings and the one owner-only
//!   reader of secret files; [`files`]: the one writer of files that must be
//!   whole or absent.
//! - [`audit_gate`]: room in the audit table's queue and `[audit] on_overflow`.
//! - [`logging`]: text log lines and JSON audit lines ([`audit_line`]) on
//!   stdout, buffered off the request path by [`log_buffer`].
//! - [`signal`]: the shutdown signal (Ctrl-C, SIGTERM).
//! - [`health`]: the gRPC health status driven by periodic checks.
//! - [`metrics`]: the Prometheus registry, HTTP and certificate metrics, and
//!   the plaintext `/metrics` endpoint.
//!
//! This crate holds the secrets a service reads from its config and files
//! (client secrets, the cookie key, PINs, private key bytes on their way to
//! the key ring) only in [`Secret`](secret::Secret)s and wiped buffers, and
//! never logs them.
#![forbid(unsafe_code)]

pub mod audit_gate;
pub mod audit_line;
pub mod files;
pub mod health;
pub mod log_buffer;
pub mod logging;
pub mod metrics;
pub mod secret;
pub mod settings;
pub mod signal;
