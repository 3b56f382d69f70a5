//! The access-token broker behind `GetAccessToken`: an in-memory cache,
//! single-flight refreshes, refresh-ahead, and the handling of rotated and
//! dead grants.
//!
//! - A cached token is returned only if it stays valid for `min_ttl`.
//! - However many callers ask for the same account at once, one refresh runs
//!   (one decrypt, one provider call) in its own task, and every caller gets
//!   its result; a caller that gives up does not cancel it.
//! - A token near expiry is refreshed in the background on the next hit.
//! - A cached token is re-confirmed against the store every
//!   `revalidate_secs`, so a disconnect stops tokens within that time.
//! - A dead grant (`invalid_grant`) is confirmed by re-reading the store (a
//!   newer stored token means a lost race, tried once more), recorded as
//!   REAUTHORIZATION_REQUIRED through set-service, and remembered for
//!   `negative_ttl` so that the provider is not asked again.
//!
//! This module holds plaintext refresh tokens only inside one refresh, and
//! access tokens in the cache, all in `Zeroizing` buffers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokenvault_store::{Latest, TokenReader};
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::PrivateKeyRing;
use crate::config::CacheConfig;
use crate::error::TokenError;
use crate::provider::{Provider, ProviderError};
use crate::token::{AccessToken, now_unix};
use crate::writer::{Key, PendingTokens, SetWriter, pending_token};

/// The tracing target of integrity failures (a sealed token that does not
/// belong to its row, or does not open).
pub const INTEGRITY_TARGET: &str = "tokenvault::integrity";

type Outcome = Result<Arc<AccessToken>, TokenError>;

enum Cached {
    /// A token, and when the store last confirmed the account is connected.
    Token {
        token: Arc<AccessToken>,
        checked: Instant,
    },
    /// The grant was dead at this stored version, until `until`.
    Dead {
        version: i64,
        reason: String,
        until: Instant,
    },
}

struct Inner {
    reader: TokenReader,
    keys: Arc<PrivateKeyRing>,
    providers: HashMap<String, Arc<Provider>>,
    writer: SetWriter,
    config: CacheConfig,
    cache: Mutex<HashMap<Key, Cached>>,
    flights: Mutex<HashMap<Key, watch::Receiver<Option<Outcome>>>>,
    pending: PendingTokens,
}

