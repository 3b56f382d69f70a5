//! The checks of `ListAccounts` and `WatchAccountEvents` requests, before
//! anything is read: page size, filters, page token and cursor. Never sees
//! a token: requests carry account ids and provider names only.

use tokenvault_proto::ids::{MAX_ACCOUNT_LEN, check_provider};
use tokenvault_proto::v1::{AccountStatus, ListAccountsRequest, WatchAccountEventsRequest};
use tokenvault_store::AccountFilter;

use super::convert;
use super::page_token::PageToken;
use crate::error::TokenError;

/// A page's size when the request names none.
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest page a request may ask for.
pub(crate) const MAX_PAGE_SIZE: u32 = 1000;

/// A checked `ListAccounts` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListQuery {
    /// What the store filters by.
    pub(crate) filter: AccountFilter,
    /// At most this many accounts (1 to [`MAX_PAGE_SIZE`]).
    pub(crate) page_size: u32,
    /// Where the previous page ended.
    pub(crate) after: Option<PageToken>,
}

/// A checked `WatchAccountEventsRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchQuery {
    /// Events after this cursor.
    pub(crate) after: i64,
    /// Only this provider.
    pub(crate) provider: Option<String>,
    /// Only accounts that start with this.
    pub(crate) account_prefix: String,
}

impl WatchQuery {
    /// Whether the request's filters admit an event of (`account`, `provider`).
    pub(crate) fn admits(&self, account: &str, provider: &str) -> bool {
        account.starts_with(&self.account_prefix)
            && self.provider.as_deref().is_none_or(|p| p == provider)
    }
}

/// Checks a `ListAccounts` request; `known` tells configured providers.
pub(crate) fn list_query(
    req: &ListAccountsRequest,
    known: impl Fn(&str) -> bool,
) -> Result<ListQuery, TokenError> {
    let page_size = match req.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n > MAX_PAGE_SIZE => {
            return Err(invalid(format!(
                "page_size: at most {MAX_PAGE_SIZE} (0 for {DEFAULT_PAGE_SIZE})"
            )));
        }
        n => n,
    };
    let status = AccountStatus::try_from(req.status)
        .map_err(|_| invalid(format!("status: {} is not an AccountStatus", req.status)))?;
    if req.changed_since_unix < 0 {
        return Err(invalid(
            "changed_since_unix: seconds since the Unix epoch, 0 or more".into(),
        ));
    }
    Ok(ListQuery {
        filter: AccountFilter {
            provider: provider(&req.provider, &known)?,
            status: convert::stored_status(status),
            account_prefix: account_prefix(&req.account_prefix)?,
            changed_since_unix: req.changed_since_unix,
        },
        page_size,
        after: PageToken::decode(&req.page_token)?,
    })
}

/// Checks a `WatchAccountEvents` request; `known` tells configured providers.
pub(crate) fn watch_query(
    req: &WatchAccountEventsRequest,
    known: impl Fn(&str) -> bool,
) -> Result<WatchQuery, TokenError> {
    let after = i64::try_from(req.after_cursor)
        .map_err(|_| invalid("after_cursor: no event has a cursor that large".into()))?;
    Ok(WatchQuery {
        after,
        provider: provider(&req.provider, &known)?,
        account_prefix: account_prefix(&req.account_prefix)?,
    })
}

/// An optional provider filter: a configured provider's name.
fn provider(provider: &str, known: impl Fn(&str) -> bool) -> Result<Option<String>, TokenError> {
    if provider.is_empty() {
        return Ok(None);
    }
    check_provider(provider).map_err(|m| invalid(m.into()))?;
    if !known(provider) {
        return Err(invalid(format!(
            "provider: {provider:?} is not a configured provider"
        )));
    }
    Ok(Some(provider.to_owned()))
}

/// An account prefix: the start of an account id (possibly empty).
fn account_prefix(prefix: &str) -> Result<String, TokenError> {
    let ok = prefix.len() <= MAX_ACCOUNT_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
    if !ok {
        return Err(invalid(format!(
            "account_prefix: at most {MAX_ACCOUNT_LEN} characters of A-Z, a-z, 0-9, '.', '_', \
             ':', '@', '-'"
        )));
    }
    Ok(prefix.to_owned())
}

