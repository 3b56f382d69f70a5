//! The access-token broker behind `GetAccessToken`: an in-memory cache,
//! single-flight refreshes, refresh-ahead, and the handling of rotated and
//! dead grants.
//!
//! - A cached token is returned only if it stays valid for `min_ttl`; a
//!   `min_ttl` longer than this provider's tokens live is refused up front.
//! - However many callers ask for the same account at once, one refresh runs
//!   (one decrypt, one provider call) in its own task, under the account's
//!   lock, and every caller gets its result; a caller that gives up does not
//!   cancel it, and a refresh that panics still answers its waiters.
//! - Waiters get the new access token before a rotated refresh token is
//!   stored; the store then runs under the same account lock.
//! - A token near expiry (the lesser of `refresh_ahead_secs` and a third of
//!   its lifetime) is refreshed in the background on the next hit.
//! - A cached token is re-confirmed against the store every
//!   `revalidate_secs`, so a disconnect stops tokens within that time (if the
//!   store is down, the cached token is served: nothing can be disconnected
//!   then either).
//! - A dead grant (`invalid_grant`) is confirmed by re-reading the store (a
//!   newer stored token means a lost race, tried once more), recorded as
//!   REAUTHORIZATION_REQUIRED through set-service, and remembered for
//!   `negative_ttl` so that the provider is not asked again.
//!
//! One get-service instance per store: refreshes are single-flight within a
//! process, and two instances refreshing one account at once would each
//! rotate its token.
//!
//! Rotated refresh tokens go to [`Rotations`], which stores them.
//!
//! [`CacheMetrics`] counts cache hits (a cached token served) and misses (the
//! caller waited for a refresh) by provider; a remembered dead grant is
//! neither.
//!
//! This module holds plaintext refresh tokens only inside one refresh, and
//! access tokens in the cache, all in `Zeroizing` buffers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokenvault_oauth::{Provider, ProviderError, ProviderLabel};
use tokenvault_opener::{OpenError, PrivateKeyRing};
use tokenvault_proto::v1::AccountStatus;
use tokenvault_runtime::metrics::{Registry, registered};
use tokenvault_set_client::SetClient;
use tokenvault_store::{Latest, StoreError, TokenReader};
use tokenvault_tls::now_unix;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::account::{AccountKey, AccountLocks, lock};
use crate::config::CacheConfig;
use crate::error::TokenError;
use crate::rotation::{INLINE_ATTEMPTS, Rotations};
use crate::token::AccessToken;

/// The tracing target of integrity failures (a sealed token that does not
/// belong to its row, or does not open).
pub const INTEGRITY_TARGET: &str = "tokenvault::integrity";

type Outcome = Result<Arc<AccessToken>, TokenError>;
/// A refreshed token, and the rotated refresh token with the version it replaces.
type Refreshed = (AccessToken, Option<(Zeroizing<String>, i64)>);

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
    rotations: Rotations,
    set: SetClient,
    locks: AccountLocks,
    config: CacheConfig,
    cache: Mutex<HashMap<AccountKey, Cached>>,
    flights: Mutex<HashMap<AccountKey, watch::Receiver<Option<Outcome>>>>,
    /// The lifetime of the last token each provider issued, in seconds.
    lifetimes: Mutex<HashMap<String, i64>>,
    metrics: CacheMetrics,
}

/// Access-token cache hits and misses by provider (a configured name).
/// Cheap to clone; the default reports nowhere.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    hits: Family<ProviderLabel, Counter>,
    misses: Family<ProviderLabel, Counter>,
}

