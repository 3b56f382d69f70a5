//! Account events: the outbox of every change of an account's state, written by the writer in the
//! same transaction as the change, and read by cursor (get-service's `WatchAccountEvents`,
//! set-service's webhook dispatcher). Events and metadata are non-secret; nothing here holds a
//! token.
//!
//! A change's event follows from the status before it ([`classify`]): the first token (or one
//! after a disconnect) is `connected`, a token through the connect flow while active is
//! `reconnected`, active after `reauthorization_required` is `recovered`, a rotation at the
//! provider is no event at all.

use std::fmt;
use std::str::FromStr;

use crate::db::Sql;
use crate::types::{TokenStatus, UnknownStatus};

/// What happened to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A first token, or a token after a disconnect.
    Connected,
    /// A new token through the connect flow while the account was active.
    Reconnected,
    /// The provider rejected the refresh grant.
    ReauthorizationRequired,
    /// Active again after [`EventKind::ReauthorizationRequired`].
    Recovered,
    /// Tombstoned.
    Disconnected,
    /// After a disconnect, the last refresh token was revoked at the provider (or deleted).
    Revoked,
    /// The refresh token expires soon.
    Expiring,
}

impl EventKind {
    /// Every kind, in the `.proto`'s order.
    pub const ALL: [EventKind; 7] = [
        EventKind::Connected,
        EventKind::Reconnected,
        EventKind::ReauthorizationRequired,
        EventKind::Recovered,
        EventKind::Disconnected,
        EventKind::Revoked,
        EventKind::Expiring,
    ];

    /// The value stored in the database, and the webhook's `type` suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connected => "connected",
            EventKind::Reconnected => "reconnected",
            EventKind::ReauthorizationRequired => "reauthorization_required",
            EventKind::Recovered => "recovered",
            EventKind::Disconnected => "disconnected",
            EventKind::Revoked => "revoked",
            EventKind::Expiring => "expiring",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEvent {
    /// The cursor: increases with every event, in commit order.
    pub cursor: i64,
    /// What happened.
    pub kind: EventKind,
    /// The account.
    pub account: String,
    /// The provider.
    pub provider: String,
    /// The account's status after the event.
    pub status: TokenStatus,
    /// The status row's reason.
    pub reason: String,
    /// When, in seconds since the Unix epoch.
    pub occurred_at_unix: i64,
    /// The account's metadata (a JSON object) at the time, if any.
    pub metadata: Option<String>,
}

/// A change the writer is about to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// A new token; `rotation` when get-service stored a provider-rotated token.
    Token { rotation: bool },
    /// A tombstone.
    Tombstone,
    /// A status record.
    Status(TokenStatus),
    /// A revocation recorded after a disconnect.
    Revocation,
}

/// The event a change makes, given the status before it (`None`: nothing was stored before).
pub(crate) fn classify(before: Option<TokenStatus>, change: Change) -> Option<EventKind> {
    use TokenStatus::{Active, Disconnected, ReauthorizationRequired};
    match (change, before) {
        (Change::Token { .. }, None | Some(Disconnected)) => Some(EventKind::Connected),
        (Change::Token { .. }, Some(ReauthorizationRequired)) => Some(EventKind::Recovered),
        (Change::Token { rotation: true }, Some(Active)) => None,
        (Change::Token { rotation: false }, Some(Active)) => Some(EventKind::Reconnected),
        (Change::Tombstone, _) => Some(EventKind::Disconnected),
        (Change::Revocation, _) => Some(EventKind::Revoked),
        (Change::Status(ReauthorizationRequired), Some(ReauthorizationRequired)) => None,
        (Change::Status(ReauthorizationRequired), _) => Some(EventKind::ReauthorizationRequired),
        (Change::Status(Active), Some(ReauthorizationRequired)) => Some(EventKind::Recovered),
        (Change::Status(_), _) => None,
    }
}

/// PostgreSQL: the per-key transaction lock the token triggers take (two-`int4` form); SQLite's
/// first write takes the file's write lock instead. Every event-writing transaction takes it
/// before its first write, so its transaction id (its event's cursor) is drawn after the
/// previous writer of the key committed: per account, cursors follow the order of changes.
pub(crate) const LOCK_KEY: Sql = Sql {
    postgres: "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))::text",
    sqlite: "SELECT $1 || $2",
};

/// The status before the newest status row of a key (the newest being the change's own).
pub(crate) const STATUS_BEFORE_NEWEST: Sql = Sql::both(
    "SELECT status FROM token_status WHERE account = $1 AND provider = $2 \
     ORDER BY id DESC LIMIT 1 OFFSET 1",
);

pub(crate) const INSERT_METADATA: Sql =
    Sql::both("INSERT INTO account_metadata (account, provider, metadata) VALUES ($1, $2, $3)");

/// Records when token version `$3` of a key expires (`$4`, Unix seconds).
pub(crate) const INSERT_EXPIRY: Sql = Sql::both(
    "INSERT INTO token_expiries (account, provider, token_id, expires_at) VALUES ($1, $2, $3, $4)",
);

