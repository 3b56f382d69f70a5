//! The `tokenvault-worker` command line: prints an access token from
//! get-service, for shell scripts and for trying tokenvault out. Settings come
//! from flags, then the environment, then a config file. The binary is a thin
//! wrapper around [`run`], which tests call in-process.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::{PartialConfig, WorkerClient, WorkerConfig, WorkerError};
use clap::{Parser, Subcommand};

const ENV_CONFIG: &str = "TOKENVAULT_WORKER_CONFIG";
const ENV_ADDRESS: &str = "TOKENVAULT_WORKER_ADDRESS";
const ENV_TRUST_DOMAIN: &str = "TOKENVAULT_WORKER_TRUST_DOMAIN";
const ENV_CERT: &str = "TOKENVAULT_WORKER_CERT";
const ENV_KEY: &str = "TOKENVAULT_WORKER_KEY";
const ENV_CA: &str = "TOKENVAULT_WORKER_CA";

/// Fetch short-lived access tokens from tokenvault's get-service.
#[derive(Debug, Parser)]
#[command(name = "tokenvault-worker", version)]
struct Cli {
    /// A TOML file with `address`, `trust_domain` and `[tls] cert/key/ca`.
    #[arg(long, global = true, env = ENV_CONFIG)]
    config: Option<PathBuf>,
    /// get-service's host:port, or several, comma-separated (replicas); a
    /// host name with several DNS records reaches each of them.
    #[arg(long, global = true, env = ENV_ADDRESS)]
    address: Option<String>,
    /// The SPIFFE trust domain.
    #[arg(long, global = true, env = ENV_TRUST_DOMAIN)]
    trust_domain: Option<String>,
    /// This worker's certificate (PEM).
    #[arg(long, global = true, env = ENV_CERT)]
    cert: Option<PathBuf>,
    /// This worker's private key (PEM).
    #[arg(long, global = true, env = ENV_KEY)]
    key: Option<PathBuf>,
    /// The CA bundle (PEM).
    #[arg(long, global = true, env = ENV_CA)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print an access token for an account (or, with --client, the
    /// application's own client-credentials token at the provider).
    Token {
        #[arg(long, required_unless_present = "client", conflicts_with = "client")]
        account: Option<String>,
        /// The application's own token (GetClientAccessToken), no account.
        #[arg(long)]
        client: bool,
        #[arg(long)]
        provider: String,
        /// The token must stay valid at least this many seconds.
        #[arg(long, default_value_t = 0)]
        min_ttl: u64,
        /// A scope the token may carry (repeat for several); the token
        /// carries no more than these. None: the grant's scopes.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Print JSON: access_token, token_type, expires_at_unix, scopes.
        #[arg(long)]
        json: bool,
    },
    /// Print an account's status.
    Status {
        #[arg(long)]
        account: String,
        #[arg(long)]
        provider: String,
    },
}

/// Runs the command line `args` (program name first), writing to `out` and
/// `err`; returns the process exit code.
pub async fn run(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = write!(out, "{e}");
            return 0;
        }
        Err(e) => {
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let _ = writeln!(err, "{first} (see tokenvault-worker --help)");
            return 2;
        }
    };
    match execute(cli, out).await {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            exit_code(&e)
        }
    }
}

/// Distinct exit codes, so scripts can tell "reconnect the account" from
/// "try again later".
pub(crate) fn exit_code(e: &WorkerError) -> u8 {
    if let WorkerError::NoSuchAccount { .. } = e {
        return 3;
    }
    match e.code() {
        Some(tonic::Code::NotFound) => 3,
        Some(tonic::Code::FailedPrecondition) => 4,
        Some(tonic::Code::Unavailable) | Some(tonic::Code::DeadlineExceeded) => 5,
        Some(tonic::Code::PermissionDenied) | Some(tonic::Code::Unauthenticated) => 6,
        _ => 1,
    }
}

async fn execute(cli: Cli, out: &mut (dyn Write + Send)) -> Result<(), WorkerError> {
    let file = match &cli.config {
        Some(path) => Some(WorkerConfig::from_toml_file(path)?),
        None => None,
    };
    let config = PartialConfig {
        address: cli.address,
        trust_domain: cli.trust_domain,
        cert: cli.cert,
        key: cli.key,
        ca: cli.ca,
    }
    .complete(file)?;
    let client = WorkerClient::new(&config)?;
    let io = |e: std::io::Error| WorkerError::Config(format!("stdout: {e}"));
    match cli.command {
        Command::Token {
            account,
            client: _,
            provider,
            min_ttl,
            scopes,
            json,
        } => {
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let min_ttl = Duration::from_secs(min_ttl);
            let token = match account {
                Some(account) => {
                    client
                        .access_token_scoped(&account, &provider, min_ttl, &scopes)
                        .await?
                }
                None => {
                    client
                        .client_access_token(&provider, min_ttl, &scopes)
                        .await?
                }
            };
            if json {
                let value = serde_json::json!({
                    "access_token": token.secret(),
                    "token_type": token.token_type,
                    "expires_at_unix": token.expires_at_unix,
                    "scopes": token.scopes,
                });
                writeln!(out, "{value}").map_err(io)?;
            } else {
                writeln!(out, "{}", token.secret()).map_err(io)?;
            }
        }
        Command::Status { account, provider } => {
            let (status, reason) = client.account_status(&account, &provider).await?;
            writeln!(out, "{} {reason}", status.as_str_name()).map_err(io)?;
        }
    }
    Ok(())
}
