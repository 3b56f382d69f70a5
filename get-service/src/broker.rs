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
//! - Waiters get the new access token only once a rotated refresh token is
//!   durable (stored, or journaled: [`crate::rotation`]).
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
//! - With several replicas on PostgreSQL, a refresh waits for the account's
//!   cross-replica lock, and a replica that waited serves the access token
//!   the refresher shared ([`crate::replicas`]).
//!
//! - A worker may ask for fewer scopes than the grant holds; such tokens
//!   are cached and refreshed apart, by scope set, but refreshes stay one at
//!   a time per account ([`scoped`]).
//!
//! - The application's own client-credentials tokens go through the same
//!   cache and flights, keyed by provider alone ([`client`]).
//!
//! One refresh is [`refresh`]; this module is the cache and the flights
//! around it. Flights are tracked, so that a stop can let them finish
//! ([`Broker::drain`]).
//!
//! [`CacheMetrics`] counts cache hits (a cached token served) and misses (the
//! caller waited for a refresh) by provider; a remembered dead grant is
//! neither.
//!
//! Per-account state lives only while it serves: [`Broker::sweep`] (run
//! every `sweep_secs`) drops expired tokens and dead grants no longer
//! remembered, a flight leaves when it lands, and an account's lock entry
//! leaves with its last holder ([`AccountLocks`]). A cached token shares its
//! type and scope list with every other token that has the same
//! ([`crate::token`]).
//!
//! This module holds plaintext refresh tokens only inside one refresh, and
//! access tokens in the cache, all in `Zeroizing` buffers.

mod client;
mod idle;
mod refresh;
mod scoped;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokenvault_oauth::{Provider, ProviderLabel};
use tokenvault_opener::PrivateKeyRing;
use tokenvault_runtime::metrics::{Registry, registered};
use tokenvault_store::{Latest, StoreError, TokenReader};
use tokenvault_tls::now_unix;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::account::{AccountKey, AccountLocks, lock};
use crate::config::CacheConfig;
use crate::error::TokenError;
use crate::replicas::Replicas;
use crate::rotation::Rotations;
use crate::scopes::ScopeSet;
use crate::token::{AccessToken, Interner};

pub use scoped::Want;

/// The tracing target of integrity failures (a sealed token that does not
/// belong to its row, or does not open).
pub const INTEGRITY_TARGET: &str = "tokenvault::integrity";

pub(crate) type Outcome = Result<Arc<AccessToken>, TokenError>;
/// A refresh in flight: its outcome, once there is one.
type Flight = watch::Receiver<Option<Outcome>>;

/// What the cache and the flights are keyed by: an account, and the scopes
/// its token was narrowed to (`None`: the grant's own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    account: AccountKey,
    scopes: Option<Arc<ScopeSet>>,
}

impl CacheKey {
    /// The account's token with the grant's scopes.
    fn full(account: &AccountKey) -> Self {
        Self {
            account: account.clone(),
            scopes: None,
        }
    }
}

enum Cached {
    /// A token, and when the store last confirmed the account is connected.
    Token {
        token: Arc<AccessToken>,
        checked: Instant,
    },
    /// The grant was dead (boxed: rare, and the map's slots stay small).
    Dead(Box<DeadGrant>),
}

/// A grant the provider refused at this stored version, remembered until
/// `until`.
struct DeadGrant {
    version: i64,
    reason: String,
    until: Instant,
}

pub(crate) struct Inner {
    reader: TokenReader,
    keys: Arc<PrivateKeyRing>,
    /// By name; each key made on the hot path shares its name's text.
    providers: HashMap<Arc<str>, Arc<Provider>>,
    rotations: Rotations,
    replicas: Option<Replicas>,
    locks: AccountLocks,
    config: CacheConfig,
    cache: Mutex<HashMap<CacheKey, Cached>>,
    flights: Mutex<HashMap<CacheKey, Flight>>,
    tracker: TaskTracker,
    /// The lifetime of the last token each provider issued, in seconds.
    lifetimes: Mutex<HashMap<String, i64>>,
    metrics: CacheMetrics,
    /// Shared token types and scope lists of cached tokens.
    interner: Interner,
}

/// Access-token cache hits and misses by provider (a configured name), and
/// the per-account state held, as of the last sweep. Cheap to clone; the
/// default reports nowhere.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    hits: Family<ProviderLabel, Counter>,
    misses: Family<ProviderLabel, Counter>,
    entries: Gauge,
    locks: Gauge,
    flights: Gauge,
    shared: Gauge,
}

