//! An account as get-service keys everything it keeps per account (cached
//! tokens, refreshes in flight, locks, rotated tokens): the application's
//! account id and the provider name. Neither is secret.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// One account at one provider. One of these is kept per cached account, so
/// it is small: the provider name is shared with the broker's provider table
/// where the key is made on the hot path ([`AccountKey::with_provider`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey {
    /// The application's account id.
    pub account: Box<str>,
    /// The provider name.
    pub provider: Arc<str>,
}

impl AccountKey {
    /// The key of `account` at `provider`.
    pub fn new(account: &str, provider: &str) -> Self {
        Self::with_provider(account, Arc::from(provider))
    }

    /// The key of `provider`'s own client-credentials token: no account
    /// (an empty id, which no account can have).
    pub fn client(provider: Arc<str>) -> Self {
        Self::with_provider("", provider)
    }

    /// Whether this is a provider's client token, not an account's.
    pub fn is_client(&self) -> bool {
        self.account.is_empty()
    }

    /// The key of `account` at `provider`, sharing `provider`'s text.
    pub fn with_provider(account: &str, provider: Arc<str>) -> Self {
        Self {
            account: Box::from(account),
            provider,
        }
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.account, self.provider)
    }
}

/// One async lock per account, held by a refresh, by each store of a
/// rotated token and by a revocation of that account, so that they never
/// interleave. An account's entry exists only while someone holds or waits
/// for its lock: the last guard to go removes it.
#[derive(Debug, Default, Clone)]
pub struct AccountLocks(Arc<Mutex<HashMap<AccountKey, Arc<tokio::sync::Mutex<()>>>>>);

/// An account's lock, held; released (and the entry freed if nobody else
/// wants it) when dropped.
#[derive(Debug)]
pub struct AccountGuard {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    locks: AccountLocks,
    key: AccountKey,
}

impl AccountLocks {
    /// Waits for `key`'s lock.
    pub async fn lock(&self, key: &AccountKey) -> AccountGuard {
        let lock = {
            let mut map = lock(&self.0);
            map.entry(key.clone()).or_default().clone()
        };
        AccountGuard {
            guard: Some(lock.lock_owned().await),
            locks: self.clone(),
            key: key.clone(),
        }
    }

    /// How many accounts have a lock entry (held or waited for).
    pub fn entries(&self) -> usize {
        lock(&self.0).len()
    }

    /// Frees the entries nobody holds or waits for (left by a waiter that
    /// gave up).
    pub fn sweep(&self) {
        lock(&self.0).retain(|_, entry| Arc::strong_count(entry) > 1);
    }
}

impl Drop for AccountGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = lock(&self.locks.0);
        // Only the map's own reference left: nobody holds or waits for it
        // (a new waiter clones the Arc under this same map lock).
        if map
            .get(&self.key)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// Locks a std mutex, carrying on with the data if a holder panicked (every
/// critical section here leaves the data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
