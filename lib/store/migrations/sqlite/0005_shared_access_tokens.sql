-- tokenvault token store, SQLite schema v5: shared access tokens (same semantics as
-- migrations/postgres/0005_shared_access_tokens.sql). SQLite is the single-host store, where one
-- get-service runs and shares nothing; the table keeps both schemas and set-service alike.

CREATE TABLE shared_access_tokens (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    account         TEXT    NOT NULL CHECK (length(account) BETWEEN 1 AND 256),
    provider        TEXT    NOT NULL CHECK (length(provider) BETWEEN 1 AND 256),
    token_id        INTEGER NOT NULL,
    sealed_token    TEXT    NOT NULL CHECK (length(CAST(sealed_token AS BLOB)) BETWEEN 1 AND 65536),
    kid             TEXT    NOT NULL CHECK (length(kid) BETWEEN 1 AND 256),
    expires_at_unix INTEGER NOT NULL,
    lifetime_secs   INTEGER NOT NULL CHECK (lifetime_secs >= 0),
    token_type      TEXT    NOT NULL CHECK (length(token_type) BETWEEN 1 AND 64),
    scopes          TEXT    NOT NULL CHECK (length(scopes) <= 4096),
    created_at      INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE INDEX shared_access_tokens_newest ON shared_access_tokens (account, provider, id DESC);

-- A share whose version is no longer the key's newest token is not kept.
CREATE TRIGGER shared_access_tokens_only_newest
BEFORE INSERT ON shared_access_tokens
WHEN NEW.token_id IS NOT (SELECT max(t.id) FROM token_events t
                           WHERE t.account = NEW.account AND t.provider = NEW.provider)
  OR NOT EXISTS (SELECT 1 FROM token_events t WHERE t.id = NEW.token_id AND t.kind = 'token')
BEGIN
    SELECT RAISE(IGNORE);
END;

CREATE TRIGGER shared_access_tokens_after_insert
AFTER INSERT ON shared_access_tokens
BEGIN
    DELETE FROM shared_access_tokens
     WHERE account = NEW.account AND provider = NEW.provider AND id < NEW.id;
END;
