//! What every tokenvault binary does around its service: log to stdout with
//! a filter from an environment variable, stop on Ctrl-C or SIGTERM, and
//! stop background tasks with the service ([`AbortOnDrop`]).

pub use crate::logging::ENV_LOG;

/// Installs the log subscriber (see [`crate::logging`]): text lines filtered
/// by [`ENV_LOG`] (default `info`) and audit events as JSON lines.
pub fn init_logging() {
    crate::logging::init_logging_with(None);
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A background task that stops when this guard is dropped, also on an
/// early return.
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
