-- tokenvault token store, PostgreSQL schema v10: account events without a global lock, and a
-- token store in one round trip.
--
-- Until now every event insert took one cluster-wide advisory lock held until commit, so that ids
-- from a sequence became visible in commit order. That serialised every event-writing commit,
-- fsync included, and connect ingest fell to one commit at a time.
--
-- Now an event's id is the id of the transaction that wrote it (pg_current_xact_id), which makes
-- the primary key also enforce one event per transaction (every writer operation appends at most
-- one). Readers return only events below their snapshot's xmin, the oldest transaction still
-- running: every transaction below it has finished, so no event with a smaller id can appear after
-- a reader has moved past it. The price is that an event stays invisible while any older
-- transaction in the cluster that has written something is still open (normally milliseconds).
-- Per account, order holds because each writer transaction takes the account's lock before its
-- first write, and so draws its transaction id after the previous writer of that account
-- committed.
--
-- Existing ids stay valid: each came from a sequence advanced once per event-writing transaction,
-- so every one is below the transaction ids from here on.

CREATE OR REPLACE FUNCTION public.account_events_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.id := pg_current_xact_id()::text::bigint;
    NEW.created_at := clock_timestamp();
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION public.account_events_before_insert() FROM PUBLIC;

DROP SEQUENCE public.account_events_id_seq;

-- A token store in one round trip: what TokenWriter::store_with does on SQLite as a transaction
-- of six statements (key lock, token, expiry, metadata, status before, event), as one function
-- called in autocommit. Each statement was a round trip of CPU on both sides, and the store's
-- ingest rate halved with them (the store_throughput bench). SECURITY INVOKER: it runs with the
-- writer's own rights. Returns the new token's id, or NULL if nothing was inserted (the same
-- token already stored, or p_expected_version no longer the newest row).
-- The event follows the status before the token (tokenvault_store::events::classify for a token
-- change; the store_events tests hold both backends to the same sequences).
CREATE FUNCTION public.tokenvault_store_token(
    p_account text, p_provider text, p_sealed_token text, p_kid text, p_token_hash bytea,
    p_expected_version bigint, p_expires_at bigint, p_metadata text) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id     bigint;
    v_before text;
    v_kind   text;
BEGIN
    -- Before the first write, so the transaction id (the event's cursor) follows the key's
    -- previous writer.
    PERFORM pg_advisory_xact_lock(hashtext(p_account), hashtext(p_provider));
    IF p_expected_version IS NULL THEN
        INSERT INTO public.token_events (account, provider, kind, sealed_token, kid, token_hash)
        VALUES (p_account, p_provider, 'token', p_sealed_token, p_kid, p_token_hash)
        ON CONFLICT DO NOTHING
        RETURNING id INTO v_id;
    ELSE
        INSERT INTO public.token_events (account, provider, kind, sealed_token, kid, token_hash)
        SELECT p_account, p_provider, 'token', p_sealed_token, p_kid, p_token_hash
         WHERE (SELECT id FROM public.token_events
                 WHERE account = p_account AND provider = p_provider
                 ORDER BY id DESC LIMIT 1) = p_expected_version
        ON CONFLICT DO NOTHING
        RETURNING id INTO v_id;
    END IF;
    IF v_id IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_expires_at IS NOT NULL THEN
        INSERT INTO public.token_expiries (account, provider, token_id, expires_at)
        VALUES (p_account, p_provider, v_id, p_expires_at);
    END IF;
    IF p_metadata IS NOT NULL THEN
        INSERT INTO public.account_metadata (account, provider, metadata)
        VALUES (p_account, p_provider, p_metadata);
    END IF;
    -- The status before the token's own status row (written by the token_events trigger).
    SELECT status INTO v_before FROM public.token_status
     WHERE account = p_account AND provider = p_provider
     ORDER BY id DESC LIMIT 1 OFFSET 1;
    v_kind := CASE
        WHEN v_before IS NULL OR v_before = 'disconnected' THEN 'connected'
        WHEN v_before = 'reauthorization_required' THEN 'recovered'
        WHEN p_expected_version IS NULL THEN 'reconnected'
        ELSE NULL -- a rotation of an active grant: no event
    END;
    IF v_kind IS NOT NULL THEN
        INSERT INTO public.account_events (account, provider, kind, status, reason, metadata)
        SELECT p_account, p_provider, v_kind, s.status, s.reason,
               (SELECT m.metadata FROM public.account_metadata m
                 WHERE m.account = p_account AND m.provider = p_provider
                 ORDER BY m.id DESC LIMIT 1)
          FROM public.token_status s
         WHERE s.account = p_account AND s.provider = p_provider
         ORDER BY s.id DESC LIMIT 1;
    END IF;
    RETURN v_id;
END;
$$;

REVOKE ALL ON FUNCTION public.tokenvault_store_token(text, text, text, text, bytea, bigint,
    bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.tokenvault_store_token(text, text, text, text, bytea, bigint,
    bigint, text) TO tokenvault_writer;
