//! Hand-written `Debug` for the messages that carry a token, so that `{:?}`
//! never prints one: the token field shows its length only.

use std::fmt;

use crate::v1::{
    GetAccessTokenResponse, ResealRefreshTokenRequest, ShareAccessTokenRequest,
    StoreRefreshTokenRequest,
};

/// Shows `<redacted, N bytes>` in place of a secret.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0)
    }
}

impl fmt::Debug for StoreRefreshTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreRefreshTokenRequest")
            .field("account", &self.account)
            .field("provider", &self.provider)
            .field("sealed_token", &Redacted(self.sealed_token.len()))
            .field("expected_version", &self.expected_version)
            .field("metadata_json", &self.metadata_json)
            .finish()
    }
}

impl fmt::Debug for ResealRefreshTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResealRefreshTokenRequest")
            .field("account", &self.account)
            .field("provider", &self.provider)
            .field("token_version", &self.token_version)
            .field("previous_kid", &self.previous_kid)
            .field("sealed_token", &Redacted(self.sealed_token.len()))
            .finish()
    }
}

impl fmt::Debug for ShareAccessTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareAccessTokenRequest")
            .field("account", &self.account)
            .field("provider", &self.provider)
            .field("token_version", &self.token_version)
            .field(
                "sealed_access_token",
                &Redacted(self.sealed_access_token.len()),
            )
            .field("expires_at_unix", &self.expires_at_unix)
            .field("lifetime_seconds", &self.lifetime_seconds)
            .field("token_type", &self.token_type)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl fmt::Debug for GetAccessTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetAccessTokenResponse")
            .field("access_token", &Redacted(self.access_token.len()))
            .field("token_type", &self.token_type)
            .field("expires_at_unix", &self.expires_at_unix)
            .field("scopes", &self.scopes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_tokens() {
        let req = StoreRefreshTokenRequest {
            expected_version: None,
            account: "a".into(),
            provider: "p".into(),
            sealed_token: "SECRET-SEALED".into(),
            metadata_json: String::new(),
            refresh_token_expires_at_unix: 0,
        };
        let resp = GetAccessTokenResponse {
            access_token: "SECRET-ACCESS".into(),
            token_type: "Bearer".into(),
            expires_at_unix: 1,
            scopes: vec![],
        };
        let shown = format!("{req:?} {resp:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("<redacted, 13 bytes>"));
    }
}