/// Appends event `$3` of a key with the key's newest status and metadata.
pub(crate) const INSERT_EVENT: Sql = Sql::both(
    "INSERT INTO account_events (account, provider, kind, status, reason, metadata) \
     SELECT $1, $2, $3, s.status, s.reason, \
            (SELECT m.metadata FROM account_metadata m \
              WHERE m.account = $1 AND m.provider = $2 ORDER BY m.id DESC LIMIT 1) \
       FROM token_status s WHERE s.account = $1 AND s.provider = $2 \
      ORDER BY s.id DESC LIMIT 1",
);

/// Parses a stored status, if there is one.
pub(crate) fn parse_status(status: Option<String>) -> crate::Result<Option<TokenStatus>> {
    status
        .map(|s| s.parse())
        .transpose()
        .map_err(|e: UnknownStatus| crate::StoreError::Database(e.to_string()))
}

/// Begins a writer transaction on (`$account`, `$provider`) that holds the key's lock
/// ([`LOCK_KEY`]) before anything else. `$pick` gives the backend's SQL text (see `on_db!`).
macro_rules! begin_on_key {
    ($pool:ident, $pick:ident, $account:expr, $provider:expr) => {{
        let mut tx = $pool.begin().await?;
        sqlx::query($pick($crate::events::LOCK_KEY))
            .bind($account)
            .bind($provider)
            .execute(&mut *tx)
            .await?;
        tx
    }};
}
pub(crate) use begin_on_key;

/// Inside a writer's transaction `$tx`, after a change of (`$account`, `$provider`) has been
/// written: appends the event the change makes, judged by the status before the change's own
/// status row. `$pick` gives the backend's SQL text (see `on_db!`).
macro_rules! append_event {
    ($tx:ident, $pick:ident, $account:expr, $provider:expr, $change:expr) => {{
        let before: Option<String> =
            sqlx::query_scalar($pick($crate::events::STATUS_BEFORE_NEWEST))
                .bind($account)
                .bind($provider)
                .fetch_optional(&mut *$tx)
                .await?;
        let before = $crate::events::parse_status(before)?;
        if let Some(kind) = $crate::events::classify(before, $change) {
            sqlx::query($pick($crate::events::INSERT_EVENT))
                .bind($account)
                .bind($provider)
                .bind(kind.as_str())
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(crate) use append_event;

/// Events after cursor `$1`, oldest first, at most `$2`. PostgreSQL: an event's id is its
/// transaction's id, and only events below the snapshot's horizon (the oldest transaction still
/// running) are returned, so none with a smaller id can commit after a reader has passed it
/// (migration 0010). SQLite has one writer at a time: ids are in commit order.
pub(crate) const EVENTS_AFTER: Sql = Sql {
    postgres: "SELECT id, kind, account, provider, status, reason, \
               CAST(EXTRACT(EPOCH FROM created_at) AS bigint), metadata \
               FROM account_events \
               WHERE id > $1 AND id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
               ORDER BY id LIMIT $2",
    sqlite: "SELECT id, kind, account, provider, status, reason, created_at, metadata \
             FROM account_events WHERE id > $1 ORDER BY id LIMIT $2",
};

/// An [`EVENTS_AFTER`] row.
pub(crate) type EventRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
);

/// Parses [`EVENTS_AFTER`] rows.
pub(crate) fn parse_events(rows: Vec<EventRow>) -> crate::Result<Vec<AccountEvent>> {
    rows.into_iter()
        .map(
            |(cursor, kind, account, provider, status, reason, occurred_at_unix, metadata)| {
                let bad = |e: UnknownStatus| crate::StoreError::Database(e.to_string());
                Ok(AccountEvent {
                    cursor,
                    kind: kind.parse().map_err(bad)?,
                    account,
                    provider,
                    status: status.parse().map_err(bad)?,
                    reason,
                    occurred_at_unix,
                    metadata,
                })
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenStatus::{Active, Disconnected, ReauthorizationRequired};

    #[test]
    fn classification() {
        let connect = Change::Token { rotation: false };
        let rotate = Change::Token { rotation: true };
        assert_eq!(classify(None, connect), Some(EventKind::Connected));
        assert_eq!(
            classify(Some(Disconnected), connect),
            Some(EventKind::Connected)
        );
        assert_eq!(
            classify(Some(Active), connect),
            Some(EventKind::Reconnected)
        );
        assert_eq!(classify(Some(Active), rotate), None);
        assert_eq!(
            classify(Some(ReauthorizationRequired), connect),
            Some(EventKind::Recovered)
        );
        assert_eq!(
            classify(Some(Active), Change::Status(ReauthorizationRequired)),
            Some(EventKind::ReauthorizationRequired)
        );
        assert_eq!(
            classify(
                Some(ReauthorizationRequired),
                Change::Status(ReauthorizationRequired)
            ),
            None
        );
        assert_eq!(
            classify(Some(ReauthorizationRequired), Change::Status(Active)),
            Some(EventKind::Recovered)
        );
        assert_eq!(classify(Some(Active), Change::Status(Active)), None);
        assert_eq!(
            classify(Some(Active), Change::Tombstone),
            Some(EventKind::Disconnected)
        );
        assert_eq!(
            classify(Some(Disconnected), Change::Revocation),
            Some(EventKind::Revoked)
        );
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().ok(), Some(kind));
        }
    }
}
