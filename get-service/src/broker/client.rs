//! The application's own access tokens, from the client-credentials grant
//! (RFC 6749 section 4.4), through the same cache, single-flight and
//! refresh-ahead as account tokens.
//!
//! A client token is cached under its provider with no account
//! ([`AccountKey::client`]: an empty account id, which no real account can
//! have) and the scopes asked for, so the store is never read for it: there
//! is nothing stored to revalidate, no refresh token to open or rotate, and
//! no grant that can die. An answer with more scopes than were asked is
//! refused (`FAILED_PRECONDITION`), as for narrowed account tokens. Each replica gets its own client tokens (nothing
//! is shared between replicas: fetching one more costs the provider one
//! request and risks nothing).
//!
//! Holds access tokens only, in `Zeroizing` buffers.

use std::sync::Arc;
use std::time::Duration;

use tokenvault_oauth::ProviderError;
use tokenvault_tls::now_unix;
use zeroize::Zeroizing;

use super::{Broker, CacheKey, Outcome};
use crate::account::{AccountKey, lock};
use crate::error::TokenError;
use crate::scopes::ScopeSet;
use crate::token::AccessToken;

/// Where the lifetime of `provider`'s client tokens is remembered, apart
/// from its account tokens' (`#` is in no provider name).
pub(super) fn lifetime_key(provider: &str) -> String {
    format!("{provider}#client")
}

impl Broker {
    /// Whether `provider` is configured for the client-credentials grant.
    pub fn serves_client_credentials(&self, provider: &str) -> bool {
        self.inner
            .providers
            .get(provider)
            .is_some_and(|p| p.serves_client_credentials())
    }

    /// The scopes `provider`'s client tokens are asked with by default.
    pub fn client_scopes(&self, provider: &str) -> Option<ScopeSet> {
        let scopes = self.inner.providers.get(provider)?.configured_scopes();
        ScopeSet::parse(scopes).ok()
    }

    /// `provider`'s client token valid for at least `min_ttl_secs`, with
    /// `scopes` (`None`: the provider's configured scopes): cached, or
    /// fetched once for every caller asking at the same time.
    pub async fn client_token(
        &self,
        provider: Arc<str>,
        min_ttl_secs: u32,
        scopes: Option<ScopeSet>,
    ) -> Outcome {
        let key = CacheKey {
            account: AccountKey::client(provider),
            scopes: scopes.map(Arc::new),
        };
        self.token_for(key, min_ttl_secs).await
    }

    /// Asks the provider for a new client token, retrying while it is
    /// unavailable until `refresh_deadline_secs` have passed (the backoff
    /// of refreshes: [`tokenvault_oauth::Provider::client_credentials_with_retry`]).
    pub(super) async fn fetch_client_token(
        &self,
        key: &CacheKey,
    ) -> Result<AccessToken, TokenError> {
        let name = &key.account.provider;
        let provider = self.inner.providers.get(name).cloned().ok_or_else(|| {
            TokenError::InvalidArgument(format!("provider {name:?} is not configured"))
        })?;
        let asked = key.scopes.as_deref().map(ScopeSet::to_vec);
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(self.inner.config.refresh_deadline_secs);
        // As for refreshes (`sent` before the retries): the lifetime is
        // never overstated.
        let sent = now_unix();
        let answer = provider
            .client_credentials_with_retry(asked.as_deref(), deadline)
            .await
            .map_err(|e| client_error(name, e))?;
        let lifetime = (answer.expires_at_unix - sent).max(0);
        lock(&self.inner.lifetimes).insert(lifetime_key(name), lifetime);
        // The answer may carry no more than was asked (and so no more than
        // the caller's ceiling).
        if let Some(asked) = key.scopes.as_deref() {
            let carried = ScopeSet::of_token(&answer.scopes);
            if !carried.is_empty() && !carried.is_subset(asked) {
                return Err(TokenError::ScopesUnavailable(format!(
                    "provider {name} answered with scopes {} beyond those asked for ({asked}); \
                     the token is not handed out",
                    carried.beyond(asked)
                )));
            }
        }
        tracing::info!(provider = %name, "fetched a client-credentials token");
        Ok(AccessToken {
            token: Zeroizing::new(answer.access_token.expose().to_owned()),
            token_type: answer.token_type.into(),
            expires_at_unix: answer.expires_at_unix,
            scopes: answer.scopes.into(),
            lifetime_secs: lifetime,
            shared: false,
        })
    }
}

/// What a caller is told of a failed client-credentials request.
fn client_error(provider: &str, error: ProviderError) -> TokenError {
    match error {
        ProviderError::Transient { reason, .. } => TokenError::Unavailable(format!(
            "provider {provider} is unavailable ({reason}); retry later"
        )),
        ProviderError::ScopeRefused(reason) => TokenError::ScopesUnavailable(format!(
            "provider {provider} refused the scopes asked for: {reason}"
        )),
        ProviderError::Unsupported(reason) => TokenError::InvalidArgument(reason),
        ProviderError::InvalidResponse(reason) => TokenError::Unavailable(format!(
            "provider {provider} answered something unusable: {reason}"
        )),
        ProviderError::Misconfigured(reason) | ProviderError::GrantDead { error: reason, .. } => {
            tracing::error!(provider, %reason, "the provider rejected tokenvault's client configuration");
            TokenError::Internal(format!(
                "provider {provider} rejected tokenvault's client configuration; see get-service logs"
            ))
        }
    }
}
