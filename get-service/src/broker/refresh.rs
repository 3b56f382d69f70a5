//! One refresh of one account, under its local lock: with several replicas,
//! first the account's cross-replica turn ([`Replicas::turn`]); then read
//! the sealed row (or the pending rotation), open it, refresh at the
//! provider, make a rotated refresh token durable, and sort out dead grants.
//!
//! Holds a plaintext refresh token for the length of one refresh, in a
//! [`Zeroizing`] buffer.

use std::time::{Duration, Instant};

use tokenvault_oauth::ProviderError;
use tokenvault_opener::OpenError;
use tokenvault_proto::v1::AccountStatus;
use tokenvault_store::Latest;
use tokenvault_store::coordination::Lease;
use tokenvault_tls::now_unix;
use zeroize::Zeroizing;

use super::{Broker, Cached, INTEGRITY_TARGET};
use crate::account::{AccountKey, lock};
use crate::error::TokenError;
use crate::replicas::{Replicas, Turn};
use crate::rotation::{Durable, INLINE_ATTEMPTS};
use crate::token::AccessToken;

/// What is left to do once the waiters have their token: share it with the
/// other replicas, then let go of the account's cross-replica lock.
pub(super) struct Finish {
    replicas: Replicas,
    lease: Lease,
    /// The stored version to share the token under; `None`: do not share.
    version: Option<i64>,
}

impl Finish {
    pub(super) async fn share(self, key: &AccountKey, token: &AccessToken) {
        if let Some(version) = self.version {
            self.replicas.share(key, version, token).await;
        }
        self.lease.release().await;
    }
}

impl Broker {
    /// One refresh of `key` for a token that stays valid until
    /// `min_expires_at` (another replica's shared token will do if it does).
    pub(super) async fn refresh(
        &self,
        key: &AccountKey,
        min_expires_at: i64,
    ) -> Result<(AccessToken, Option<Finish>), TokenError> {
        let Some(replicas) = &self.inner.replicas else {
            let (token, _) = self.refresh_here(key, &mut None).await?;
            return Ok((token, None));
        };
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(self.inner.config.refresh_deadline_secs);
        let lease = match replicas.turn(key, min_expires_at, deadline).await? {
            Turn::Shared(token) => return Ok((token, None)),
            Turn::Refresh(lease) => lease,
        };
        let mut lease = Some(lease);
        match self.refresh_here(key, &mut lease).await {
            Ok((token, version)) => Ok((
                token,
                lease.map(|lease| Finish {
                    replicas: replicas.clone(),
                    lease,
                    version,
                }),
            )),
            Err(e) => {
                if let Some(lease) = lease {
                    lease.release().await;
                }
                Err(e)
            }
        }
    }

