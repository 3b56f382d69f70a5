-- tokenvault token store, SQLite schema v4: the optional append-only audit table.
--
-- One row per audited RPC or web action, written by the service that handled it. Rows are never
-- updated or deleted: the triggers below refuse it. Never holds a token: the columns are who,
-- when, what, where and the outcome.

CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- When the service handled the call (its clock), RFC 3339 UTC.
    at        TEXT    NOT NULL CHECK (length(at) BETWEEN 1 AND 64),
    service   TEXT    NOT NULL CHECK (length(service) BETWEEN 1 AND 64),
    caller    TEXT    NOT NULL CHECK (length(caller) <= 512),
    peer      TEXT    NOT NULL CHECK (length(peer) <= 128),
    action    TEXT    NOT NULL CHECK (length(action) BETWEEN 1 AND 256),
    account   TEXT    NOT NULL CHECK (length(account) <= 256),
    provider  TEXT    NOT NULL CHECK (length(provider) <= 256),
    outcome   TEXT    NOT NULL CHECK (length(outcome) BETWEEN 1 AND 64),
    error     TEXT             CHECK (length(error) <= 1024),
    stored_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE INDEX audit_events_at ON audit_events (at);

CREATE TRIGGER audit_events_no_update
BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE is not allowed');
END;

CREATE TRIGGER audit_events_no_delete
BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: DELETE is not allowed');
END;
