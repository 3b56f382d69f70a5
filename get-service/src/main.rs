//! The get-service binary: disables core dumps, reads the config, binds, and
//! calls [`run`].
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokenvault_get_service::config::ENV_CONFIG;
use tokenvault_get_service::{Config, disable_core_dumps, run};

/// Sets the log filter, e.g. `info,tokenvault=debug`.
const ENV_LOG: &str = "TOKENVAULT_LOG";

/// tokenvault get-service: short-lived access tokens for workers.
#[derive(Debug, Parser)]
#[command(name = "get-service", version)]
struct Args {
    /// The TOML config file.
    #[arg(long, env = ENV_CONFIG, default_value = "get-service.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(ENV_LOG)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    disable_core_dumps().context("cannot disable core dumps; refusing to hold the private key")?;
    let args = Args::parse();
    let config = Config::load(&args.config, |k| std::env::var(k).ok())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", config.listen))?;
    run(listener, config, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
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
