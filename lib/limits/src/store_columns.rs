//! The widths of the token store's columns, as the SQL migrations check them
//! (`lib/store/migrations/{postgres,sqlite}`; the store's tests compare the
//! two). These are backstops, wider than the limits the code enforces: the
//! columns were created with them, and SQLite cannot change a column's CHECK
//! without rebuilding the table, its indexes and triggers. Nothing wider
//! than the code's limit reaches a column, since every write goes through
//! the store's own checks first.

/// `account` and `provider` of every token table, and `kid`, `from_kid` and
/// `to_kid`: at most this many characters.
pub const ID_CHARS: usize = 256;

/// `sealed_token` of `token_events`, `token_reseals` and
/// `shared_access_tokens`: at most this many bytes.
pub const SEALED_TOKEN_BYTES: usize = 64 * 1024;

/// `token_status.reason`: at most this many characters.
pub const REASON_CHARS: usize = 1024;

/// `shared_access_tokens.token_type`: at most this many characters.
pub const TOKEN_TYPE_CHARS: usize = 64;

/// `shared_access_tokens.scopes` (space-separated): at most this many characters.
pub const SCOPES_CHARS: usize = 4096;

/// `metadata` of `account_metadata` and `account_events` (a JSON object):
/// at most this many bytes.
pub const METADATA_BYTES: usize = 4096;

/// `account_event_deliveries.endpoint` (a configured webhook endpoint's
/// name): at most this many characters.
pub const ENDPOINT_CHARS: usize = 64;
