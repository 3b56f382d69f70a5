//! The log output of every tokenvault binary, on stdout:
//!
//! - operational lines as text, filtered by [`ENV_LOG`] (default `info`);
//! - audit events (the [`AUDIT_TARGET`] tracing target, written by
//!   `tokenvault-rpc`'s `audit` and the web-frontend)
//!   as one JSON object per line ([`crate::audit_line`]), always at `info` and above whatever
//!   [`ENV_LOG`] says, so that turning logs down never silences the audit
//!   trail. Each object carries `timestamp`, `level`, `target` and the
//!   event's fields (`caller`, `peer`, `rpc`, `account`, `provider`,
//!   `outcome` and, on failure, `error`);
//! - optionally, an extra layer that also receives only audit events (the
//!   append-only audit table in `tokenvault-store`).
//!
//! Lines go through [`crate::log_buffer`]: appended in memory on the
//! request path, written out in batches by one thread, all of them by the
//! time the [`LogFlusher`] returned by [`init_logging_with`] is dropped.
//!
//! Levels the filter turns off cost nothing: every layer has a per-layer
//! filter, and none answers "always" for a callsite it does not record, so
//! a `trace` span in a dependency (h2, hyper) is ruled out once, at its
//! callsite, rather than built for nobody on every request.
//!
//! Nothing here adds content to events: what is logged is what callers pass,
//! and no caller passes a token or a key.

use tracing::Subscriber;

use crate::audit_line::AuditLines;
use crate::log_buffer::{LogFlusher, buffered};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Identity, SubscriberExt};
use tracing_subscriber::registry::Registry;
use tracing_subscriber::{Layer, fmt};

/// The tracing target of audit lines.
pub const AUDIT_TARGET: &str = "tokenvault::audit";

/// The environment variable of the log filter, e.g. `info,tokenvault=debug`.
pub const ENV_LOG: &str = "TOKENVAULT_LOG";

/// An extra layer over the registry that receives audit events only.
pub type AuditSink = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// Only the audit target, at `info` and above.
fn audit_events() -> Targets {
    Targets::new().with_target(AUDIT_TARGET, LevelFilter::INFO)
}

/// The log subscriber of a binary, writing to `writer`: text lines filtered by
/// `filter` (audit events excluded), audit events as JSON lines, and the
/// optional `audit_sink`. Tests install it with their own writer.
pub fn subscriber<W>(
    filter: EnvFilter,
    writer: W,
    ansi: bool,
    audit_sink: Option<AuditSink>,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    let not_audit = filter_fn(|meta| meta.target() != AUDIT_TARGET);
    let text = fmt::layer()
        .with_writer(writer.clone())
        .with_ansi(ansi)
        .with_filter(filter.and(not_audit));
    let json = AuditLines::new(writer).with_filter(audit_events());
    // No sink is a layer that records nothing, not `None`: an absent
    // `Option` layer answers every callsite with "always", which would
    // make every disabled span in every dependency cost a registry entry.
    let sink = audit_sink.unwrap_or_else(|| Box::new(Identity::new()));
    Registry::default()
        .with(sink.with_filter(audit_events()))
        .with(text)
        .with(json)
}

/// Installs the log subscriber on stdout without an audit sink (see
/// [`init_logging_with`]). Keep the returned flusher until the process
/// ends.
#[must_use = "dropping the flusher at once writes the rest of the log synchronously"]
pub fn init_logging() -> LogFlusher {
    init_logging_with(None)
}

/// Installs the log subscriber on stdout, filtered by [`ENV_LOG`] (default
/// `info`), with an optional audit sink. Colours only on a terminal: log files
/// and journald get plain text. Lines are buffered ([`crate::log_buffer`]);
/// the returned flusher writes what is left when dropped, so keep it until
/// the process ends. A second call installs nothing (its flusher has
/// nothing to write).
#[must_use = "dropping the flusher at once writes the rest of the log synchronously"]
pub fn init_logging_with(audit_sink: Option<AuditSink>) -> LogFlusher {
    let filter = EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, flusher) = buffered(stdout_output());
    let _ = tracing::subscriber::set_global_default(subscriber(filter, writer, ansi, audit_sink));
    flusher
}

/// Standard output without the standard library's line buffering (which
/// would make one `write(2)` per line): a duplicate of file descriptor 1,
/// written in whole batches. Falls back to `Stdout` if it cannot be
/// duplicated.
fn stdout_output() -> Box<dyn std::io::Write + Send> {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(std::io::stdout()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_line::tests::Lines;

    #[test]
    fn audit_events_are_json_lines_and_survive_a_quiet_filter() {
        let out = Lines::default();
        // Even with everything else turned off, audit events are written.
        let sub = subscriber(EnvFilter::new("off"), out.clone(), false, None);
        tracing::subscriber::with_default(sub, || {
            tracing::info!(target: AUDIT_TARGET, caller = "spiffe://td/worker/a", rpc = "GetAccessToken", outcome = "ok");
            tracing::info!("an operational line that the filter drops");
        });
        let text = String::from_utf8(out.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_default();
        assert_eq!(event["target"], AUDIT_TARGET);
        assert_eq!(event["caller"], "spiffe://td/worker/a");
        assert_eq!(event["rpc"], "GetAccessToken");
        assert_eq!(event["outcome"], "ok");
        assert!(event["timestamp"].is_string(), "{text}");
    }
}
