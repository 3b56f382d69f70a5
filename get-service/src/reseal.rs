//! Token-encryption key rotation, get-service's part: the re-seal job
//! (`get-service reseal`), which re-seals every stored token that is not
//! under the sealing key, and the shared start-up of it and of key
//! retirement ([`crate::retire`]).
//!
//! Both run with get-service's own config file, and therefore its identity
//! (certificate towards set-service), its read-only store role and its keys.
//! The job pages through the store (cursor on the version) over every token
//! someone may still need to open — connected accounts' newest tokens and
//! disconnected accounts' tokens still waiting for revocation — whose key id
//! is not the sealing key's; opens each, seals the same plaintext under the
//! sealing key for the same account and provider, and hands it to
//! set-service's `ResealRefreshToken`, which swaps it in only while that
//! version still holds a sealed token under the key it was read under
//! (compare-and-swap). A token rotated or revoked meanwhile is skipped: its
//! newer version is already under the sealing key, or gone. The version,
//! status and revocation state stay as they were, so nothing is revived.
//! Every write is one statement, so the job can be interrupted at any point
//! and run again; a new run finds only what is left.
//!
//! Holds plaintext refresh tokens for the length of one re-seal, in
//! [`Zeroizing`] buffers; logs and errors name accounts, providers, versions
//! and key ids, never a token.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenvault_runtime::settings::ServiceConfig as _;

use tokenvault_opener::PrivateKeyRing;
use tokenvault_proto::v1::{ResealOutcome, ResealRefreshTokenRequest};
use tokenvault_seal::PublicKeySet;
use tokenvault_set_client::{SetClient, SetError};
use tokenvault_store::{SealedRow, TokenReader};
use tokio::task::JoinSet;
use tonic::Code;
use zeroize::Zeroizing;

use crate::config::Config;

/// How long one call to set-service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per token when set-service is unreachable or times out.
const ATTEMPTS: u32 = 4;
/// How often progress is logged while the job runs.
const LOG_EVERY: Duration = Duration::from_secs(2);

/// Why key rotation could not run or finish. Never contains a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyRotationError {
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    #[error(transparent)]
    PrivateKeys(#[from] tokenvault_opener::RingLoadError),
    #[error("public_keys_dir: {0}")]
    PublicKeys(tokenvault_seal::SealError),
    #[error("store.url: {0}")]
    Store(#[from] tokenvault_store::StoreError),
    #[error("tls: {0}")]
    Tls(#[from] tokenvault_tls::TlsError),
    #[error(
        "get-service holds no private key for the sealing key {kid}: add {kid}.pem to private_keys_dir \
         (or the PKCS#11 token) first, or re-sealed tokens could not be opened"
    )]
    SealingKeyNotHeld { kid: String },
    #[error(
        "{reason}; stopped after {progress}. Fix it and run `get-service reseal` again to continue"
    )]
    Stopped {
        reason: String,
        progress: ResealProgress,
    },
    #[error(
        "{failed} stored tokens could not be re-sealed (the log says which, and why); {progress}. \
         Run `get-service reseal` again after fixing them"
    )]
    Incomplete {
        failed: u64,
        progress: ResealProgress,
    },
    #[error(
        "that is not a key id: a key id is 1-256 characters of A-Z, a-z, 0-9, '-' and '_' (`pki list` shows them)"
    )]
    NotAKeyId,
    #[error(
        "refusing to retire {kid}: it is the sealing key; make another key the sealing key \
         (`pki keygen`, or `sealing_kid`) and restart get-service first"
    )]
    RetireSealingKey { kid: String },
    #[error(
        "refusing to retire {kid}: {count} stored tokens (connected accounts' tokens, or disconnected \
         ones waiting for revocation) are still sealed under it; run `get-service reseal` first"
    )]
    RetireInUse { kid: String, count: i64 },
    #[error(
        "refusing to retire {kid}: its public key {path} is still there; delete it from the \
         public_keys_dir of web-frontend, set-service and get-service and restart them first, \
         so that nothing can be sealed under the key once it is gone"
    )]
    RetirePublicKeyPresent {
        kid: String,
        path: std::path::PathBuf,
    },
    #[error(
        "cannot retire {kid}: get-service holds it in the PKCS#11 token, not in a file; \
         delete it there with the token's own tools"
    )]
    RetireNotAFile { kid: String },
    #[error("cannot retire {kid}: no private key file {path} (already retired, or a wrong key id)")]
    RetireUnknown {
        kid: String,
        path: std::path::PathBuf,
    },
    #[error("cannot retire {kid}: {path}: {source}")]
    RetireIo {
        kid: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// How the job runs.
#[derive(Debug, Clone)]
pub struct ResealOptions {
    /// Stop after this many tokens (a trial run on a few); `None`: all.
    pub limit: Option<u64>,
    /// Tokens re-sealed at once (opening is one RSA-4096 decryption each).
    pub concurrency: usize,
    /// Tokens read from the store per page.
    pub page_size: u32,
}

impl Default for ResealOptions {
    fn default() -> Self {
        Self {
            limit: None,
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            page_size: 200,
        }
    }
}

/// Counts so far. `total` is how many tokens needed re-sealing when the job
/// started (or more, if more turned up while it ran).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealProgress {
    /// Tokens not under the sealing key.
    pub total: u64,
    /// Re-sealed by this run.
    pub resealed: u64,
    /// Rotated, revoked or re-sealed meanwhile: nothing to do.
    pub skipped: u64,
    /// Could not be opened or were refused (the log names each).
    pub failed: u64,
}

