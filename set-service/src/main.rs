//! The set-service binary: `serve` (the default) reads the config, binds, and
//! calls [`run`]; `migrate` runs the PostgreSQL schema migrations as the
//! owner role.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use tokenvault_runtime::settings::ServiceConfig as _;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokenvault_runtime::logging::init_logging;
use tokenvault_runtime::settings::Listeners;
use tokenvault_runtime::signal::shutdown_signal;
use tokenvault_set_service::config::{ENV_CONFIG, ENV_OWNER_URL};
use tokenvault_set_service::{Config, run};
use tokenvault_store::audit_table::AuditLogging;

/// tokenvault set-service: write-only ingest of sealed refresh tokens.
#[derive(Debug, Parser)]
#[command(name = "set-service", version)]
struct Args {
    /// The TOML config file.
    #[arg(long, env = ENV_CONFIG, default_value = "set-service.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Run the store's schema migrations (idempotent). PostgreSQL: as
    /// `tokenvault_owner`, whose URL comes from the environment so that no
    /// password shows in the process list. SQLite needs none: set-service
    /// migrates its file at start.
    Migrate {
        /// The owner role's URL, e.g. postgres://tokenvault_owner@db/tokenvault.
        #[arg(long, env = ENV_OWNER_URL, hide_env_values = true)]
        owner_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Migrate { owner_url }) = &args.command {
        let _logs = init_logging();
        tokenvault_store::migrate(owner_url)
            .await
            .context("migrate: the schema migrations failed")?;
        tracing::info!("store schema is up to date");
        return Ok(());
    }
    let config = Config::load(&args.config, |k| std::env::var(k).ok())?;
    let audit = AuditLogging::install(&config.service.audit, "set-service")
        .context("audit.database_url")?;
    let listeners = Listeners::bind(&config.service).await?;
    let served = run(listeners, config, shutdown_signal()).await;
    audit.drain().await;
    Ok(served?)
}
