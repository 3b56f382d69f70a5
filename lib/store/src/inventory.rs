//! The inventory (get-service's `ListAccounts` and `WatchAccountEvents`): every account's status,
//! times and metadata, and the account events by cursor. Reads non-secret columns only; never a
//! sealed token.

use crate::db::{Sql, check_key, on_db};
use crate::events::{AccountEvent, EVENTS_AFTER, EventRow, parse_events, parse_status};
use crate::types::TokenStatus;
use crate::{Result, StoreError, TokenReader};

/// Which accounts [`TokenReader::list_accounts`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Only this provider.
    pub provider: Option<String>,
    /// Only accounts in this status.
    pub status: Option<TokenStatus>,
    /// Only accounts whose id starts with this.
    pub account_prefix: String,
    /// Only accounts whose status changed at or after this time (seconds since the Unix epoch).
    pub changed_since_unix: i64,
}

/// One (account, provider) of the inventory: no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// The account.
    pub account: String,
    /// The provider.
    pub provider: String,
    /// Its newest status.
    pub status: TokenStatus,
    /// That status's reason.
    pub reason: String,
    /// When it was last connected, reconnected or recovered (0 before events were recorded).
    pub connected_at_unix: i64,
    /// When the status was recorded.
    pub updated_at_unix: i64,
    /// When the newest refresh token was stored (a connect or a rotation).
    pub token_stored_at_unix: i64,
    /// When the provider said the newest refresh token expires (0: it did not say).
    pub refresh_token_expires_at_unix: i64,
    /// The newest metadata, a JSON object.
    pub metadata: Option<String>,
    /// Webhook deliveries of its events that gave up.
    pub failed_event_deliveries: i64,
}

/// The newest status row of each key after (`$1`, `$2`) in (account, provider) order, filtered,
/// with its times, metadata and failed deliveries; at most `$7`.
/// `$3` provider ('' for all), `$4` account prefix, `$5` status ('' for all), `$6` changed since.
const LIST_ACCOUNTS: Sql = Sql {
    postgres: "SELECT s.account, s.provider, s.status, s.reason, \
        COALESCE((SELECT CAST(EXTRACT(EPOCH FROM e.created_at) AS bigint) FROM account_events e \
                   WHERE e.account = s.account AND e.provider = s.provider \
                     AND e.kind IN ('connected', 'reconnected', 'recovered') \
                   ORDER BY e.id DESC LIMIT 1), 0), \
        CAST(EXTRACT(EPOCH FROM s.created_at) AS bigint), \
        COALESCE((SELECT CAST(EXTRACT(EPOCH FROM t.created_at) AS bigint) FROM token_events t \
                   WHERE t.account = s.account AND t.provider = s.provider AND t.kind = 'token' \
                   ORDER BY t.id DESC LIMIT 1), 0), \
        COALESCE((SELECT x.expires_at FROM token_expiries x \
                   WHERE x.token_id = (SELECT t.id FROM token_events t \
                     WHERE t.account = s.account AND t.provider = s.provider \
                     ORDER BY t.id DESC LIMIT 1)), 0), \
        (SELECT m.metadata FROM account_metadata m \
          WHERE m.account = s.account AND m.provider = s.provider ORDER BY m.id DESC LIMIT 1), \
        (SELECT COUNT(*) FROM account_event_deliveries d JOIN account_events e ON e.id = d.event_id \
          WHERE e.account = s.account AND e.provider = s.provider AND d.outcome = 'failed') \
      FROM (SELECT account, provider, MAX(id) AS id FROM token_status \
             WHERE (account, provider) > ($1, $2) \
               AND ($3 = '' OR provider = $3) \
               AND starts_with(account, $4) \
             GROUP BY account, provider) k \
      JOIN token_status s ON s.id = k.id \
     WHERE ($5 = '' OR s.status = $5) AND s.created_at >= to_timestamp($6) \
     ORDER BY s.account, s.provider LIMIT $7",
    sqlite: "SELECT s.account, s.provider, s.status, s.reason, \
        COALESCE((SELECT e.created_at FROM account_events e \
                   WHERE e.account = s.account AND e.provider = s.provider \
                     AND e.kind IN ('connected', 'reconnected', 'recovered') \
                   ORDER BY e.id DESC LIMIT 1), 0), \
        s.created_at, \
        COALESCE((SELECT t.created_at FROM token_events t \
                   WHERE t.account = s.account AND t.provider = s.provider AND t.kind = 'token' \
                   ORDER BY t.id DESC LIMIT 1), 0), \
        COALESCE((SELECT x.expires_at FROM token_expiries x \
                   WHERE x.token_id = (SELECT t.id FROM token_events t \
                     WHERE t.account = s.account AND t.provider = s.provider \
                     ORDER BY t.id DESC LIMIT 1)), 0), \
        (SELECT m.metadata FROM account_metadata m \
          WHERE m.account = s.account AND m.provider = s.provider ORDER BY m.id DESC LIMIT 1), \
        (SELECT COUNT(*) FROM account_event_deliveries d JOIN account_events e ON e.id = d.event_id \
          WHERE e.account = s.account AND e.provider = s.provider AND d.outcome = 'failed') \
      FROM (SELECT account, provider, MAX(id) AS id FROM token_status \
             WHERE (account, provider) > ($1, $2) \
               AND ($3 = '' OR provider = $3) \
               AND substr(account, 1, length($4)) = $4 \
             GROUP BY account, provider) k \
      JOIN token_status s ON s.id = k.id \
     WHERE ($5 = '' OR s.status = $5) AND s.created_at >= $6 \
     ORDER BY s.account, s.provider LIMIT $7",
};

type SummaryRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<String>,
    i64,
);

impl TokenReader {
    /// Up to `limit` accounts after `after` (an (account, provider) from the previous page; `None`
    /// for the first), in (account, provider) order, that `filter` admits. A page shorter than
    /// `limit` is the last.
    pub async fn list_accounts(
        &self,
        filter: &AccountFilter,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<AccountSummary>> {
        if let Some((account, provider)) = after {
            check_key(account, provider)?;
        }
        if filter.account_prefix.chars().any(char::is_control) {
            return Err(StoreError::Invalid(
                "account prefix contains control characters".to_owned(),
            ));
        }
        let (after_account, after_provider) = after.unwrap_or(("", ""));
        let status = filter.status.map(TokenStatus::as_str).unwrap_or("");
        let rows: Vec<SummaryRow> = on_db!(&self.db, LIST_ACCOUNTS, |pool, q| {
            sqlx::query_as(q)
                .bind(after_account)
                .bind(after_provider)
                .bind(filter.provider.as_deref().unwrap_or(""))
                .bind(&filter.account_prefix)
                .bind(status)
                .bind(filter.changed_since_unix)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|row| {
                let (
                    account,
                    provider,
                    status,
                    reason,
                    connected,
                    updated,
                    stored,
                    expires,
                    meta,
                    failed,
                ) = row;
                Ok(AccountSummary {
                    account,
                    provider,
                    status: parse_status(Some(status))?.unwrap_or(TokenStatus::Active),
                    reason,
                    connected_at_unix: connected,
                    updated_at_unix: updated,
                    token_stored_at_unix: stored,
                    refresh_token_expires_at_unix: expires,
                    metadata: meta,
                    failed_event_deliveries: failed,
                })
            })
            .collect()
    }

    /// Up to `limit` account events with a cursor above `after`, oldest first. Cursors become
    /// visible in commit order, so paging with the last cursor seen misses nothing.
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<AccountEvent>> {
        events_after(&self.db, after, limit).await
    }
}

/// [`TokenReader::events_after`], for either handle.
pub(crate) async fn events_after(
    db: &crate::db::Db,
    after: i64,
    limit: u32,
) -> Result<Vec<AccountEvent>> {
    let rows: Vec<EventRow> = on_db!(db, EVENTS_AFTER, |pool, q| {
        sqlx::query_as(q)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
    });
    parse_events(rows)
}
