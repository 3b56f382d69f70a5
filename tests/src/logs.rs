//! Log capture: every test's tracing output goes both to the test's own
//! output and to an in-memory buffer, so a test can assert that no token
//! appears in any log line.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tokenvault_runtime::logging::AuditSink;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::Registry;

fn buffer() -> &'static Mutex<Vec<u8>> {
    static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUFFER.get_or_init(|| Mutex::new(Vec::new()))
}

/// Everything logged in this process so far.
pub fn captured_logs() -> String {
    let guard = buffer().lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&guard).into_owned()
}

/// The audit events captured so far (the JSON lines on the audit target).
pub fn captured_audit_events() -> Vec<serde_json::Value> {
    captured_logs()
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["target"] == tokenvault_runtime::logging::AUDIT_TARGET)
        .collect()
}

/// Panics if `needle` appears in any captured log line.
pub fn assert_not_logged(needle: &str, what: &str) {
    assert!(!needle.is_empty(), "empty needle for {what}");
    assert!(
        !captured_logs().contains(needle),
        "{what} appeared in the logs"
    );
}

struct Tee;

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        buffer()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        // print! so that the test harness captures it with the test's output.
        #[allow(clippy::print_stdout)]
        {
            print!("{}", String::from_utf8_lossy(buf));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where [`AuditSinkSlot`] forwards audit events, once a test sets it.
fn audit_sink() -> &'static Mutex<Option<AuditSink>> {
    static SINK: OnceLock<Mutex<Option<AuditSink>>> = OnceLock::new();
    SINK.get_or_init(|| Mutex::new(None))
}

/// Sends this process's audit events also to `sink` (e.g. the audit table
/// layer), from now on.
pub fn set_audit_sink(sink: AuditSink) {
    *audit_sink().lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
}

/// The audit sink installed with the subscriber: forwards to whatever
/// [`set_audit_sink`] set, since the subscriber is installed before a test
/// knows its database.
struct AuditSinkSlot;

impl Layer<Registry> for AuditSinkSlot {
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, Registry>) {
        if let Some(sink) = audit_sink()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            sink.on_event(event, ctx);
        }
    }
}

/// Installs the capturing subscriber once per process: the services' own
/// logging setup (`tokenvault_runtime::logging`: text lines, JSON audit lines),
/// at debug level for tokenvault and info for everything else.
pub fn init_tracing() {
    let subscriber = tokenvault_runtime::logging::subscriber(
        tracing_subscriber::EnvFilter::new("info,tokenvault=debug"),
        || Tee,
        false,
        Some(Box::new(AuditSinkSlot)),
    );
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The `[audit]` settings of a table at `url`, with the defaults otherwise.
pub fn audit_table_at(url: &str) -> tokenvault_runtime::settings::AuditConfig {
    tokenvault_runtime::settings::AuditConfig {
        database_url: Some(url.to_owned()),
        ..Default::default()
    }
}
