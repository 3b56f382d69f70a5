//! Refresh-token rotation's one home: a provider's rotated refresh token is
//! sealed here with the public key, before it leaves this process, and
//! stored through set-service with get-service's own certificate.
//!
//! A rotated refresh token is stored only if the newest stored version is
//! still the one it was refreshed from (`expected_version`), so it never
//! revives an account disconnected meanwhile nor replaces a reconnect. Once
//! the provider has rotated, the new token is the only live copy of the
//! grant, so it is never dropped while it is still current: if set-service
//! cannot be reached it is kept in memory (pending), used for the next
//! refresh, and stored by a background loop. Every store for an account
//! runs under that account's lock ([`AccountLocks`]), which refreshes hold
//! too, so stores and refreshes of one account never interleave.
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

use tokenvault_seal::PublicKeySet;
use tokenvault_set_client::SetClient;
use zeroize::Zeroizing;

use crate::account::{AccountKey, AccountLocks, lock};

/// Attempts made inline before a rotated token is handed to the background.
pub(crate) const INLINE_ATTEMPTS: u32 = 2;

/// A rotated refresh token not yet stored. `Debug` shows no token.
pub struct Pending {
    /// The new refresh token, used for the next refresh until it is stored.
    pub token: Zeroizing<String>,
    /// The stored version it must replace.
    pub expected_version: i64,
    /// Whether a background loop is storing it.
    flushing: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("expected_version", &self.expected_version)
            .field("flushing", &self.flushing)
            .finish_non_exhaustive()
    }
}

/// Rotated refresh tokens whose store has not succeeded yet.
type PendingTokens = Arc<Mutex<HashMap<AccountKey, Pending>>>;

/// What one store attempt found.
enum Stored {
    Yes,
    /// The account changed meanwhile (disconnect or reconnect): drop the token.
    Superseded,
    /// set-service could not be reached or failed; try again later.
    Failed,
}

/// Rotated refresh tokens on their way to the store.
#[derive(Debug, Clone)]
pub struct Rotations {
    set: SetClient,
    sealer: Arc<PublicKeySet>,
    pending: PendingTokens,
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
    /// Stores through `set`, sealing with `sealer`, under `locks`.
    pub fn new(set: SetClient, sealer: Arc<PublicKeySet>, locks: AccountLocks) -> Self {
        Self {
            set,
            sealer,
            pending: PendingTokens::default(),
            orphans: Orphans::default(),
            locks,
        }
    }

    /// The account locks every store holds.
    pub fn locks(&self) -> &AccountLocks {
        &self.locks
    }

    async fn store_once(&self, key: &AccountKey, token: &str, expected_version: i64) -> Stored {
        let (account, provider) = (&key.account, &key.provider);
        let sealed = match self.sealer.seal(account, provider, token.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(%account, %provider, error = %e, "cannot seal a rotated refresh token");
                return Stored::Failed;
            }
        };
        let expected = u64::try_from(expected_version).ok();
        match self.set.store(account, provider, sealed, expected).await {
            Ok(_) => Stored::Yes,
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

    /// Stores a rotated refresh token that replaces `stored_version` (or the
    /// pending token that did). Call with `key`'s lock held.
    pub async fn store_rotated(
        &self,
        key: &AccountKey,
        token: Zeroizing<String>,
        stored_version: i64,
    ) {
        let expected = lock(&self.pending)
            .get(key)
            .map_or(stored_version, |p| p.expected_version);
        for attempt in 0..INLINE_ATTEMPTS {
            match self.store_once(key, &token, expected).await {
                Stored::Yes => {
                    lock(&self.pending).remove(key);
                    tracing::info!(account = %key.account, provider = %key.provider, "stored a rotated refresh token");
                    return;
                }
                Stored::Superseded => {
                    lock(&self.pending).remove(key);
                    self.orphan(key, token);
                    return;
                }
                Stored::Failed => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
            }
        }
        let start_loop = {
            let mut map = lock(&self.pending);
            let flushing = map.get(key).is_some_and(|p| p.flushing);
            map.insert(
                key.clone(),
                Pending {
                    token,
                    expected_version: expected,
                    flushing: true,
                },
            );
            !flushing
        };
        tracing::warn!(account = %key.account, provider = %key.provider, "set-service unreachable: the rotated refresh token is kept in memory and stored when it can be");
        if start_loop {
            tokio::spawn(self.clone().flush(key.clone()));
        }
    }

    /// Stores the pending token of `key` until it is stored or superseded.
    async fn flush(self, key: AccountKey) {
        let mut wait = Duration::from_millis(500);
        loop {
            tokio::time::sleep(wait).await;
            let _guard = self.locks.lock(&key).await;
            let Some((token, expected)) = lock(&self.pending)
                .get(&key)
                .map(|p| (p.token.clone(), p.expected_version))
            else {
                return;
            };
            match self.store_once(&key, &token, expected).await {
                Stored::Yes => {
                    lock(&self.pending).remove(&key);
                    tracing::info!(account = %key.account, provider = %key.provider, "stored a rotated refresh token after retrying");
                    return;
                }
                Stored::Superseded => {
                    lock(&self.pending).remove(&key);
                    self.orphan(&key, token);
                    return;
                }
                Stored::Failed => wait = (wait * 2).min(Duration::from_secs(30)),
            }
        }
    }

    /// The pending token of `key`, if the store still holds the version it
    /// replaces; a pending token for an account changed since is orphaned
    /// (see [`SetWriter::take_orphans`]).
    /// Call with `key`'s lock held.
    pub fn pending_token(
        &self,
        key: &AccountKey,
        newest_stored: Option<i64>,
    ) -> Option<Zeroizing<String>> {
        let mut map = lock(&self.pending);
        match map.get(key) {
            Some(p) if Some(p.expected_version) == newest_stored => Some(p.token.clone()),
            Some(_) => {
                if let Some(stale) = map.remove(key) {
                    drop(map);
                    self.orphan(key, stale.token);
                }
                None
            }
            None => None,
        }
    }

    /// Keeps a rotated token that the store no longer wants, for the
    /// revocation sweep.
    fn orphan(&self, key: &AccountKey, token: Zeroizing<String>) {
        lock(&self.orphans.0).push((key.clone(), token));
    }

    /// Takes every orphaned rotated token (see [`SetWriter::pending_token`]).
    pub fn take_orphans(&self) -> Vec<Orphan> {
        std::mem::take(&mut *lock(&self.orphans.0))
    }

    /// Puts back orphans whose revocation must be tried again.
    pub fn return_orphans(&self, orphans: Vec<Orphan>) {
        lock(&self.orphans.0).extend(orphans);
    }

    /// How many rotated tokens are still unstored (reported at shutdown).
    pub fn unstored(&self) -> usize {
        lock(&self.pending).len()
    }
}
