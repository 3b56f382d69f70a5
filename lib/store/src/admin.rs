//! Owner-side operations: schema migrations, row counts for tests and benchmarks, and a catch-up
//! prune job. Uses the owner's connection (`tokenvault_owner` on PostgreSQL); reads counts only,
//! never a sealed token.

use sqlx::migrate::Migrator;

use crate::Result;
use crate::db::{self, Db, Role, Sql, on_db};

/// PostgreSQL migrations (store/migrations/postgres), embedded at compile time.
pub(crate) static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");
/// SQLite migrations (store/migrations/sqlite), embedded at compile time.
pub(crate) static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

const COUNT_ROWS: Sql = Sql::both(
    "SELECT (SELECT COUNT(*) FROM token_events), \
            (SELECT COUNT(*) FROM token_events WHERE sealed_token IS NOT NULL), \
            (SELECT COUNT(*) FROM token_status)",
);

/// Clears superseded sealed tokens: those a newer token follows, and disconnected ones whose
/// revocation is recorded; a disconnected token still waiting for revocation is kept. The insert
/// triggers already do this; this catches rows that two concurrent inserts could not see of each
/// other.
const PRUNE: Sql = Sql::both(
    "UPDATE token_events SET sealed_token = NULL, pruned = TRUE \
     WHERE kind = 'token' AND sealed_token IS NOT NULL \
       AND (EXISTS (SELECT 1 FROM token_events n \
                    WHERE n.account = token_events.account \
                      AND n.provider = token_events.provider \
                      AND n.id > token_events.id AND n.kind = 'token') \
            OR EXISTS (SELECT 1 FROM token_revocations r \
                       WHERE r.account = token_events.account \
                         AND r.provider = token_events.provider \
                         AND r.token_id >= token_events.id))",
);

/// Runs the schema migrations. PostgreSQL: `owner_url` must connect as `tokenvault_owner` (the
/// roles `tokenvault_writer` and `tokenvault_reader` must exist; see deploy/postgres/setup.sql).
/// SQLite: creates the file if missing. Idempotent.
pub async fn migrate(owner_url: &str) -> Result<()> {
    let db = db::connect(owner_url, Role::Owner).await?;
    let result = match &db {
        Db::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await,
        Db::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
    };
    db.close().await;
    result?;
    tracing::info!("token store migrations applied");
    Ok(())
}

/// Row counts of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCounts {
    /// All token and tombstone rows.
    pub token_events: i64,
    /// Token rows that still hold a sealed token (not pruned).
    pub sealed_tokens: i64,
    /// Status rows.
    pub status_records: i64,
}

/// Owner handle for counts and maintenance.
#[derive(Debug, Clone)]
pub struct StoreAdmin {
    db: Db,
}

impl StoreAdmin {
    /// Connects with the owner's URL (PostgreSQL) or opens the SQLite file read-write.
    pub async fn connect(owner_url: &str) -> Result<Self> {
        Ok(StoreAdmin {
            db: db::connect(owner_url, Role::Owner).await?,
        })
    }

    /// Counts rows.
    pub async fn count_rows(&self) -> Result<RowCounts> {
        let (token_events, sealed_tokens, status_records): (i64, i64, i64) =
            on_db!(&self.db, COUNT_ROWS, |pool, q| {
                sqlx::query_as(q).fetch_one(pool).await?
            });
        Ok(RowCounts {
            token_events,
            sealed_tokens,
            status_records,
        })
    }

    /// Clears the sealed token of every superseded version; returns how many rows it cleared.
    /// Never touches the newest row of a key.
    pub async fn prune(&self) -> Result<u64> {
        let cleared = on_db!(&self.db, PRUNE, |pool, q| {
            sqlx::query(q).execute(pool).await?.rows_affected()
        });
        if cleared > 0 {
            tracing::info!(cleared, "pruned superseded sealed tokens");
        }
        Ok(cleared)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.db.close().await;
    }
}