impl CacheMetrics {
    /// Registers `access_token_cache_hits` and `access_token_cache_misses`.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            hits: registered(
                registry,
                "access_token_cache_hits",
                "GetAccessToken calls answered from the cache, by provider",
                Family::default(),
            ),
            misses: registered(
                registry,
                "access_token_cache_misses",
                "GetAccessToken calls that waited for a refresh, by provider",
                Family::default(),
            ),
        }
    }

    fn count(family: &Family<ProviderLabel, Counter>, provider: &str) {
        family.get_or_create(&ProviderLabel::new(provider)).inc();
    }
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
    /// A broker over the given store, keys and providers, storing rotated
    /// tokens through `rotations` (whose account locks it shares) and
    /// statuses through `set`. Cache hits and misses go to `metrics`.
    pub fn new(
        reader: TokenReader,
        keys: Arc<PrivateKeyRing>,
        providers: HashMap<String, Arc<Provider>>,
        (rotations, set): (Rotations, SetClient),
        config: CacheConfig,
        metrics: CacheMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                reader,
                keys,
                providers,
                locks: rotations.locks().clone(),
                rotations,
                set,
                config,
                cache: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
                lifetimes: Mutex::new(HashMap::new()),
                metrics,
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

    /// How many rotated refresh tokens are still unstored.
    pub fn unstored_rotations(&self) -> usize {
        self.inner.rotations.unstored()
    }

    /// An access token for `key` valid for at least `min_ttl_secs`.
    pub async fn access_token(&self, key: AccountKey, min_ttl_secs: u32) -> Outcome {
        let min_ttl = i64::from(min_ttl_secs).max(1);
        let known_lifetime = lock(&self.inner.lifetimes).get(&key.provider).copied();
        if let Some(lifetime) = known_lifetime.filter(|l| min_ttl > *l) {
            return Err(too_long(min_ttl_secs, &key.provider, lifetime));
        }
        if let Some(hit) = self.cached(&key, min_ttl).await? {
            CacheMetrics::count(&self.inner.metrics.hits, &key.provider);
            return Ok(hit);
        }
        CacheMetrics::count(&self.inner.metrics.misses, &key.provider);
        let token = self.join_flight(key.clone(), min_ttl).await?;
        let remaining = token.remaining_secs(now_unix());
        if remaining < min_ttl {
            return Err(too_long(min_ttl_secs, &key.provider, remaining));
        }
        Ok(token)
    }

    /// A cache hit that satisfies `min_ttl`, starting a background refresh if
    /// it is close to expiry; or the remembered dead grant.
    async fn cached(
        &self,
        key: &AccountKey,
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
            let ahead = i64::try_from(self.inner.config.refresh_ahead_secs)
                .unwrap_or(i64::MAX)
                .min(token.lifetime_secs / 3);
            if token.remaining_secs(now) < ahead {
                self.start_flight(key.clone());
            }
            return Ok(Some(token));
        }
        if let Some((version, reason)) = dead_at {
            // Without asking the provider: only a newly stored token (a
            // reconnect) revives the account.
            match self
                .inner
                .reader
                .latest(&key.account, &key.provider)
                .await?
            {
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
    /// the cached token if not. A store that cannot be reached confirms.
    async fn revalidate(&self, key: &AccountKey) -> Result<(), TokenError> {
        let outcome = match self.inner.reader.latest(&key.account, &key.provider).await {
            Ok(Latest::Token { .. }) | Err(StoreError::Unavailable(_)) => Ok(()),
            Ok(Latest::Disconnected) => Err(TokenError::Disconnected),
            Ok(Latest::NotFound) => Err(TokenError::UnknownAccount),
            Err(e) => Err(e.into()),
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
    /// Lock order everywhere: cache, then flights.
    fn start_flight(&self, key: AccountKey) -> watch::Receiver<Option<Outcome>> {
        let _cache = lock(&self.inner.cache);
        self.start_flight_locked(key)
    }

    fn start_flight_locked(&self, key: AccountKey) -> watch::Receiver<Option<Outcome>> {
        let mut flights = lock(&self.inner.flights);
        if let Some(rx) = flights.get(&key) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.clone(), rx.clone());
        drop(flights);
        let broker = self.clone();
        tokio::spawn(async move {
            let _account = broker.inner.locks.lock(&key).await;
            // Its own task, so that a panic still answers the waiters.
            let refresh = {
                let (broker, key) = (broker.clone(), key.clone());
                tokio::spawn(async move { broker.refresh(&key).await })
            };
            let (outcome, rotated) = match refresh.await {
                Ok(Ok((token, rotated))) => (Ok(Arc::new(token)), rotated),
                Ok(Err(e)) => (Err(e), None),
                Err(_) => (
                    Err(TokenError::Internal(
                        "the refresh failed unexpectedly".into(),
                    )),
                    None,
                ),
            };
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
                lock(&broker.inner.flights).remove(&key);
            }
            let _ = tx.send(Some(outcome));
            // Waiters have their token; store the rotated refresh token while
            // still holding the account's lock.
            if let Some((token, version)) = rotated {
                broker
                    .inner
                    .rotations
                    .store_rotated(&key, token, version)
                    .await;
            }
        });
        rx
    }

    /// Joins the running refresh for `key`, or starts one, unless a token
    /// that satisfies `min_ttl` was cached meanwhile.
    async fn join_flight(&self, key: AccountKey, min_ttl: i64) -> Outcome {
        let mut rx = {
            let cache = lock(&self.inner.cache);
            if let Some(Cached::Token { token, .. }) = cache.get(&key)
                && token.remaining_secs(now_unix()) >= min_ttl
            {
                return Ok(token.clone());
            }
            self.start_flight_locked(key)
        };
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

    /// One refresh, under the account's lock: read, open, refresh at the
    /// provider, handle the outcome.
    async fn refresh(&self, key: &AccountKey) -> Result<Refreshed, TokenError> {
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
        let mut retried_race = false;
        loop {
            let sent = now_unix();
            match provider.refresh_with_retry(&refresh_token, deadline).await {
                Ok(refreshed) => {
                    let lifetime = (refreshed.expires_at_unix - sent).max(0);
                    lock(&self.inner.lifetimes).insert(key.provider.clone(), lifetime);
                    tracing::info!(account = %key.account, provider = %key.provider, "refreshed an access token");
                    let rotated = refreshed
                        .refresh_token
                        .map(|t| (Zeroizing::new(t.expose().to_owned()), version));
                    let token = AccessToken {
                        token: Zeroizing::new(refreshed.access_token.expose().to_owned()),
                        token_type: refreshed.token_type,
                        expires_at_unix: refreshed.expires_at_unix,
                        scopes: refreshed.scopes,
                        lifetime_secs: lifetime,
                    };
                    return Ok((token, rotated));
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
                .set
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

fn too_long(min_ttl_secs: u32, provider: &str, lifetime: i64) -> TokenError {
    TokenError::InvalidArgument(format!(
        "min_ttl_seconds {min_ttl_secs} is longer than a fresh token from provider {provider} lives ({lifetime} s)"
    ))
}
