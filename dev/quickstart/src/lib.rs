//! The quick start: one command that runs all of tokenvault on 127.0.0.1.
//!
//! 1. Makes (once; later runs reuse it) a state directory with a CA, a
//!    certificate for each role, a demo worker certificate and the RSA-4096
//!    token-encryption key pair, all by running the `pki` binary, plus the
//!    web-frontend's cookie key and link secret and the demo client secret
//!    ([`state`]).
//! 2. Writes the service configs into the state directory: by default the
//!    embedded SQLite store and the development-only demo authorization
//!    server; with `--config`, the user's file is merged over them, for
//!    PostgreSQL and real providers ([`configs`]).
//! 3. Starts the demo authorization server, set-service, get-service and
//!    web-frontend as separate processes with their logs under
//!    `<state>/logs`, waits until each listens, prints the URL to open and the
//!    worker command that fetches a token, and on Ctrl-C stops them in order
//!    ([`supervise`]).
//!
//! This crate holds no token. It writes secrets only into the state
//! directory, with mode 0600, and never prints them.
#![forbid(unsafe_code)]
// The terminal is this tool's user interface: it prints what it starts and how to use it.
#![allow(clippy::print_stdout)]

pub mod configs;
pub mod state;
pub mod supervise;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Overrides `--state`.
pub const ENV_STATE: &str = "TOKENVAULT_QUICKSTART_STATE";
/// Overrides `--config`.
pub const ENV_CONFIG: &str = "TOKENVAULT_QUICKSTART_CONFIG";
/// Overrides `--port-base`.
pub const ENV_PORT_BASE: &str = "TOKENVAULT_QUICKSTART_PORT_BASE";
/// Overrides `--bin-dir`.
pub const ENV_BIN_DIR: &str = "TOKENVAULT_QUICKSTART_BIN_DIR";

/// Command-line options.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "tokenvault-quickstart",
    version,
    about = "Runs tokenvault locally: set-service, get-service, web-frontend and a development-only demo authorization server, as separate processes on 127.0.0.1."
)]
pub struct Options {
    /// The state directory (certificates, keys, secrets, store, configs, logs).
    #[arg(long, env = ENV_STATE, default_value = "state")]
    pub state: PathBuf,
    /// A TOML file merged over the generated configs: `[store]` URLs for
    /// PostgreSQL, `[web_frontend]` and `[get_service]` tables (providers and
    /// any other setting). See deploy/examples/quickstart.toml.
    #[arg(long, env = ENV_CONFIG)]
    pub config: Option<PathBuf>,
    /// set-service listens on this port, get-service on +1, web-frontend on
    /// +2, the demo authorization server on +3.
    #[arg(long, env = ENV_PORT_BASE, default_value_t = 7401)]
    pub port_base: u16,
    /// Where the tokenvault binaries are (default: next to this one).
    #[arg(long, env = ENV_BIN_DIR)]
    pub bin_dir: Option<PathBuf>,
}

/// Runs the quick start until Ctrl-C (or SIGTERM), or until a service stops
/// by itself (then an error naming it and its log).
pub async fn run(options: Options) -> anyhow::Result<()> {
    let bin_dir = match &options.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("cannot find this binary's directory")?
            .parent()
            .context("cannot find this binary's directory")?
            .to_path_buf(),
    };
    let bins = supervise::Binaries::locate(&bin_dir)?;
    std::fs::create_dir_all(&options.state)
        .with_context(|| format!("cannot create {}", options.state.display()))?;
    // Keys, secrets, the store and the logs: for this user only.
    std::fs::set_permissions(
        &options.state,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .with_context(|| format!("cannot restrict {}", options.state.display()))?;
    let state_dir = std::fs::canonicalize(&options.state)?;
    let state = state::ensure(&bins, &state_dir)?;
    let user = match &options.config {
        Some(path) => Some(configs::UserConfig::load(path)?),
        None => None,
    };
    let plan = configs::write_all(&state, options.port_base, user.as_ref())?;
    if let Some(owner_url) = &plan.migrate_with {
        supervise::migrate(&bins, owner_url)?;
    }
    supervise::run_all(&bins, &state, &plan).await
}