    /// Refreshes `key` at its provider (holding `lease`, the cross-replica
    /// lock, if there is one); returns the token and the stored version to
    /// share it under. A rotated refresh token is durable before this
    /// returns; if it is only journaled, the pending rotation keeps `lease`
    /// until set-service stores it.
    async fn refresh_here(
        &self,
        key: &AccountKey,
        lease: &mut Option<Lease>,
    ) -> Result<(AccessToken, Option<i64>), TokenError> {
        let provider = self
            .inner
            .providers
            .get(&key.provider)
            .cloned()
            .ok_or_else(|| {
                TokenError::InvalidArgument(format!(
                    "provider {:?} is not configured",
                    key.provider
                ))
            })?;
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(self.inner.config.refresh_deadline_secs);
        let (mut version, mut refresh_token) = self.current_refresh_token(key).await?;
        // Fencing: a replica whose lock connection broke may have lost the
        // account to another one; it must not send the refresh token.
        if let Some(held) = lease.as_mut()
            && !held.still_held().await
        {
            return Err(TokenError::Unavailable(
                "lost the account's cross-replica lock (the database connection broke); retry"
                    .into(),
            ));
        }
        let mut retried_race = false;
        loop {
            let (sent, started) = (now_unix(), Instant::now());
            match provider.refresh_with_retry(&refresh_token, deadline).await {
                Ok(refreshed) => {
                    let lifetime = (refreshed.expires_at_unix - sent).max(0);
                    lock(&self.inner.lifetimes).insert(key.provider.clone(), lifetime);
                    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                    tracing::info!(account = %key.account, provider = %key.provider, elapsed_ms, "refreshed an access token");
                    let token = AccessToken {
                        token: Zeroizing::new(refreshed.access_token.expose().to_owned()),
                        token_type: refreshed.token_type,
                        expires_at_unix: refreshed.expires_at_unix,
                        scopes: refreshed.scopes,
                        lifetime_secs: lifetime,
                        shared: false,
                    };
                    let Some(rotated) = refreshed.refresh_token else {
                        return Ok((token, Some(version)));
                    };
                    let rotated = Zeroizing::new(rotated.expose().to_owned());
                    return match self
                        .inner
                        .rotations
                        .make_durable(key, rotated, version, lease)
                        .await
                    {
                        Ok(Durable::Stored(stored)) => Ok((token, Some(stored))),
                        Ok(Durable::Journaled | Durable::Superseded) => Ok((token, None)),
                        Err(e) => Err(TokenError::Unavailable(format!(
                            "{e}; retry when set-service is back"
                        ))),
                    };
                }
                Err(ProviderError::GrantDead { error, .. }) => {
                    // A newer stored token means another refresher won a race
                    // (or the account was reconnected): try once with that.
                    let (now_version, now_token) = self.current_refresh_token(key).await?;
                    if now_version != version && !retried_race {
                        tracing::info!(account = %key.account, provider = %key.provider, "refresh grant rejected, but a newer token is stored; retrying with it");
                        (version, refresh_token, retried_race) = (now_version, now_token, true);
                        continue;
                    }
                    tracing::warn!(account = %key.account, provider = %key.provider, error = %error, "the provider rejected the refresh grant; reauthorization required");
                    self.record_reauthorization_required(key, &error).await;
                    let ttl = Duration::from_secs(self.inner.config.negative_ttl_secs);
                    lock(&self.inner.cache).insert(
                        key.clone(),
                        Cached::Dead {
                            version,
                            reason: error.clone(),
                            until: Instant::now() + ttl,
                        },
                    );
                    return Err(TokenError::ReauthorizationRequired(error));
                }
                Err(ProviderError::Transient { reason, .. }) => {
                    tracing::warn!(account = %key.account, provider = %key.provider, %reason, "provider unavailable");
                    return Err(TokenError::Unavailable(format!(
                        "provider {} is unavailable ({reason}); retry later",
                        key.provider
                    )));
                }
                Err(ProviderError::Misconfigured(reason)) => {
                    tracing::error!(account = %key.account, provider = %key.provider, %reason, "the provider rejected tokenvault's client configuration");
                    return Err(TokenError::Internal(format!(
                        "provider {} rejected tokenvault's client configuration; see get-service logs",
                        key.provider
                    )));
                }
                Err(other) => {
                    tracing::error!(account = %key.account, provider = %key.provider, error = %other, "refresh failed");
                    return Err(TokenError::Unavailable(format!(
                        "provider {} refresh failed: {other}",
                        key.provider
                    )));
                }
            }
        }
    }

    /// Records REAUTHORIZATION_REQUIRED for an account, retrying briefly.
    async fn record_reauthorization_required(&self, key: &AccountKey, reason: &str) {
        for attempt in 0..INLINE_ATTEMPTS {
            let recorded = self
                .inner
                .rotations
                .set_client()
                .record_status(
                    &key.account,
                    &key.provider,
                    AccountStatus::ReauthorizationRequired,
                    reason,
                )
                .await;
            match recorded {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(account = %key.account, provider = %key.provider, attempt, error = %e, "recording the account status failed");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }

    /// The refresh token to use: a rotated one not yet stored, or the newest
    /// stored one, opened after checking that it belongs to this row.
    async fn current_refresh_token(
        &self,
        key: &AccountKey,
    ) -> Result<(i64, Zeroizing<String>), TokenError> {
        let (version, sealed) = match self
            .inner
            .reader
            .latest(&key.account, &key.provider)
            .await?
        {
            Latest::NotFound => {
                self.inner.rotations.pending_token(key, None);
                return Err(TokenError::UnknownAccount);
            }
            Latest::Disconnected => {
                self.inner.rotations.pending_token(key, None);
                return Err(TokenError::Disconnected);
            }
            Latest::Token {
                version,
                sealed_token,
                ..
            } => (version, sealed_token),
        };
        if let Some(token) = self.inner.rotations.pending_token(key, Some(version)) {
            return Ok((version, token));
        }
        let opened = self
            .inner
            .keys
            .open_async(&sealed, &key.account, &key.provider)
            .await
            .map_err(|e| match e {
                // The HSM, not the token: try again later.
                OpenError::KeyUnavailable { .. } => {
                    tracing::warn!(account = %key.account, provider = %key.provider, error = %e,
                        "the token-encryption key is unavailable");
                    TokenError::Unavailable(format!("the token-encryption key is unavailable: {e}"))
                }
                e => {
                    tracing::error!(target: INTEGRITY_TARGET, account = %key.account, provider = %key.provider, version, error = %e,
                        "STORED SEALED TOKEN FAILED ITS INTEGRITY CHECK: refusing to use it");
                    TokenError::Internal(format!(
                        "the stored token for this account failed its integrity check ({e}); see get-service logs"
                    ))
                }
            })?;
        let text = std::str::from_utf8(&opened)
            .map_err(|_| TokenError::Internal("the stored refresh token is not UTF-8".into()))?;
        Ok((version, Zeroizing::new(text.to_owned())))
    }
}
