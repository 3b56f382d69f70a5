//! An account as get-service keys everything it keeps per account (cached
//! tokens, refreshes in flight, locks, rotated tokens): the application's
//! account id and the provider name. Neither is secret.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// One account at one provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey {
    /// The application's account id.
    pub account: String,
    /// The provider name.
    pub provider: String,
}

impl AccountKey {
    /// The key of `account` at `provider`.
    pub fn new(account: impl Into<String>, provider: impl Into<String>) -> Self {
        Self {
            account: account.into(),
            provider: provider.into(),
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
/// interleave.
#[derive(Debug, Default, Clone)]
pub struct AccountLocks(Arc<Mutex<HashMap<AccountKey, Arc<tokio::sync::Mutex<()>>>>>);

impl AccountLocks {
    /// Waits for `key`'s lock.
    pub async fn lock(&self, key: &AccountKey) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = lock(&self.0);
            map.entry(key.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// Locks a std mutex, carrying on with the data if a holder panicked (every
/// critical section here leaves the data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
