//! [`ImportError`]: why an import could not run at all (a bad line is not
//! one of these: it is reported in the [`crate::Report`]). Messages never
//! contain a token.

use std::path::PathBuf;

/// An import that could not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The configuration is unusable.
    #[error("config: {0}")]
    Config(String),
    /// The public keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] tokenvault_seal::SealError),
    /// The TLS files could not be loaded.
    #[error(transparent)]
    Tls(#[from] tokenvault_tls::TlsError),
    /// The input could not be read (not a bad line: the file itself).
    #[error("{path}: {reason}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The progress file could not be read or written.
    #[error("progress file {path}: {source}")]
    Progress {
        /// The progress file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line's task failed (a bug).
    #[error("an import task failed: {0}")]
    Task(String),
}
