//! One audit event as a row of `audit_events`: the event's fields, each cut
//! to its column's limit and escaped so that no byte a caller sends can make
//! the database refuse the row (and with it other callers' events).
//!
//! Rows hold who, when, what, where and the outcome; audit events never
//! carry a token.

use std::fmt;

use tracing::field::{Field, Visit};

/// The longest text kept per column: the table's CHECK limits.
use tokenvault_limits::audit_columns::{
    ACTION_CHARS, CALLER_CHARS, ERROR_CHARS, ID_CHARS, OUTCOME_CHARS, PEER_CHARS, POLICY_CHARS,
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
    /// Whether the event names an action and an outcome (the table's
    /// required columns); other events on the audit target are not rows.
    pub fn is_complete(&self) -> bool {
        !self.action.is_empty() && !self.outcome.is_empty()
    }

    fn set(&mut self, name: &str, value: &str) {
        let column = |max: usize| column_text(value, max);
        match name {
            "caller" => self.caller = column(CALLER_CHARS),
            "peer" => self.peer = column(PEER_CHARS),
            "rpc" => self.action = column(ACTION_CHARS),
            "account" => self.account = column(ID_CHARS),
            "provider" => self.provider = column(ID_CHARS),
            "outcome" => self.outcome = column(OUTCOME_CHARS),
            "error" => self.error = Some(column(ERROR_CHARS)),
            "policy" => self.policy = Some(column(POLICY_CHARS)),
            _ => {}
        }
    }
}

/// `value` as a column's text: a backslash becomes `\\` and a NUL `\0`
/// (PostgreSQL text cannot hold NUL; every other character is kept as it
/// is), then cut to `max` characters, never inside an escape.
pub fn column_text(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max));
    let mut chars = 0;
    for c in value.chars() {
        let escaped = match c {
            '\\' => "\\\\",
            '\0' => "\\0",
            _ => "",
        };
        let width = if escaped.is_empty() { 1 } else { 2 };
        if chars + width > max {
            break;
        }
        chars += width;
        if escaped.is_empty() {
            out.push(c);
        } else {
            out.push_str(escaped);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_backslash_are_escaped_everything_else_is_kept() {
        assert_eq!(column_text("a\0b\\c", 100), "a\\0b\\\\c");
        assert_eq!(
            column_text("tab\there\u{7f}é\u{1b}[31m", 100),
            "tab\there\u{7f}é\u{1b}[31m"
        );
        assert!(!column_text("\0\0\0", 100).contains('\0'));
    }

    #[test]
    fn text_is_cut_to_the_column_in_characters_never_inside_an_escape() {
        assert_eq!(column_text(&"é".repeat(2000), 256).chars().count(), 256);
        assert_eq!(column_text("ab\0", 3), "ab");
        assert_eq!(column_text("ab\0", 4), "ab\\0");
        assert_eq!(
            column_text(&"x".repeat(1 << 20), ERROR_CHARS).len(),
            ERROR_CHARS
        );
    }
}
