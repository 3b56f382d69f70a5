//! The end-to-end test harness: certificates and keys made by the `pki`
//! library, stores (SQLite files and fresh PostgreSQL databases), and services
//! started in-process on 127.0.0.1 port 0 and stopped with a shutdown future.
//!
//! Everything here is for tests: it holds throwaway keys in temporary
//! directories that are removed when dropped.
#![forbid(unsafe_code)]

pub mod pki;
pub mod postgres;
pub mod services;

pub use pki::TestPki;
pub use services::{RunningService, grpc_channel, start_set_service};

/// Sends `tracing` output to the test's captured output, once per process.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}
