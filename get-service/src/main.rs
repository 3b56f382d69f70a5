//! The get-service binary: disables core dumps, reads the config, binds, and
//! calls [`run`]; or runs a key-rotation command (`reseal`, `retire-key`)
//! from the library with the same config.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use tokenvault_runtime::settings::ServiceConfig as _;

use anyhow::Context;
use clap::Parser;
use tokenvault_get_service::config::ENV_CONFIG;
use tokenvault_get_service::reseal::{ResealOptions, reseal};
use tokenvault_get_service::retire::retire_key;
use tokenvault_get_service::{Config, disable_core_dumps, run};
use tokenvault_opener::pkcs11::generate_configured_key;
use tokenvault_runtime::logging::init_logging;
use tokenvault_runtime::settings::Listeners;
use tokenvault_runtime::signal::shutdown_signal;
use tokenvault_store::audit_table::AuditLogging;

#[global_allocator]
static ALLOCATOR: tokenvault_get_service::Allocator = tokenvault_get_service::ALLOCATOR;

/// tokenvault get-service: short-lived access tokens for workers.
#[derive(Debug, Parser)]
#[command(name = "get-service", version)]
struct Args {
    /// The TOML config file.
    #[arg(long, global = true, env = ENV_CONFIG, default_value = "get-service.toml")]
    config: PathBuf,
    /// Without a command: serve.
    #[command(subcommand)]
    command: Option<KeyCommand>,
}

/// Token-encryption key rotation, run with this service's config (its
/// identity, store role and keys).
#[derive(Debug, clap::Subcommand)]
enum KeyCommand {
    /// Re-seals every stored token that is not under the sealing key, through
    /// set-service. Safe to interrupt and run again.
    Reseal {
        /// Stop after this many tokens (e.g. a trial run).
        #[arg(long)]
        limit: Option<u64>,
        /// Tokens re-sealed at once (default: the number of CPUs).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: Option<u16>,
    },
    /// Removes a key's private key file once no stored token needs it.
    RetireKey {
        /// The key id (`pki list` shows them). Key ids are base64url, so one
        /// may start with `-`: it is still taken as the key id.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Generates an RSA-4096 key pair in the `[pkcs11]` token (the private
    /// half sensitive and not extractable), writes the public half as
    /// `<kid>.pem`, and prints the kid.
    Pkcs11Keygen {
        /// Where to write `<kid>.pem` (default: the config's public_keys_dir).
        #[arg(long)]
        public_keys_dir: Option<PathBuf>,
    },
}

/// Runs a key-rotation command and prints its outcome.
async fn key_command(command: KeyCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        KeyCommand::Reseal { limit, concurrency } => {
            let mut options = ResealOptions {
                limit,
                ..ResealOptions::default()
            };
            if let Some(n) = concurrency {
                options.concurrency = usize::from(n);
            }
            let report = reseal(config, &options, |_| {}).await?;
            let secs = report.elapsed.as_secs_f64().max(0.001);
            writeln!(
                std::io::stdout().lock(),
                "{}, all under key {} ({:.0} tokens/s)",
                report.progress,
                report.sealing_kid,
                report.progress.resealed as f64 / secs
            )?;
        }
        KeyCommand::RetireKey { kid } => {
            let report = retire_key(config, &kid).await?;
            writeln!(std::io::stdout().lock(), "{report}")?;
        }
        KeyCommand::Pkcs11Keygen { public_keys_dir } => {
            let dir = public_keys_dir
                .as_deref()
                .unwrap_or(&config.public_keys_dir);
            let kid = generate_configured_key(config.pkcs11.as_ref(), dir).await?;
            writeln!(std::io::stdout().lock(), "{kid}")?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    disable_core_dumps().context("cannot disable core dumps; refusing to hold the private key")?;
    let args = Args::parse();
    let config = Config::load(&args.config, |k| std::env::var(k).ok())?;
    if let Some(command) = args.command {
        let _logs = init_logging();
        return key_command(command, &config).await;
    }
    let audit = AuditLogging::install(&config.service.audit, "get-service")
        .context("audit.database_url")?;
    let listeners = Listeners::bind(&config.service).await?;
    let served = run(listeners, config, shutdown_signal()).await;
    audit.drain().await;
    Ok(served?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Args, KeyCommand};

    #[test]
    fn a_key_id_starting_with_a_dash_is_a_key_id() {
        let args = Args::try_parse_from(["get-service", "retire-key", "-Eq2x_9"])
            .unwrap_or_else(|e| unreachable!("{e}"));
        match args.command {
            Some(KeyCommand::RetireKey { kid }) => assert_eq!(kid, "-Eq2x_9"),
            other => unreachable!("{other:?}"),
        }
    }
}