/// The per-account state a broker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Cached tokens and remembered dead grants.
    pub cached: usize,
    /// Refreshes in flight.
    pub flights: usize,
    /// Accounts with a lock entry.
    pub locks: usize,
    /// Distinct token types and scope lists, each held once for every
    /// cached token that has it.
    pub shared: usize,
}

impl CacheMetrics {
    /// Registers `access_token_cache_hits` and `access_token_cache_misses`.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            hits: registered(
                registry,
                "access_token_cache_hits",
                "GetAccessToken and GetClientAccessToken calls answered from the cache, by provider",
                Family::default(),
            ),
            misses: registered(
                registry,
                "access_token_cache_misses",
                "GetAccessToken and GetClientAccessToken calls that waited for a refresh, by provider",
                Family::default(),
            ),
            entries: registered(
                registry,
                "access_token_cache_entries",
                "Cached access tokens and remembered dead grants, as of the last sweep",
                Gauge::default(),
            ),
            locks: registered(
                registry,
                "account_lock_entries",
                "Accounts whose lock is held or waited for, as of the last sweep",
                Gauge::default(),
            ),
            flights: registered(
                registry,
                "refreshes_in_flight",
                "Refreshes running, as of the last sweep",
                Gauge::default(),
            ),
            shared: registered(
                registry,
                "access_token_shared_values",
                "Distinct token types and scope lists held once for all cached tokens, as of the last sweep",
                Gauge::default(),
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
    /// tokens and statuses through `rotations` (whose account locks it
    /// shares), coordinating with other replicas through `replicas` (on
    /// PostgreSQL). Cache hits and misses go to `metrics`.
    pub fn new(
        reader: TokenReader,
        keys: Arc<PrivateKeyRing>,
        providers: HashMap<String, Arc<Provider>>,
        (rotations, replicas): (Rotations, Option<Replicas>),
        config: CacheConfig,
        metrics: CacheMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                reader,
                keys,
                providers: providers
                    .into_iter()
                    .map(|(name, provider)| (Arc::from(name), provider))
                    .collect(),
                locks: rotations.locks().clone(),
                rotations,
                replicas,
                config,
                cache: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
                tracker: TaskTracker::new(),
                lifetimes: Mutex::new(HashMap::new()),
                metrics,
                interner: Interner::default(),
            }),
        }
    }

    /// The store reader (for status reads).
    pub fn reader(&self) -> &TokenReader {
        &self.inner.reader
    }

    /// The configured provider's name, shared (`None`: not configured).
    pub fn provider_name(&self, provider: &str) -> Option<Arc<str>> {
        self.inner
            .providers
            .get_key_value(provider)
            .map(|(name, _)| Arc::clone(name))
    }

    /// How many rotated refresh tokens are still unstored.
    pub fn unstored_rotations(&self) -> usize {
        self.inner.rotations.unstored()
    }

    /// An access token for `key` with the grant's scopes, valid for at
    /// least `min_ttl_secs`.
    pub async fn access_token(&self, key: AccountKey, min_ttl_secs: u32) -> Outcome {
        self.token_for(CacheKey::full(&key), min_ttl_secs).await
    }

    /// The token for `key` (an account, narrowed or not) valid for at least
    /// `min_ttl_secs`: cached, or from a refresh.
    async fn token_for(&self, key: CacheKey, min_ttl_secs: u32) -> Outcome {
        let provider = key.account.provider.clone();
        let min_ttl = i64::from(min_ttl_secs).max(1);
        // (What the provider's account tokens live says nothing of its
        // client tokens: those are remembered apart.)
        let known_lifetime = if key.account.is_client() {
            lock(&self.inner.lifetimes)
                .get(&client::lifetime_key(&provider))
                .copied()
        } else {
            lock(&self.inner.lifetimes).get(&*provider).copied()
        };
        if let Some(lifetime) = known_lifetime.filter(|l| min_ttl > *l) {
            return Err(too_long(min_ttl_secs, &provider, lifetime));
        }
        if let Some(hit) = self.cached(&key, min_ttl).await? {
            CacheMetrics::count(&self.inner.metrics.hits, &provider);
            return Ok(hit);
        }
        CacheMetrics::count(&self.inner.metrics.misses, &provider);
        let want = now_unix().saturating_add(min_ttl);
        let mut token = self.join_flight(key.clone(), want).await?;
        // A flight started for a shorter min_ttl may end with a token another
        // replica shared that is too old for this one: ask again (a fresh
        // refresh then gives the full lifetime).
        for _ in 0..2 {
            if !token.shared || token.expires_at_unix >= want {
                break;
            }
            token = self.join_flight(key.clone(), want).await?;
        }
        let remaining = token.remaining_secs(now_unix());
        if remaining < min_ttl {
            return Err(too_long(min_ttl_secs, &provider, remaining));
        }
        Ok(token)
    }

    /// A cache hit that satisfies `min_ttl`, starting a background refresh if
    /// it is close to expiry; or the remembered dead grant.
    async fn cached(
        &self,
        key: &CacheKey,
        min_ttl: i64,
    ) -> Result<Option<Arc<AccessToken>>, TokenError> {
        let now = now_unix();
        let revalidate = Duration::from_secs(self.inner.config.revalidate_secs);
        // Decide under the lock; act (await) after it is released. A dead
        // grant is remembered for the account, whatever the scopes.
        let full = CacheKey::full(&key.account);
        let (hit, dead_at) = {
            let cache = lock(&self.inner.cache);
            let dead = match cache.get(&full) {
                Some(Cached::Dead(dead)) if dead.until > Instant::now() => {
                    Some((dead.version, dead.reason.clone()))
                }
                _ => None,
            };
            match cache.get(key) {
                Some(Cached::Token { token, checked })
                    if dead.is_none() && token.remaining_secs(now) >= min_ttl =>
                {
                    (Some((token.clone(), checked.elapsed() >= revalidate)), None)
                }
                _ => (None, dead),
            }
        };
        if let Some((token, stale)) = hit {
            // A client token has nothing stored to confirm.
            if stale && !key.account.is_client() {
                self.revalidate(key).await?;
            }
            let ahead = i64::try_from(self.inner.config.refresh_ahead_secs)
                .unwrap_or(i64::MAX)
                .min(token.lifetime_secs / 3);
            if token.remaining_secs(now) < ahead {
                let newer = token
                    .expires_at_unix
                    .saturating_add(1)
                    .max(now.saturating_add(ahead));
                self.start_flight(key.clone(), newer);
            }
            return Ok(Some(token));
        }
        if let Some((version, reason)) = dead_at {
            // Without asking the provider: only a newly stored token (a
            // reconnect) revives the account.
            let account = &key.account;
            match self
                .inner
                .reader
                .latest(&account.account, &account.provider)
                .await?
            {
                Latest::Token { version: v, .. } if v == version => {
                    return Err(TokenError::ReauthorizationRequired(reason));
                }
                Latest::Disconnected => return Err(TokenError::Disconnected),
                _ => {
                    // Reconnected: nothing of the dead grant is kept.
                    lock(&self.inner.cache).retain(|k, _| k.account != *account);
                }
            }
        }
        Ok(None)
    }

    /// Confirms with the store that the account is still connected; drops
    /// the cached token if not. A store that cannot be reached confirms.
    async fn revalidate(&self, key: &CacheKey) -> Result<(), TokenError> {
        let account = &key.account;
        let outcome = match self
            .inner
            .reader
            .latest(&account.account, &account.provider)
            .await
        {
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

    /// Starts a refresh for `key` unless one is running (whatever it was
    /// started for); returns its receiver. A refresh-ahead wants a token that
    /// expires after the one it replaces. Lock order everywhere: cache, then
    /// flights.
    fn start_flight(&self, key: CacheKey, min_expires_at: i64) -> Flight {
        let _cache = lock(&self.inner.cache);
        self.start_flight_locked(key, min_expires_at)
    }

    fn start_flight_locked(&self, key: CacheKey, min_expires_at: i64) -> Flight {
        let mut flights = lock(&self.inner.flights);
        if let Some(rx) = flights.get(&key) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.clone(), rx.clone());
        drop(flights);
        let broker = self.clone();
        self.inner.tracker.spawn(async move {
            // One refresh per account at a time, whatever the scopes: each
            // may rotate the one refresh token.
            let _account = broker.inner.locks.lock(&key.account).await;
            // A refresh queued behind the one that found the grant dead
            // does not ask the provider again.
            let (outcome, finish) = if let Some(reason) = broker.dead_reason(&key.account) {
                (Err(TokenError::ReauthorizationRequired(reason)), None)
            } else {
                // Its own task, so that a panic still answers the waiters.
                let refresh = {
                    let (broker, key) = (broker.clone(), key.clone());
                    tokio::spawn(async move { broker.refresh(&key, min_expires_at).await })
                };
                match refresh.await {
                    Ok(Ok((token, finish))) => {
                        (Ok(Arc::new(broker.inner.interner.intern(token))), finish)
                    }
                    Ok(Err(e)) => (Err(e), None),
                    Err(_) => (
                        Err(TokenError::Internal(
                            "the refresh failed unexpectedly".into(),
                        )),
                        None,
                    ),
                }
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
            let shared = outcome.as_ref().ok().cloned();
            let _ = tx.send(Some(outcome));
            // Waiters have their token (durable, if it came with a rotation);
            // other replicas get it before this one lets go of the account.
            if let (Some(finish), Some(token)) = (finish, shared) {
                finish.share(&key.account, &token).await;
            }
        });
        rx
    }

    /// Joins the running refresh for `key`, or starts one, unless a token
    /// that stays valid until `min_expires_at` was cached meanwhile.
    async fn join_flight(&self, key: CacheKey, min_expires_at: i64) -> Outcome {
        let mut rx = {
            let cache = lock(&self.inner.cache);
            if let Some(Cached::Token { token, .. }) = cache.get(&key)
                && token.expires_at_unix >= min_expires_at
            {
                return Ok(token.clone());
            }
            self.start_flight_locked(key, min_expires_at)
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

    /// Why the account's grant is dead, while that is remembered.
    fn dead_reason(&self, account: &AccountKey) -> Option<String> {
        match lock(&self.inner.cache).get(&CacheKey::full(account)) {
            Some(Cached::Dead(dead)) if dead.until > Instant::now() => Some(dead.reason.clone()),
            _ => None,
        }
    }

    /// Drops expired tokens and dead grants no longer remembered, and lock
    /// entries nobody wants; returns (and reports as gauges) what is left.
    pub fn sweep(&self) -> Footprint {
        let (now, instant) = (now_unix(), Instant::now());
        let cached = {
            let mut cache = lock(&self.inner.cache);
            cache.retain(|_, entry| match entry {
                Cached::Token { token, .. } => token.remaining_secs(now) > 0,
                Cached::Dead(dead) => dead.until > instant,
            });
            let keep = cache.len() * 2;
            cache.shrink_to(keep);
            cache.len()
        };
        let flights = lock(&self.inner.flights).len();
        self.inner.locks.sweep();
        let footprint = Footprint {
            cached,
            flights,
            locks: self.inner.locks.entries(),
            shared: self.inner.interner.sweep(),
        };
        let gauge = |g: &Gauge, n: usize| g.set(i64::try_from(n).unwrap_or(i64::MAX));
        gauge(&self.inner.metrics.entries, footprint.cached);
        gauge(&self.inner.metrics.flights, footprint.flights);
        gauge(&self.inner.metrics.locks, footprint.locks);
        gauge(&self.inner.metrics.shared, footprint.shared);
        footprint
    }

    /// Sweeps every `every` until dropped.
    pub async fn sweep_every(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep();
        }
    }

    /// At a stop, once no new calls arrive: waits until `deadline` for the
    /// refreshes in flight (and the rotations they make durable). Returns
    /// whether all finished.
    pub async fn drain(&self, deadline: tokio::time::Instant) -> bool {
        self.inner.tracker.close();
        tokio::time::timeout_at(deadline, self.inner.tracker.wait())
            .await
            .is_ok()
    }
}

fn too_long(min_ttl_secs: u32, provider: &str, lifetime: i64) -> TokenError {
    TokenError::InvalidArgument(format!(
        "min_ttl_seconds {min_ttl_secs} is longer than a fresh token from provider {provider} lives ({lifetime} s)"
    ))
}

#[cfg(test)]
mod layout {
    //! What one cached account costs, pinned so that a change to the cache's
    //! types shows up here (64-bit targets).
    use std::mem::size_of;

    use super::{AccessToken, CacheKey, Cached};

    /// One map slot: the key (the account id, boxed; the provider name,
    /// shared by every key at that provider; the narrowed scopes, `None`
    /// for the grant's own) and the entry (the shared token and when it was
    /// last checked; a dead grant is boxed). hashbrown adds one control byte
    /// per slot and keeps at most 7/8 of the slots full. The token is one
    /// heap block; its text is another, and its type and scopes are shared.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_cached_account_is_a_64_byte_slot_and_a_96_byte_token_on_the_heap() {
        let sizes = (
            size_of::<CacheKey>(),
            size_of::<Cached>(),
            size_of::<AccessToken>() + 16,
        );
        assert_eq!(sizes, (40, 24, 96));
    }
}
