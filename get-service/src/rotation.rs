//! Refresh-token rotation's one home: a provider's rotated refresh token is
//! sealed here with the public key, before it leaves this process, and made
//! **durable before any worker gets the access token that came with it**:
//! stored by set-service, or, when set-service cannot be reached, written
//! and fsync'd to the local [`Journal`] (sealed, never plaintext).
//!
//! A rotated refresh token is stored only if the newest stored version is
//! still the one it was refreshed from (`expected_version`, set-service's
//! compare-and-swap), so it never revives an account disconnected meanwhile,
//! never replaces a reconnect, and a stale replica cannot overwrite a newer
//! token. Until it is stored it is the only live copy of the grant: it stays
//! pending (in memory, and in the journal), is used for the account's next
//! refresh, and a background loop keeps storing it; at start the journal is
//! replayed the same way. Every store for an account runs under that
//! account's lock ([`AccountLocks`]), which refreshes hold too.
//!
//! A rotated token the store refuses because the account changed meanwhile
//! is an orphan: still a live grant at the provider, handed to the
//! revocation sweep.
//!
//! Holds plaintext rotated refresh tokens in [`Zeroizing`] buffers until they
//! are stored; `Debug` shows none of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenvault_opener::PrivateKeyRing;
use tokenvault_seal::PublicKeySet;
use tokenvault_set_client::{SetClient, StoreExtras};
use tokenvault_store::coordination::Lease;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::account::{AccountKey, AccountLocks, lock};
use crate::journal::{Journal, JournalEntry};

/// Attempts made inline to record an account's status.
pub(crate) const INLINE_ATTEMPTS: u32 = 2;
/// How long a waiting worker's rotation may wait for set-service before it
/// is journaled instead (a journaled token is stored later all the same;
/// one the store took after all is recognised as already stored).
const DURABLE_STORE_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest pause between background attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(10);

/// A rotated refresh token not yet stored. `Debug` shows no token.
struct Pending {
    /// The new refresh token, used for the next refresh until it is stored.
    token: Zeroizing<String>,
    /// It sealed, with the stored version it must replace, and journaled if
    /// there is a journal.
    entry: JournalEntry,
    /// Whether a background loop is storing it.
    flushing: bool,
    /// The account's cross-replica lock, held until it is stored, so that
    /// no other replica refreshes with the token it replaces.
    _lease: Option<Lease>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("expected_version", &self.entry.expected_version)
            .field("flushing", &self.flushing)
            .finish_non_exhaustive()
    }
}

/// What one store attempt found.
enum Stored {
    /// Stored as this version.
    Yes(i64),
    /// The account changed meanwhile (disconnect or reconnect): drop the token.
    Superseded,
    /// set-service could not be reached or failed; try again later.
    Failed,
}

/// How a rotation was made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// set-service stored it as this version.
    Stored(i64),
    /// set-service could not be reached: it is in the journal, and stored
    /// when set-service answers.
    Journaled,
    /// The account changed meanwhile (disconnected or reconnected): the
    /// store refused it, and it is handed to the revocation sweep.
    Superseded,
}

/// Why a rotation could not be made durable (no journal, or the journal
/// could not be written). The token stays pending in memory.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the rotated refresh token could not be made durable: {0}")]
pub struct NotDurable(String);

/// Rotated refresh tokens on their way to the store.
#[derive(Debug, Clone)]
pub struct Rotations {
    set: SetClient,
    sealer: Arc<PublicKeySet>,
    journal: Option<Journal>,
    pending: Arc<Mutex<HashMap<AccountKey, Pending>>>,
    orphans: Orphans,
    locks: AccountLocks,
}

/// Rotated refresh tokens that could not be stored because the account
/// changed meanwhile (disconnected or reconnected). Each is still a live
/// grant at the provider: the revocation sweep revokes those whose account
/// is disconnected. `Debug` shows no token.
#[derive(Clone, Default)]
struct Orphans(Arc<Mutex<Vec<Orphan>>>);

/// An account and a rotated refresh token the store refused for it.
pub type Orphan = (AccountKey, Zeroizing<String>);

impl std::fmt::Debug for Orphans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Orphans({})", lock(&self.0).len())
    }
}

impl Rotations {
    /// Stores through `set`, sealing with `sealer`, journaling in `journal`
    /// while set-service is away, under `locks`.
    pub fn new(
        set: SetClient,
        sealer: Arc<PublicKeySet>,
        journal: Option<Journal>,
        locks: AccountLocks,
    ) -> Self {
        Self {
            set,
            sealer,
            journal,
            pending: Arc::default(),
            orphans: Orphans::default(),
            locks,
        }
    }

    /// The account locks every store holds.
    pub fn locks(&self) -> &AccountLocks {
        &self.locks
    }

