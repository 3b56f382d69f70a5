//! The get-service binary: disables core dumps, reads the config, binds, and
//! calls [`run`].
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokenvault_get_service::config::ENV_CONFIG;
use tokenvault_get_service::{Config, disable_core_dumps, run};
use tokenvault_mtls::process::{init_logging, shutdown_signal};

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
    init_logging();
    disable_core_dumps().context("cannot disable core dumps; refusing to hold the private key")?;
    let args = Args::parse();
    let config = Config::load(&args.config, |k| std::env::var(k).ok())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", config.listen))?;
    run(listener, config, shutdown_signal()).await?;
    Ok(())
}
