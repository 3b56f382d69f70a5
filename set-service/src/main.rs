//! The set-service binary: `serve` (the default) reads the config, binds, and
//! calls [`run`]; `migrate` runs the PostgreSQL schema migrations as the
//! owner role.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokenvault_mtls::logging::init_logging_with;
use tokenvault_mtls::process::{init_logging, shutdown_signal};
use tokenvault_set_service::config::{ENV_CONFIG, ENV_OWNER_URL};
use tokenvault_set_service::{Config, run};
use tokenvault_store::audit_table::optional_audit_sink;

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

/// How long a stopping service waits for audit rows still queued for the table.
const AUDIT_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Migrate { owner_url }) = &args.command {
        init_logging();
        tokenvault_store::migrate(owner_url)
            .await
            .context("migrate: the schema migrations failed")?;
        tracing::info!("store schema is up to date");
        return Ok(());
    }
    let config = Config::load(&args.config, |k| std::env::var(k).ok())?;
    let (audit_sink, audit_writer) =
        optional_audit_sink(config.audit.database_url.as_deref(), "set-service")
            .context("audit.database_url")?;
    init_logging_with(audit_sink);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", config.listen))?;
    let served = run(listener, config, shutdown_signal()).await;
    if let Some(writer) = &audit_writer {
        writer.drain(AUDIT_DRAIN).await;
    }
    served?;
    Ok(())
}