    /// The set-service client rotations are stored through.
    pub fn set_client(&self) -> &SetClient {
        &self.set
    }

    async fn store_once(&self, entry: &JournalEntry) -> Stored {
        let (account, provider) = (&entry.account, &entry.provider);
        let expected = u64::try_from(entry.expected_version).ok();
        let extras = StoreExtras {
            metadata: None,
            refresh_token_expires_at_unix: entry.refresh_token_expires_at_unix,
        };
        match self
            .set
            .store_with(
                account,
                provider,
                entry.sealed_token.clone(),
                expected,
                &extras,
            )
            .await
        {
            Ok(version) => Stored::Yes(i64::try_from(version).unwrap_or(i64::MAX)),
            Err(e) if e.is_refused(tonic::Code::Aborted) => {
                tracing::warn!(%account, %provider, "the account changed while a rotated refresh token was being stored (disconnected or reconnected); discarding the rotated token");
                Stored::Superseded
            }
            Err(e) => {
                tracing::warn!(%account, %provider, error = %e, "storing a rotated refresh token failed");
                Stored::Failed
            }
        }
    }

    /// Makes a rotated refresh token that replaces `stored_version` (or the
    /// pending token that did) durable, with when the provider said it
    /// expires (`expires_at`): stored by set-service, or journaled.
    /// Call with `key`'s lock held, before anyone gets the access token that
    /// came with it. On [`NotDurable`] the token stays pending in memory and
    /// is stored when set-service answers. While it is pending it holds
    /// `lease` (taken from the caller), the account's cross-replica lock.
    pub async fn make_durable(
        &self,
        key: &AccountKey,
        token: Zeroizing<String>,
        stored_version: i64,
        expires_at: Option<i64>,
        lease: &mut Option<Lease>,
    ) -> Result<Durable, NotDurable> {
        let expected_version = lock(&self.pending)
            .get(key)
            .map_or(stored_version, |p| p.entry.expected_version);
        let sealed = self
            .sealer
            .seal(&key.account, &key.provider, token.as_bytes())
            .map_err(|e| {
                tracing::error!(account = %key.account, provider = %key.provider, error = %e, "cannot seal a rotated refresh token");
                NotDurable(format!("cannot seal it: {e}"))
            })?;
        let entry = JournalEntry {
            account: key.account.to_string(),
            provider: key.provider.to_string(),
            expected_version,
            sealed_token: sealed,
            refresh_token_expires_at_unix: expires_at,
        };
        let started = Instant::now();
        let stored = tokio::time::timeout(DURABLE_STORE_TIMEOUT, self.store_once(&entry))
            .await
            .unwrap_or(Stored::Failed);
        match stored {
            Stored::Yes(version) => {
                self.forget(key);
                let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                tracing::info!(account = %key.account, provider = %key.provider, version, elapsed_ms, "stored a rotated refresh token");
                return Ok(Durable::Stored(version));
            }
            Stored::Superseded => {
                self.forget(key);
                self.orphan(key, token);
                return Ok(Durable::Superseded);
            }
            Stored::Failed => {}
        }
        let journaled = match &self.journal {
            Some(journal) => journal.write(&entry).map_err(|e| NotDurable(e.to_string())),
            None => Err(NotDurable(
                "set-service cannot be reached and no rotation.journal_dir is configured".into(),
            )),
        };
        self.keep_pending(key, token, entry, lease.take());
        match journaled {
            Ok(()) => {
                tracing::warn!(account = %key.account, provider = %key.provider, "set-service unreachable: the rotated refresh token is journaled (sealed) and stored when set-service answers");
                Ok(Durable::Journaled)
            }
            Err(e) => {
                tracing::error!(account = %key.account, provider = %key.provider, error = %e, "the rotated refresh token is held in memory only until set-service answers");
                Err(e)
            }
        }
    }

    /// Holds `token` as `key`'s pending rotation and starts its background
    /// store, unless one runs.
    fn keep_pending(
        &self,
        key: &AccountKey,
        token: Zeroizing<String>,
        entry: JournalEntry,
        lease: Option<Lease>,
    ) {
        let start_loop = {
            let mut map = lock(&self.pending);
            let flushing = map.get(key).is_some_and(|p| p.flushing);
            map.insert(
                key.clone(),
                Pending {
                    token,
                    entry,
                    flushing: true,
                    _lease: lease,
                },
            );
            !flushing
        };
        if start_loop {
            tokio::spawn(self.clone().flush(key.clone()));
        }
    }

