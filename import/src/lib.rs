//! `tokenvault-import`: moves refresh tokens that an application already
//! holds into tokenvault. Each line of the input (JSON lines or CSV:
//! account, provider, refresh token, optional metadata) is sealed here, on
//! the host where the import runs, with the public key, and stored through
//! set-service with an identity its `allow.store_refresh_token` admits, as
//! "only if nothing was ever stored for this account" (expected version 0):
//! an import never replaces a token tokenvault holds, and a line imported
//! twice is stored once.
//!
//! The progress file records each line that is done (its number and
//! outcome, never a token), so a stopped or killed import resumes where it
//! was; a line stored just before a kill, but not yet recorded, is found
//! stored on the resume. A bad line is reported and skipped; the import
//! goes on.
//!
//! This crate holds plaintext refresh tokens from the input for the length
//! of sealing one (in wiped buffers) and public keys only: it cannot open a
//! sealed token, and it never writes, logs or prints a token.

#![forbid(unsafe_code)]

mod config;
mod error;
pub mod progress;
pub mod records;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokenvault_oauth::Provider;
use tokenvault_seal::PublicKeySet;
use tokenvault_set_client::{SetClient, SetError, StoreExtras};
use tokio::task::JoinSet;
use tonic::Code;

pub use config::{ImportConfig, SetServiceConfig};
pub use error::ImportError;
use progress::{Outcome, Progress};
pub use records::{Format, Record};

/// Attempts per line when set-service is unavailable.
const ATTEMPTS: u32 = 4;
/// The first wait between attempts; it doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// What to import and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The input file.
    pub input: PathBuf,
    /// Its format.
    pub format: Format,
    /// The progress file (created if missing).
    pub progress: PathBuf,
    /// Lines in flight at once.
    pub concurrency: usize,
    /// Refresh each token once at its provider (the config's
    /// `[[providers]]`) before storing it, and store the token the provider
    /// returns if it rotated it; a refused token is reported, not stored.
    pub verify: bool,
}

/// How an import went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Lines read (records, not counting a CSV header or blank lines).
    pub lines: u64,
    /// Stored by this run.
    pub stored: u64,
    /// Found stored already (by an earlier, interrupted run, or before the
    /// import): not stored again.
    pub already_stored: u64,
    /// Done in an earlier run, per the progress file.
    pub done_before: u64,
    /// Lines that failed, with the reason (never a token); a resume tries
    /// them again.
    pub failed: Vec<(u64, String)>,
}

impl Report {
    /// Lines handled so far, whatever the outcome.
    pub fn handled(&self) -> u64 {
        self.stored + self.already_stored + self.done_before + self.failed.len() as u64
    }
}

/// What every line's task uses.
struct Shared {
    keys: PublicKeySet,
    client: SetClient,
    progress: Mutex<Progress>,
    /// By name; only with `verify`.
    providers: HashMap<String, Provider>,
    verify: bool,
}

/// Runs an import; `on_progress` sees the report after each line.
pub async fn run(
    config: &ImportConfig,
    options: &Options,
    mut on_progress: impl FnMut(&Report),
) -> Result<Report, ImportError> {
    config.validate()?;
    let keys = PublicKeySet::load(&config.public_keys_dir, config.sealing_kid.as_deref())?;
    let client = SetClient::new(
        &config.set_service.address,
        &config.tls,
        &config.trust_domain,
        Duration::from_secs(config.set_service.timeout_secs),
    )?;
    let providers = if options.verify {
        config::providers(config).await?
    } else {
        HashMap::new()
    };
    let progress = Progress::open(&options.progress)?;
    let records = records::read(&options.input, options.format)?;
    let shared = Arc::new(Shared {
        keys,
        client,
        progress: Mutex::new(progress),
        providers,
        verify: options.verify,
    });
    let mut report = Report::default();
    let mut in_flight = JoinSet::new();
    for parsed in records {
        report.lines += 1;
        let record = match parsed {
            Ok(record) if lock(&shared.progress).is_done(record.line) => {
                report.done_before += 1;
                on_progress(&report);
                continue;
            }
            Ok(record) => record,
            Err((line, reason)) => {
                report.failed.push((line, reason));
                on_progress(&report);
                continue;
            }
        };
        while in_flight.len() >= options.concurrency.max(1) {
            finish_one(&mut in_flight, &shared, &mut report).await?;
            on_progress(&report);
        }
        let shared = Arc::clone(&shared);
        in_flight.spawn(async move {
            let line = record.line;
            (line, import_one(&shared, record).await)
        });
    }
    while !in_flight.is_empty() {
        finish_one(&mut in_flight, &shared, &mut report).await?;
        on_progress(&report);
    }
    report.failed.sort_by_key(|(line, _)| *line);
    Ok(report)
}

