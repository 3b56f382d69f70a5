//! Revoking disconnected accounts' grants at their providers (RFC 7009).
//!
//! A disconnect (web-frontend → set-service) leaves the account's last refresh
//! token, still sealed, behind a tombstone: get-service is the only part that
//! can open it. [`RevocationSweeper`] pages through such pending tokens every
//! `revocation.interval_secs` and, under the account's lock (so no refresh of
//! it runs meanwhile), checks that the token is still pending (no reconnect
//! since: revoking then could end the new grant at providers that revoke per
//! user and client), opens it, revokes it at its provider, and records the
//! outcome through set-service (`RecordRevocation`), which makes the database
//! delete the sealed token. A provider without a revocation endpoint is
//! recorded as such (with a warning) and the token is deleted all the same.
//!
//! Rotated refresh tokens that the store refused because the account changed
//! meanwhile ([`Rotations::take_orphans`]) are live grants too: those of
//! accounts now disconnected are revoked in the same sweep.
//!
//! With several replicas on PostgreSQL, one sweeps at a time (a job lock);
//! the others skip that round.
//!
//! Failures are retried on later sweeps with a growing pause per token; the
//! sealed token stays in the store until then, and a token that keeps failing
//! is logged as an error. Each sweep makes at most `batch_size` provider
//! calls, and items waiting for their retry never hold up the others.
//!
//! Holds one plaintext refresh token at a time, in a [`Zeroizing`] buffer,
//! for the length of one revocation call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenvault_oauth::{Provider, ProviderError};
use tokenvault_opener::PrivateKeyRing;
use tokenvault_proto::v1::RevocationOutcome as ProtoRevocationOutcome;
use tokenvault_set_client::SetClient;
use tokenvault_store::{Latest, PendingRevocation, RevocationOutcome, TokenReader};
use zeroize::Zeroizing;

use crate::account::{AccountKey, AccountLocks};
use crate::config::RevocationConfig;
use crate::replicas::Replicas;
use crate::rotation::Rotations;

/// The longest pause before retrying one token.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// After this many failures in a row a token is logged as an error.
const ESCALATE_AFTER: u32 = 5;

/// What one sweep did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Tokens revoked at the provider and recorded.
    pub revoked: usize,
    /// Tokens of providers without revocation, recorded and deleted.
    pub unsupported: usize,
    /// Tokens left for a later sweep.
    pub deferred: usize,
    /// Orphaned rotated tokens of disconnected accounts revoked.
    pub orphans_revoked: usize,
}

/// Everything the sweep uses.
#[derive(Debug)]
pub struct RevocationSweeper {
    /// The store, read-only.
    pub reader: TokenReader,
    /// The private keys.
    pub keys: Arc<PrivateKeyRing>,
    /// The provider catalogue.
    pub providers: HashMap<String, Arc<Provider>>,
    /// Where revocations are recorded.
    pub set: SetClient,
    /// Rotated tokens the store refused (orphans).
    pub rotations: Rotations,
    /// With several replicas: so that one sweeps at a time.
    pub replicas: Option<Replicas>,
    /// The per-account locks refreshes hold too.
    pub locks: AccountLocks,
    /// Interval and batch size.
    pub config: RevocationConfig,
    /// Per token version: failures so far and when to try again.
    retry: HashMap<i64, (u32, Instant)>,
}

/// How one pending token ended in this sweep.
enum Done {
    Recorded(RevocationOutcome),
    /// Reconnected (or recorded by another replica) since it was read.
    NoLongerPending,
    Failed,
}

impl RevocationSweeper {
    /// A sweeper over `reader`, recording through set-service, revoking the
    /// orphans of `rotations` too (and sharing its account locks); with
    /// `replicas`, one replica sweeps at a time.
    pub fn new(
        reader: TokenReader,
        keys: Arc<PrivateKeyRing>,
        providers: HashMap<String, Arc<Provider>>,
        (rotations, replicas): (Rotations, Option<Replicas>),
        config: RevocationConfig,
    ) -> Self {
        Self {
            reader,
            keys,
            providers,
            set: rotations.set_client().clone(),
            locks: rotations.locks().clone(),
            rotations,
            replicas,
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
            let report = match self.replicas.clone() {
                None => self.sweep().await,
                Some(replicas) => {
                    let mut report = SweepReport::default();
                    replicas
                        .once("revocation", async { report = self.sweep().await })
                        .await;
                    report
                }
            };
            if report.revoked + report.unsupported + report.orphans_revoked > 0 {
                tracing::info!(
                    revoked = report.revoked,
                    unsupported = report.unsupported,
                    orphans_revoked = report.orphans_revoked,
                    deferred = report.deferred,
                    "revocation sweep"
                );
            }
        }
    }