    /// Forgets `key`'s pending rotation and its journal entry.
    fn forget(&self, key: &AccountKey) {
        let removed = lock(&self.pending).remove(key);
        if let (Some(pending), Some(journal)) = (removed, &self.journal)
            && let Err(e) = journal.remove(&pending.entry)
        {
            tracing::error!(account = %key.account, provider = %key.provider, error = %e, "cannot remove a stored rotation from the journal; it is stored again (harmlessly) at the next start");
        }
    }

    /// Stores the pending token of `key` until it is stored or superseded.
    async fn flush(self, key: AccountKey) {
        let mut wait = Duration::from_millis(500);
        loop {
            tokio::time::sleep(wait).await;
            match self.store_pending(&key).await {
                Some(Stored::Failed) => wait = (wait * 2).min(MAX_RETRY_PAUSE),
                Some(_) | None => return,
            }
        }
    }

    /// One attempt to store `key`'s pending rotation, under its lock; `None`
    /// if there is none any more.
    async fn store_pending(&self, key: &AccountKey) -> Option<Stored> {
        let _guard = self.locks.lock(key).await;
        let (token, entry) = lock(&self.pending)
            .get(key)
            .map(|p| (p.token.clone(), p.entry.clone()))?;
        let stored = self.store_once(&entry).await;
        match stored {
            Stored::Yes(version) => {
                self.forget(key);
                tracing::info!(account = %key.account, provider = %key.provider, version, "stored a rotated refresh token after retrying");
            }
            Stored::Superseded => {
                self.forget(key);
                self.orphan(key, token);
            }
            Stored::Failed => {}
        }
        Some(stored)
    }

    /// Takes up the journal at start: every entry becomes a pending rotation
    /// (opened with `keys`, to be used for the account's next refresh) and
    /// is stored in the background. Returns how many there were.
    pub async fn replay(&self, keys: &PrivateKeyRing) -> usize {
        let Some(journal) = &self.journal else {
            return 0;
        };
        let entries = match journal.entries() {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the rotation journal; its entries are kept for the next start");
                return 0;
            }
        };
        let count = entries.len();
        for entry in entries {
            let key = entry.key();
            let opened = keys
                .open_async(&entry.sealed_token, &entry.account, &entry.provider)
                .await
                .ok()
                .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok());
            match opened {
                Some(token) => {
                    tracing::warn!(account = %key.account, provider = %key.provider, expected_version = entry.expected_version, "a journaled rotated refresh token is stored now");
                    self.keep_pending(&key, Zeroizing::new(token), entry, None);
                }
                None => {
                    tracing::error!(account = %key.account, provider = %key.provider, "a journal entry does not open with the keys held; it is kept for an operator")
                }
            }
        }
        count
    }

    /// At a stop: tries to store every pending rotation until `deadline`.
    /// Returns how many are still unstored (journaled ones are stored at the
    /// next start).
    pub async fn drain(&self, deadline: Instant) -> usize {
        let mut wait = Duration::from_millis(100);
        loop {
            let keys: Vec<AccountKey> = lock(&self.pending).keys().cloned().collect();
            if keys.is_empty() {
                return 0;
            }
            for key in &keys {
                if Instant::now() >= deadline {
                    break;
                }
                let _ = tokio::time::timeout_at(deadline, self.store_pending(key)).await;
            }
            if Instant::now() + wait >= deadline {
                return self.unstored();
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    /// The pending token of `key`, if the store still holds the version it
    /// replaces; a pending token for an account changed since is orphaned
    /// (see [`Rotations::take_orphans`]). Call with `key`'s lock held.
    pub fn pending_token(
        &self,
        key: &AccountKey,
        newest_stored: Option<i64>,
    ) -> Option<Zeroizing<String>> {
        let stale = {
            let map = lock(&self.pending);
            match map.get(key) {
                Some(p) if Some(p.entry.expected_version) == newest_stored => {
                    return Some(p.token.clone());
                }
                Some(p) => p.token.clone(),
                None => return None,
            }
        };
        self.forget(key);
        self.orphan(key, stale);
        None
    }

    /// Keeps a rotated token that the store no longer wants, for the
    /// revocation sweep.
    fn orphan(&self, key: &AccountKey, token: Zeroizing<String>) {
        lock(&self.orphans.0).push((key.clone(), token));
    }

    /// Takes every orphaned rotated token (see [`Rotations::pending_token`]).
    pub fn take_orphans(&self) -> Vec<Orphan> {
        std::mem::take(&mut *lock(&self.orphans.0))
    }

    /// Puts back orphans whose revocation must be tried again.
    pub fn return_orphans(&self, orphans: Vec<Orphan>) {
        lock(&self.orphans.0).extend(orphans);
    }

    /// How many rotated tokens are still unstored.
    pub fn unstored(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Whether unstored rotations are journaled (and so survive a restart).
    pub fn journaled(&self) -> bool {
        self.journal.is_some()
    }
}
