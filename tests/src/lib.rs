//! The end-to-end test harness: certificates and keys made by the `pki`
//! library, stores (SQLite files and fresh PostgreSQL databases), services
//! started in-process on 127.0.0.1 port 0 and stopped with a shutdown future,
//! and log capture.
//!
//! Everything here is for tests: it holds throwaway keys in temporary
//! directories that are removed when dropped.
#![forbid(unsafe_code)]

pub mod catalogue;
pub mod keys;
pub mod kryoptic;
pub mod logs;
pub mod netns;
pub mod oidc;
pub mod pki;
pub mod procs;
pub mod raw_grpc;
pub mod services;
pub mod store;
pub mod system;
pub mod web;
pub mod webhook_receiver;

pub use logs::{assert_not_logged, captured_logs, init_tracing};
pub use pki::TestPki;
pub use services::{RunningService, grpc_channel, start_get_service, start_set_service};
pub use store::{Backend, TestStore};

/// Installs aws-lc-rs as rustls's process-wide provider (reqwest brings none
/// of its own), as get-service does at start-up.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