/// Cheap to clone; all clones share one cache.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker over the given store, keys, providers and set-service writer.
    pub fn new(
        reader: TokenReader,
        keys: Arc<PrivateKeyRing>,
        providers: HashMap<String, Arc<Provider>>,
        writer: SetWriter,
        config: CacheConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                reader,
                keys,
                providers,
                writer,
                config,
                cache: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
                pending: PendingTokens::default(),
            }),
        }
    }

    /// The store reader (for status reads).
    pub fn reader(&self) -> &TokenReader {
        &self.inner.reader
    }

    /// Whether `provider` is configured.
    pub fn knows_provider(&self, provider: &str) -> bool {
        self.inner.providers.contains_key(provider)
    }

    /// An access token for `key` valid for at least `min_ttl_secs`.
    pub async fn access_token(&self, key: Key, min_ttl_secs: u32) -> Outcome {
        let min_ttl = i64::from(min_ttl_secs).max(1);
        if let Some(hit) = self.cached(&key, min_ttl).await? {
            return Ok(hit);
        }
        let token = self.join_flight(key.clone()).await?;
        let remaining = token.remaining_secs(now_unix());
        if remaining < min_ttl {
            return Err(TokenError::InvalidArgument(format!(
                "min_ttl_seconds {min_ttl_secs} is longer than a fresh token from provider {} lives ({remaining} s)",
                key.1
            )));
        }
        Ok(token)
    }

    /// A cache hit that satisfies `min_ttl`, starting a background refresh if
    /// it is close to expiry; or the remembered dead grant.
    async fn cached(
        &self,
        key: &Key,
        min_ttl: i64,
    ) -> Result<Option<Arc<AccessToken>>, TokenError> {
        let now = now_unix();
        let revalidate = Duration::from_secs(self.inner.config.revalidate_secs);
        // Decide under the lock; act (await) after it is released.
        let (hit, dead_at) = {
            let cache = lock(&self.inner.cache);
            match cache.get(key) {
                Some(Cached::Token { token, checked }) if token.remaining_secs(now) >= min_ttl => {
                    (Some((token.clone(), checked.elapsed() >= revalidate)), None)
                }
                Some(Cached::Dead {
                    version,
                    reason,
                    until,
                }) if *until > Instant::now() => (None, Some((*version, reason.clone()))),
                _ => (None, None),
            }
        };
        if let Some((token, stale)) = hit {
            if stale {
                self.revalidate(key).await?;
            }
            let ahead = i64::try_from(self.inner.config.refresh_ahead_secs).unwrap_or(i64::MAX);
            if token.remaining_secs(now) < ahead {
                self.start_flight(key.clone());
            }
            return Ok(Some(token));
        }
        if let Some((version, reason)) = dead_at {
            // Without asking the provider: only a newly stored token (a
            // reconnect) revives the account.
            match self.inner.reader.latest(&key.0, &key.1).await? {
                Latest::Token { version: v, .. } if v == version => {
                    return Err(TokenError::ReauthorizationRequired(reason));
                }
                Latest::Disconnected => return Err(TokenError::Disconnected),
                _ => {
                    lock(&self.inner.cache).remove(key);
                }
            }
        }
        Ok(None)
    }

    /// Confirms with the store that the account is still connected; drops
    /// the cached token if not.
    async fn revalidate(&self, key: &Key) -> Result<(), TokenError> {
        let outcome = match self.inner.reader.latest(&key.0, &key.1).await? {
            Latest::Token { .. } => Ok(()),
            Latest::Disconnected => Err(TokenError::Disconnected),
            Latest::NotFound => Err(TokenError::UnknownAccount),
        };
        let mut cache = lock(&self.inner.cache);
        match &outcome {
            Ok(()) => {
                if let Some(Cached::Token { checked, .. }) = cache.get_mut(key) {
                    *checked = Instant::now();
                }
            }
            Err(_) => {
                cache.remove(key);
            }
        }
        outcome
    }

    /// Starts a refresh for `key` unless one is running; returns its receiver.
    fn start_flight(&self, key: Key) -> watch::Receiver<Option<Outcome>> {
        let mut flights = lock(&self.inner.flights);
        if let Some(rx) = flights.get(&key) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.clone(), rx.clone());
        drop(flights);
        let broker = self.clone();
        tokio::spawn(async move {
            let outcome = broker.refresh(&key).await.map(Arc::new);
            {
                let mut cache = lock(&broker.inner.cache);
                if let Ok(token) = &outcome {
                    cache.insert(
                        key.clone(),
                        Cached::Token {
                            token: token.clone(),
                            checked: Instant::now(),
                        },
                    );
                }
                // Remove the flight while holding the cache lock, so a new
                // caller sees either the flight or its cached result.
                lock(&broker.inner.flights).remove(&key);
            }
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    async fn join_flight(&self, key: Key) -> Outcome {
        let mut rx = self.start_flight(key);
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_else(|| {
                Err(TokenError::Internal(
                    "refresh ended without a result".into(),
                ))
            }),
            Err(_) => Err(TokenError::Internal(
                "refresh task ended without a result".into(),
            )),
        }
    }

    /// One refresh: read, open, refresh at the provider, handle the outcome.
    async fn refresh(&self, key: &Key) -> Result<AccessToken, TokenError> {
        let provider = self.inner.providers.get(&key.1).cloned().ok_or_else(|| {
            TokenError::InvalidArgument(format!("provider {:?} is not configured", key.1))
        })?;
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(self.inner.config.refresh_deadline_secs);
        let (mut version, mut refresh_token) = self.current_refresh_token(key).await?;
        let mut retried_race = false;
        loop {
            match provider.refresh_with_retry(&refresh_token, deadline).await {
                Ok(refreshed) => {
                    if let Some(rotated) = refreshed.refresh_token {
                        self.inner
                            .writer
                            .store_rotated(
                                key.clone(),
                                Zeroizing::new(rotated.expose().to_owned()),
                                version,
                                self.inner.pending.clone(),
                            )
                            .await;
                    }
                    tracing::info!(account = %key.0, provider = %key.1, "refreshed an access token");
                    return Ok(AccessToken {
                        token: Zeroizing::new(refreshed.access_token.expose().to_owned()),
                        token_type: refreshed.token_type,
                        expires_at_unix: refreshed.expires_at_unix,
                        scopes: refreshed.scopes,
                    });
                }
                Err(ProviderError::GrantDead { error, .. }) => {
                    // A newer stored token means another refresher won a race
                    // (or the account was reconnected): try once with that.
                    let (now_version, now_token) = self.current_refresh_token(key).await?;
                    if now_version != version && !retried_race {
                        tracing::info!(account = %key.0, provider = %key.1, "refresh grant rejected, but a newer token is stored; retrying with it");
                        (version, refresh_token, retried_race) = (now_version, now_token, true);
                        continue;
                    }
                    tracing::warn!(account = %key.0, provider = %key.1, error = %error, "the provider rejected the refresh grant; reauthorization required");
                    self.inner
                        .writer
                        .record_reauthorization_required(key, &error)
                        .await;
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
                    tracing::warn!(account = %key.0, provider = %key.1, %reason, "provider unavailable");
                    return Err(TokenError::Unavailable(format!(
                        "provider {} is unavailable ({reason}); retry later",
                        key.1
                    )));
                }
                Err(other) => {
                    tracing::error!(account = %key.0, provider = %key.1, error = %other, "refresh failed");
                    return Err(TokenError::Unavailable(format!(
                        "provider {} refresh failed: {other}",
                        key.1
                    )));
                }
            }
        }
    }

    /// The refresh token to use: a rotated one not yet stored, or the newest
    /// stored one, opened after checking that it belongs to this row.
    async fn current_refresh_token(
        &self,
        key: &Key,
    ) -> Result<(i64, Zeroizing<String>), TokenError> {
        let (version, sealed) = match self.inner.reader.latest(&key.0, &key.1).await? {
            Latest::NotFound => return Err(TokenError::UnknownAccount),
            Latest::Disconnected => return Err(TokenError::Disconnected),
            Latest::Token {
                version,
                sealed_token,
                ..
            } => (version, sealed_token),
        };
        if let Some(token) = pending_token(&self.inner.pending, key, version) {
            return Ok((version, token));
        }
        let opened = self.inner.keys.open(&sealed, &key.0, &key.1).map_err(|e| {
            tracing::error!(target: INTEGRITY_TARGET, account = %key.0, provider = %key.1, version, error = %e,
                "STORED SEALED TOKEN FAILED ITS INTEGRITY CHECK: refusing to use it");
            TokenError::Internal(format!(
                "the stored token for this account failed its integrity check ({e}); see get-service logs"
            ))
        })?;
        let text = std::str::from_utf8(&opened)
            .map_err(|_| TokenError::Internal("the stored refresh token is not UTF-8".into()))?;
        Ok((version, Zeroizing::new(text.to_owned())))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
