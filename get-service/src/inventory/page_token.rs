//! `ListAccounts` page tokens. Never sees a token, sealed or not: a page
//! token names the (account, provider) a page ended with, nothing more.
//!
//! A page token is opaque to callers: base64url (no padding) of
//! `<account>\n<provider>`. The next page starts after that pair in
//! (account, provider) order, so a token stays valid however the inventory
//! changes meanwhile (keyset paging). A token that does not decode to a
//! well-formed account and provider is `INVALID_ARGUMENT`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokenvault_proto::ids::{MAX_ACCOUNT_LEN, MAX_PROVIDER_LEN, check_account, check_provider};

use crate::error::TokenError;

/// The longest page token this service makes.
const MAX_LEN: usize = (MAX_ACCOUNT_LEN + 1 + MAX_PROVIDER_LEN).div_ceil(3) * 4;

/// Where a page ends: the next one starts after this (account, provider).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageToken {
    /// The page's last account.
    pub(crate) account: String,
    /// Its provider.
    pub(crate) provider: String,
}

impl PageToken {
    /// The token after (`account`, `provider`).
    pub(crate) fn after(account: &str, provider: &str) -> Self {
        Self {
            account: account.to_owned(),
            provider: provider.to_owned(),
        }
    }

    /// The text handed to the caller.
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}\n{}", self.account, self.provider))
    }

    /// Reads a caller's `page_token`; empty is the first page (`None`).
    pub(crate) fn decode(text: &str) -> Result<Option<Self>, TokenError> {
        if text.is_empty() {
            return Ok(None);
        }
        let malformed = || {
            TokenError::InvalidArgument(
                "page_token: not a next_page_token from ListAccounts; pass it back unchanged, or \
                 leave it empty for the first page"
                    .into(),
            )
        };
        if text.len() > MAX_LEN {
            return Err(malformed());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| malformed())?;
        let decoded = String::from_utf8(bytes).map_err(|_| malformed())?;
        let (account, provider) = decoded.split_once('\n').ok_or_else(malformed)?;
        check_account(account).map_err(|_| malformed())?;
        check_provider(provider).map_err(|_| malformed())?;
        Ok(Some(Self::after(account, provider)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (account, provider) in [
            ("acme:1", "google"),
            ("user@example.com", "oidc"),
            (
                &*"a".repeat(MAX_ACCOUNT_LEN),
                &*"p".repeat(MAX_PROVIDER_LEN),
            ),
        ] {
            let token = PageToken::after(account, provider);
            let text = token.encode();
            assert!(text.len() <= MAX_LEN, "{}", text.len());
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text}"
            );
            assert_eq!(PageToken::decode(&text).unwrap(), Some(token));
        }
        assert_eq!(PageToken::decode("").unwrap(), None);
    }

    #[test]
    fn malformed_tokens_are_invalid_arguments() {
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        for bad in [
            "not base64!".to_owned(),
            "YWNtZToxCmdvb2dsZQ==".to_owned(), // padded
            b64("acme:1"),                     // no provider
            b64("acme:1\ngoogle\nextra"),      // a newline in the provider
            b64("acme 1\ngoogle"),             // not an account id
            b64("acme:1\nGoogle"),             // not a provider name
            b64("\ngoogle"),
            b64("acme:1\n"),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, b'\n', b'g']),
            "A".repeat(MAX_LEN + 4),
        ] {
            let e = PageToken::decode(&bad).unwrap_err();
            assert!(
                matches!(&e, TokenError::InvalidArgument(m) if m.starts_with("page_token:")),
                "{bad}: {e:?}"
            );
            let status: tonic::Status = e.into();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
    }
}