impl std::fmt::Display for ResealProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "resealed {} of {}, skipped {}, failed {}",
            self.resealed, self.total, self.skipped, self.failed
        )
    }
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct ResealReport {
    /// The key everything is now sealed under.
    pub sealing_kid: String,
    /// The final counts.
    pub progress: ResealProgress,
    /// How long it took.
    pub elapsed: Duration,
}

/// What the key-rotation commands work with: get-service's keys and store,
/// and a set-service client with its identity.
pub(crate) struct KeyJob {
    pub(crate) reader: TokenReader,
    pub(crate) ring: Arc<PrivateKeyRing>,
    pub(crate) sealer: Arc<PublicKeySet>,
    set: SetClient,
}

impl KeyJob {
    /// Loads what `config` names; refuses when the sealing key's private
    /// half is not held.
    pub(crate) async fn start(config: &Config) -> Result<Self, KeyRotationError> {
        config.validate()?;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ring = PrivateKeyRing::load(&config.private_keys_dir, config.pkcs11.as_ref()).await?;
        let sealer = PublicKeySet::load(&config.public_keys_dir, config.sealing_kid.as_deref())
            .map_err(KeyRotationError::PublicKeys)?;
        if !ring.contains(sealer.sealing_kid()) {
            return Err(KeyRotationError::SealingKeyNotHeld {
                kid: sealer.sealing_kid().to_owned(),
            });
        }
        let reader = TokenReader::connect(&config.store.url).await?;
        let set = SetClient::new(
            &config.set_service.address,
            &config.service.tls,
            &config.service.trust_domain,
            CALL_TIMEOUT,
        )?;
        Ok(Self {
            reader,
            ring: Arc::new(ring),
            sealer: Arc::new(sealer),
            set,
        })
    }
}

/// Re-seals every stored token not under the sealing key (see the module
/// docs), calling `on_progress` after each token. Returns the counts; an
/// error if set-service stopped the job or some tokens failed (the others
/// are done either way, and a new run picks up what is left).
pub async fn reseal(
    config: &Config,
    options: &ResealOptions,
    mut on_progress: impl FnMut(&ResealProgress) + Send,
) -> Result<ResealReport, KeyRotationError> {
    let started = Instant::now();
    let rotation = Arc::new(KeyJob::start(config).await?);
    let sealing_kid = rotation.sealer.sealing_kid().to_owned();
    let counts = rotation.reader.sealed_counts_by_kid().await?;
    let mut progress = ResealProgress::default();
    for (kid, count) in &counts {
        let count = u64::try_from(*count).unwrap_or_default();
        if *kid != sealing_kid {
            progress.total += count;
            if !rotation.ring.contains(kid) {
                tracing::warn!(
                    kid,
                    count,
                    "tokens sealed under a key get-service does not hold cannot be re-sealed (nor used); add that private key to re-seal them"
                );
            }
        }
    }
    tracing::info!(%sealing_kid, total = progress.total, limit = ?options.limit, "re-sealing stored tokens under the sealing key");
    let wanted = options.limit.unwrap_or(u64::MAX);
    let concurrency = options.concurrency.max(1);
    let mut tasks: JoinSet<Result<Done, String>> = JoinSet::new();
    let (mut after, mut started_rows, mut last_log) = (0_i64, 0_u64, Instant::now());
    let mut exhausted = false;
    loop {
        // Keep `concurrency` tokens in flight; read the next page when needed.
        let mut page = Vec::new();
        if !exhausted && started_rows < wanted {
            let room = u32::try_from(wanted - started_rows).unwrap_or(u32::MAX);
            page = rotation
                .reader
                .sealed_not_under(&sealing_kid, after, options.page_size.max(1).min(room))
                .await
                .map_err(|e| stopped(format!("reading the store failed: {e}"), progress))?;
            exhausted = page.is_empty();
        }
        if let Some(last) = page.last() {
            after = last.version;
        }
        for row in page {
            while tasks.len() >= concurrency {
                settle(&mut tasks, &mut progress).await?;
                report(&progress, &mut on_progress, &mut last_log);
            }
            started_rows += 1;
            progress.total = progress.total.max(started_rows);
            tasks.spawn(reseal_one(Arc::clone(&rotation), row));
        }
        if exhausted || started_rows >= wanted {
            while !tasks.is_empty() {
                settle(&mut tasks, &mut progress).await?;
                report(&progress, &mut on_progress, &mut last_log);
            }
            break;
        }
    }
    tracing::info!(%sealing_kid, %progress, elapsed_ms = started.elapsed().as_millis(), "re-seal finished");
    if progress.failed > 0 {
        return Err(KeyRotationError::Incomplete {
            failed: progress.failed,
            progress,
        });
    }
    Ok(ResealReport {
        sealing_kid,
        progress,
        elapsed: started.elapsed(),
    })
}

