//! `tokenvault-import`: parses the command line and runs
//! [`tokenvault_import::run`], printing progress to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use tokenvault_import::{Format, ImportConfig, Options, Report, run};

/// Moves existing refresh tokens into tokenvault: each is sealed here with
/// the public key and stored through set-service, only for accounts that
/// have nothing stored yet. Resumable: run the same command again after a
/// stop.
#[derive(Parser, Debug)]
#[command(name = "tokenvault-import", version)]
struct Cli {
    /// The import's config (set-service, identity, public keys).
    #[arg(long)]
    config: PathBuf,
    /// The tokens: JSON lines ({"account","provider","refresh_token",
    /// "metadata"?}) or CSV with a header (account,provider,refresh_token[,metadata]).
    #[arg(long)]
    input: PathBuf,
    /// The input's format; default: from the file name (.csv, else JSON lines).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The progress file; default: the input's path with `.progress` added.
    #[arg(long)]
    progress: Option<PathBuf>,
    /// Lines in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Refresh each token once at its provider (the config's
    /// [[providers]]) before storing it; a refused token is reported, not
    /// stored, and a rotated one is stored in its place.
    #[arg(long)]
    verify: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let config = ImportConfig::load(&cli.config)?;
    let progress = cli.progress.clone().unwrap_or_else(|| {
        let mut name = cli.input.clone().into_os_string();
        name.push(".progress");
        PathBuf::from(name)
    });
    let options = Options {
        format: cli.format.unwrap_or_else(|| Format::from_path(&cli.input)),
        input: cli.input,
        progress,
        concurrency: cli.concurrency,
        verify: cli.verify,
    };
    let mut last = Instant::now();
    let report = run(&config, &options, |r| {
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            eprintln!("{}", summary(r));
        }
    })
    .await?;
    eprintln!("{}", summary(&report));
    for (line, reason) in &report.failed {
        eprintln!("line {line}: {reason}");
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn summary(r: &Report) -> String {
    format!(
        "{} lines: {} stored, {} already stored, {} done before, {} failed",
        r.handled(),
        r.stored,
        r.already_stored,
        r.done_before,
        r.failed.len()
    )
}
