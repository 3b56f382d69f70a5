//! Revoking disconnected accounts' grants at their providers (RFC 7009).
//!
//! A disconnect (web-frontend → set-service) leaves the account's last refresh
//! token, still sealed, behind a tombstone: get-service is the only part that
//! can open it. [`RevocationSweeper`] reads such pending tokens every
//! `revocation.interval_secs`, opens each, revokes it at its provider, and
//! records the outcome through set-service (`RecordRevocation`), which makes
//! the database delete the sealed token. A provider without a revocation
//! endpoint is recorded as such and the token is deleted all the same.
//! Failures are retried on later sweeps with a growing pause per token; the
//! sealed token stays in the store until then.
//!
//! Holds one plaintext refresh token at a time, in a [`Zeroizing`] buffer,
//! for the length of one revocation call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenvault_store::{PendingRevocation, RevocationOutcome, TokenReader};
use zeroize::Zeroizing;

use crate::PrivateKeyRing;
use crate::config::RevocationConfig;
use crate::provider::{Provider, ProviderError};
use crate::writer::SetWriter;

/// The longest pause before retrying one token.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// What one sweep did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Tokens revoked at the provider and recorded.
    pub revoked: usize,
    /// Tokens of providers without revocation, recorded and deleted.
    pub unsupported: usize,
    /// Tokens left for a later sweep.
    pub deferred: usize,
}

/// The background job; see the module documentation.
#[derive(Debug)]
pub struct RevocationSweeper {
    reader: TokenReader,
    keys: Arc<PrivateKeyRing>,
    providers: HashMap<String, Arc<Provider>>,
    writer: SetWriter,
    config: RevocationConfig,
    /// Per token version: failures so far and when to try again.
    retry: HashMap<i64, (u32, Instant)>,
}

impl RevocationSweeper {
    /// A sweeper reading from `reader` and writing through `writer`.
    pub fn new(
        reader: TokenReader,
        keys: Arc<PrivateKeyRing>,
        providers: HashMap<String, Arc<Provider>>,
        writer: SetWriter,
        config: RevocationConfig,
    ) -> Self {
        Self {
            reader,
            keys,
            providers,
            writer,
            config,
            retry: HashMap::new(),
        }
    }

    /// Sweeps every `interval_secs` until the task is dropped or aborted.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.config.interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let report = self.sweep().await;
            if report != SweepReport::default() {
                tracing::info!(
                    revoked = report.revoked,
                    unsupported = report.unsupported,
                    deferred = report.deferred,
                    "revocation sweep"
                );
            }
        }
    }

    /// One pass over the pending revocations.
    pub async fn sweep(&mut self) -> SweepReport {
        let mut report = SweepReport::default();
        let pending = match self
            .reader
            .pending_revocations(self.config.batch_size)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pending revocations; retrying on the next sweep");
                return report;
            }
        };
        let now = Instant::now();
        let live: std::collections::HashSet<i64> = pending.iter().map(|p| p.version).collect();
        self.retry.retain(|version, _| live.contains(version));
        for item in pending {
            if self
                .retry
                .get(&item.version)
                .is_some_and(|(_, at)| *at > now)
            {
                report.deferred += 1;
                continue;
            }
            match self.revoke_one(&item).await {
                Some(RevocationOutcome::Revoked) => report.revoked += 1,
                Some(RevocationOutcome::Unsupported) => report.unsupported += 1,
                None => {
                    report.deferred += 1;
                    let failures = self.retry.get(&item.version).map_or(0, |(n, _)| *n) + 1;
                    let pause = Duration::from_secs(self.config.interval_secs)
                        .saturating_mul(1 << failures.min(12))
                        .min(MAX_BACKOFF);
                    self.retry.insert(item.version, (failures, now + pause));
                }
            }
        }
        report
    }

    /// Revokes and records one token; `None` when it must be tried again later.
    async fn revoke_one(&self, item: &PendingRevocation) -> Option<RevocationOutcome> {
        let (account, provider_name) = (item.account.as_str(), item.provider.as_str());
        let Some(provider) = self.providers.get(provider_name) else {
            tracing::warn!(
                account,
                provider = provider_name,
                "a disconnected account's provider is not configured here; cannot revoke its grant"
            );
            return None;
        };
        let outcome = {
            let token = match self.keys.open(&item.sealed_token, account, provider_name) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::error!(account, provider = provider_name, kid = %item.kid, error = %e, "cannot open a disconnected account's token to revoke it");
                    return None;
                }
            };
            let Ok(text) = std::str::from_utf8(&token) else {
                tracing::error!(
                    account,
                    provider = provider_name,
                    "a disconnected account's token is not UTF-8"
                );
                return None;
            };
            let token = Zeroizing::new(text.to_owned());
            match provider.revoke(&token).await {
                Ok(()) => RevocationOutcome::Revoked,
                Err(ProviderError::Unsupported(reason)) => {
                    tracing::info!(account, provider = provider_name, %reason, "the provider offers no revocation; deleting the token");
                    RevocationOutcome::Unsupported
                }
                Err(e) => {
                    tracing::warn!(account, provider = provider_name, error = %e, "revoking a disconnected account's grant failed; retrying later");
                    return None;
                }
            }
        };
        let key = (item.account.clone(), item.provider.clone());
        match self
            .writer
            .record_revocation(&key, item.version, outcome)
            .await
        {
            Ok(()) => {
                tracing::info!(account, provider = provider_name, %outcome, "disconnected account's grant revoked");
                Some(outcome)
            }
            Err(code) => {
                tracing::warn!(
                    account,
                    provider = provider_name,
                    ?code,
                    "recording a revocation failed; retrying later"
                );
                None
            }
        }
    }
}
