//! One refresh of one account, under its local lock: with several replicas,
//! first the account's cross-replica turn ([`Replicas::turn`]); then read
//! the sealed row (or the pending rotation), open it, refresh at the
//! provider (asking for the narrowed scopes, if any), make a rotated refresh
//! token durable, and sort out dead grants. A narrowed token is not shared
//! with other replicas (they share only the grant's full token).
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

use super::{Broker, CacheKey, Cached, DeadGrant, INTEGRITY_TARGET};
use crate::account::{AccountKey, lock};
use crate::error::TokenError;
use crate::replicas::{Replicas, Turn};
use crate::rotation::{Durable, INLINE_ATTEMPTS};
use crate::scopes::ScopeSet;
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
    /// `min_expires_at` (another replica's shared token will do if it does,
    /// for the grant's full scopes).
    pub(super) async fn refresh(
        &self,
        key: &CacheKey,
        min_expires_at: i64,
    ) -> Result<(AccessToken, Option<Finish>), TokenError> {
        if key.account.is_client() {
            return Ok((self.fetch_client_token(key).await?, None));
        }
        let Some(replicas) = &self.inner.replicas else {
            let (token, _) = self.refresh_here(key, &mut None).await?;
            return Ok((token, None));
        };
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(self.inner.config.refresh_deadline_secs);
        let shared_will_do = key.scopes.is_none().then_some(min_expires_at);
        let lease = match replicas
            .turn(&key.account, shared_will_do, deadline)
            .await?
        {
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
                    version: version.filter(|_| key.scopes.is_none()),
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
        cache_key: &CacheKey,
        lease: &mut Option<Lease>,
    ) -> Result<(AccessToken, Option<i64>), TokenError> {
        let key = &cache_key.account;
        let narrowed = cache_key.scopes.as_deref().map(ScopeSet::to_vec);
        let provider = self
            .inner
            .providers
            .get(&*key.provider)
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
            match provider
                .refresh_with_retry(&refresh_token, narrowed.as_deref(), deadline)
                .await
            {
                Ok(refreshed) => {
                    let lifetime = (refreshed.expires_at_unix - sent).max(0);
                    lock(&self.inner.lifetimes).insert(key.provider.to_string(), lifetime);
                    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                    tracing::info!(account = %key.account, provider = %key.provider, elapsed_ms, "refreshed an access token");
                    let token = AccessToken {
                        token: Zeroizing::new(refreshed.access_token.expose().to_owned()),
                        token_type: refreshed.token_type.into(),
                        expires_at_unix: refreshed.expires_at_unix,
                        scopes: refreshed.scopes.into(),
                        lifetime_secs: lifetime,
                        shared: false,
                    };
                    let rotated_expires_at = refreshed.refresh_token_expires_at_unix;
                    let durable = match refreshed.refresh_token {
                        None => Ok(Some(version)),
                        Some(rotated) => {
                            let rotated = Zeroizing::new(rotated.expose().to_owned());
                            match self
                                .inner
                                .rotations
                                .make_durable(key, rotated, version, rotated_expires_at, lease)
                                .await
                            {
                                Ok(Durable::Stored(stored)) => Ok(Some(stored)),
                                Ok(Durable::Journaled | Durable::Superseded) => Ok(None),
                                Err(e) => Err(TokenError::Unavailable(format!(
                                    "{e}; retry when set-service is back"
                                ))),
                            }
                        }
                    };
                    // Only now (the rotation is durable) may a token that is
                    // broader than asked be refused.
                    let version = durable?;
                    if let Some(asked) = &cache_key.scopes {
                        check_narrowed(key, asked, &token)?;
                    }
                    return Ok((token, version));
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
                    if narrowed.is_some() {
                        // Some providers answer invalid_grant for a scope the
                        // grant lacks: only a full refresh may say the grant
                        // is dead ([`super::scoped`] asks one).
                        return Err(TokenError::NarrowedRefreshRejected(error));
                    }
                    tracing::warn!(account = %key.account, provider = %key.provider, error = %error, "the provider rejected the refresh grant; reauthorization required");
                    self.record_reauthorization_required(key, &error).await;
                    let ttl = Duration::from_secs(self.inner.config.negative_ttl_secs);
                    let mut cache = lock(&self.inner.cache);
                    // Tokens of the dead grant, whatever their scopes, are
                    // not served again.
                    cache.retain(|k, _| k.account != *key);
                    cache.insert(
                        CacheKey::full(key),
                        Cached::Dead(Box::new(DeadGrant {
                            version,
                            reason: error.clone(),
                            until: Instant::now() + ttl,
                        })),
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
                Err(ProviderError::ScopeRefused(reason)) if narrowed.is_some() => {
                    tracing::info!(account = %key.account, provider = %key.provider, %reason, "the provider refused the narrowed scopes");
                    return Err(TokenError::PermissionDenied(format!(
                        "scopes {}: beyond what account {} granted at {} (the provider refused them)",
                        cache_key
                            .scopes
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        key.account,
                        key.provider
                    )));
                }
                Err(ProviderError::Misconfigured(reason) | ProviderError::ScopeRefused(reason)) => {
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

/// Refuses a narrowed token that carries more than was `asked` (a provider
/// that ignored the narrowed `scope`): it is not served, nor cached.
fn check_narrowed(
    key: &AccountKey,
    asked: &ScopeSet,
    token: &AccessToken,
) -> Result<(), TokenError> {
    let carried = ScopeSet::of_token(&token.scopes);
    if carried.is_subset(asked) {
        return Ok(());
    }
    tracing::warn!(account = %key.account, provider = %key.provider, asked = %asked, carried = %carried,
        "the provider answered a narrowed refresh with more scopes than asked; set narrow_scopes = false for it");
    Err(TokenError::ScopesUnavailable(format!(
        "provider {} answered with scopes {carried} when asked for {asked}: it does not narrow \
         scopes on refresh, so no narrowed token can be had (ask without scopes)",
        key.provider
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn token(scopes: &[&str]) -> AccessToken {
        AccessToken {
            token: Zeroizing::new("at".into()),
            token_type: "Bearer".into(),
            expires_at_unix: 0,
            scopes: scopes
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>()
                .into(),
            lifetime_secs: 60,
            shared: false,
        }
    }

    #[test]
    fn a_narrowed_token_with_more_scopes_than_asked_is_refused() {
        let key = AccountKey::new("acme:1", "google");
        let asked = ScopeSet::parse(&["email", "openid"]).unwrap();
        assert!(check_narrowed(&key, &asked, &token(&["openid", "email"])).is_ok());
        assert!(check_narrowed(&key, &asked, &token(&["email"])).is_ok());
        let e = check_narrowed(&key, &asked, &token(&["openid", "email", "profile"])).unwrap_err();
        assert!(matches!(e, TokenError::ScopesUnavailable(_)), "{e:?}");
        assert!(e.to_string().contains("does not narrow"), "{e}");
    }
}
