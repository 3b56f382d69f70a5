//! The read side (get-service): the newest sealed token version and the status of an
//! (account, provider). Returns sealed tokens only (opening them is `tokenvault-seal`'s job);
//! never writes. On PostgreSQL it connects as `tokenvault_reader` in read-only sessions; on SQLite
//! it opens the file read-only.

use crate::db::{self, Db, Role, Sql, check_key, check_kid, on_db};
use crate::types::{
    Latest, PendingRevocation, SealedRow, SharedAccessToken, StatusRecord, TokenStatus,
};
use crate::{Result, StoreError};

const LATEST: Sql = Sql::both(
    "SELECT id, kind, sealed_token, kid FROM token_events \
     WHERE account = $1 AND provider = $2 ORDER BY id DESC LIMIT 1",
);

/// The newest status row, and the kind of the newest token event (to let a tombstone win over a
/// status row recorded concurrently with the disconnect).
const STATUS: Sql = Sql {
    postgres: "SELECT s.status, s.reason, CAST(EXTRACT(EPOCH FROM s.created_at) AS bigint), \
               (SELECT e.kind FROM token_events e \
                 WHERE e.account = s.account AND e.provider = s.provider \
                 ORDER BY e.id DESC LIMIT 1) \
               FROM token_status s WHERE s.account = $1 AND s.provider = $2 \
               ORDER BY s.id DESC LIMIT 1",
    sqlite: "SELECT s.status, s.reason, s.created_at, \
             (SELECT e.kind FROM token_events e \
               WHERE e.account = s.account AND e.provider = s.provider \
               ORDER BY e.id DESC LIMIT 1) \
             FROM token_status s WHERE s.account = $1 AND s.provider = $2 \
             ORDER BY s.id DESC LIMIT 1",
};

/// Token rows still holding a sealed token that a tombstone (and no later
/// token) follows, after row id `$1`, oldest first. Written per backend so that
/// each uses the partial index `token_events_unpruned`.
const PENDING_REVOCATIONS: Sql = Sql {
    postgres: "SELECT t.account, t.provider, t.id, t.sealed_token, t.kid FROM token_events t \
               WHERE t.kind = 'token' AND NOT t.pruned AND t.id > $1 \
                 AND EXISTS (SELECT 1 FROM token_events n WHERE n.account = t.account \
                             AND n.provider = t.provider AND n.id > t.id AND n.kind = 'tombstone') \
                 AND NOT EXISTS (SELECT 1 FROM token_events n WHERE n.account = t.account \
                             AND n.provider = t.provider AND n.id > t.id AND n.kind = 'token') \
               ORDER BY t.id LIMIT $2",
    sqlite: "SELECT t.account, t.provider, t.id, t.sealed_token, t.kid FROM token_events t \
             WHERE t.kind = 'token' AND t.pruned = 0 AND t.id > $1 \
               AND EXISTS (SELECT 1 FROM token_events n WHERE n.account = t.account \
                           AND n.provider = t.provider AND n.id > t.id AND n.kind = 'tombstone') \
               AND NOT EXISTS (SELECT 1 FROM token_events n WHERE n.account = t.account \
                           AND n.provider = t.provider AND n.id > t.id AND n.kind = 'token') \
             ORDER BY t.id LIMIT $2",
};

/// Whether token version `$3` of (`$1`, `$2`) still waits for revocation.
const STILL_PENDING: Sql = Sql::both(
    "SELECT COUNT(*) FROM token_events t \
     WHERE t.id = $3 AND t.account = $1 AND t.provider = $2 AND t.kind = 'token' \
       AND t.sealed_token IS NOT NULL \
       AND EXISTS (SELECT 1 FROM token_events n WHERE n.account = $1 AND n.provider = $2 \
                   AND n.id > $3 AND n.kind = 'tombstone') \
       AND NOT EXISTS (SELECT 1 FROM token_events n WHERE n.account = $1 AND n.provider = $2 \
                   AND n.id > $3 AND n.kind = 'token')",
);

/// Token rows that still hold a sealed token someone may need to open (no newer token follows:
/// the newest token of a connected account, or a disconnected account's token waiting for
/// revocation) and are not sealed under key `$1`, after row id `$2`, oldest first.
const SEALED_NOT_UNDER: Sql = Sql {
    postgres: "SELECT t.account, t.provider, t.id, t.sealed_token, t.kid FROM token_events t \
               WHERE t.kind = 'token' AND NOT t.pruned AND t.kid <> $1 AND t.id > $2 \
                 AND NOT EXISTS (SELECT 1 FROM token_events n WHERE n.account = t.account \
                             AND n.provider = t.provider AND n.id > t.id AND n.kind = 'token') \
               ORDER BY t.id LIMIT $3",
    sqlite: "SELECT t.account, t.provider, t.id, t.sealed_token, t.kid FROM token_events t \
             WHERE t.kind = 'token' AND t.pruned = 0 AND t.kid <> $1 AND t.id > $2 \
               AND NOT EXISTS (SELECT 1 FROM token_events n WHERE n.account = t.account \
                           AND n.provider = t.provider AND n.id > t.id AND n.kind = 'token') \
             ORDER BY t.id LIMIT $3",
};