/// What happened to one token.
enum Done {
    Resealed,
    Skipped,
    Failed,
}

/// Waits for one token; a job-level error stops the job (the remaining
/// tasks are aborted when the set is dropped).
async fn settle(
    tasks: &mut JoinSet<Result<Done, String>>,
    progress: &mut ResealProgress,
) -> Result<(), KeyRotationError> {
    match tasks.join_next().await {
        Some(Ok(Ok(Done::Resealed))) => progress.resealed += 1,
        Some(Ok(Ok(Done::Skipped))) => progress.skipped += 1,
        Some(Ok(Ok(Done::Failed))) => progress.failed += 1,
        Some(Ok(Err(reason))) => return Err(stopped(reason, *progress)),
        Some(Err(e)) => return Err(stopped(format!("a re-seal task stopped: {e}"), *progress)),
        None => {}
    }
    Ok(())
}

fn stopped(reason: String, progress: ResealProgress) -> KeyRotationError {
    KeyRotationError::Stopped { reason, progress }
}

fn report(
    progress: &ResealProgress,
    on_progress: &mut impl FnMut(&ResealProgress),
    last_log: &mut Instant,
) {
    on_progress(progress);
    if last_log.elapsed() >= LOG_EVERY {
        *last_log = Instant::now();
        tracing::info!(%progress, "re-sealing");
    }
}

/// Opens one token, seals it under the sealing key and has set-service swap
/// it in. `Err` stops the whole job (set-service unreachable or refusing
/// get-service); a problem with this token alone is logged and counted.
async fn reseal_one(rotation: Arc<KeyJob>, row: SealedRow) -> Result<Done, String> {
    let SealedRow {
        account,
        provider,
        version,
        sealed_token,
        kid,
    } = row;
    if !rotation.ring.contains(&kid) {
        // Warned about once, with the count, when the job started.
        tracing::debug!(%account, %provider, version, %kid, "sealed under a key get-service does not hold");
        return Ok(Done::Failed);
    }
    // One RSA decryption (or a PKCS#11 call), off the async workers.
    let opened = rotation
        .ring
        .open_async(&sealed_token, &account, &provider)
        .await;
    let plaintext: Zeroizing<Vec<u8>> = match opened {
        Ok(plaintext) => plaintext,
        Err(error) => {
            tracing::error!(%account, %provider, version, %kid, %error, "cannot open a stored token; it stays under its old key");
            return Ok(Done::Failed);
        }
    };
    let resealed = match rotation.sealer.seal(&account, &provider, &plaintext) {
        Ok(sealed) => sealed,
        Err(error) => {
            tracing::error!(%account, %provider, version, %error, "cannot seal a stored token under the sealing key");
            return Ok(Done::Failed);
        }
    };
    drop(plaintext);
    let request = ResealRefreshTokenRequest {
        account: account.clone(),
        provider: provider.clone(),
        token_version: u64::try_from(version).unwrap_or_default(),
        previous_kid: kid.clone(),
        sealed_token: resealed,
    };
    let mut wait = Duration::from_millis(200);
    for attempt in 1..=ATTEMPTS {
        let error = match rotation.set.reseal(request.clone()).await {
            Ok(outcome) => {
                return Ok(match outcome {
                    ResealOutcome::Resealed => Done::Resealed,
                    ResealOutcome::Superseded | ResealOutcome::KeyChanged => {
                        tracing::debug!(%account, %provider, version, "skipped: rotated, revoked or re-sealed meanwhile");
                        Done::Skipped
                    }
                    ResealOutcome::Unspecified => {
                        tracing::error!(%account, %provider, version, "set-service answered without an outcome");
                        Done::Failed
                    }
                });
            }
            Err(error) => error,
        };
        match &error {
            e if e.is_transient() && attempt < ATTEMPTS => {
                tracing::warn!(%account, %provider, version, attempt, error = %e, "re-seal call failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            SetError::Refused {
                code: Code::InvalidArgument,
                message,
            } if message.contains("unknown key id") => {
                return Err(format!(
                    "set-service does not know the sealing key {}: add its public key to set-service's \
                     public_keys_dir and restart set-service",
                    rotation.sealer.sealing_kid()
                ));
            }
            SetError::Refused {
                code: code @ (Code::InvalidArgument | Code::NotFound | Code::ResourceExhausted),
                message,
            } => {
                tracing::error!(%account, %provider, version, ?code, message, "set-service refused a re-sealed token; it stays under its old key");
                return Ok(Done::Failed);
            }
            other => {
                return Err(format!("set-service ResealRefreshToken failed: {other}"));
            }
        }
    }
    Err("set-service is unreachable".to_owned())
}
