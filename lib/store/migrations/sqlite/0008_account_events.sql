-- tokenvault token store, SQLite schema v8 (same semantics as postgres/0009_account_events):
-- account metadata, the account-event outbox, webhook delivery attempts and refresh-token expiries. SQLite serialises
-- write transactions, so event ids become visible in commit order without a lock of their own.
-- All four are append-only. None holds a token.

CREATE TABLE account_metadata (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account    TEXT    NOT NULL CHECK (length(account) BETWEEN 1 AND 256),
    provider   TEXT    NOT NULL CHECK (length(provider) BETWEEN 1 AND 256),
    metadata   TEXT    NOT NULL CHECK (length(CAST(metadata AS BLOB)) BETWEEN 2 AND 4096),
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE INDEX account_metadata_newest ON account_metadata (account, provider, id DESC);

CREATE TABLE account_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account    TEXT    NOT NULL CHECK (length(account) BETWEEN 1 AND 256),
    provider   TEXT    NOT NULL CHECK (length(provider) BETWEEN 1 AND 256),
    kind       TEXT    NOT NULL CHECK (kind IN ('connected', 'reconnected',
                           'reauthorization_required', 'recovered', 'disconnected',
                           'revoked', 'expiring')),
    status     TEXT    NOT NULL
        CHECK (status IN ('active', 'reauthorization_required', 'disconnected')),
    reason     TEXT    NOT NULL CHECK (length(reason) <= 1024),
    metadata   TEXT    CHECK (length(CAST(metadata AS BLOB)) BETWEEN 2 AND 4096),
    token_id   INTEGER,
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE INDEX account_events_key ON account_events (account, provider, id DESC);
CREATE UNIQUE INDEX account_events_expiring_once ON account_events (token_id)
    WHERE kind = 'expiring';

CREATE TABLE token_expiries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account    TEXT    NOT NULL CHECK (length(account) BETWEEN 1 AND 256),
    provider   TEXT    NOT NULL CHECK (length(provider) BETWEEN 1 AND 256),
    token_id   INTEGER NOT NULL,
    expires_at INTEGER NOT NULL CHECK (expires_at > 0),
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE UNIQUE INDEX token_expiries_token ON token_expiries (token_id);
CREATE INDEX token_expiries_due ON token_expiries (expires_at);

CREATE TABLE account_event_deliveries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   INTEGER NOT NULL REFERENCES account_events (id),
    endpoint   TEXT    NOT NULL CHECK (length(endpoint) BETWEEN 1 AND 64),
    attempt    INTEGER NOT NULL CHECK (attempt >= 1),
    outcome    TEXT    NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'failed')),
    detail     TEXT    NOT NULL CHECK (length(detail) <= 1024),
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE INDEX account_event_deliveries_endpoint ON account_event_deliveries (endpoint, event_id DESC);
CREATE INDEX account_event_deliveries_failed ON account_event_deliveries (event_id)
    WHERE outcome = 'failed';

CREATE TRIGGER account_metadata_no_update BEFORE UPDATE ON account_metadata
BEGIN
    SELECT RAISE(ABORT, 'account_metadata is token history: UPDATE is not allowed');
END;
CREATE TRIGGER account_metadata_no_delete BEFORE DELETE ON account_metadata
BEGIN
    SELECT RAISE(ABORT, 'account_metadata is token history: DELETE is not allowed');
END;
CREATE TRIGGER account_events_no_update BEFORE UPDATE ON account_events
BEGIN
    SELECT RAISE(ABORT, 'account_events is token history: UPDATE is not allowed');
END;
CREATE TRIGGER account_events_no_delete BEFORE DELETE ON account_events
BEGIN
    SELECT RAISE(ABORT, 'account_events is token history: DELETE is not allowed');
END;
CREATE TRIGGER token_expiries_no_update BEFORE UPDATE ON token_expiries
BEGIN
    SELECT RAISE(ABORT, 'token_expiries is token history: UPDATE is not allowed');
END;
CREATE TRIGGER token_expiries_no_delete BEFORE DELETE ON token_expiries
BEGIN
    SELECT RAISE(ABORT, 'token_expiries is token history: DELETE is not allowed');
END;
CREATE TRIGGER account_event_deliveries_no_update BEFORE UPDATE ON account_event_deliveries
BEGIN
    SELECT RAISE(ABORT, 'account_event_deliveries is token history: UPDATE is not allowed');
END;
CREATE TRIGGER account_event_deliveries_no_delete BEFORE DELETE ON account_event_deliveries
BEGIN
    SELECT RAISE(ABORT, 'account_event_deliveries is token history: DELETE is not allowed');
END;
