//! The OAuth 2.0 provider client: trades a refresh token for an access token
//! (refresh grant), revokes a refresh token (RFC 7009), and sorts every
//! failure into what the caller should do about it ([`ProviderError`]).
//! get-service uses it for every call to a provider; the web-frontend shares
//! its [`checks`] of provider settings.
//!
//! - [`ProviderConfig`] is one `[[providers]]` entry of get-service's config;
//!   [`Provider::new`] checks it and, for an `issuer`, runs OIDC discovery.
//! - [`Provider::refresh`] makes one attempt; [`Provider::refresh_with_retry`]
//!   retries transient failures with backoff until a deadline.
//! - [`Provider::client_credentials`] gets the application's own token with
//!   the client-credentials grant, for a client configured for it.
//! - [`Provider::revoke`] revokes a refresh token where the provider can.
//! - [`RefreshMetrics`] counts refresh-grant calls and failures by reason.
//! - [`RefreshSettings`] reads a provider-catalogue entry into a
//!   [`ProviderConfig`] (`provider = "slack"`); [`shape`] brings nested or
//!   renamed token answers into the standard shape.
//! - [`fuzzing`] runs the answer parsers on plain bytes, for `fuzz/`.
//!
//! This module holds the provider's client secret (for the life of the
//! [`Provider`]) and a plaintext refresh or access token only for the length
//! of one call; the tokens it returns are in [`Secret`]s, wiped on drop and
//! printed as `<redacted>`. Errors and trace events (target
//! `tokenvault::provider`) never contain a token or a secret: provider-supplied
//! error texts are sanitized and scrubbed of the token that was sent. Buffers
//! inside reqwest, hyper and oauth2 (request and response bodies) are outside
//! our control and are not wiped.
#![forbid(unsafe_code)]

mod catalogue;
pub mod checks;
mod classify;
mod client;
mod client_credentials;
mod config;
mod discovery;
mod error;
pub mod fuzzing;
mod metrics;
mod retry;
mod retry_after;
mod revoke;
pub mod shape;
mod token_body;
mod transport;

pub use catalogue::RefreshSettings;
pub use client::{Provider, http_client};
pub use config::{ClientAuth, ProviderConfig};
pub use discovery::Endpoints;
pub use error::ProviderError;
pub use metrics::{ProviderLabel, RefreshMetrics};
pub use tokenvault_runtime::secret::Secret;

/// Target of this module's trace events.
pub(crate) const TRACE_TARGET: &str = "tokenvault::provider";

/// The result of a successful refresh grant.
#[derive(Clone, Debug)]
pub struct Refreshed {
    /// The new access token.
    pub access_token: Secret,
    /// Its type as the provider named it, usually `Bearer` (`Bearer` if the
    /// provider left it out).
    pub token_type: String,
    /// When it expires, in Unix seconds: the time the request was sent plus
    /// `expires_in`, or plus the provider's `default_lifetime_secs` when the
    /// response has no `expires_in`.
    pub expires_at_unix: i64,
    /// The scopes the provider says the token has; if the response names
    /// none, the scopes requested (`scopes` in the config), which may be empty
    /// (meaning "not stated").
    pub scopes: Vec<String>,
    /// A new refresh token, if the provider rotated it (returned one that
    /// differs from the one sent). The caller must store it: the old one may
    /// already be dead.
    pub refresh_token: Option<Secret>,
    /// When the provider said the refresh token (the new one, or the one
    /// sent) expires, in Unix seconds: the time the request was sent plus
    /// `refresh_token_expires_in`, if the response had that.
    pub refresh_token_expires_at_unix: Option<i64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn comma_scopes_are_split_and_a_blank_answer_keeps_those_asked() {
        use crate::config::ScopeSeparator;
        let asked = vec!["a".to_owned()];
        let body = |json: &str| serde_json::from_str::<token_body::TokenBody>(json).unwrap();
        let split = client::refreshed(
            body(r#"{"access_token":"t","scope":"x,y, z"}"#),
            &asked,
            ScopeSeparator::Comma,
            "sent",
            0,
            std::time::Duration::from_secs(1),
        );
        assert_eq!(split.scopes, ["x", "y", "z"]);
        let blank = client::refreshed(
            body(r#"{"access_token":"t","scope":","}"#),
            &asked,
            ScopeSeparator::Comma,
            "sent",
            0,
            std::time::Duration::from_secs(1),
        );
        assert_eq!(blank.scopes, asked);
    }

    #[test]
    fn refreshed_debug_is_redacted() {
        let r = Refreshed {
            access_token: Secret::new("at-123456789".into()),
            token_type: "Bearer".into(),
            expires_at_unix: 1,
            scopes: vec![],
            refresh_token: Some(Secret::new("rt-123456789".into())),
            refresh_token_expires_at_unix: None,
        };
        let printed = format!("{r:?}");
        assert!(!printed.contains("at-123456789"));
        assert!(!printed.contains("rt-123456789"));
    }
}
