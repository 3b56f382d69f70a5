//! The `demo-authorization-server` binary (DEVELOPMENT ONLY): reads flags and
//! environment variables, binds and calls [`run`].
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokenvault_demo_auth::{
    Config, DEFAULT_ACCESS_TOKEN_TTL_SECS, DEFAULT_CLIENT_ID, DEFAULT_LISTEN, DEVELOPMENT_ONLY,
    ENV_ACCESS_TOKEN_TTL_SECS, ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_ISSUER, ENV_LISTEN,
    ENV_REDIRECT_URI, ENV_STATE_FILE, run,
};
use tokenvault_runtime::logging::init_logging;
use tokenvault_runtime::secret::Secret;
use tokenvault_runtime::signal::shutdown_signal;

/// DEVELOPMENT ONLY — tokenvault's demo OAuth 2.0 authorization server.
///
/// Lets the quick start click through tokenvault's signup flow without
/// registering an app anywhere. Anyone who can reach it can sign in as any
/// made-up user name without a password: never use it for real accounts, and
/// keep it on 127.0.0.1 (the default).
#[derive(Parser)]
#[command(name = "demo-authorization-server", version, after_help = DEVELOPMENT_ONLY)]
struct Args {
    /// Address to listen on (plain HTTP).
    #[arg(long, env = ENV_LISTEN, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// The one registered client's id.
    #[arg(long, env = ENV_CLIENT_ID, default_value = DEFAULT_CLIENT_ID)]
    client_id: String,
    /// The client's secret (prefer the environment variable: flags show up in `ps`).
    #[arg(long, env = ENV_CLIENT_SECRET, hide_env_values = true)]
    client_secret: String,
    /// The one registered redirect URI, matched exactly, e.g. http://127.0.0.1:7403/callback.
    #[arg(long, env = ENV_REDIRECT_URI)]
    redirect_uri: String,
    /// JSON file keeping grants (token fingerprints only) across restarts; memory only if unset.
    #[arg(long, env = ENV_STATE_FILE)]
    state_file: Option<PathBuf>,
    /// Access-token lifetime in seconds.
    #[arg(long, env = ENV_ACCESS_TOKEN_TTL_SECS, default_value_t = DEFAULT_ACCESS_TOKEN_TTL_SECS)]
    access_token_ttl_secs: u64,
    /// The issuer URL (default: http://<listen address>), if reached under another name.
    #[arg(long, env = ENV_ISSUER)]
    issuer: Option<String>,
    /// Listen on a non-loopback address anyway (anyone who reaches it can
    /// sign in as anyone).
    #[arg(long)]
    allow_remote_insecure: bool,
}

impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("listen", &self.listen)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _logs = init_logging();
    let args = Args::parse();
    let config = Config {
        client_id: args.client_id,
        client_secret: Secret::new(args.client_secret),
        redirect_uri: args.redirect_uri,
        issuer: args.issuer,
        state_file: args.state_file,
        access_token_ttl_secs: args.access_token_ttl_secs,
    };
    config.validate()?;
    anyhow::ensure!(
        args.listen.ip().is_loopback() || args.allow_remote_insecure,
        "--listen {}: not a loopback address; this development-only server lets anyone sign in as anyone (add --allow-remote-insecure to do it anyway)",
        args.listen
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen: cannot bind {}", args.listen))?;
    run(listener, config, shutdown_signal()).await?;
    Ok(())
}
