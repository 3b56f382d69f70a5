//! The set-service binary: reads the config, binds, and calls [`run`].
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokenvault_mtls::process::{init_logging, shutdown_signal};
use tokenvault_set_service::config::ENV_CONFIG;
use tokenvault_set_service::{Config, run};

/// tokenvault set-service: write-only ingest of sealed refresh tokens.
#[derive(Debug, Parser)]
#[command(name = "set-service", version)]
struct Args {
    /// The TOML config file.
    #[arg(long, env = ENV_CONFIG, default_value = "set-service.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse();
    let config = Config::load(&args.config, |k| std::env::var(k).ok())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", config.listen))?;
    run(listener, config, shutdown_signal()).await?;
    Ok(())
}
