//! The browser side of a sign-in, in private cookies (encrypted and
//! authenticated with the cookie key by the `cookie` crate, via axum-extra):
//!
//! - [`PendingSignIn`]: the `state`, PKCE verifier and nonce of the sign-in
//!   this browser started. Binding them to a `Secure`, `HttpOnly`,
//!   `SameSite=Lax` cookie binds `state` to the browser.
//! - [`Connected`]: the accounts this browser connected recently,
//!   which it may disconnect again (for `session.connected_ttl_secs`).
//!
//! [`UsedStates`] remembers consumed `state`s until they expire, so that each
//! is accepted once. No token is ever put in a cookie.

use std::collections::HashMap;
use std::sync::Mutex;

use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};

/// The cookie of a sign-in in progress.
pub const SIGNIN_COOKIE: &str = "tokenvault_signin";
/// The cookie listing accounts this browser just connected.
pub const CONNECTED_COOKIE: &str = "tokenvault_connected";
/// At most this many accounts are remembered in [`CONNECTED_COOKIE`].
const MAX_CONNECTED: usize = 8;
/// Used states remembered at most; beyond, the oldest are forgotten (a replay
/// then still fails at the provider, which accepts each code once).
const MAX_USED_STATES: usize = 100_000;

/// A sign-in this browser started.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    /// The `state` sent to the provider.
    pub state: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// The OIDC nonce.
    pub nonce: String,
    /// The provider's name.
    pub provider: String,
    /// The account id from a signed connect link, if the sign-in began with one.
    pub account: Option<String>,
    /// The account's metadata from the signed connect link (a JSON object), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// When the sign-in expires, Unix seconds.
    pub expires_at: i64,
}

impl std::fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("provider", &self.provider)
            .field("account", &self.account)
            .field("metadata", &self.metadata)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An account this browser connected, which it may disconnect until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectedAccount {
    /// The account id.
    pub account: String,
    /// The provider.
    pub provider: String,
    /// Unix seconds.
    pub until: i64,
}

/// The accounts in [`CONNECTED_COOKIE`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Connected(pub Vec<ConnectedAccount>);

impl Connected {
    /// Reads the cookie's value, keeping unexpired entries.
    pub fn parse(value: Option<&str>, now: i64) -> Self {
        let mut list: Vec<ConnectedAccount> = value
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        list.retain(|c| c.until > now);
        Self(list)
    }

    /// Adds (or renews) an account, keeping the newest few.
    pub fn add(&mut self, account: &str, provider: &str, until: i64) {
        self.0
            .retain(|c| !(c.account == account && c.provider == provider));
        self.0.push(ConnectedAccount {
            account: account.to_owned(),
            provider: provider.to_owned(),
            until,
        });
        if self.0.len() > MAX_CONNECTED {
            self.0.remove(0);
        }
    }

    /// Removes an account.
    pub fn remove(&mut self, account: &str, provider: &str) {
        self.0
            .retain(|c| !(c.account == account && c.provider == provider));
    }

    /// Whether this browser may disconnect (account, provider).
    pub fn contains(&self, account: &str, provider: &str) -> bool {
        self.0
            .iter()
            .any(|c| c.account == account && c.provider == provider)
    }
}

/// A cookie with the attributes every tokenvault cookie has: `Secure`,
/// `HttpOnly`, `SameSite=Lax`, `Path=/`, and a lifetime.
pub fn cookie(name: &'static str, value: String, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build((name, value))
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(time::Duration::seconds(max_age_secs))
        .build()
}

/// The cookie that removes `name`.
pub fn removal(name: &'static str) -> Cookie<'static> {
    Cookie::build(name)
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .build()
}

/// Whether a `state` was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateUse {
    /// The first use: go on.
    First,
    /// Used before: refuse.
    Reused,
}

/// Consumed states until their sign-in would have expired anyway, keyed by
/// the SHA-256 of the state.
#[derive(Debug, Default)]
pub struct UsedStates {
    used: Mutex<HashMap<[u8; 32], i64>>,
}

impl UsedStates {
    /// Records `state` as used until `expires_at`.
    pub fn consume(&self, state: &str, expires_at: i64, now: i64) -> StateUse {
        let key = state_key(state);
        let mut used = match self.used.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if used.len() >= MAX_USED_STATES / 2 {
            used.retain(|_, until| *until >= now);
        }
        if used.len() >= MAX_USED_STATES
            && let Some(oldest) = used
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| *k)
        {
            used.remove(&oldest);
        }
        match used.insert(key, expires_at) {
            Some(_) => StateUse::Reused,
            None => StateUse::First,
        }
    }

    /// Whether `state` was used.
    pub fn was_used(&self, state: &str) -> bool {
        let used = match self.used.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        used.contains_key(&state_key(state))
    }
}

fn state_key(state: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, state.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_used_once() {
        let used = UsedStates::default();
        assert_eq!(used.consume("s1", 100, 0), StateUse::First);
        assert_eq!(used.consume("s1", 100, 0), StateUse::Reused);
        assert!(used.was_used("s1"));
        assert!(!used.was_used("s2"));
    }

    #[test]
    fn connected_accounts_expire_and_are_bounded() {
        let mut c = Connected::default();
        for i in 0..10 {
            c.add(&format!("a{i}"), "p", 100);
        }
        assert_eq!(c.0.len(), MAX_CONNECTED);
        assert!(c.contains("a9", "p") && !c.contains("a0", "p"));
        let text = serde_json::to_string(&c).unwrap_or_default();
        assert_eq!(Connected::parse(Some(&text), 50).0.len(), MAX_CONNECTED);
        assert!(Connected::parse(Some(&text), 100).0.is_empty());
        assert!(Connected::parse(Some("garbage"), 0).0.is_empty());
    }
}
