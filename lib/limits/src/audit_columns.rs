//! The widths of the `audit_events` table's columns, as the SQL migrations
//! check them (`0004_audit_events`, `0006_audit_policy`), in characters. The
//! audit-table writer cuts each field to its column's width, so that one
//! caller's long input can never make the database refuse a row (and with it
//! other callers' events).

/// `at` on SQLite (PostgreSQL: a `timestamptz`): when, RFC 3339 UTC.
pub const AT_CHARS: usize = 64;

/// `service`: the name of the service that wrote the event.
pub const SERVICE_CHARS: usize = 64;

/// `caller`: the caller's SPIFFE ID or `web-session:<label>`. Narrower than
/// [`crate::MAX_SPIFFE_ID_LEN`]: a longer ID is cut in the table (the JSON
/// audit line keeps it whole).
pub const CALLER_CHARS: usize = 512;

/// `peer`: the peer's socket address.
pub const PEER_CHARS: usize = 128;

/// `action`: the RPC or web action.
pub const ACTION_CHARS: usize = 256;

/// `account` and `provider`.
pub const ID_CHARS: usize = 256;

/// `outcome`: `ok` or a short error label.
pub const OUTCOME_CHARS: usize = 64;

/// `error`: the error's message.
pub const ERROR_CHARS: usize = 1024;

/// `policy`: `rule:<name>`, `none` or `open`.
pub const POLICY_CHARS: usize = 128;
