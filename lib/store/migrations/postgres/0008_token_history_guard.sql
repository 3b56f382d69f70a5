-- tokenvault token store, PostgreSQL schema v8: token history cannot be deleted or rewritten, by
-- any role, the owner included.
--
-- The token history is token_events (every stored version and tombstone), token_status (every
-- status), token_revocations (every revocation at the provider) and token_reseals (every re-seal
-- request and its outcome). Before this migration only token_events had an UPDATE guard (0001,
-- 0003); a role with DELETE or TRUNCATE on these tables, such as their owner, could remove
-- history. The triggers below refuse, for every role:
--   - DELETE and TRUNCATE on all four tables;
--   - UPDATE of token_status and token_revocations;
--   - UPDATE of token_reseals, except the one its own AFTER INSERT trigger makes (0003): setting
--     the outcome of the new row and clearing its copy of the sealed token;
--   - UPDATE of token_events, except the documented pruning path (clear the sealed token of a
--     token that a newer token supersedes, or whose revocation is recorded, and set pruned: what
--     the insert and revocation triggers and StoreAdmin::prune do) and the re-seal made through
--     token_reseals (0003). The prune path no longer clears a disconnected account's token that
--     is still waiting for revocation at the provider: only recording the revocation does.
-- shared_access_tokens is not history but a cache of sealed access tokens: its own trigger
-- (0005) deletes older shares, so it is left out.
--
-- A trigger refuses statements, not schema changes: the table owner can still drop or disable a
-- trigger (ALTER TABLE), as for audit_events (0004). The owner's credentials are for migrations
-- only (deploy/README.md).

CREATE FUNCTION public.token_history_append_only() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% is token history: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

REVOKE ALL ON FUNCTION public.token_history_append_only() FROM PUBLIC;

-- Statement-level, so that a DELETE that matches no row is refused too.
CREATE TRIGGER token_events_no_delete
    BEFORE DELETE ON public.token_events
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER token_events_no_truncate
    BEFORE TRUNCATE ON public.token_events
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();

CREATE TRIGGER token_status_no_update_or_delete
    BEFORE UPDATE OR DELETE ON public.token_status
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER token_status_no_truncate
    BEFORE TRUNCATE ON public.token_status
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();

CREATE TRIGGER token_revocations_no_update_or_delete
    BEFORE UPDATE OR DELETE ON public.token_revocations
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER token_revocations_no_truncate
    BEFORE TRUNCATE ON public.token_revocations
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();

CREATE TRIGGER token_reseals_no_delete
    BEFORE DELETE ON public.token_reseals
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER token_reseals_no_truncate
    BEFORE TRUNCATE ON public.token_reseals
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();

-- The one update of a token_reseals row: its AFTER INSERT trigger records the outcome of the new
-- row (whose outcome is NULL only until then) and clears its sealed token. Every committed row
-- has an outcome, so no later update passes.
CREATE FUNCTION public.token_reseals_guard_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF OLD.outcome IS NOT NULL
       OR NEW.outcome IS NULL
       OR NEW.sealed_token IS NOT NULL
       OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.account IS DISTINCT FROM OLD.account
       OR NEW.provider IS DISTINCT FROM OLD.provider
       OR NEW.token_id IS DISTINCT FROM OLD.token_id
       OR NEW.from_kid IS DISTINCT FROM OLD.from_kid
       OR NEW.to_kid IS DISTINCT FROM OLD.to_kid
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'token_reseals is token history: an update may only record a new re-seal''s outcome'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION public.token_reseals_guard_update() FROM PUBLIC;

CREATE TRIGGER token_reseals_guard_update
    BEFORE UPDATE ON public.token_reseals
    FOR EACH ROW EXECUTE FUNCTION public.token_reseals_guard_update();

-- As in 0003, with the prune narrowed to the documented path: the row must hold a sealed token
-- until now (pruned flips from false to true), and a newer token of the key must supersede it, or
-- its revocation be recorded.
CREATE OR REPLACE FUNCTION public.token_events_guard_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id
       OR NEW.account IS DISTINCT FROM OLD.account
       OR NEW.provider IS DISTINCT FROM OLD.provider
       OR NEW.kind IS DISTINCT FROM OLD.kind
       OR NEW.token_hash IS DISTINCT FROM OLD.token_hash
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'token_events is append-only: an update may only prune a superseded token or re-seal a current one'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.sealed_token IS NOT NULL THEN
        -- A re-seal.
        IF OLD.pruned OR NEW.pruned OR OLD.sealed_token IS NULL
           OR NOT EXISTS (SELECT 1 FROM public.token_reseals r
                           WHERE r.token_id = OLD.id AND r.to_kid = NEW.kid
                             AND r.sealed_token = NEW.sealed_token) THEN
            RAISE EXCEPTION 'token_events: a sealed token may only be replaced by a re-seal (token_reseals)'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END IF;
    -- A prune.
    IF NEW.kid IS DISTINCT FROM OLD.kid OR NOT NEW.pruned OR OLD.pruned
       OR OLD.sealed_token IS NULL THEN
        RAISE EXCEPTION 'token_events is append-only: an update may only prune a superseded token or re-seal a current one'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NOT EXISTS (SELECT 1
                     FROM public.token_events n
                    WHERE n.account = OLD.account
                      AND n.provider = OLD.provider
                      AND n.id > OLD.id) THEN
        RAISE EXCEPTION 'token_events: refusing to prune the newest row'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NOT EXISTS (SELECT 1
                     FROM public.token_events n
                    WHERE n.account = OLD.account
                      AND n.provider = OLD.provider
                      AND n.id > OLD.id
                      AND n.kind = 'token')
       AND NOT EXISTS (SELECT 1
                         FROM public.token_revocations r
                        WHERE r.account = OLD.account
                          AND r.provider = OLD.provider
                          AND r.token_id >= OLD.id) THEN
        RAISE EXCEPTION 'token_events: refusing to prune a disconnected token before its revocation is recorded'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;
