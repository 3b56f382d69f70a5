//! The audit table's writer task: queued rows in batches of up to
//! [`BATCH_LEN`], each batch one statement (PostgreSQL: one multi-row
//! `INSERT ... SELECT FROM UNNEST`) or one transaction (SQLite), retried
//! with backoff while the database is unreachable. A batch the database
//! refuses for its content is written row by row, so that one bad row can
//! never keep other events out; a row that still fails, or a batch given up
//! after [`INSERT_ATTEMPTS`], is counted as dropped and logged (the events
//! remain in the JSON audit log).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokenvault_runtime::audit_gate::{AuditGate, Slot};
use tokio::sync::mpsc;

use super::row::AuditRow;
use crate::db::{Db, Sql, on_db};
use crate::{Result, StoreError};

/// How many rows one insert writes at most.
pub(super) const BATCH_LEN: usize = 500;
/// How often a failed insert is tried before its rows are given up.
const INSERT_ATTEMPTS: u32 = 5;

/// A queued row and its room in the queue, given back once written.
pub(super) type Queued = (AuditRow, Slot);

/// Many rows in one statement: each column as an array.
const INSERT_MANY_POSTGRES: &str = "INSERT INTO audit_events \
     (at, service, caller, peer, action, account, provider, outcome, error, policy) \
     SELECT at::timestamptz, service, caller, peer, action, account, provider, outcome, error, policy \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) \
          WITH ORDINALITY AS r(at, service, caller, peer, action, account, provider, outcome, error, policy, n) \
     ORDER BY n";

const INSERT_ONE: Sql = Sql {
    postgres: "INSERT INTO audit_events \
               (at, service, caller, peer, action, account, provider, outcome, error, policy) \
               VALUES ($1::timestamptz, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    sqlite: "INSERT INTO audit_events \
             (at, service, caller, peer, action, account, provider, outcome, error, policy) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
};

/// Rows queued and not yet written or given up.
#[derive(Debug, Default)]
pub(super) struct Pending(AtomicU64);

impl Pending {
    pub(super) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::AcqRel);
    }

    pub(super) fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::AcqRel);
    }

    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Writes queued rows until the queue closes.
pub(super) async fn write_rows(
    db: Db,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    gate: AuditGate,
    pending: Arc<Pending>,
) {
    let mut batch: Vec<Queued> = Vec::with_capacity(BATCH_LEN);
    while rx.recv_many(&mut batch, BATCH_LEN).await > 0 {
        let rows: Vec<&AuditRow> = batch.iter().map(|(row, _)| row).collect();
        let lost = write_batch(&db, &rows).await;
        if lost > 0 {
            gate.dropped(lost);
        }
        let done = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        // Frees the rows' slots: callers waiting for room may go on.
        batch.clear();
        pending.sub(done);
        let unlogged = gate.take_unlogged();
        if unlogged > 0 {
            tracing::error!(
                events = unlogged,
                on_overflow = gate.overflow().as_str(),
                "audit table: events left out of the table (they are in the JSON audit log)"
            );
        }
    }
    db.close().await;
}

/// Writes one batch; returns how many of its rows were given up.
async fn write_batch(db: &Db, rows: &[&AuditRow]) -> u64 {
    let mut attempt = 0;
    loop {
        let e = match insert_many(db, rows).await {
            Ok(()) => return 0,
            Err(e) => e,
        };
        if refused_content(&e) {
            tracing::warn!(error = %StoreError::from(e), rows = rows.len(),
                "audit table: a batch was refused; writing its rows one by one");
            return write_one_by_one(db, rows).await;
        }
        let e = StoreError::from(e);
        match e {
            e if e.is_retryable() && attempt + 1 < INSERT_ATTEMPTS => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "audit table: insert failed; retrying");
                tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
            }
            e => {
                tracing::error!(error = %e, rows = rows.len(),
                    "audit table: cannot insert; giving the rows up");
                return u64::try_from(rows.len()).unwrap_or(u64::MAX);
            }
        }
    }
}

/// Whether the database refused the statement for what a row holds (a
/// CHECK, an encoding: PostgreSQL's SQLSTATE classes 22 and 23, SQLite's
/// CONSTRAINT), rather than failing to run it at all.
fn refused_content(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        code.parse::<i32>().is_ok_and(|c| c & 0xff == 19)
    } else {
        code.starts_with("22") || code.starts_with("23")
    }
}

async fn write_one_by_one(db: &Db, rows: &[&AuditRow]) -> u64 {
    let mut lost = 0;
    for row in rows {
        if let Err(e) = insert_one(db, row).await {
            tracing::error!(error = %e, action = %row.action, caller = %row.caller,
                "audit table: an event was refused; left out of the table");
            lost += 1;
        }
    }
    lost
}

async fn insert_many(db: &Db, rows: &[&AuditRow]) -> std::result::Result<(), sqlx::Error> {
    match db {
        Db::Postgres(pool) => {
            let column = |f: fn(&AuditRow) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
            let optional =
                |f: fn(&AuditRow) -> Option<&str>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
            sqlx::query(INSERT_MANY_POSTGRES)
                .bind(column(|r| &r.at))
                .bind(column(|r| &r.service))
                .bind(column(|r| &r.caller))
                .bind(column(|r| &r.peer))
                .bind(column(|r| &r.action))
                .bind(column(|r| &r.account))
                .bind(column(|r| &r.provider))
                .bind(column(|r| &r.outcome))
                .bind(optional(|r| r.error.as_deref()))
                .bind(optional(|r| r.policy.as_deref()))
                .execute(pool)
                .await?;
            Ok(())
        }
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            for row in rows {
                bind_one(sqlx::query(INSERT_ONE.sqlite), row)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }
    }
}

async fn insert_one(db: &Db, row: &AuditRow) -> Result<()> {
    on_db!(db, INSERT_ONE, |pool, q| {
        bind_one(sqlx::query(q), row).execute(pool).await?;
        Ok::<(), StoreError>(())
    })
}

fn bind_one<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    row: &'q AuditRow,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(row.at.as_str())
        .bind(row.service.as_str())
        .bind(row.caller.as_str())
        .bind(row.peer.as_str())
        .bind(row.action.as_str())
        .bind(row.account.as_str())
        .bind(row.provider.as_str())
        .bind(row.outcome.as_str())
        .bind(row.error.as_deref())
        .bind(row.policy.as_deref())
}