fn invalid(message: String) -> TokenError {
    TokenError::InvalidArgument(message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use tokenvault_store::TokenStatus;

    use super::*;

    fn known(p: &str) -> bool {
        ["google", "oidc"].contains(&p)
    }

    fn message(e: TokenError) -> String {
        match e {
            TokenError::InvalidArgument(m) => m,
            other => panic!("not INVALID_ARGUMENT: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_filters() {
        let q = list_query(&ListAccountsRequest::default(), known).unwrap();
        assert_eq!(q.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(q.filter, AccountFilter::default());
        assert_eq!(q.after, None);
        let q = list_query(
            &ListAccountsRequest {
                provider: "google".into(),
                status: AccountStatus::ReauthorizationRequired as i32,
                account_prefix: "acme:".into(),
                changed_since_unix: 1_700_000_000,
                page_size: MAX_PAGE_SIZE,
                page_token: PageToken::after("acme:9", "google").encode(),
            },
            known,
        )
        .unwrap();
        assert_eq!(q.page_size, MAX_PAGE_SIZE);
        assert_eq!(
            q.filter,
            AccountFilter {
                provider: Some("google".into()),
                status: Some(TokenStatus::ReauthorizationRequired),
                account_prefix: "acme:".into(),
                changed_since_unix: 1_700_000_000,
            }
        );
        assert_eq!(q.after, Some(PageToken::after("acme:9", "google")));
    }

    #[test]
    fn malformed_requests_say_which_field() {
        let cases = [
            (
                ListAccountsRequest {
                    page_size: MAX_PAGE_SIZE + 1,
                    ..Default::default()
                },
                "page_size",
            ),
            (
                ListAccountsRequest {
                    provider: "Google".into(),
                    ..Default::default()
                },
                "provider",
            ),
            (
                ListAccountsRequest {
                    provider: "github".into(),
                    ..Default::default()
                },
                "not a configured provider",
            ),
            (
                ListAccountsRequest {
                    status: 99,
                    ..Default::default()
                },
                "status",
            ),
            (
                ListAccountsRequest {
                    account_prefix: "acme/".into(),
                    ..Default::default()
                },
                "account_prefix",
            ),
            (
                ListAccountsRequest {
                    account_prefix: "a".repeat(MAX_ACCOUNT_LEN + 1),
                    ..Default::default()
                },
                "account_prefix",
            ),
            (
                ListAccountsRequest {
                    changed_since_unix: -1,
                    ..Default::default()
                },
                "changed_since_unix",
            ),
            (
                ListAccountsRequest {
                    page_token: "%%%".into(),
                    ..Default::default()
                },
                "page_token",
            ),
        ];
        for (req, want) in cases {
            let m = message(list_query(&req, known).unwrap_err());
            assert!(m.contains(want), "want {want:?} in {m}");
        }
    }

    #[test]
    fn watch_filters() {
        let q = watch_query(
            &WatchAccountEventsRequest {
                after_cursor: 7,
                provider: "oidc".into(),
                account_prefix: "acme:".into(),
            },
            known,
        )
        .unwrap();
        assert_eq!(q.after, 7);
        assert!(q.admits("acme:1", "oidc"));
        assert!(!q.admits("acme:1", "google"));
        assert!(!q.admits("globex:1", "oidc"));
        let all = watch_query(&WatchAccountEventsRequest::default(), known).unwrap();
        assert!(all.admits("anyone", "any-provider"));
        for (req, want) in [
            (
                WatchAccountEventsRequest {
                    after_cursor: u64::MAX,
                    ..Default::default()
                },
                "after_cursor",
            ),
            (
                WatchAccountEventsRequest {
                    provider: "nope".into(),
                    ..Default::default()
                },
                "provider",
            ),
            (
                WatchAccountEventsRequest {
                    account_prefix: "a b".into(),
                    ..Default::default()
                },
                "account_prefix",
            ),
        ] {
            let m = message(watch_query(&req, known).unwrap_err());
            assert!(m.contains(want), "want {want:?} in {m}");
        }
    }
}
