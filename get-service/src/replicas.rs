//! What lets several get-service replicas share one PostgreSQL store with
//! exactly one provider refresh per account per expiry.
//!
//! - **One refresher per account.** A refresh runs under the account's
//!   advisory lock ([`Coordinator`], get-service's own key space): a replica
//!   that cannot take it does not refresh, it waits.
//! - **Waiters use the result.** The refresher shares the access token it
//!   got through set-service (`ShareAccessToken`), sealed with the public key
//!   as an access token (`"token_use":"access"`); a waiting replica reads it
//!   back ([`TokenReader::shared_access_token`]) and opens it with its
//!   private key. Nothing is ever in plaintext at rest, set-service can only
//!   append it, and a share is used only while it came with the account's
//!   newest stored token and the account is active.
//! - **A dead refresher frees the account at once**: its lock goes with its
//!   connection; a stale replica cannot overwrite a newer refresh token,
//!   because set-service stores a rotation only over the version it was
//!   refreshed from.
//!
//! With SQLite (one host, one get-service) there is nothing to coordinate.
//!
//! Holds an access token only to seal or open it, in [`Zeroizing`] buffers.

use std::sync::Arc;
use std::time::Duration;

use tokenvault_opener::PrivateKeyRing;
use tokenvault_proto::v1::ShareAccessTokenRequest;
use tokenvault_seal::{PublicKeySet, TokenUse};
use tokenvault_set_client::SetClient;
use tokenvault_store::coordination::{Coordinator, Lease, LockName};
use tokenvault_store::{StoreError, TokenReader};
use zeroize::Zeroizing;

use crate::account::AccountKey;
use crate::error::TokenError;
use crate::token::AccessToken;

/// The first pause between attempts to take a lock someone holds.
const FIRST_POLL: Duration = Duration::from_millis(20);
/// The longest pause between attempts.
const MAX_POLL: Duration = Duration::from_millis(200);

/// Cross-replica coordination on a PostgreSQL store.
#[derive(Clone)]
pub struct Replicas {
    coordinator: Coordinator,
    reader: TokenReader,
    keys: Arc<PrivateKeyRing>,
    sealer: Arc<PublicKeySet>,
    set: SetClient,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas").finish_non_exhaustive()
    }
}

/// What a refresh that waited for another replica found.
#[derive(Debug)]
pub enum Turn {
    /// This replica holds the account's lock: refresh.
    Refresh(Lease),
    /// Another replica refreshed meanwhile: its access token.
    Shared(AccessToken),
}

impl Replicas {
    /// Coordination over `coordinator`, reading shares with `reader` and
    /// opening them with `keys`, sharing through `set` sealed by `sealer`.
    pub fn new(
        coordinator: Coordinator,
        reader: TokenReader,
        keys: Arc<PrivateKeyRing>,
        sealer: Arc<PublicKeySet>,
        set: SetClient,
    ) -> Self {
        Self {
            coordinator,
            reader,
            keys,
            sealer,
            set,
        }
    }

    /// Waits until either this replica holds `key`'s refresh lock or another
    /// replica has shared an access token that expires at or after
    /// `shared_will_do` (`None`: a shared token will not do, e.g. for a
    /// narrowed one), until `deadline`.
    pub async fn turn(
        &self,
        key: &AccountKey,
        shared_will_do: Option<i64>,
        deadline: tokio::time::Instant,
    ) -> Result<Turn, TokenError> {
        let name = LockName::Refresh {
            account: &key.account,
            provider: &key.provider,
        };
        let mut pause = FIRST_POLL;
        loop {
            if let Some(lease) = self.coordinator.try_lock(name).await.map_err(store_error)? {
                // Someone may have refreshed just before: use that instead.
                if let Some(token) = self.shared(key, shared_will_do).await? {
                    lease.release().await;
                    return Ok(Turn::Shared(token));
                }
                return Ok(Turn::Refresh(lease));
            }
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(TokenError::Unavailable(
                    "another get-service replica is refreshing this account and has not \
                     finished; retry"
                        .into(),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
            if let Some(token) = self.shared(key, shared_will_do).await? {
                return Ok(Turn::Shared(token));
            }
        }
    }

    /// The access token another replica shared for `key`, if it expires at
    /// or after `min_expires_at`, opened.
    async fn shared(
        &self,
        key: &AccountKey,
        min_expires_at: Option<i64>,
    ) -> Result<Option<AccessToken>, TokenError> {
        let Some(min_expires_at) = min_expires_at else {
            return Ok(None);
        };
        let Some(share) = self
            .reader
            .shared_access_token(&key.account, &key.provider)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        if share.expires_at_unix < min_expires_at {
            return Ok(None);
        }
        let opened = match self
            .keys
            .open_async_as(
                TokenUse::Access,
                &share.sealed_token,
                &key.account,
                &key.provider,
            )
            .await
        {
            Ok(bytes) => bytes,
            Err(e) => {
                // Not worth failing the call: refresh instead.
                tracing::error!(target: crate::broker::INTEGRITY_TARGET, account = %key.account, provider = %key.provider, error = %e,
                    "a shared access token does not open; ignoring it");
                return Ok(None);
            }
        };
        let Ok(text) = String::from_utf8(opened.to_vec()) else {
            return Ok(None);
        };
        tracing::debug!(account = %key.account, provider = %key.provider, "serving an access token another replica shared");
        Ok(Some(AccessToken {
            token: Zeroizing::new(text),
            token_type: share.token_type.into(),
            expires_at_unix: share.expires_at_unix,
            scopes: share.scopes.into(),
            lifetime_secs: share.lifetime_secs,
            shared: true,
        }))
    }

    /// Shares `token`, obtained with stored version `version` of `key`, with
    /// the other replicas. Best effort: a replica that cannot see it
    /// refreshes itself.
    pub async fn share(&self, key: &AccountKey, version: i64, token: &AccessToken) {
        let Ok(token_version) = u64::try_from(version) else {
            return;
        };
        let sealed = match self.sealer.seal_as(
            TokenUse::Access,
            &key.account,
            &key.provider,
            token.token.as_bytes(),
        ) {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::warn!(account = %key.account, provider = %key.provider, error = %e, "cannot seal an access token to share");
                return;
            }
        };
        let request = ShareAccessTokenRequest {
            account: key.account.to_string(),
            provider: key.provider.to_string(),
            token_version,
            sealed_access_token: sealed,
            expires_at_unix: token.expires_at_unix,
            lifetime_seconds: token.lifetime_secs,
            token_type: token.token_type.to_string(),
            scopes: token.scopes.to_vec(),
        };
        match self.set.share_access_token(request).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(account = %key.account, provider = %key.provider, "not shared: the account changed meanwhile")
            }
            Err(e) => {
                tracing::warn!(account = %key.account, provider = %key.provider, error = %e, "sharing an access token with the other replicas failed")
            }
        }
    }

    /// Runs `job` if no other replica is running the job `name` now;
    /// returns whether it ran.
    pub async fn once<F: std::future::Future<Output = ()>>(&self, name: &str, job: F) -> bool {
        match self.coordinator.try_lock(LockName::Job(name)).await {
            Ok(Some(lease)) => {
                job.await;
                lease.release().await;
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(job = name, error = %e, "cannot take the job lock; skipping this round");
                false
            }
        }
    }
}

fn store_error(e: StoreError) -> TokenError {
    e.into()
}
