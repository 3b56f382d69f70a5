-- tokenvault token store, SQLite schema v1 (same semantics as migrations/postgres).
--
-- token_events holds sealed (JWE) refresh tokens and tombstones only; never a plaintext token.
-- Both tables are append-only. SQLite has no roles: the file's permissions are the boundary, and
-- get-service opens the file read-only. The one permitted in-place change is made by the trigger
-- below, which clears the secret of superseded token rows.

CREATE TABLE token_events (
    -- AUTOINCREMENT: ids only grow and are never reused, so the newest row has the largest id.
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account      TEXT    NOT NULL CHECK (length(account) BETWEEN 1 AND 256),
    provider     TEXT    NOT NULL CHECK (length(provider) BETWEEN 1 AND 256),
    kind         TEXT    NOT NULL CHECK (kind IN ('token', 'tombstone')),
    sealed_token TEXT    CHECK (length(CAST(sealed_token AS BLOB)) BETWEEN 1 AND 65536),
    kid          TEXT    CHECK (length(kid) BETWEEN 1 AND 256),
    token_hash   BLOB    CHECK (length(token_hash) = 32),
    pruned       INTEGER NOT NULL DEFAULT 0 CHECK (pruned IN (0, 1)),
    created_at   INTEGER NOT NULL DEFAULT (unixepoch()),
    CONSTRAINT token_events_shape CHECK (
        (kind = 'token' AND kid IS NOT NULL AND token_hash IS NOT NULL
            AND (sealed_token IS NULL) = pruned)
        OR
        (kind = 'tombstone' AND sealed_token IS NULL AND kid IS NULL AND token_hash IS NULL
            AND pruned = 0)
    )
) STRICT;

-- Idempotent stores; tombstones have a NULL token_hash and never collide.
CREATE UNIQUE INDEX token_events_dedupe ON token_events (account, provider, token_hash);
CREATE INDEX token_events_newest ON token_events (account, provider, id DESC);

CREATE TABLE token_status (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account    TEXT    NOT NULL CHECK (length(account) BETWEEN 1 AND 256),
    provider   TEXT    NOT NULL CHECK (length(provider) BETWEEN 1 AND 256),
    status     TEXT    NOT NULL
        CHECK (status IN ('active', 'reauthorization_required', 'disconnected')),
    reason     TEXT    NOT NULL CHECK (length(reason) <= 1024),
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE INDEX token_status_newest ON token_status (account, provider, id DESC);

-- Only ever touches rows older than the new one, so the newest row is never altered.
CREATE TRIGGER token_events_after_insert
AFTER INSERT ON token_events
BEGIN
    UPDATE token_events
       SET sealed_token = NULL, pruned = 1
     WHERE account = NEW.account
       AND provider = NEW.provider
       AND id < NEW.id
       AND kind = 'token'
       AND pruned = 0;

    INSERT INTO token_status (account, provider, status, reason)
    VALUES (NEW.account,
            NEW.provider,
            CASE NEW.kind WHEN 'token' THEN 'active' ELSE 'disconnected' END,
            CASE NEW.kind WHEN 'token' THEN 'token stored' ELSE 'disconnected' END);
END;

-- The only permitted update clears the secret of a token row that has a newer row for the same key.
CREATE TRIGGER token_events_guard_update
BEFORE UPDATE ON token_events
WHEN NEW.id IS NOT OLD.id
  OR NEW.account IS NOT OLD.account
  OR NEW.provider IS NOT OLD.provider
  OR NEW.kind IS NOT OLD.kind
  OR NEW.kid IS NOT OLD.kid
  OR NEW.token_hash IS NOT OLD.token_hash
  OR NEW.created_at IS NOT OLD.created_at
  OR NEW.sealed_token IS NOT NULL
  OR NEW.pruned IS NOT 1
  OR NOT EXISTS (SELECT 1
                   FROM token_events n
                  WHERE n.account = OLD.account
                    AND n.provider = OLD.provider
                    AND n.id > OLD.id)
BEGIN
    SELECT RAISE(ABORT, 'token_events is append-only: an update may only prune a superseded token');
END;
