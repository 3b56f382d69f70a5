//! The audit table in the process system: both gRPC services write
//! `audit_events` as the deploy docs say (set-service with the writer role,
//! get-service with the reader role), and the test reads the table and
//! get-service's audit metrics.

use anyhow::Context;
use sqlx::Connection;

use super::system::ProcSystem;
use super::toml_string;

/// `[audit]` settings for both gRPC services.
#[derive(Debug, Clone, Copy)]
pub struct AuditTable {
    /// `on_overflow`: `"block"` or `"drop"`.
    pub on_overflow: &'static str,
    /// `queue_len`.
    pub queue_len: usize,
}

impl Default for AuditTable {
    fn default() -> Self {
        Self {
            on_overflow: "block",
            queue_len: 10_000,
        }
    }
}

impl AuditTable {
    /// The `[audit]` table of a service that writes as `url`.
    pub(super) fn toml(&self, url: &str) -> String {
        format!(
            "[audit]\ndatabase_url = {url}\non_overflow = {overflow}\nqueue_len = {len}\n",
            url = toml_string(url),
            overflow = toml_string(self.on_overflow),
            len = self.queue_len,
        )
    }
}

/// One row of `audit_events`, as the test compares it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, sqlx::FromRow)]
pub struct AuditTableRow {
    /// `set-service` or `get-service`.
    pub service: String,
    /// The RPC.
    pub action: String,
    /// The caller's SPIFFE ID.
    pub caller: String,
    /// The account, escaped as stored.
    pub account: String,
    /// `ok` or the error label.
    pub outcome: String,
    /// The database role that wrote it.
    pub db_role: String,
}

impl ProcSystem {
    /// Every row of `audit_events`, in order, read as the owner.
    pub async fn audit_rows(&self) -> anyhow::Result<Vec<AuditTableRow>> {
        let mut db = sqlx::PgConnection::connect(&self.urls.owner).await?;
        let rows = sqlx::query_as(
            "SELECT service, action, caller, account, outcome, db_role \
             FROM audit_events ORDER BY id",
        )
        .fetch_all(&mut db)
        .await?;
        db.close().await?;
        Ok(rows)
    }

    /// The value of get-service's metric `name` (a full sample name, e.g.
    /// `tokenvault_audit_events_dropped_total`), from its metrics endpoint.
    pub async fn get_metric(&self, name: &str) -> anyhow::Result<f64> {
        let port = self
            .get_metrics_port()
            .context("get-service has no metrics endpoint (start with an audit table)")?;
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        text.lines()
            .find_map(|line| {
                let (sample, value) = line.split_once(' ')?;
                (sample == name).then(|| value.trim().parse::<f64>().ok())?
            })
            .with_context(|| format!("no sample {name} in:\n{text}"))
    }
}
