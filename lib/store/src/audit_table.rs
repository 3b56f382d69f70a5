//! The optional append-only audit table (`audit_events`): a tracing layer that
//! copies each audit event into the table, off the request path.
//!
//! The layer only sees events of the audit target (the logging setup filters
//! them), turns their fields into an [`AuditRow`] and hands it to a bounded
//! queue; a background task inserts rows in batches. A full queue or a
//! database that stays down loses table rows, never a request: every event
//! is also in the JSON audit log, and losses are logged as errors. Rows hold
//! who, when, what, where and the outcome; audit events never carry a token.
//!
//! On PostgreSQL the service connects with its own role (set-service as
//! `tokenvault_writer`, get-service as `tokenvault_reader`), which may only
//! INSERT into `audit_events`; the table's triggers refuse UPDATE, DELETE and
//! TRUNCATE. On SQLite the URL names the store's file, which set-service
//! creates and migrates.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use tokenvault_runtime::log_buffer::LogFlusher;
use tokenvault_runtime::logging::{AuditSink, init_logging_with};

use crate::db::{self, Db, Sql, Target, on_db};
use crate::{Result, StoreError};

/// How many events wait for the table at most.
const QUEUE_LEN: usize = 10_000;
/// How many rows one insert writes at most.
const BATCH_LEN: usize = 200;
/// How often a failed insert is tried before its rows are given up.
const INSERT_ATTEMPTS: u32 = 5;
/// How long an insert waits for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest text kept per column (the table's limits).
const MAX_FIELD: usize = 512;
const MAX_ERROR: usize = 1024;

const INSERT: Sql = Sql {
    postgres: "INSERT INTO audit_events \
               (at, service, caller, peer, action, account, provider, outcome, error, policy) \
               VALUES ($1::timestamptz, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    sqlite: "INSERT INTO audit_events \
             (at, service, caller, peer, action, account, provider, outcome, error, policy) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
};

/// One audit event as a table row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRow {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The service that wrote it.
    pub service: String,
    /// Who: a SPIFFE ID or `web-session:<label>`.
    pub caller: String,
    /// Where: the peer address.
    pub peer: String,
    /// What: the RPC or web action.
    pub action: String,
    /// The account, if any.
    pub account: String,
    /// The provider, if any.
    pub provider: String,
    /// `ok` or an error label.
    pub outcome: String,
    /// The error message, on failure.
    pub error: Option<String>,
    /// Which account-policy rule decided the call, where one governs it.
    pub policy: Option<String>,
}

impl Visit for AuditRow {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here; their Debug is their Display.
        self.set(field.name(), &format!("{value:?}"));
    }
}

impl AuditRow {
    fn set(&mut self, name: &str, value: &str) {
        let cut = |max: usize| value.chars().take(max).collect::<String>();
        match name {
            "caller" => self.caller = cut(MAX_FIELD),
            "peer" => self.peer = cut(128),
            "rpc" => self.action = cut(256),
            "account" => self.account = cut(256),
            "provider" => self.provider = cut(256),
            "outcome" => self.outcome = cut(64),
            "error" => self.error = Some(cut(MAX_ERROR)),
            "policy" => self.policy = Some(cut(128)),
            _ => {}
        }
    }
}

/// The tracing layer that queues audit events for the table. Install it as the
/// audit sink of `tokenvault_runtime::logging`.
#[derive(Debug)]
pub struct AuditTableLayer {
    service: &'static str,
    queue: mpsc::Sender<AuditRow>,
    counts: Arc<Counts>,
}

/// Rows queued but not yet written, and rows lost to a full queue.
#[derive(Debug, Default)]
struct Counts {
    pending: AtomicU64,
    dropped: AtomicU64,
}

/// The table writer task. [`drain`](Self::drain) waits for queued rows at
/// shutdown; dropping it stops the task.
#[derive(Debug)]
pub struct AuditTableWriter {
    task: tokio::task::JoinHandle<()>,
    counts: Arc<Counts>,
}

