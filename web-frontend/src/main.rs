//! The web-frontend binary: `serve` (the default) reads the config, binds and
//! calls [`run`]; `sign-link` prints a signed connect or disconnect link, as
//! an application's backend would make one.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use tokenvault_runtime::settings::ServiceConfig as _;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokenvault_runtime::logging::init_logging;
use tokenvault_runtime::settings::Listeners;
use tokenvault_runtime::signal::shutdown_signal;
use tokenvault_web_frontend::config::ENV_CONFIG;
use tokenvault_web_frontend::link::{LinkAction, LinkSigner, tenant_account};
use tokenvault_web_frontend::{Config, run};

/// tokenvault web-frontend: the signup flow that connects accounts.
#[derive(Debug, Parser)]
#[command(name = "web-frontend", version)]
struct Args {
    /// The TOML config file.
    #[arg(long, env = ENV_CONFIG, default_value = "web-frontend.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Print a signed link for an application account id.
    SignLink {
        /// The application's account id (within --tenant, if given).
        #[arg(long)]
        account: String,
        /// The account's tenant: the link then files the token under
        /// `<tenant>:<account>`, which account policies match as `<tenant>:*`.
        #[arg(long)]
        tenant: Option<String>,
        /// Limit the link to one provider (required for --disconnect).
        #[arg(long)]
        provider: Option<String>,
        /// Seconds the link stays valid.
        #[arg(long, default_value_t = 600)]
        ttl: u64,
        /// Make a disconnect link instead of a connect link.
        #[arg(long)]
        disconnect: bool,
        /// The account's metadata, a JSON object of strings or lists of
        /// strings (for example '{"display_name":"Ada","tags":["beta"]}'),
        /// stored with the account and sent in its events. Connect links only.
        #[arg(long)]
        metadata: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _logs = init_logging();
    let args = Args::parse();
    let config = Config::load(&args.config, |k| std::env::var(k).ok())?;
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listeners = Listeners::bind(&config.service).await?;
            run(listeners, config, shutdown_signal()).await?;
        }
        Command::SignLink {
            account,
            tenant,
            provider,
            ttl,
            disconnect,
            metadata,
        } => {
            let path = config
                .links
                .secret_file
                .as_deref()
                .context("links.secret_file is not set in the config")?;
            let signer = LinkSigner::from_file(path, config.links.max_lifetime_secs)
                .map_err(anyhow::Error::msg)?;
            let account = match &tenant {
                Some(tenant) => {
                    // Ids from the start page begin with the provider's
                    // name: a tenant named like one would share its ids.
                    anyhow::ensure!(
                        !config.providers.iter().any(|p| p.name == *tenant),
                        "--tenant {tenant:?} is a provider's name, the prefix of the ids of \
                         accounts connected from the start page; choose another tenant name"
                    );
                    tenant_account(tenant, &account).map_err(anyhow::Error::msg)?
                }
                None => account,
            };
            tokenvault_proto::ids::check_account(&account).map_err(anyhow::Error::msg)?;
            if let Some(p) = &provider {
                tokenvault_proto::ids::check_provider(p).map_err(anyhow::Error::msg)?;
            }
            anyhow::ensure!(
                ttl >= 1 && ttl <= config.links.max_lifetime_secs,
                "--ttl must be between 1 and links.max_lifetime_secs ({})",
                config.links.max_lifetime_secs
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let expires = i64::try_from(now.checked_add(ttl).context("--ttl is too large")?)?;
            let action = if disconnect {
                LinkAction::Disconnect
            } else {
                LinkAction::Connect
            };
            anyhow::ensure!(
                !(disconnect && metadata.is_some()),
                "--metadata is for connect links only"
            );
            let metadata = metadata
                .as_deref()
                .map(tokenvault_proto::metadata::check_metadata)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let url = signer.url(
                &config.public_url()?,
                action,
                &account,
                provider.as_deref(),
                expires,
                metadata.as_deref(),
            )?;
            #[allow(clippy::print_stdout)]
            {
                println!("{url}");
            }
        }
    }
    Ok(())
}