    /// One pass over the pending revocations, then the orphaned tokens.
    pub async fn sweep(&mut self) -> SweepReport {
        let mut report = SweepReport::default();
        let now = Instant::now();
        let mut calls = 0u32;
        let mut cursor = 0i64;
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = match self
                .reader
                .pending_revocations(cursor, self.config.batch_size)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read pending revocations; retrying on the next sweep");
                    return report;
                }
            };
            let full = page.len() == self.config.batch_size as usize;
            for item in page {
                cursor = item.version;
                seen.insert(item.version);
                let waiting = self
                    .retry
                    .get(&item.version)
                    .is_some_and(|(_, at)| *at > now);
                if waiting || calls >= self.config.batch_size {
                    report.deferred += 1;
                    continue;
                }
                calls += 1;
                match self.revoke_pending(&item).await {
                    Done::Recorded(RevocationOutcome::Revoked) => report.revoked += 1,
                    Done::Recorded(RevocationOutcome::Unsupported) => report.unsupported += 1,
                    Done::NoLongerPending => {}
                    Done::Failed => {
                        report.deferred += 1;
                        self.back_off(&item, now);
                    }
                }
            }
            if !full {
                break;
            }
        }
        self.retry.retain(|version, _| seen.contains(version));
        report.orphans_revoked = self.revoke_orphans().await;
        report
    }

    fn back_off(&mut self, item: &PendingRevocation, now: Instant) {
        let failures = self.retry.get(&item.version).map_or(0, |(n, _)| *n) + 1;
        let pause = Duration::from_secs(self.config.interval_secs)
            .saturating_mul(1 << failures.min(12))
            .min(MAX_BACKOFF);
        if failures == ESCALATE_AFTER {
            tracing::error!(account = %item.account, provider = %item.provider, failures, "a disconnected account's grant still cannot be revoked; its sealed token stays in the store until it can");
        }
        self.retry.insert(item.version, (failures, now + pause));
    }

    /// Revokes and records one pending token under its account's lock.
    async fn revoke_pending(&self, item: &PendingRevocation) -> Done {
        let key = AccountKey::new(&item.account, &item.provider);
        let _guard = self.locks.lock(&key).await;
        // A rotated token held for this account is no longer wanted: it
        // becomes an orphan, revoked below.
        let _ = self.rotations.pending_token(&key, None);
        match self
            .reader
            .still_pending(&item.account, &item.provider, item.version)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Done::NoLongerPending,
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-check a pending revocation");
                return Done::Failed;
            }
        }
        let Some(outcome) = self.revoke_sealed(item).await else {
            return Done::Failed;
        };
        let recorded = match u64::try_from(item.version) {
            Ok(version) => {
                let proto = match outcome {
                    RevocationOutcome::Revoked => ProtoRevocationOutcome::Revoked,
                    RevocationOutcome::Unsupported => ProtoRevocationOutcome::Unsupported,
                };
                self.set
                    .record_revocation(&item.account, &item.provider, version, proto)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(_) => Err(format!("negative token version {}", item.version)),
        };
        match recorded {
            Ok(()) => {
                tracing::info!(account = %item.account, provider = %item.provider, %outcome, "disconnected account's grant revoked");
                Done::Recorded(outcome)
            }
            Err(error) => {
                tracing::warn!(account = %item.account, provider = %item.provider, %error, "recording a revocation failed; retrying later");
                Done::Failed
            }
        }
    }

    /// Opens `item` and revokes it at its provider; `None` to retry later.
    async fn revoke_sealed(&self, item: &PendingRevocation) -> Option<RevocationOutcome> {
        let (account, provider) = (item.account.as_str(), item.provider.as_str());
        let opened = match self
            .keys
            .open_async(&item.sealed_token, account, provider)
            .await
        {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(account, provider, kid = ?item.kid, error = %e, "cannot open a disconnected account's token to revoke it");
                return None;
            }
        };
        let Ok(text) = std::str::from_utf8(&opened) else {
            tracing::error!(
                account,
                provider,
                "a disconnected account's token is not UTF-8"
            );
            return None;
        };
        self.revoke(account, provider, &Zeroizing::new(text.to_owned()))
            .await
    }

    /// Revokes `token` at `provider`; `None` to retry later.
    async fn revoke(
        &self,
        account: &str,
        provider: &str,
        token: &str,
    ) -> Option<RevocationOutcome> {
        let Some(p) = self.providers.get(provider) else {
            tracing::warn!(
                account,
                provider,
                "a disconnected account's provider is not configured here; cannot revoke its grant"
            );
            return None;
        };
        match p.revoke(token).await {
            Ok(()) => Some(RevocationOutcome::Revoked),
            Err(ProviderError::Unsupported(reason)) => {
                tracing::warn!(account, provider, %reason, "the provider offers no revocation: the grant stays valid there; deleting the token");
                Some(RevocationOutcome::Unsupported)
            }
            Err(e) => {
                tracing::warn!(account, provider, error = %e, "revoking a disconnected account's grant failed; retrying later");
                None
            }
        }
    }

    /// Revokes orphaned rotated tokens of accounts that are disconnected now;
    /// drops those of reconnected accounts (revoking them could end the new
    /// grant). Returns how many it revoked.
    async fn revoke_orphans(&self) -> usize {
        let mut revoked = 0;
        let mut again = Vec::new();
        for (key, token) in self.rotations.take_orphans() {
            let _guard = self.locks.lock(&key).await;
            let (account, provider) = (&*key.account, &*key.provider);
            match self.reader.latest(account, provider).await {
                Ok(Latest::Disconnected) => match self.revoke(account, provider, &token).await {
                    Some(_) => {
                        tracing::info!(
                            account,
                            provider,
                            "revoked a rotated refresh token of a disconnected account"
                        );
                        revoked += 1;
                    }
                    None => again.push((key.clone(), token)),
                },
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read an account to revoke its orphaned token");
                    again.push((key.clone(), token));
                }
            }
        }
        self.rotations.return_orphans(again);
        revoked
    }
}
