//! get-service's writes, made through set-service with get-service's own
//! certificate: a provider's rotated refresh token (sealed here with the
//! public key before it leaves this process) and an account's status.
//!
//! A rotated refresh token is the only copy of the grant once the provider
//! has rotated it, so it is never dropped: a store that fails is retried in
//! the background until it succeeds, and until then the token is kept in
//! memory ([`PendingTokens`]) and used for the next refresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{AccountStatus, RecordAccountStatusRequest, StoreRefreshTokenRequest};
use tokenvault_seal::PublicKeySet;
use tonic::transport::Channel;
use zeroize::Zeroizing;

/// (account, provider).
pub type Key = (String, String);

/// How long one call to set-service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts made inline before a rotated token is handed to the background.
const INLINE_ATTEMPTS: u32 = 3;

/// A rotated refresh token not yet stored, and the stored version it replaced.
/// `Debug` shows neither token.
pub struct Pending {
    /// The new refresh token, used for the next refresh until it is stored.
    pub token: Zeroizing<String>,
    /// The same token, sealed, as it will be stored (stable across retries,
    /// so that set-service's idempotency applies).
    sealed: String,
    /// The stored version that was refreshed to get it.
    pub replaces_version: i64,
    /// Bumped whenever a newer rotated token replaces this one.
    generation: u64,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("replaces_version", &self.replaces_version)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Rotated refresh tokens whose store has not succeeded yet. At most one
/// background loop per key stores whatever is newest here.
pub type PendingTokens = Arc<Mutex<HashMap<Key, Pending>>>;

/// The set-service client of get-service.
#[derive(Debug, Clone)]
pub struct SetWriter {
    client: SetServiceClient<Channel>,
    sealer: Arc<PublicKeySet>,
}

impl SetWriter {
    /// Writes through `channel` (an mTLS channel to set-service), sealing
    /// with `sealer`.
    pub fn new(channel: Channel, sealer: Arc<PublicKeySet>) -> Self {
        Self {
            client: SetServiceClient::new(channel),
            sealer,
        }
    }

    async fn store_once(&self, key: &Key, sealed: &str) -> Result<(), tonic::Status> {
        let mut request = tonic::Request::new(StoreRefreshTokenRequest {
            account: key.0.clone(),
            provider: key.1.clone(),
            sealed_token: sealed.to_owned(),
        });
        request.set_timeout(CALL_TIMEOUT);
        self.client
            .clone()
            .store_refresh_token(request)
            .await
            .map(|_| ())
    }

    /// Seals and stores a rotated refresh token. Tries a few times inline;
    /// if set-service is still unreachable, keeps the token in `pending` and
    /// stores it from a background loop. If a loop for this key is already
    /// running (an earlier rotation is still unstored), the new token simply
    /// replaces the pending one, and the loop stores the newest.
    pub async fn store_rotated(
        &self,
        key: Key,
        token: Zeroizing<String>,
        replaces_version: i64,
        pending: PendingTokens,
    ) {
        let sealed = match self.sealer.seal(&key.0, &key.1, token.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(account = %key.0, provider = %key.1, error = %e, "cannot seal a rotated refresh token; keeping it in memory");
                String::new()
            }
        };
        {
            let mut map = lock(&pending);
            if let Some(p) = map.get_mut(&key) {
                // A background loop owns this key; hand it the newer token.
                p.token = token;
                p.sealed = sealed;
                p.generation += 1;
                return;
            }
        }
        if !sealed.is_empty() {
            for attempt in 0..INLINE_ATTEMPTS {
                match self.store_once(&key, &sealed).await {
                    Ok(()) => {
                        tracing::info!(account = %key.0, provider = %key.1, "stored a rotated refresh token");
                        return;
                    }
                    Err(status) => {
                        tracing::warn!(account = %key.0, provider = %key.1, attempt, code = ?status.code(), "storing a rotated refresh token failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    }
                }
            }
        }
        lock(&pending).insert(
            key.clone(),
            Pending {
                token,
                sealed,
                replaces_version,
                generation: 0,
            },
        );
        tokio::spawn(self.clone().flush_pending(key, pending));
    }

    /// Stores the newest pending token for `key` until none is left.
    async fn flush_pending(self, key: Key, pending: PendingTokens) {
        let mut wait = Duration::from_millis(500);
        loop {
            tokio::time::sleep(wait).await;
            let Some((sealed, generation)) = lock(&pending)
                .get(&key)
                .map(|p| (p.sealed.clone(), p.generation))
            else {
                return;
            };
            let stored = if sealed.is_empty() {
                Err(tonic::Status::internal("the token could not be sealed"))
            } else {
                self.store_once(&key, &sealed).await
            };
            match stored {
                Ok(()) => {
                    let mut map = lock(&pending);
                    if map.get(&key).is_some_and(|p| p.generation == generation) {
                        map.remove(&key);
                        tracing::info!(account = %key.0, provider = %key.1, "stored a rotated refresh token after retrying");
                        return;
                    }
                    // A newer token arrived meanwhile: store that one next.
                    wait = Duration::from_millis(10);
                }
                Err(status) => {
                    tracing::warn!(account = %key.0, provider = %key.1, code = ?status.code(), "still cannot store a rotated refresh token; it is kept in memory");
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
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

fn lock(pending: &PendingTokens) -> std::sync::MutexGuard<'_, HashMap<Key, Pending>> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pending token for `key`, if its rotation is newer than `stored_version`.
pub fn pending_token(
    pending: &PendingTokens,
    key: &Key,
    stored_version: i64,
) -> Option<Zeroizing<String>> {
    let mut map = lock(pending);
    match map.get(key) {
        Some(p) if p.replaces_version >= stored_version => Some(p.token.clone()),
        Some(_) => {
            // The store has a newer version (a reconnect): that one wins.
            map.remove(key);
            None
        }
        None => None,
    }
}
