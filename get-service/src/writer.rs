//! get-service's writes, made through set-service with get-service's own
//! certificate: a provider's rotated refresh token (sealed here with the
//! public key before it leaves this process) and an account's status.
//!
//! A rotated refresh token is stored only if the newest stored version is
//! still the one it was refreshed from (`expected_version`), so it never
//! revives an account disconnected meanwhile nor replaces a reconnect. Once
//! the provider has rotated, the new token is the only live copy of the
//! grant, so it is never dropped while it is still current: if set-service
//! cannot be reached it is kept in memory ([`PendingTokens`]), used for the
//! next refresh, and stored by a background loop. Every store for an account
//! runs under that account's lock ([`KeyLocks`]), which refreshes hold too,
//! so stores and refreshes of one account never interleave.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{
    AccountStatus, RecordAccountStatusRequest, RecordRevocationRequest,
    RevocationOutcome as ProtoRevocationOutcome, StoreRefreshTokenRequest,
};
use tokenvault_seal::PublicKeySet;
use tokenvault_store::RevocationOutcome;
use tonic::transport::Channel;
use zeroize::Zeroizing;

/// (account, provider).
pub type Key = (String, String);

/// How long one call to set-service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts made inline before a rotated token is handed to the background.
const INLINE_ATTEMPTS: u32 = 2;

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
pub type PendingTokens = Arc<Mutex<HashMap<Key, Pending>>>;

/// One async lock per account, held by a refresh and by each store attempt.
#[derive(Debug, Default, Clone)]
pub struct KeyLocks(Arc<Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>>);

impl KeyLocks {
    /// Waits for `key`'s lock.
    pub async fn lock(&self, key: &Key) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// What one store attempt found.
enum Stored {
    Yes,
    /// The account changed meanwhile (disconnect or reconnect): drop the token.
    Superseded,
    /// set-service could not be reached or failed; try again later.
    Failed,
}

/// The set-service client of get-service.
#[derive(Debug, Clone)]
pub struct SetWriter {
    client: SetServiceClient<Channel>,
    sealer: Arc<PublicKeySet>,
    pending: PendingTokens,
    orphans: Orphans,
    locks: KeyLocks,
}

/// Rotated refresh tokens that could not be stored because the account
/// changed meanwhile (disconnected or reconnected). Each is still a live
/// grant at the provider: the revocation sweep revokes those whose account
/// is disconnected. `Debug` shows no token.
#[derive(Clone, Default)]
struct Orphans(Arc<Mutex<Vec<Orphan>>>);

/// An account and a rotated refresh token the store refused for it.
pub type Orphan = (Key, Zeroizing<String>);

impl std::fmt::Debug for Orphans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Orphans({})", lock(&self.0).len())
    }
}

impl SetWriter {
    /// Writes through `channel` (an mTLS channel to set-service), sealing
    /// with `sealer`.
    pub fn new(channel: Channel, sealer: Arc<PublicKeySet>, locks: KeyLocks) -> Self {
        Self {
            client: SetServiceClient::new(channel),
            sealer,
            pending: PendingTokens::default(),
            orphans: Orphans::default(),
            locks,
        }
    }

    async fn store_once(&self, key: &Key, token: &str, expected_version: i64) -> Stored {
        let sealed = match self.sealer.seal(&key.0, &key.1, token.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(account = %key.0, provider = %key.1, error = %e, "cannot seal a rotated refresh token");
                return Stored::Failed;
            }
        };
        let mut request = tonic::Request::new(StoreRefreshTokenRequest {
            account: key.0.clone(),
            provider: key.1.clone(),
            sealed_token: sealed,
            expected_version: u64::try_from(expected_version).ok(),
        });
        request.set_timeout(CALL_TIMEOUT);
        match self.client.clone().store_refresh_token(request).await {
            Ok(_) => Stored::Yes,
            Err(status) if status.code() == tonic::Code::Aborted => {
                tracing::warn!(account = %key.0, provider = %key.1, "the account changed while a rotated refresh token was being stored (disconnected or reconnected); discarding the rotated token");
                Stored::Superseded
            }
            Err(status) => {
                tracing::warn!(account = %key.0, provider = %key.1, code = ?status.code(), "storing a rotated refresh token failed");
                Stored::Failed
            }
        }
    }

    /// Stores a rotated refresh token that replaces `stored_version` (or the
    /// pending token that did). Call with `key`'s lock held.
    pub async fn store_rotated(&self, key: &Key, token: Zeroizing<String>, stored_version: i64) {
        let expected = lock(&self.pending)
            .get(key)
            .map_or(stored_version, |p| p.expected_version);
        for attempt in 0..INLINE_ATTEMPTS {
            match self.store_once(key, &token, expected).await {
                Stored::Yes => {
                    lock(&self.pending).remove(key);
                    tracing::info!(account = %key.0, provider = %key.1, "stored a rotated refresh token");
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
        tracing::warn!(account = %key.0, provider = %key.1, "set-service unreachable: the rotated refresh token is kept in memory and stored when it can be");
        if start_loop {
            tokio::spawn(self.clone().flush(key.clone()));
        }
    }

    /// Stores the pending token of `key` until it is stored or superseded.
    async fn flush(self, key: Key) {
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
                    tracing::info!(account = %key.0, provider = %key.1, "stored a rotated refresh token after retrying");
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
        key: &Key,
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
    fn orphan(&self, key: &Key, token: Zeroizing<String>) {
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

    /// Records that `key`'s disconnected token `version` was revoked at the
    /// provider (or that the provider offers no revocation).
    pub async fn record_revocation(
        &self,
        key: &Key,
        version: i64,
        outcome: RevocationOutcome,
    ) -> Result<(), tonic::Code> {
        let outcome = match outcome {
            RevocationOutcome::Revoked => ProtoRevocationOutcome::Revoked,
            RevocationOutcome::Unsupported => ProtoRevocationOutcome::Unsupported,
        };
        let mut request = tonic::Request::new(RecordRevocationRequest {
            account: key.0.clone(),
            provider: key.1.clone(),
            token_version: u64::try_from(version).map_err(|_| tonic::Code::InvalidArgument)?,
            outcome: outcome as i32,
        });
        request.set_timeout(CALL_TIMEOUT);
        self.client
            .clone()
            .record_revocation(request)
            .await
            .map(|_| ())
            .map_err(|status| status.code())
    }

    /// Records REAUTHORIZATION_REQUIRED for an account, retrying briefly.
    pub async fn record_reauthorization_required(&self, key: &Key, reason: &str) {
        for attempt in 0..INLINE_ATTEMPTS {
            let mut request = tonic::Request::new(RecordAccountStatusRequest {
                account: key.0.clone(),
                provider: key.1.clone(),
                status: AccountStatus::ReauthorizationRequired as i32,
                reason: reason.chars().take(200).collect(),
            });
            request.set_timeout(CALL_TIMEOUT);
            match self.client.clone().record_account_status(request).await {
                Ok(_) => return,
                Err(status) => {
                    tracing::warn!(account = %key.0, provider = %key.1, attempt, code = ?status.code(), "recording the account status failed");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
