-- tokenvault token store, SQLite schema v7: token history cannot be deleted or rewritten (same
-- semantics as migrations/postgres/0008_token_history_guard.sql; SQLite has no TRUNCATE, and a
-- DELETE without WHERE runs the row triggers below once a table has them).
--
-- The token history is token_events, token_status, token_revocations and token_reseals. The
-- triggers below refuse DELETE on all four; UPDATE of token_status and token_revocations; UPDATE
-- of token_reseals except its own trigger's recording of a new row's outcome; and UPDATE of
-- token_events except the documented pruning path (clear the sealed token of a token that a newer
-- token supersedes, or whose revocation is recorded) and the re-seal made through token_reseals.
-- shared_access_tokens is a cache, not history (its trigger deletes older shares): left out.

CREATE TRIGGER token_events_no_delete
BEFORE DELETE ON token_events
BEGIN
    SELECT RAISE(ABORT, 'token_events is token history: DELETE is not allowed');
END;

CREATE TRIGGER token_status_no_update
BEFORE UPDATE ON token_status
BEGIN
    SELECT RAISE(ABORT, 'token_status is token history: UPDATE is not allowed');
END;

CREATE TRIGGER token_status_no_delete
BEFORE DELETE ON token_status
BEGIN
    SELECT RAISE(ABORT, 'token_status is token history: DELETE is not allowed');
END;

CREATE TRIGGER token_revocations_no_update
BEFORE UPDATE ON token_revocations
BEGIN
    SELECT RAISE(ABORT, 'token_revocations is token history: UPDATE is not allowed');
END;

CREATE TRIGGER token_revocations_no_delete
BEFORE DELETE ON token_revocations
BEGIN
    SELECT RAISE(ABORT, 'token_revocations is token history: DELETE is not allowed');
END;

CREATE TRIGGER token_reseals_no_delete
BEFORE DELETE ON token_reseals
BEGIN
    SELECT RAISE(ABORT, 'token_reseals is token history: DELETE is not allowed');
END;

-- The one update of a token_reseals row: its AFTER INSERT trigger (0003) records the new row's
-- outcome and clears its sealed token. Every committed row has an outcome.
CREATE TRIGGER token_reseals_guard_update
BEFORE UPDATE ON token_reseals
WHEN OLD.outcome IS NOT NULL
  OR NEW.outcome IS NULL
  OR NEW.sealed_token IS NOT NULL
  OR NEW.id IS NOT OLD.id
  OR NEW.account IS NOT OLD.account
  OR NEW.provider IS NOT OLD.provider
  OR NEW.token_id IS NOT OLD.token_id
  OR NEW.from_kid IS NOT OLD.from_kid
  OR NEW.to_kid IS NOT OLD.to_kid
  OR NEW.created_at IS NOT OLD.created_at
BEGIN
    SELECT RAISE(ABORT, 'token_reseals is token history: an update may only record a new re-seal''s outcome');
END;

-- As in 0003, with the prune narrowed to the documented path: the row held a sealed token until
-- now, and a newer token supersedes it or its revocation is recorded.
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
           OR OLD.pruned IS NOT 0
           OR OLD.sealed_token IS NULL
           OR NOT EXISTS (SELECT 1
                            FROM token_events n
                           WHERE n.account = OLD.account
                             AND n.provider = OLD.provider
                             AND n.id > OLD.id)))
BEGIN
    SELECT RAISE(ABORT, 'token_events is append-only: an update may only prune a superseded token or re-seal a current one');
END;

-- A prune of a token that only tombstones follow (the newest-row case is refused above): only
-- once its revocation is recorded.
CREATE TRIGGER token_events_guard_prune_pending
BEFORE UPDATE ON token_events
WHEN NEW.sealed_token IS NULL
  AND OLD.sealed_token IS NOT NULL
  AND EXISTS (SELECT 1
                FROM token_events n
               WHERE n.account = OLD.account
                 AND n.provider = OLD.provider
                 AND n.id > OLD.id)
  AND NOT EXISTS (SELECT 1
                    FROM token_events n
                   WHERE n.account = OLD.account
                     AND n.provider = OLD.provider
                     AND n.id > OLD.id
                     AND n.kind = 'token')
  AND NOT EXISTS (SELECT 1
                    FROM token_revocations r
                   WHERE r.account = OLD.account
                     AND r.provider = OLD.provider
                     AND r.token_id >= OLD.id)
BEGIN
    SELECT RAISE(ABORT, 'token_events: refusing to prune a disconnected token before its revocation is recorded');
END;
