//! Refresh-token expiry warnings (set-service's expiry watch): for each account whose newest
//! refresh token the provider said expires before a given time, one `expiring` account event per
//! token, in the same transaction-and-lock discipline as every other event. Reads and writes
//! non-secret columns only; never a token.

use crate::db::{Sql, on_db};
use crate::events::begin_on_key;
use crate::{Result, TokenWriter};

/// Newest tokens of active accounts that expire before `$1` and have no `expiring` event yet,
/// soonest first, at most `$2`.
const DUE: Sql = Sql::both(
    "SELECT x.account, x.provider, x.token_id, x.expires_at FROM token_expiries x \
     WHERE x.expires_at <= $1 \
       AND x.token_id = (SELECT MAX(t.id) FROM token_events t \
                          WHERE t.account = x.account AND t.provider = x.provider) \
       AND NOT EXISTS (SELECT 1 FROM account_events e \
                        WHERE e.token_id = x.token_id AND e.kind = 'expiring') \
     ORDER BY x.expires_at LIMIT $2",
);

/// Appends the `expiring` event of token `$3` while it is still the key's newest row and the
/// account is active; `$4` is the reason.
const INSERT_EXPIRING: Sql = Sql::both(
    "INSERT INTO account_events (account, provider, kind, status, reason, metadata, token_id) \
     SELECT $1, $2, 'expiring', s.status, $4, \
            (SELECT m.metadata FROM account_metadata m \
              WHERE m.account = $1 AND m.provider = $2 ORDER BY m.id DESC LIMIT 1), $3 \
       FROM token_status s \
      WHERE s.account = $1 AND s.provider = $2 AND s.status = 'active' \
        AND s.id = (SELECT MAX(id) FROM token_status WHERE account = $1 AND provider = $2) \
        AND $3 = (SELECT MAX(t.id) FROM token_events t WHERE t.account = $1 AND t.provider = $2) \
     ON CONFLICT DO NOTHING",
);

impl TokenWriter {
    /// Appends an `expiring` event for every active account whose newest refresh token expires
    /// at or before `before_unix` and has none yet (at most `limit` per call); returns how many.
    /// Safe to run from several set-service replicas at once: one event per token, whoever
    /// wins.
    pub async fn record_expiring(&self, before_unix: i64, limit: u32) -> Result<u32> {
        let due: Vec<(String, String, i64, i64)> = on_db!(&self.db, DUE, |pool, q| {
            sqlx::query_as(q)
                .bind(before_unix)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        let mut recorded = 0;
        for (account, provider, token_id, expires_at) in due {
            let reason = format!(
                "the refresh token expires at {}",
                tokenvault_unix_time::rfc3339_or_number(expires_at)
            );
            let inserted = on_db!(&self.db, INSERT_EXPIRING, |pool, q, pick| {
                let mut tx = begin_on_key!(pool, pick, &account, &provider);
                let inserted = sqlx::query(q)
                    .bind(&account)
                    .bind(&provider)
                    .bind(token_id)
                    .bind(&reason)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                inserted
            });
            if inserted == 1 {
                tracing::info!(%account, %provider, token_id, expires_at, "refresh token expiring soon");
                recorded += 1;
            }
        }
        Ok(recorded)
    }
}