impl AuditTableWriter {
    /// Waits until every queued row is written (or given up), at most
    /// `within`; returns how many rows were still pending.
    pub async fn drain(&self, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let pending = self.counts.pending.load(Ordering::Acquire);
            if pending == 0 || tokio::time::Instant::now() >= deadline {
                return pending;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for AuditTableWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: Subscriber> Layer<S> for AuditTableLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut row = AuditRow {
            at: now_rfc3339(),
            service: self.service.to_owned(),
            ..AuditRow::default()
        };
        event.record(&mut row);
        if row.action.is_empty() || row.outcome.is_empty() {
            return;
        }
        self.counts.pending.fetch_add(1, Ordering::AcqRel);
        if self.queue.try_send(row).is_err() {
            self.counts.pending.fetch_sub(1, Ordering::AcqRel);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the table writer for `service` on `url` and returns its layer and
/// the writer. Connects lazily, so a database that is down at start is
/// retried when events arrive. Must be called inside a Tokio runtime.
pub fn audit_table(
    url: &str,
    service: &'static str,
) -> Result<(AuditTableLayer, AuditTableWriter)> {
    let db = connect_lazy(url)?;
    let (queue, rx) = mpsc::channel(QUEUE_LEN);
    let counts = Arc::new(Counts::default());
    let task = tokio::spawn(write_rows(db, rx, Arc::clone(&counts)));
    Ok((
        AuditTableLayer {
            service,
            queue,
            counts: Arc::clone(&counts),
        },
        AuditTableWriter { task, counts },
    ))
}

/// A binary's logging with the optional audit table: installs the log
/// subscriber (`tokenvault_runtime::logging`) with the table layer when `url`
/// is set, and keeps its writer for [`drain`](Self::drain) at shutdown.
#[derive(Debug)]
pub struct AuditLogging {
    writer: Option<AuditTableWriter>,
    /// Writes the rest of the log lines when dropped (after [`drain`](Self::drain)).
    _flusher: LogFlusher,
}

/// How long a stopping service waits for audit rows still queued for the table.
pub const AUDIT_DRAIN: Duration = Duration::from_secs(5);

impl AuditLogging {
    /// Installs the log subscriber, with [`audit_table`] as its audit sink
    /// when `url` is set.
    pub fn install(url: Option<&str>, service: &'static str) -> Result<Self> {
        let (sink, writer): (Option<AuditSink>, _) = match url {
            None => (None, None),
            Some(url) => {
                let (layer, writer) = audit_table(url, service)?;
                (Some(Box::new(layer)), Some(writer))
            }
        };
        let flusher = init_logging_with(sink);
        Ok(Self {
            writer,
            _flusher: flusher,
        })
    }

    /// Waits for queued rows (at most [`AUDIT_DRAIN`]).
    pub async fn drain(&self) {
        if let Some(writer) = &self.writer {
            writer.drain(AUDIT_DRAIN).await;
        }
    }
}

fn connect_lazy(url: &str) -> Result<Db> {
    Ok(match db::parse_url(url)? {
        Target::Postgres(options) => Db::Postgres(
            PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(
                    options
                        .application_name("tokenvault-audit")
                        .options([("statement_timeout", "10s")]),
                ),
        ),
        Target::Sqlite(options) => Db::Sqlite(
            SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(
                    options
                        .create_if_missing(false)
                        .busy_timeout(Duration::from_secs(5)),
                ),
        ),
    })
}

/// The writer task: batches of rows, each inserted in one transaction and
/// retried with backoff; rows of a batch that keeps failing are given up with
/// an error log (they remain in the JSON audit log).
async fn write_rows(db: Db, mut rx: mpsc::Receiver<AuditRow>, counts: Arc<Counts>) {
    let mut batch = Vec::with_capacity(BATCH_LEN);
    while rx.recv_many(&mut batch, BATCH_LEN).await > 0 {
        let mut attempt = 0;
        loop {
            match insert(&db, &batch).await {
                Ok(()) => break,
                Err(e) if attempt + 1 < INSERT_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "audit table: insert failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, rows = batch.len(),
                        "audit table: events not written to the table (they are in the JSON audit log)");
                    break;
                }
            }
        }
        let written = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        counts.pending.fetch_sub(written, Ordering::AcqRel);
        batch.clear();
        let lost = counts.dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::error!(
                rows = lost,
                "audit table: queue full; events not written to the table (they are in the JSON audit log)"
            );
        }
    }
    db.close().await;
}

async fn insert(db: &Db, rows: &[AuditRow]) -> Result<()> {
    on_db!(db, INSERT, |pool, q| {
        let mut tx = pool.begin().await?;
        for row in rows {
            sqlx::query(q)
                .bind(&row.at)
                .bind(&row.service)
                .bind(&row.caller)
                .bind(&row.peer)
                .bind(&row.action)
                .bind(&row.account)
                .bind(&row.provider)
                .bind(&row.outcome)
                .bind(row.error.as_deref())
                .bind(row.policy.as_deref())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok::<(), StoreError>(())
    })
}

/// Now, RFC 3339 UTC.
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}