/// How many such rows each key id seals.
const SEALED_BY_KID: Sql = Sql {
    postgres: "SELECT t.kid, COUNT(*) FROM token_events t \
               WHERE t.kind = 'token' AND NOT t.pruned \
                 AND NOT EXISTS (SELECT 1 FROM token_events n WHERE n.account = t.account \
                             AND n.provider = t.provider AND n.id > t.id AND n.kind = 'token') \
               GROUP BY t.kid ORDER BY t.kid",
    sqlite: "SELECT t.kid, COUNT(*) FROM token_events t \
             WHERE t.kind = 'token' AND t.pruned = 0 \
               AND NOT EXISTS (SELECT 1 FROM token_events n WHERE n.account = t.account \
                           AND n.provider = t.provider AND n.id > t.id AND n.kind = 'token') \
             GROUP BY t.kid ORDER BY t.kid",
};

/// The newest shared access token of (`$1`, `$2`), if it came with the account's newest token and
/// the account is active.
const SHARED_ACCESS_TOKEN: Sql = Sql::both(
    "SELECT s.token_id, s.sealed_token, s.kid, s.expires_at_unix, s.lifetime_secs, \
            s.token_type, s.scopes \
     FROM shared_access_tokens s \
     WHERE s.account = $1 AND s.provider = $2 \
       AND s.token_id = (SELECT max(t.id) FROM token_events t \
                          WHERE t.account = $1 AND t.provider = $2) \
       AND (SELECT st.status FROM token_status st \
             WHERE st.account = $1 AND st.provider = $2 \
             ORDER BY st.id DESC LIMIT 1) = 'active' \
     ORDER BY s.id DESC LIMIT 1",
);

type SharedRow = (i64, String, String, i64, i64, String, String);

type PendingRow = (String, String, i64, Option<String>, Option<String>);

/// The rows that still hold a sealed token (and so a key id), as [`SealedRow`]s.
fn sealed_rows(rows: Vec<PendingRow>) -> Vec<SealedRow> {
    rows.into_iter()
        .filter_map(|(account, provider, version, sealed, kid)| {
            Some(SealedRow {
                account,
                provider,
                version,
                sealed_token: sealed?,
                kid: kid?,
            })
        })
        .collect()
}
type LatestRow = (i64, String, Option<String>, Option<String>);
type StatusRow = (String, String, i64, Option<String>);

/// Read-only handle. Cheap to clone (shares the pool).
#[derive(Debug, Clone)]
pub struct TokenReader {
    pub(crate) db: Db,
}

impl TokenReader {
    /// Connects to `url`. PostgreSQL: connect as `tokenvault_reader`. SQLite (`sqlite://path`):
    /// opens the file read-only; if it does not exist, fails with [`StoreError::Unavailable`]
    /// naming the path (the writer creates it). A down database gives
    /// [`StoreError::Unavailable`] within a few seconds.
    pub async fn connect(url: &str) -> Result<Self> {
        let db = db::connect(url, Role::Reader).await?;
        Ok(TokenReader { db })
    }

    /// The newest row for (account, provider): its sealed token, a tombstone, or nothing.
    pub async fn latest(&self, account: &str, provider: &str) -> Result<Latest> {
        check_key(account, provider)?;
        let row: Option<LatestRow> = on_db!(&self.db, LATEST, |pool, q| {
            sqlx::query_as(q)
                .bind(account)
                .bind(provider)
                .fetch_optional(pool)
                .await?
        });
        match row {
            None => Ok(Latest::NotFound),
            Some((_, kind, _, _)) if kind == "tombstone" => Ok(Latest::Disconnected),
            Some((version, kind, Some(sealed_token), Some(kid))) if kind == "token" => {
                Ok(Latest::Token {
                    version,
                    sealed_token,
                    kid,
                })
            }
            // The schema's guard trigger makes this unreachable; report it rather than guess.
            Some((version, kind, _, _)) => Err(StoreError::Database(format!(
                "row {version} ({kind}) is the newest but holds no sealed token"
            ))),
        }
    }

