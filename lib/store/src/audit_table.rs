//! The optional append-only audit table (`audit_events`): a tracing layer that
//! copies each audit event into the table, off the request path.
//!
//! The layer only sees events of the audit target (the logging setup filters
//! them), turns their fields into an [`AuditRow`] (escaped and cut so the
//! database accepts any byte a caller sends: [`row`]) and queues it with its
//! slot from the [`AuditGate`]; a background task ([`writer`]) inserts rows
//! in batches. The queue is bounded by the gate; `[audit] on_overflow` says
//! whether a full queue makes callers wait (`block`: nothing unaudited is
//! served) or leaves events out of the table (`drop`: counted in
//! `tokenvault_audit_events_dropped_total` and logged). Every event is also
//! in the JSON audit log. Rows hold who, when, what, where and the outcome;
//! audit events never carry a token.
//!
//! On PostgreSQL the service connects with its own role (set-service as
//! `tokenvault_writer`, get-service as `tokenvault_reader`), which may only
//! INSERT into `audit_events`; the table's triggers refuse UPDATE, DELETE and
//! TRUNCATE. The reader role's sessions are read-only by default
//! (`deploy/postgres/setup.sql`); the audit connection turns that default off
//! for its own sessions, since its grants, not the default, are what keep it
//! to inserting audit rows. On SQLite the URL names the store's file, which
//! set-service creates and migrates.

mod row;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use tokio::sync::mpsc;
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use tokenvault_runtime::audit_gate::{self, AuditGate};
use tokenvault_runtime::log_buffer::LogFlusher;
use tokenvault_runtime::logging::{AuditSink, init_logging_with};
use tokenvault_runtime::settings::AuditConfig;

pub use row::{AuditRow, column_text};
use writer::{Pending, Queued, write_rows};

use crate::Result;
use crate::db::{self, Db, Target};

/// How long an insert waits for a connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The tracing layer that queues audit events for the table. Install it as the
/// audit sink of `tokenvault_runtime::logging`.
#[derive(Debug)]
pub struct AuditTableLayer {
    service: &'static str,
    queue: mpsc::UnboundedSender<Queued>,
    gate: AuditGate,
    pending: Arc<Pending>,
}

/// The table writer task. [`drain`](Self::drain) waits for queued rows at
/// shutdown; dropping it stops the task.
#[derive(Debug)]
pub struct AuditTableWriter {
    task: tokio::task::JoinHandle<()>,
    pending: Arc<Pending>,
    gate: AuditGate,
}

impl AuditTableWriter {
    /// Waits until every queued row is written (or given up), at most
    /// `within`; returns how many rows were still pending.
    pub async fn drain(&self, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let pending = self.pending.get();
            if pending == 0 || tokio::time::Instant::now() >= deadline {
                return pending;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The gate of the table's queue (its policy and loss counters).
    pub fn gate(&self) -> &AuditGate {
        &self.gate
    }
}

impl Drop for AuditTableWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: Subscriber> Layer<S> for AuditTableLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut row = AuditRow::default();
        event.record(&mut row);
        if !row.is_complete() {
            return;
        }
        let Some(slot) = self.gate.take_slot() else {
            self.gate.dropped(1);
            return;
        };
        row.at = tokenvault_unix_time::now_rfc3339();
        row.service = self.service.to_owned();
        self.pending.add(1);
        if self.queue.send((row, slot)).is_err() {
            // The writer has stopped (the process is stopping).
            self.pending.sub(1);
            self.gate.dropped(1);
        }
    }
}

/// Starts the table writer for `service` on `audit.database_url` (none:
/// nothing to start) and returns its layer and the writer; the queue's gate
/// becomes the process's [`audit_gate::installed`] one, which the gRPC
/// chassis applies to every call. Connects lazily, so a database that is
/// down at start is retried when events arrive. Must be called inside a
/// Tokio runtime.
pub fn audit_table(
    audit: &AuditConfig,
    service: &'static str,
) -> Result<Option<(AuditTableLayer, AuditTableWriter)>> {
    let Some(url) = audit.database_url.as_deref() else {
        return Ok(None);
    };
    let db = connect_lazy(url)?;
    let gate = audit.gate();
    let (queue, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(Pending::default());
    let task = tokio::spawn(write_rows(db, rx, gate.clone(), Arc::clone(&pending)));
    audit_gate::install(gate.clone());
    Ok(Some((
        AuditTableLayer {
            service,
            queue,
            gate: gate.clone(),
            pending: Arc::clone(&pending),
        },
        AuditTableWriter {
            task,
            pending,
            gate,
        },
    )))
}

/// A binary's logging with the optional audit table: installs the log
/// subscriber (`tokenvault_runtime::logging`) with the table layer when
/// `audit.database_url` is set, and keeps its writer for
/// [`drain`](Self::drain) at shutdown.
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
    /// when `audit.database_url` is set.
    pub fn install(audit: &AuditConfig, service: &'static str) -> Result<Self> {
        let (sink, writer): (Option<AuditSink>, _) = match audit_table(audit, service)? {
            None => (None, None),
            Some((layer, writer)) => (Some(Box::new(layer)), Some(writer)),
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
                .connect_lazy_with(options.application_name("tokenvault-audit").options([
                    ("statement_timeout", "10s"),
                    // The reader role's default (setup.sql); its
                    // grants still allow only audit inserts.
                    ("default_transaction_read_only", "off"),
                ])),
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
