//! `pki`: the ops CLI for tokenvault's CA, certificates and token-encryption
//! keys. It prints paths, identities, key ids and expiry dates; never a key.
#![forbid(unsafe_code)]

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokenvault_pki::{
    CrlReport, DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS, DEFAULT_TRUST_DOMAIN, LeafSpec, RenewSelection,
    StateDir, parse_window, rfc3339,
};
use tokenvault_tls::Role;

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
        /// web-frontend, set-service, get-service, worker or admin.
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
    /// List every certificate and key with its identity, key id, issuing CA and expiry.
    List,
    /// Re-issue leaf certificates in certs/ that expire soon (same SPIFFE ID
    /// and SANs, a fresh key) with the issuing CA, then refresh the CRL.
    Renew {
        /// Renew those that expire within this window: 7d, 12h, 30m.
        #[arg(long, conflicts_with = "all")]
        within: Option<String>,
        /// Renew every leaf (to move them to a new CA during a rotation).
        #[arg(long)]
        all: bool,
        /// How long the new certificates are valid, in days.
        #[arg(long, default_value_t = DEFAULT_LEAF_DAYS)]
        days: u32,
    },
    /// Revoke a certificate by file stem (worker-billing), SPIFFE ID or serial,
    /// and write a new ca/crl.pem.
    Revoke {
        /// A file stem in certs/, a SPIFFE ID, or a serial number.
        target: String,
    },
    /// Write a fresh ca/crl.pem (new CRL number and next update).
    Crl,
    /// Start a CA rotation: a new issuing CA, trusted beside the old one.
    /// Then `pki renew --all`, then `pki rotate-ca --finish`.
    RotateCa {
        /// How long the new CA is valid, in days.
        #[arg(long, default_value_t = DEFAULT_CA_DAYS, conflicts_with = "finish")]
        days: u32,
        /// Drop the old CA from the bundle once no leaf uses it.
        #[arg(long)]
        finish: bool,
    },
}

fn print_crl(out: &mut impl Write, crl: &CrlReport) -> std::io::Result<()> {
    writeln!(
        out,
        "wrote {} CRL(s), crl number {}, {} revoked, next update {} -> {}",
        crl.crls,
        crl.crl_number,
        crl.revoked,
        rfc3339(crl.next_update),
        crl.path.display()
    )
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
                "{:<5} {:<52} {:<48} {:<9} {:<28} PATH",
                "KIND", "IDENTITY", "DETAIL", "ISSUER", "EXPIRES"
            )?;
            for e in state.list()? {
                writeln!(
                    out,
                    "{:<5} {:<52} {:<48} {:<9} {:<28} {}",
                    e.kind,
                    e.identity,
                    e.detail,
                    e.issuer,
                    e.expires,
                    e.path.display()
                )?;
            }
        }
        Command::Renew { within, all, days } => {
            let selection = match (within, all) {
                (Some(w), false) => RenewSelection::ExpiringWithin(parse_window(&w)?),
                (None, true) => RenewSelection::All,
                _ => anyhow::bail!("give --within <window> (e.g. 7d) or --all"),
            };
            let report = state.renew(selection, days)?;
            for r in &report.renewed {
                writeln!(
                    out,
                    "renewed {} serial {} expires {} -> {}",
                    r.identity,
                    r.serial_hex,
                    rfc3339(r.not_after),
                    r.path.display()
                )?;
            }
            if report.renewed.is_empty() {
                writeln!(out, "nothing to renew")?;
            }
            for (path, why) in &report.skipped {
                eprintln!("skipped {}: {why}", path.display());
            }
            print_crl(&mut out, &report.crl)?;
            if !report.failed.is_empty() {
                for (path, why) in &report.failed {
                    eprintln!("failed {}: {why}", path.display());
                }
                anyhow::bail!(
                    "{} certificate(s) could not be renewed",
                    report.failed.len()
                );
            }
        }
        Command::Revoke { target } => {
            let revoked = state.revoke(&target)?;
            writeln!(
                out,
                "{} {} serial {}",
                if revoked.already {
                    "already revoked"
                } else {
                    "revoked"
                },
                revoked.identity,
                revoked.serial_hex
            )?;
            for serial in &revoked.also_revoked {
                writeln!(
                    out,
                    "revoked {} serial {serial} (an earlier certificate of the same identity)",
                    revoked.identity
                )?;
            }
            print_crl(&mut out, &revoked.crl)?;
        }
        Command::Crl => {
            let crl = state.write_crl()?;
            print_crl(&mut out, &crl)?;
        }
        Command::RotateCa { days, finish } => {
            if finish {
                state.finish_ca_rotation()?;
                writeln!(
                    out,
                    "finished the CA rotation: the bundle holds only the issuing CA -> {}",
                    state.bundle_path().display()
                )?;
            } else {
                state.rotate_ca(days)?;
                writeln!(
                    out,
                    "new issuing CA -> {}; the bundle trusts it and the previous CA -> {}",
                    state.ca_cert_path().display(),
                    state.bundle_path().display()
                )?;
                writeln!(
                    out,
                    "next: wait until every service has reloaded the bundle, then `pki renew --all`, \
                     wait again, then `pki rotate-ca --finish`"
                )?;
            }
        }
    }
    Ok(())
}
