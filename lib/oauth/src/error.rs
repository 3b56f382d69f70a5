//! [`ProviderError`]: what went wrong with a provider call, sorted by what the
//! caller should do about it.
//!
//! Holds no token and no secret: texts that come from a provider are
//! sanitized where they are parsed (`classify`), and [`ProviderError::scrub`]
//! removes the token that was sent, should a provider echo it back.

use std::time::Duration;

/// A failed provider call.
///
/// | variant | meaning | caller |
/// |---|---|---|
/// | `GrantDead` | the provider says this refresh token / grant is no longer valid | reauthorization required; do not retry |
/// | `Transient` | timeout, connection error, HTTP 5xx / 429 / 408, `temporarily_unavailable`, `server_error` | retry later, after `retry_after` if given |
/// | `Misconfigured` | our config is wrong: bad settings, `invalid_client`, `unauthorized_client`, `unsupported_grant_type`, `invalid_request`, HTTP 401/403/404/405 without an OAuth error, a redirect | fix the config; do not retry |
/// | `ScopeRefused` | `invalid_scope`: a scope asked for is beyond the grant (or the `scopes` setting is wrong) | ask for fewer scopes; do not retry |
/// | `Unsupported` | the provider cannot do this (no revocation endpoint, `unsupported_token_type`) | give up on this operation |
/// | `InvalidResponse` | an answer we cannot use (200 without `access_token`, malformed JSON, an unknown error code) | do not retry at once |
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The grant is dead: `invalid_grant` and the codes providers use for a
    /// revoked, expired or unknown refresh token. The account must be
    /// reconnected.
    #[error("the provider rejected the refresh grant: {error}{}", describe(.description))]
    GrantDead {
        /// The OAuth error code, e.g. `invalid_grant`.
        error: String,
        /// The provider's `error_description`, sanitized.
        description: Option<String>,
    },
    /// Worth retrying later.
    #[error("provider temporarily unavailable: {reason}{}", retry_hint(.retry_after))]
    Transient {
        /// What happened, e.g. `HTTP 503` or `timed out after 10 s`.
        reason: String,
        /// How long the provider asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Our configuration is wrong, or the provider refuses our client.
    #[error("provider misconfigured: {0}")]
    Misconfigured(String),
    /// The provider refused the scopes asked for (`invalid_scope`): beyond
    /// what the grant holds, or not a scope it knows.
    #[error("the provider refused the requested scope: {0}")]
    ScopeRefused(String),
    /// The provider does not support the operation.
    #[error("not supported by the provider: {0}")]
    Unsupported(String),
    /// The provider answered something we cannot use.
    #[error("invalid provider response: {0}")]
    InvalidResponse(String),
}

fn describe(description: &Option<String>) -> String {
    match description {
        Some(d) => format!(" ({d})"),
        None => String::new(),
    }
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {} s)", d.as_secs()),
        None => String::new(),
    }
}

impl ProviderError {
    /// A short label for logs and metrics: `grant_dead`, `transient`,
    /// `misconfigured`, `scope_refused`, `unsupported` or `invalid_response`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::GrantDead { .. } => "grant_dead",
            Self::Transient { .. } => "transient",
            Self::Misconfigured(_) => "misconfigured",
            Self::ScopeRefused(_) => "scope_refused",
            Self::Unsupported(_) => "unsupported",
            Self::InvalidResponse(_) => "invalid_response",
        }
    }

    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Whether the account needs to be reauthorized.
    pub fn is_grant_dead(&self) -> bool {
        matches!(self, Self::GrantDead { .. })
    }

    /// The wait the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Replaces every occurrence of `secret` in the error's texts with
    /// `<redacted>`, in case a provider echoed the token back. Secrets shorter
    /// than 8 characters are left alone (they would match ordinary words).
    pub(crate) fn scrub(self, secret: &str) -> Self {
        if secret.len() < 8 {
            return self;
        }
        let clean = |s: String| {
            if s.contains(secret) {
                s.replace(secret, "<redacted>")
            } else {
                s
            }
        };
        match self {
            Self::GrantDead { error, description } => Self::GrantDead {
                error: clean(error),
                description: description.map(clean),
            },
            Self::Transient {
                reason,
                retry_after,
            } => Self::Transient {
                reason: clean(reason),
                retry_after,
            },
            Self::Misconfigured(s) => Self::Misconfigured(clean(s)),
            Self::ScopeRefused(s) => Self::ScopeRefused(clean(s)),
            Self::Unsupported(s) => Self::Unsupported(clean(s)),
            Self::InvalidResponse(s) => Self::InvalidResponse(clean(s)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn display_and_helpers() {
        let dead = ProviderError::GrantDead {
            error: "invalid_grant".into(),
            description: Some("refresh token is expired".into()),
        };
        assert_eq!(
            dead.to_string(),
            "the provider rejected the refresh grant: invalid_grant (refresh token is expired)"
        );
        assert!(dead.is_grant_dead() && !dead.is_transient());
        let t = ProviderError::Transient {
            reason: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            t.to_string(),
            "provider temporarily unavailable: HTTP 503 (retry after 7 s)"
        );
        assert_eq!(t.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(t.kind(), "transient");
    }

    #[test]
    fn scrub_removes_echoed_token() {
        let e = ProviderError::GrantDead {
            error: "invalid_grant".into(),
            description: Some("token rt-0123456789 not found".into()),
        }
        .scrub("rt-0123456789");
        assert_eq!(
            e,
            ProviderError::GrantDead {
                error: "invalid_grant".into(),
                description: Some("token <redacted> not found".into()),
            }
        );
        let short = ProviderError::Misconfigured("a b".into()).scrub("a");
        assert_eq!(short, ProviderError::Misconfigured("a b".into()));
    }
}
