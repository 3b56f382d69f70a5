//! `ListAccounts`: one page of the inventory, in (account, provider) order.
//! Never sees a token: the store's inventory query reads status, times and
//! metadata, never a sealed token.
//!
//! The store filters by provider, status, prefix and change time; the
//! account policy ([`Visibility`]) may hide more rows. Then further store
//! pages are read until the page is full or the store has no more, so that
//! pages stay full; at most [`MAX_READS`] reads per call, after which the
//! page is returned as it is with a token to carry on after the last row
//! read (a short page then does not mean the last one: only an empty
//! `next_page_token` does).

use tokenvault_proto::v1::ListAccountsResponse;
use tokenvault_store::{AccountFilter, AccountSummary, StoreError, TokenReader};

use super::convert;
use super::filter::ListQuery;
use super::page_token::PageToken;
use super::visibility::Visibility;
use crate::error::TokenError;

/// The most store reads one call makes when the policy hides rows.
pub(crate) const MAX_READS: usize = 10;
/// The fewest rows one store read asks for when the policy hides rows.
const MIN_FILTERED_BATCH: u32 = 200;

/// Where inventory rows come from: the store, or a test's rows.
pub(crate) trait Rows {
    /// Up to `limit` rows after `after` that `filter` admits, in order.
    async fn rows(
        &self,
        filter: &AccountFilter,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<AccountSummary>, StoreError>;
}

impl Rows for TokenReader {
    async fn rows(
        &self,
        filter: &AccountFilter,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<AccountSummary>, StoreError> {
        self.list_accounts(filter, after, limit).await
    }
}

/// One page for `query`, showing only what `view` lets the caller see.
pub(crate) async fn page(
    rows: &impl Rows,
    query: &ListQuery,
    view: &Visibility,
) -> Result<ListAccountsResponse, TokenError> {
    let page_size = query.page_size as usize;
    // One row more than the page: a full page followed by another visible
    // row is not the last one.
    let batch = if view.filters() {
        (query.page_size + 1).max(MIN_FILTERED_BATCH)
    } else {
        query.page_size + 1
    };
    let mut cursor = query.after.clone();
    let mut shown: Vec<AccountSummary> = Vec::with_capacity(page_size + 1);
    let mut exhausted = false;
    'reads: for _ in 0..MAX_READS {
        let after = cursor
            .as_ref()
            .map(|t| (t.account.as_str(), t.provider.as_str()));
        let read = rows.rows(&query.filter, after, batch).await?;
        exhausted = read.len() < batch as usize;
        for row in read {
            cursor = Some(PageToken::after(&row.account, &row.provider));
            if view.shows(&row.account, &row.provider) {
                shown.push(row);
                if shown.len() > page_size {
                    break 'reads;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    let next_page_token = if shown.len() > page_size {
        shown.truncate(page_size);
        shown
            .last()
            .map(|last| PageToken::after(&last.account, &last.provider).encode())
            .unwrap_or_default()
    } else if exhausted {
        String::new()
    } else {
        // The read budget ran out: carry on after the last row read.
        cursor.map(|t| t.encode()).unwrap_or_default()
    };
    Ok(ListAccountsResponse {
        accounts: shown.into_iter().map(convert::summary).collect(),
        next_page_token,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokenvault_store::TokenStatus;

    use super::*;
    use crate::policy::Policy;

    /// Rows in memory, filtered by provider and prefix like the store; counts reads.
    struct Fake {
        rows: Vec<AccountSummary>,
        reads: AtomicUsize,
    }

    impl Fake {
        fn new(keys: impl IntoIterator<Item = (String, &'static str)>) -> Self {
            let mut rows: Vec<AccountSummary> = keys
                .into_iter()
                .map(|(account, provider)| AccountSummary {
                    account,
                    provider: provider.to_owned(),
                    status: TokenStatus::Active,
                    reason: String::new(),
                    connected_at_unix: 1,
                    updated_at_unix: 1,
                    token_stored_at_unix: 1,
                    refresh_token_expires_at_unix: 0,
                    metadata: None,
                    failed_event_deliveries: 0,
                })
                .collect();
            rows.sort_by(|a, b| (&a.account, &a.provider).cmp(&(&b.account, &b.provider)));
            Self {
                rows,
                reads: AtomicUsize::new(0),
            }
        }
    }

    impl Rows for Fake {
        async fn rows(
            &self,
            filter: &AccountFilter,
            after: Option<(&str, &str)>,
            limit: u32,
        ) -> Result<Vec<AccountSummary>, StoreError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Ok(self
                .rows
                .iter()
                .filter(|r| after.is_none_or(|a| (r.account.as_str(), r.provider.as_str()) > a))
                .filter(|r| filter.provider.as_ref().is_none_or(|p| *p == r.provider))
                .filter(|r| r.account.starts_with(&filter.account_prefix))
                .take(limit as usize)
                .cloned()
                .collect())
        }
    }

    fn query(page_size: u32, after: Option<PageToken>) -> ListQuery {
        ListQuery {
            filter: AccountFilter::default(),
            page_size,
            after,
        }
    }

    /// Every (account, provider) through all pages, and how many pages.
    async fn all(rows: &Fake, page_size: u32, view: &Visibility) -> (Vec<String>, usize) {
        let (mut seen, mut pages, mut after) = (Vec::new(), 0, None);
        loop {
            let page = page(rows, &query(page_size, after), view).await.unwrap();
            pages += 1;
            seen.extend(
                page.accounts
                    .iter()
                    .map(|a| format!("{}@{}", a.account, a.provider)),
            );
            if page.next_page_token.is_empty() {
                return (seen, pages);
            }
            after = PageToken::decode(&page.next_page_token).unwrap();
        }
    }

    fn numbered(prefix: &str, n: usize, provider: &'static str) -> Vec<(String, &'static str)> {
        (0..n)
            .map(|i| (format!("{prefix}{i:05}"), provider))
            .collect()
    }

    #[tokio::test]
    async fn pages_cover_every_row_once_and_the_last_has_no_token() {
        let rows = Fake::new(numbered("a:", 250, "google"));
        let (seen, pages) = all(&rows, 100, &Visibility::Open).await;
        assert_eq!(seen.len(), 250);
        assert_eq!(pages, 3);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, seen);
        // Exactly a page's worth: one page, no empty page after it.
        let rows = Fake::new(numbered("a:", 100, "google"));
        assert_eq!(all(&rows, 100, &Visibility::Open).await.1, 1);
        let empty = Fake::new([]);
        let page = page(&empty, &query(10, None), &Visibility::Open)
            .await
            .unwrap();
        assert!(page.accounts.is_empty() && page.next_page_token.is_empty());
    }

    fn ops_policy() -> Arc<Policy> {
        Arc::new(
            Policy::parse(
                r#"
[[rules]]
name = "ops"
callers = ["admin/ops"]
accounts = ["acme:*"]
providers = ["google"]
"#,
                "td",
                &["google", "github"],
            )
            .unwrap(),
        )
    }

    fn ops() -> Visibility {
        let caller = "spiffe://td/admin/ops".parse().unwrap();
        Visibility::of(&ops_policy(), Some(&caller))
    }

    #[tokio::test]
    async fn the_policy_hides_rows_and_pages_stay_full() {
        // acme:* at google is visible; interleaved github rows and other tenants are not.
        let mut keys = numbered("acme:", 300, "google");
        keys.extend(numbered("acme:", 300, "github"));
        keys.extend(numbered("globex:", 500, "google"));
        let rows = Fake::new(keys);
        let first = page(&rows, &query(100, None), &ops()).await.unwrap();
        assert_eq!(first.accounts.len(), 100);
        assert!(
            first
                .accounts
                .iter()
                .all(|a| a.account.starts_with("acme:") && a.provider == "google")
        );
        let (seen, _) = all(&rows, 100, &ops()).await;
        assert_eq!(seen.len(), 300);
        assert!(
            seen.iter()
                .all(|s| s.ends_with("@google") && s.starts_with("acme:"))
        );
        // An admin no rule names sees all of it.
        let audit = "spiffe://td/admin/audit".parse().unwrap();
        let unnamed = Visibility::of(&ops_policy(), Some(&audit));
        assert_eq!(all(&rows, 1000, &unnamed).await.0.len(), 1100);
    }

    #[tokio::test]
    async fn reads_are_bounded_and_the_token_carries_on_after_the_last_row_read() {
        // 5000 hidden rows before the first visible one.
        let mut keys = numbered("aaa:", 5000, "google");
        keys.extend(numbered("acme:", 3, "google"));
        let rows = Fake::new(keys);
        let first = page(&rows, &query(10, None), &ops()).await.unwrap();
        assert_eq!(rows.reads.load(Ordering::Relaxed), MAX_READS);
        assert!(first.accounts.is_empty());
        assert!(!first.next_page_token.is_empty(), "not the last page");
        let after = PageToken::decode(&first.next_page_token).unwrap().unwrap();
        assert_eq!(
            after.account,
            format!("aaa:{:05}", MAX_READS * MIN_FILTERED_BATCH as usize - 1)
        );
        let (seen, _) = all(&rows, 10, &ops()).await;
        assert_eq!(
            seen,
            [
                "acme:00000@google",
                "acme:00001@google",
                "acme:00002@google"
            ]
        );
    }

    #[tokio::test]
    async fn store_filters_apply_before_the_policy() {
        let mut keys = numbered("acme:", 50, "google");
        keys.extend(numbered("acme:x", 50, "google"));
        let rows = Fake::new(keys);
        let q = ListQuery {
            filter: AccountFilter {
                account_prefix: "acme:x".into(),
                ..AccountFilter::default()
            },
            page_size: 1000,
            after: None,
        };
        let page = page(&rows, &q, &ops()).await.unwrap();
        assert_eq!(page.accounts.len(), 50);
        assert!(page.next_page_token.is_empty());
    }
}
