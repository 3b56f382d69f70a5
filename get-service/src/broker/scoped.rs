//! Access tokens with fewer scopes than the grant holds: a worker asks for a
//! subset, or its policy rule caps what it may get.
//!
//! - The grant's own (full) token says which scopes the grant holds, when
//!   the provider names them: a request beyond them is refused at once
//!   (PERMISSION_DENIED), and one for all of them gets the full token.
//! - Anything narrower is a refresh with a narrowed `scope` (RFC 6749
//!   section 6), for a provider configured with `narrow_scopes`; such tokens
//!   are cached by scope set, and refreshed one at a time per account with
//!   every other refresh of it. Without `narrow_scopes` the request is
//!   refused (FAILED_PRECONDITION): a broader token is never handed out.
//! - A provider that refuses the narrowed scopes (`invalid_scope`: beyond the
//!   grant) makes it PERMISSION_DENIED; so does `invalid_grant`, once a full
//!   refresh showed the grant is alive (a dead one is recorded as such by
//!   that full refresh, never by a narrowed one). A provider that answers
//!   with more scopes than were asked makes it FAILED_PRECONDITION
//!   ([`super::refresh`]); one whose answer names no scopes is taken at its
//!   word (RFC 6749 section 5.1: the scopes asked for), which is what
//!   configuring `narrow_scopes` vouches for.
//!
//! The grant's scopes are those of its cached full token while that is
//! valid: after a reconnect that granted more, a request for the new scopes
//! is refused until that token is replaced (within its lifetime).

use tokenvault_tls::now_unix;

use crate::account::AccountKey;
use crate::broker::{Broker, CacheKey, Cached, Outcome};
use crate::error::TokenError;
use crate::scopes::ScopeSet;

/// Which scopes a caller's token may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// All of the grant's.
    Grant,
    /// No more than these (the caller asked for them).
    AtMost(ScopeSet),
    /// The grant's, within this ceiling (the caller's policy rule has one,
    /// and the caller asked for none).
    GrantWithin(ScopeSet),
}

impl Broker {
    /// An access token for `key` valid for at least `min_ttl_secs` that
    /// carries the scopes `want` allows.
    pub async fn scoped_access_token(
        &self,
        key: AccountKey,
        min_ttl_secs: u32,
        want: Want,
    ) -> Outcome {
        match want {
            Want::Grant => self.access_token(key, min_ttl_secs).await,
            Want::AtMost(asked) => self.at_most(key, min_ttl_secs, asked).await,
            Want::GrantWithin(ceiling) => self.grant_within(key, min_ttl_secs, ceiling).await,
        }
    }

    async fn at_most(&self, key: AccountKey, min_ttl_secs: u32, asked: ScopeSet) -> Outcome {
        let narrows = self
            .inner
            .providers
            .get(&*key.provider)
            .is_some_and(|p| p.narrows_scopes());
        // What the grant holds: from its unexpired cached token, or (where
        // the provider cannot narrow, so that only the full token can serve)
        // a fresh one.
        let mut full = if narrows {
            None
        } else {
            Some(self.access_token(key.clone(), min_ttl_secs).await?)
        };
        let grant = match &full {
            Some(token) => Some(ScopeSet::of_token(&token.scopes)),
            None => self.cached_grant(&key),
        };
        if let Some(grant) = grant.filter(|g| !g.is_empty()) {
            let beyond = asked.beyond(&grant);
            if !beyond.is_empty() {
                return Err(TokenError::PermissionDenied(format!(
                    "scopes {beyond}: beyond what account {} granted at {}",
                    key.account, key.provider
                )));
            }
            if grant.is_subset(&asked) {
                let token = match full.take() {
                    Some(token) => token,
                    None => self.access_token(key.clone(), min_ttl_secs).await?,
                };
                // The grant may have changed since: serve the full token
                // only if it still carries no more than was asked.
                let carried = ScopeSet::of_token(&token.scopes);
                if !carried.is_empty() && carried.is_subset(&asked) {
                    return Ok(token);
                }
            }
        }
        if !narrows {
            return Err(TokenError::ScopesUnavailable(format!(
                "provider {} is not configured to narrow scopes on refresh (narrow_scopes), so \
                 only a token with all of the grant's scopes can be had: ask for none, or for \
                 all of them",
                key.provider
            )));
        }
        let narrowed = CacheKey {
            account: key.clone(),
            scopes: Some(std::sync::Arc::new(asked.clone())),
        };
        match self.token_for(narrowed, min_ttl_secs).await {
            Err(TokenError::NarrowedRefreshRejected(error)) => {
                // Dead grant, or scopes refused the invalid_grant way: a full
                // refresh tells (and records a dead grant as such).
                self.access_token(key.clone(), min_ttl_secs).await?;
                Err(TokenError::PermissionDenied(format!(
                    "scopes {asked}: the provider refused a refresh narrowed to them ({error}), \
                     though the grant of account {} at {} is alive: they are beyond it",
                    key.account, key.provider
                )))
            }
            other => other,
        }
    }

    async fn grant_within(&self, key: AccountKey, min_ttl_secs: u32, ceiling: ScopeSet) -> Outcome {
        let full = self.access_token(key.clone(), min_ttl_secs).await?;
        let grant = ScopeSet::of_token(&full.scopes);
        if grant.is_empty() {
            // The provider does not say what the grant holds: the ceiling
            // itself is what to ask for.
            return self.at_most(key, min_ttl_secs, ceiling).await;
        }
        if grant.is_subset(&ceiling) {
            return Ok(full);
        }
        let within = grant.intersection(&ceiling);
        if within.is_empty() {
            return Err(TokenError::PermissionDenied(format!(
                "account {} granted at {} none of the scopes this caller may have",
                key.account, key.provider
            )));
        }
        self.at_most(key, min_ttl_secs, within).await
    }

    /// The scopes of the account's cached full token, while it is valid.
    fn cached_grant(&self, key: &AccountKey) -> Option<ScopeSet> {
        match crate::account::lock(&self.inner.cache).get(&CacheKey::full(key)) {
            Some(Cached::Token { token, .. }) if token.remaining_secs(now_unix()) > 0 => {
                Some(ScopeSet::of_token(&token.scopes))
            }
            _ => None,
        }
    }
}
