-- tokenvault token store, SQLite schema v3: re-sealing stored tokens under a new
-- token-encryption key (same semantics as migrations/postgres/0003_reseal.sql).
--
-- A re-seal replaces the sealed token (and its kid) of a token row that still holds one with the
-- same refresh token sealed under another key, keeping the row's id (version), token_hash and
-- created_at, and appending no token, tombstone or status row. The writer appends a token_reseals
-- row; the trigger below swaps the sealed token in only while that version still holds a sealed
-- token under from_kid and no newer token exists (SQLite serialises writers with the file lock),
-- records the outcome, and clears the row's copy of the sealed token.

CREATE TABLE token_reseals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account      TEXT    NOT NULL CHECK (length(account) BETWEEN 1 AND 256),
    provider     TEXT    NOT NULL CHECK (length(provider) BETWEEN 1 AND 256),
    token_id     INTEGER NOT NULL,
    from_kid     TEXT    NOT NULL CHECK (length(from_kid) BETWEEN 1 AND 256),
    to_kid       TEXT    NOT NULL CHECK (length(to_kid) BETWEEN 1 AND 256),
    sealed_token TEXT    CHECK (length(CAST(sealed_token AS BLOB)) BETWEEN 1 AND 65536),
    outcome      TEXT    CHECK (outcome IN ('resealed', 'superseded', 'key_changed')),
    created_at   INTEGER NOT NULL DEFAULT (unixepoch()),
    CONSTRAINT token_reseals_shape CHECK ((outcome IS NULL) = (sealed_token IS NOT NULL)),
    CONSTRAINT token_reseals_new_key CHECK (from_kid <> to_kid)
) STRICT;

CREATE TRIGGER token_reseals_guard
BEFORE INSERT ON token_reseals
WHEN NOT EXISTS (SELECT 1 FROM token_events t
                  WHERE t.id = NEW.token_id AND t.account = NEW.account
                    AND t.provider = NEW.provider AND t.kind = 'token')
BEGIN
    SELECT RAISE(ABORT, 'token_reseals: no such token version for this account and provider');
END;

CREATE TRIGGER token_reseals_after_insert
AFTER INSERT ON token_reseals
BEGIN
    UPDATE token_events
       SET sealed_token = NEW.sealed_token, kid = NEW.to_kid
     WHERE id = NEW.token_id
       AND kind = 'token'
       AND pruned = 0
       AND kid = NEW.from_kid
       AND NOT EXISTS (SELECT 1 FROM token_events n
                        WHERE n.account = NEW.account AND n.provider = NEW.provider
                          AND n.id > NEW.token_id AND n.kind = 'token');

    UPDATE token_reseals
       SET outcome = CASE
               WHEN EXISTS (SELECT 1 FROM token_events t
                             WHERE t.id = NEW.token_id AND t.sealed_token = NEW.sealed_token)
                   THEN 'resealed'
               WHEN EXISTS (SELECT 1 FROM token_events t
                             WHERE t.id = NEW.token_id AND t.pruned = 0
                               AND NOT EXISTS (SELECT 1 FROM token_events n
                                                WHERE n.account = NEW.account
                                                  AND n.provider = NEW.provider
                                                  AND n.id > NEW.token_id AND n.kind = 'token'))
                   THEN 'key_changed'
               ELSE 'superseded'
           END,
           sealed_token = NULL
     WHERE id = NEW.id;
END;

-- The update guard of token_events now permits two changes: pruning a superseded token (as
-- before), and re-sealing a token that still holds a sealed token, with exactly the sealed token
-- and kid of a token_reseals row for it (so only the trigger above can do it).
DROP TRIGGER token_events_guard_update;

CREATE TRIGGER token_events_guard_update
BEFORE UPDATE ON token_events
WHEN NEW.id IS NOT OLD.id
  OR NEW.account IS NOT OLD.account
  OR NEW.provider IS NOT OLD.provider
  OR NEW.kind IS NOT OLD.kind
  OR NEW.token_hash IS NOT OLD.token_hash
  OR NEW.created_at IS NOT OLD.created_at
  OR (NEW.sealed_token IS NOT NULL
      AND (OLD.pruned IS NOT 0 OR NEW.pruned IS NOT 0 OR OLD.sealed_token IS NULL
           OR NOT EXISTS (SELECT 1 FROM token_reseals r
                           WHERE r.token_id = OLD.id AND r.to_kid = NEW.kid
                             AND r.sealed_token = NEW.sealed_token)))
  OR (NEW.sealed_token IS NULL
      AND (NEW.kid IS NOT OLD.kid
           OR NEW.pruned IS NOT 1
           OR NOT EXISTS (SELECT 1
                            FROM token_events n
                           WHERE n.account = OLD.account
                             AND n.provider = OLD.provider
                             AND n.id > OLD.id)))
BEGIN
    SELECT RAISE(ABORT, 'token_events is append-only: an update may only prune a superseded token or re-seal a current one');
END;

CREATE INDEX token_events_unpruned_kid ON token_events (kid, id) WHERE kind = 'token' AND pruned = 0;
