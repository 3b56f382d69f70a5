//! `pki`: the ops CLI for tokenvault's CA, certificates and token-encryption
//! keys. It prints paths, identities, key ids and expiry dates; never a key.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokenvault_mtls::Role;
use tokenvault_pki::{
    DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS, DEFAULT_TRUST_DOMAIN, LeafSpec, StateDir, rfc3339,
};

/// The environment variable that names the state directory.
const ENV_STATE_DIR: &str = "TOKENVAULT_PKI_STATE";

/// tokenvault PKI: CA, SPIFFE certificates and token-encryption keys.
#[derive(Debug, Parser)]
#[command(name = "pki", version)]
struct Cli {
    /// The state directory.
    #[arg(long, global = true, env = ENV_STATE_DIR, default_value = "state")]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a CA in the state directory.
    Init {
        /// The SPIFFE trust domain of every certificate this CA issues.
        #[arg(long, default_value = DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
        /// How long the CA is valid, in days.
        #[arg(long, default_value_t = DEFAULT_CA_DAYS)]
        days: u32,
        /// Overwrite an existing CA.
        #[arg(long)]
        force: bool,
    },
    /// Issue a leaf certificate with the SPIFFE ID spiffe://<trust-domain>/<role>[/<name>].
    Issue {
        /// web-frontend, set-service, get-service or worker.
        role: Role,
        /// An optional name, e.g. the worker's job name.
        #[arg(long)]
        name: Option<String>,
        /// DNS SANs (default: localhost).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// IP SANs (default: 127.0.0.1 and ::1).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// How long the certificate is valid, in days.
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
        /// Overwrite an existing certificate of the same identity.
        #[arg(long)]
        force: bool,
    },
    /// Generate an RSA-4096 token-encryption key pair; prints its key id.
    Keygen {
        /// Overwrite existing files of the same key id.
        #[arg(long)]
        force: bool,
    },
    /// List every certificate and key with its identity, key id and expiry.
    List,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first} (see pki --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let state = StateDir::new(&cli.state);
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Init {
            trust_domain,
            days,
            force,
        } => {
            state.init(&trust_domain, days, force)?;
            writeln!(
                out,
                "created CA for trust domain {trust_domain} in {}",
                state.root().display()
            )?;
            writeln!(out, "CA bundle: {}", state.bundle_path().display())?;
        }
        Command::Issue {
            role,
            name,
            dns,
            ips,
            days,
            force,
        } => {
            let id = state.spiffe_id(role, name.as_deref())?;
            let mut spec = LeafSpec::new(id.clone(), days)?;
            if !dns.is_empty() {
                spec.dns = dns;
            }
            if !ips.is_empty() {
                spec.ips = ips;
            }
            let (issued, path) = state.issue(&spec, force)?;
            writeln!(
                out,
                "issued {id} serial {} expires {} -> {}",
                issued.serial_hex,
                rfc3339(issued.not_after),
                path.display()
            )?;
        }
        Command::Keygen { force } => {
            let pair = state.keygen(force)?;
            writeln!(out, "generated RSA-4096 key {}", pair.kid)?;
            writeln!(
                out,
                "public:  {}/{}.pem",
                state.public_keys_dir().display(),
                pair.kid
            )?;
            writeln!(
                out,
                "private: {}/{}.pem",
                state.private_keys_dir().display(),
                pair.kid
            )?;
        }
        Command::List => {
            writeln!(
                out,
                "{:<5} {:<52} {:<40} {:<28} PATH",
                "KIND", "IDENTITY", "DETAIL", "EXPIRES"
            )?;
            for e in state.list()? {
                writeln!(
                    out,
                    "{:<5} {:<52} {:<40} {:<28} {}",
                    e.kind,
                    e.identity,
                    e.detail,
                    e.expires,
                    e.path.display()
                )?;
            }
        }
    }
    Ok(())
}
