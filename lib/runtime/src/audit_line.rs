//! The JSON audit line: one object per audit event, written straight into a
//! reused per-thread buffer and handed to the writer in one call.
//!
//! The object is what `tracing-subscriber`'s JSON formatter wrote before
//! (`timestamp` in RFC 3339 with microseconds, `level`, the event's fields
//! flattened, `target`), without its cost on the request path: that
//! formatter first copies every field into a map of `serde_json::Value`s
//! (one allocation per field) and then serialises the map. Here each field
//! is escaped as it is visited, and a field passed as `%value` is escaped
//! while it is formatted, so a line costs no allocation once the thread's
//! buffer has grown.
//!
//! Values are escaped as JSON requires (RFC 8259 §7): any byte a caller can
//! send, a NUL or a quote included, stays inside its string. Nothing is
//! added to the event: what is written is what callers pass, and no caller
//! passes a token or a key.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::{Context, Layer};

/// A line longer than this is not kept for the thread's next line.
const KEPT_CAPACITY: usize = 16 * 1024;

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The layer that writes each event it receives as one JSON line to `W`.
/// Give it a filter that lets only audit events through.
#[derive(Debug, Clone)]
pub struct AuditLines<W> {
    writer: W,
}

impl<W> AuditLines<W> {
    /// Lines go to `writer`, one `write_all` per event.
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

impl<S, W> Layer<S> for AuditLines<W>
where
    S: Subscriber,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        with_line_buffer(|line| {
            format_line(event, line);
            let _ = self
                .writer
                .make_writer_for(event.metadata())
                .write_all(line.as_bytes());
        });
    }
}

/// Runs `write` with the thread's empty line buffer. A field's `Display`
/// that itself logs (through the global subscriber, which does not guard
/// against it) finds the buffer in use and gets one of its own.
fn with_line_buffer(write: impl FnOnce(&mut String)) {
    let mut write = Some(write);
    let mut run = |line: &mut String| {
        line.clear();
        if let Some(write) = write.take() {
            write(line);
        }
        if line.capacity() > KEPT_CAPACITY {
            *line = String::new();
        }
    };
    if LINE
        .with(|cell| cell.try_borrow_mut().map(|mut line| run(&mut line)))
        .is_err()
    {
        run(&mut String::new());
    }
}

/// Appends `event` to `line` as one JSON object and a newline.
pub fn format_line(event: &Event<'_>, line: &mut String) {
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    // Writing to a `String` cannot fail.
    let _ = SystemTime.format_time(&mut Writer::new(line));
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push('"');
    event.record(&mut Fields { line });
    line.push_str(",\"target\":");
    push_json_str(line, meta.target());
    line.push_str("}\n");
}

/// Appends each field as `,"name":value`.
struct Fields<'a> {
    line: &'a mut String,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(',');
        push_json_str(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_str(self.line, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.line.push('"');
        let _ = write!(Escaping(self.line), "{value:?}");
        self.line.push('"');
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        let _ = write!(self.line, "{value}");
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.line, "{value}");
        } else {
            // JSON has no NaN or infinity.
            self.line.push_str("null");
        }
    }
}

/// Appends `value` as a JSON string, quotes included.
fn push_json_str(line: &mut String, value: &str) {
    line.push('"');
    let _ = Escaping(line).write_str(value);
    line.push('"');
}

/// A `fmt::Write` that appends what it is given as the inside of a JSON
/// string: `"` and `\` escaped, control characters as `\n`, `\t` ... or
/// `\u00XX`; everything else, non-ASCII included, as it is.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x00..=0x1f => "",
                _ => continue,
            };
            // `i` is at an ASCII byte, so both slices end on char boundaries.
            self.0.push_str(&s[plain..i]);
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.push_str(escape);
            }
            plain = i + 1;
        }
        self.0.push_str(&s[plain..]);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// An in-memory log output for tests.
    #[derive(Clone, Default)]
    pub(crate) struct Lines(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut lines) = self.0.lock() {
                lines.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Lines {
        type Writer = Lines;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn written(log: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Lines::default();
        let subscriber = tracing_subscriber::registry().with(AuditLines::new(out.clone()));
        tracing::subscriber::with_default(subscriber, log);
        let bytes = out.0.lock().map(|b| b.clone()).unwrap_or_default();
        let text = String::from_utf8(bytes).unwrap_or_default();
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| unreachable!("{l:?}: {e}")))
            .collect()
    }

    #[test]
    fn any_string_a_caller_sends_comes_back_whole() {
        let hostile = [
            "plain",
            "",
            "quote \" and backslash \\",
            "nul \0 bell \u{7} escape \u{1b} del \u{7f}",
            "newline \n return \r tab \t",
            "unicode é 漢字 🦀 \u{2028}",
            "\"}],\"outcome\":\"ok",
        ];
        for value in hostile {
            let error = format!("shown {value}");
            let events = written(|| {
                tracing::warn!(target: "audit", account = value, error = %error, outcome = "x");
            });
            assert_eq!(events.len(), 1, "{value:?}");
            assert_eq!(events[0]["account"], value);
            assert_eq!(events[0]["error"], error.as_str());
        }
    }

    #[test]
    fn a_line_has_the_formatters_keys_and_types() {
        let events = written(|| {
            tracing::info!(target: "tokenvault::audit", caller = "spiffe://td/worker/a", n = 3_u64, d = -2_i64, ok = true, f = 0.5, nan = f64::NAN, none = Option::<&str>::None);
        });
        let event = &events[0];
        assert_eq!(event["level"], "INFO");
        assert_eq!(event["target"], "tokenvault::audit");
        assert_eq!(event["caller"], "spiffe://td/worker/a");
        assert_eq!(event["n"], 3);
        assert_eq!(event["d"], -2);
        assert_eq!(event["ok"], true);
        assert_eq!(event["f"], 0.5);
        assert!(event["nan"].is_null());
        assert!(event.get("none").is_none(), "{event}");
        let timestamp = event["timestamp"].as_str().unwrap_or_default();
        // e.g. 2026-12-02T13:01:45.123456Z
        assert_eq!(timestamp.len(), 27, "{timestamp}");
        assert!(
            timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T',
            "{timestamp}"
        );
    }

    #[test]
    fn a_line_written_while_another_is_formatted_gets_its_own_buffer() {
        let mut seen = Vec::new();
        with_line_buffer(|outer| {
            outer.push_str("outer");
            with_line_buffer(|inner| {
                assert!(inner.is_empty());
                inner.push_str("inner");
                seen.push(inner.clone());
            });
            seen.push(outer.clone());
        });
        with_line_buffer(|again| seen.push(again.clone()));
        assert_eq!(seen, ["inner", "outer", ""]);
    }
}