type LineResult = (u64, Result<Outcome, String>);

async fn finish_one(
    in_flight: &mut JoinSet<LineResult>,
    shared: &Shared,
    report: &mut Report,
) -> Result<(), ImportError> {
    let Some(joined) = in_flight.join_next().await else {
        return Ok(());
    };
    let (line, outcome) = joined.map_err(|e| ImportError::Task(e.to_string()))?;
    match outcome {
        Ok(outcome) => {
            lock(&shared.progress).record(line, &outcome)?;
            match outcome {
                Outcome::Stored(_) => report.stored += 1,
                Outcome::AlreadyStored => report.already_stored += 1,
            }
        }
        Err(reason) => report.failed.push((line, reason)),
    }
    Ok(())
}

fn lock(progress: &Mutex<Progress>) -> MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seals and stores one record (after one refresh, with `verify`); the
/// error names what went wrong, never the token.
async fn import_one(shared: &Shared, record: Record) -> Result<Outcome, String> {
    let journaled = lock(&shared.progress)
        .sealed(record.line)
        .map(str::to_owned);
    let (sealed, refresh_token_expires_at_unix) = match journaled {
        // An earlier run refreshed this line's token: the input's may be dead.
        Some(sealed) => (sealed, None),
        None if shared.verify => verify(shared, &record).await?,
        None => (seal(shared, &record, record.refresh_token.expose())?, None),
    };
    drop(record.refresh_token);
    let extras = StoreExtras {
        metadata: record.metadata,
        refresh_token_expires_at_unix,
    };
    let mut wait = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let stored = shared
            .client
            .store_with(
                &record.account,
                &record.provider,
                sealed.clone(),
                Some(0),
                &extras,
            )
            .await;
        match stored {
            Ok(version) => return Ok(Outcome::Stored(version)),
            Err(e) if e.is_refused(Code::Aborted) => return Ok(Outcome::AlreadyStored),
            // Uncertain: a store that landed is found on the next attempt.
            Err(SetError::Unavailable(_) | SetError::Uncertain(_)) if attempt < ATTEMPTS => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("set-service is unavailable".into())
}

fn seal(shared: &Shared, record: &Record, token: &str) -> Result<String, String> {
    shared
        .keys
        .seal(&record.account, &record.provider, token.as_bytes())
        .map_err(|e| format!("cannot seal: {e}"))
}

/// One refresh at the provider; the token to store (the rotated one, if
/// the provider rotated it), sealed and journaled before it is stored, and
/// its expiry if the provider said.
async fn verify(shared: &Shared, record: &Record) -> Result<(String, Option<i64>), String> {
    let provider = shared.providers.get(&record.provider).ok_or_else(|| {
        format!(
            "--verify: no [[providers]] entry named {:?} in the config",
            record.provider
        )
    })?;
    let refreshed = provider
        .refresh(record.refresh_token.expose())
        .await
        .map_err(|e| format!("--verify: {e}"))?;
    let token = refreshed
        .refresh_token
        .as_ref()
        .unwrap_or(&record.refresh_token);
    let sealed = seal(shared, record, token.expose())?;
    lock(&shared.progress)
        .record_sealed(record.line, &sealed)
        .map_err(|e| e.to_string())?;
    Ok((sealed, refreshed.refresh_token_expires_at_unix))
}
