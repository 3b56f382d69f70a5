//! What every tokenvault binary does around its service: log to stdout with
//! a filter from an environment variable, stop on Ctrl-C or SIGTERM, and
//! stop background tasks with the service ([`AbortOnDrop`]).

/// The environment variable of the log filter, e.g. `info,tokenvault=debug`.
pub const ENV_LOG: &str = "TOKENVAULT_LOG";

/// Installs the log subscriber, filtered by [`ENV_LOG`] (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(ENV_LOG)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Colours only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
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