    /// The access token another get-service replica shared for (account, provider), if it came
    /// with the account's newest stored token and the account is active (a rotation, reconnect,
    /// disconnect or dead grant since makes it unusable here).
    pub async fn shared_access_token(
        &self,
        account: &str,
        provider: &str,
    ) -> Result<Option<SharedAccessToken>> {
        check_key(account, provider)?;
        let row: Option<SharedRow> = on_db!(&self.db, SHARED_ACCESS_TOKEN, |pool, q| {
            sqlx::query_as(q)
                .bind(account)
                .bind(provider)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(
            |(version, sealed_token, kid, expires_at_unix, lifetime_secs, token_type, scopes)| {
                SharedAccessToken {
                    version,
                    sealed_token,
                    kid,
                    expires_at_unix,
                    lifetime_secs,
                    token_type,
                    scopes: scopes.split_whitespace().map(str::to_owned).collect(),
                }
            },
        ))
    }

    /// The current status of (account, provider), or `None` if nothing was ever stored.
    /// Newest event wins: a stored token means active, a tombstone disconnected, unless a later
    /// status record (e.g. reauthorization required) says otherwise.
    pub async fn status(&self, account: &str, provider: &str) -> Result<Option<StatusRecord>> {
        check_key(account, provider)?;
        let row: Option<StatusRow> = on_db!(&self.db, STATUS, |pool, q| {
            sqlx::query_as(q)
                .bind(account)
                .bind(provider)
                .fetch_optional(pool)
                .await?
        });
        let Some((status, reason, updated_at_unix, newest_kind)) = row else {
            return Ok(None);
        };
        let status: TokenStatus = status
            .parse()
            .map_err(|e| StoreError::Database(format!("{e}")))?;
        if newest_kind.as_deref() == Some("tombstone") && status != TokenStatus::Disconnected {
            return Ok(Some(StatusRecord {
                status: TokenStatus::Disconnected,
                reason: "disconnected".to_owned(),
                updated_at_unix,
            }));
        }
        Ok(Some(StatusRecord {
            status,
            reason,
            updated_at_unix,
        }))
    }

    /// Up to `limit` disconnected accounts whose last refresh token still waits to be revoked at
    /// the provider, with versions above `after`, oldest first (page with the last version seen).
    pub async fn pending_revocations(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<PendingRevocation>> {
        let rows: Vec<PendingRow> = on_db!(&self.db, PENDING_REVOCATIONS, |pool, q| {
            sqlx::query_as(q)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(sealed_rows(rows))
    }

    /// Whether `version` of (account, provider) still waits for revocation: not cleared, and
    /// disconnected with no reconnect since.
    pub async fn still_pending(&self, account: &str, provider: &str, version: i64) -> Result<bool> {
        check_key(account, provider)?;
        let count: i64 = on_db!(&self.db, STILL_PENDING, |pool, q| {
            sqlx::query_scalar(q)
                .bind(account)
                .bind(provider)
                .bind(version)
                .fetch_one(pool)
                .await?
        });
        Ok(count > 0)
    }

    /// Up to `limit` stored tokens that someone may still need to open — each connected account's
    /// newest token and each disconnected account's token still waiting for revocation — that
    /// are not sealed under key `kid`, with versions above `after`, oldest first (page with the
    /// last version seen). Re-sealing under `kid` works through these.
    pub async fn sealed_not_under(
        &self,
        kid: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SealedRow>> {
        check_kid(kid)?;
        let rows: Vec<PendingRow> = on_db!(&self.db, SEALED_NOT_UNDER, |pool, q| {
            sqlx::query_as(q)
                .bind(kid)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(sealed_rows(rows))
    }

    /// How many stored tokens that someone may still need to open (as in
    /// [`Self::sealed_not_under`]) each key id seals, by key id. A key id absent here seals none.
    pub async fn sealed_counts_by_kid(&self) -> Result<Vec<(String, i64)>> {
        Ok(on_db!(&self.db, SEALED_BY_KID, |pool, q| {
            sqlx::query_as(q).fetch_all(pool).await?
        }))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Whether the database answers a trivial query on a pooled connection
    /// (for health checks); [`StoreError::Unavailable`] within a few seconds
    /// if it does not.
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::TokenWriter;

    /// The reader's own SQLite pool is read-only: a write through it fails.
    #[tokio::test]
    async fn sqlite_reader_pool_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("vault.db").display());
        let writer = TokenWriter::connect(&url).await.unwrap();
        writer
            .store("acct", "google", "sealed-1", "k1")
            .await
            .unwrap();

        let reader = TokenReader::connect(&url).await.unwrap();
        let Db::Sqlite(pool) = &reader.db else {
            panic!("expected SQLite");
        };
        let err = sqlx::query(
            "INSERT INTO token_events (account, provider, kind) VALUES ('a', 'b', 'tombstone')",
        )
        .execute(pool)
        .await
        .unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        let err = sqlx::query("DELETE FROM token_events")
            .execute(pool)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        assert!(matches!(
            reader.latest("acct", "google").await.unwrap(),
            Latest::Token { .. }
        ));
    }
}
