//! Webhook delivery bookkeeping for set-service's dispatcher: the events to deliver, where each
//! endpoint stands, one appended row per attempt, and the lock that lets one set-service replica
//! at a time dispatch. Non-secret; never a token.

use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, Postgres};

use crate::db::{Db, Sql, on_db};
use crate::events::AccountEvent;
use crate::{Result, StoreError, TokenWriter};

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// This attempt failed; another follows.
    Retrying,
    /// The last attempt failed; the event is given up for this endpoint.
    Failed,
}

impl DeliveryOutcome {
    /// The value stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retrying => "retrying",
            DeliveryOutcome::Failed => "failed",
        }
    }
}

/// Where an endpoint stands: every event up to `done` is delivered or given up; `attempts`
/// attempts of the next one have failed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointPosition {
    /// The newest event delivered or given up (0: none).
    pub done: i64,
    /// Failed attempts recorded for the event after `done`.
    pub attempts: i64,
}

const DONE: Sql = Sql::both(
    "SELECT COALESCE(MAX(event_id), 0) FROM account_event_deliveries \
     WHERE endpoint = $1 AND outcome IN ('delivered', 'failed')",
);

const ATTEMPTS_AFTER: Sql = Sql::both(
    "SELECT COUNT(*) FROM account_event_deliveries \
     WHERE endpoint = $1 AND event_id = \
       (SELECT MIN(id) FROM account_events WHERE id > $2) AND outcome = 'retrying'",
);

const INSERT_DELIVERY: Sql = Sql::both(
    "INSERT INTO account_event_deliveries (event_id, endpoint, attempt, outcome, detail) \
     VALUES ($1, $2, $3, $4, $5)",
);

const COUNT_AFTER: Sql = Sql::both("SELECT COUNT(*) FROM account_events WHERE id > $1");

/// The dispatch lock's key, in the single-`bigint` advisory-lock space: get-service's keys there
/// are SHA-256-derived, the event cursor's lock is another constant, and the per-key write lock
/// uses the two-`int4` form.
const DISPATCH_LOCK_KEY: i64 = 0x746f_6b76_7768_6b31; // "tokvwhk1"

/// A dead peer's session (and so its lock) is noticed within about 5 + 3 x 2 seconds.
const LOCK_SESSION_SETTINGS: [&str; 3] = [
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
];

/// The right to dispatch webhooks: on PostgreSQL a session advisory lock held on one pooled
/// connection set aside for it, released when this guard drops (the connection is closed rather
/// than returned to the pool, which is what frees the lock). SQLite is one host: no lock.
#[derive(Debug)]
pub struct DispatchLock {
    conn: Option<PoolConnection<Postgres>>,
}

impl DispatchLock {
    /// Whether the lock is still held: its connection still answers. A broken connection means
    /// PostgreSQL has freed the lock; drop the guard and take it again.
    pub async fn still_held(&mut self) -> bool {
        match self.conn.as_mut() {
            None => true,
            Some(conn) => conn.ping().await.is_ok(),
        }
    }
}

/// Sets `conn`'s keepalives and tries the dispatch lock on it.
async fn lock_session(conn: &mut sqlx::PgConnection) -> Result<bool> {
    for setting in LOCK_SESSION_SETTINGS {
        sqlx::query(setting).execute(&mut *conn).await?;
    }
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(DISPATCH_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    Ok(taken)
}

/// The longest delivery detail kept (an HTTP status line or an error, never a body).
const MAX_DETAIL_CHARS: usize = 256;

impl TokenWriter {
    /// Where webhook endpoint `endpoint` stands (see [`EndpointPosition`]).
    pub async fn endpoint_position(&self, endpoint: &str) -> Result<EndpointPosition> {
        let done: i64 = on_db!(&self.db, DONE, |pool, q| {
            sqlx::query_scalar(q).bind(endpoint).fetch_one(pool).await?
        });
        let attempts: i64 = on_db!(&self.db, ATTEMPTS_AFTER, |pool, q| {
            sqlx::query_scalar(q)
                .bind(endpoint)
                .bind(done)
                .fetch_one(pool)
                .await?
        });
        Ok(EndpointPosition { done, attempts })
    }

    /// How many account events there are after cursor `after`.
    pub async fn count_events_after(&self, after: i64) -> Result<i64> {
        let count: i64 = on_db!(&self.db, COUNT_AFTER, |pool, q| {
            sqlx::query_scalar(q).bind(after).fetch_one(pool).await?
        });
        Ok(count)
    }

    /// Takes the webhook dispatch lock if no other set-service replica holds it (`None` if one
    /// does). Never waits for it. PostgreSQL: takes one connection out of the writer pool for as
    /// long as the guard lives.
    pub async fn try_dispatch_lock(&self) -> Result<Option<DispatchLock>> {
        let pool = match &self.db {
            Db::Sqlite(_) => return Ok(Some(DispatchLock { conn: None })),
            Db::Postgres(pool) => pool,
        };
        let mut conn = pool.acquire().await?;
        // Never back into the pool: closing the session is what frees its lock.
        conn.close_on_drop();
        let taken = lock_session(&mut conn).await?;
        Ok(taken.then_some(DispatchLock { conn: Some(conn) }))
    }

    /// Up to `limit` account events after cursor `after`, oldest first.
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<AccountEvent>> {
        crate::inventory::events_after(&self.db, after, limit).await
    }

    /// Appends one delivery attempt of event `event` to `endpoint`. `detail` (an HTTP status or
    /// an error, never a body) is cut to 256 characters.
    pub async fn record_delivery(
        &self,
        event: i64,
        endpoint: &str,
        attempt: i64,
        outcome: DeliveryOutcome,
        detail: &str,
    ) -> Result<()> {
        if endpoint.is_empty()
            || endpoint.chars().count() > tokenvault_limits::store_columns::ENDPOINT_CHARS
        {
            return Err(StoreError::Invalid(
                "webhook endpoint names are 1 to 64 characters".to_owned(),
            ));
        }
        let detail: String = detail
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_DETAIL_CHARS)
            .collect();
        on_db!(&self.db, INSERT_DELIVERY, |pool, q| {
            sqlx::query(q)
                .bind(event)
                .bind(endpoint)
                .bind(attempt)
                .bind(outcome.as_str())
                .bind(&detail)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(())
    }
}
