-- tokenvault token store, SQLite schema v2: revoking a disconnected grant at the provider.
--
-- A tombstone no longer clears the sealed token it follows: get-service still needs it once, to
-- revoke the grant at the provider (RFC 7009). When get-service has done so, set-service appends
-- a token_revocations row, whose trigger then clears that sealed token. A new token (a reconnect)
-- still clears every earlier one, as before: revoking the old token then could revoke the new grant.

DROP TRIGGER token_events_after_insert;

CREATE TRIGGER token_events_after_insert
AFTER INSERT ON token_events
BEGIN
    UPDATE token_events
       SET sealed_token = NULL, pruned = 1
     WHERE NEW.kind = 'token'
       AND account = NEW.account
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

CREATE TABLE token_revocations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account    TEXT    NOT NULL CHECK (length(account) BETWEEN 1 AND 256),
    provider   TEXT    NOT NULL CHECK (length(provider) BETWEEN 1 AND 256),
    -- The token_events row whose refresh token was revoked.
    token_id   INTEGER NOT NULL,
    -- 'revoked': the provider confirmed; 'unsupported': the provider offers no revocation.
    outcome    TEXT    NOT NULL CHECK (outcome IN ('revoked', 'unsupported')),
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE UNIQUE INDEX token_revocations_once ON token_revocations (account, provider, token_id);

-- Tokens still holding a sealed token (one per connected or pending key): get-service's sweep for
-- pending revocations reads it instead of the whole append-only table.
CREATE INDEX token_events_unpruned ON token_events (id) WHERE kind = 'token' AND pruned = 0;

-- Only a token that a tombstone follows may be recorded as revoked.
CREATE TRIGGER token_revocations_guard
BEFORE INSERT ON token_revocations
WHEN NOT EXISTS (SELECT 1 FROM token_events t
                  WHERE t.id = NEW.token_id AND t.account = NEW.account
                    AND t.provider = NEW.provider AND t.kind = 'token')
  OR NOT EXISTS (SELECT 1 FROM token_events n
                  WHERE n.account = NEW.account AND n.provider = NEW.provider
                    AND n.id > NEW.token_id AND n.kind = 'tombstone')
BEGIN
    SELECT RAISE(ABORT, 'token_revocations: only a disconnected token can be recorded as revoked');
END;

CREATE TRIGGER token_revocations_after_insert
AFTER INSERT ON token_revocations
BEGIN
    UPDATE token_events
       SET sealed_token = NULL, pruned = 1
     WHERE account = NEW.account
       AND provider = NEW.provider
       AND id <= NEW.token_id
       AND kind = 'token'
       AND pruned = 0;

    INSERT INTO token_status (account, provider, status, reason)
    SELECT NEW.account,
           NEW.provider,
           'disconnected',
           CASE NEW.outcome
               WHEN 'revoked' THEN 'disconnected; refresh token revoked at the provider'
               ELSE 'disconnected; the provider offers no revocation, refresh token deleted'
           END
     WHERE (SELECT kind FROM token_events
             WHERE account = NEW.account AND provider = NEW.provider
             ORDER BY id DESC LIMIT 1) = 'tombstone';
END;
