//! What keep-alive asks of the broker: which providers keep idle grants alive, whether this
//! get-service refreshed an account lately (its cached token says when), and a refresh that no
//! cached or shared token can answer. Holds no token beyond the broker's own cache.

use std::sync::Arc;
use std::time::Duration;

use super::{Broker, CacheKey, Cached, Outcome};
use crate::account::{AccountKey, lock};

impl Broker {
    /// The providers with `keep_alive_days`, and how long each lets a grant go unrefreshed.
    pub fn keep_alive_providers(&self) -> Vec<(Arc<str>, Duration)> {
        self.inner
            .providers
            .iter()
            .filter_map(|(name, p)| p.keep_alive().map(|idle| (Arc::clone(name), idle)))
            .collect()
    }

    /// Whether this get-service obtained the account's full-scope access token (by a refresh)
    /// at or after `since_unix`: its cached token's issue time says so.
    pub fn refreshed_since(&self, key: &AccountKey, since_unix: i64) -> bool {
        match lock(&self.inner.cache).get(&CacheKey::full(key)) {
            Some(Cached::Token { token, .. }) => {
                token.expires_at_unix.saturating_sub(token.lifetime_secs) >= since_unix
            }
            _ => false,
        }
    }

    /// Refreshes the account at its provider now, whatever is cached or shared (a keep-alive
    /// refresh): single-flight with any refresh already running, the rotated refresh token
    /// made durable as usual, a dead grant recorded as usual.
    pub async fn refresh_now(&self, key: AccountKey) -> Outcome {
        self.join_flight(CacheKey::full(&key), i64::MAX).await
    }
}
