-- tokenvault token store, PostgreSQL schema v3: re-sealing stored tokens under a new
-- token-encryption key (key rotation).
--
-- A re-seal replaces the sealed token (and its kid) of a token row that still holds one -- the
-- newest token of a connected account, or a disconnected account's token still waiting for
-- revocation -- with the same refresh token sealed under another key. It keeps the row's id (its
-- version), token_hash and created_at, and appends no token, tombstone or status row: so a
-- re-seal never revives a disconnected account, never changes a status, and a rotation or
-- revocation that get-service started from that version still applies to it. token_hash keeps
-- naming the sealed token as its writer first submitted it, so a late retry of that submission is
-- still recognised as already stored.
--
-- The writer cannot update token_events (nor read a sealed token). It appends a token_reseals row
-- naming the token version, the kid it was read under and the new sealed token; the owner's
-- trigger below swaps the sealed token in under the key's lock only while that version still
-- holds a sealed token under that kid (compare-and-swap), records the outcome in the row, and
-- clears the row's copy of the sealed token before the statement ends.

CREATE TABLE public.token_reseals (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account      text        NOT NULL CHECK (char_length(account) BETWEEN 1 AND 256),
    provider     text        NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 256),
    -- The token_events row (version) being re-sealed.
    token_id     bigint      NOT NULL,
    -- The kid the caller read the token under, and the kid it is re-sealed under.
    from_kid     text        NOT NULL CHECK (char_length(from_kid) BETWEEN 1 AND 256),
    to_kid       text        NOT NULL CHECK (char_length(to_kid) BETWEEN 1 AND 256),
    -- The new sealed token, only until the trigger has used it (NULL in every committed row).
    sealed_token text        CHECK (octet_length(sealed_token) BETWEEN 1 AND 65536),
    -- 'resealed': swapped in; 'superseded': the version no longer holds a sealed token (a newer
    -- token was stored, or it was revoked), nothing changed; 'key_changed': it is no longer sealed
    -- under from_kid (re-sealed already), nothing changed.
    outcome      text        CHECK (outcome IN ('resealed', 'superseded', 'key_changed')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT token_reseals_shape CHECK ((outcome IS NULL) = (sealed_token IS NOT NULL)),
    CONSTRAINT token_reseals_new_key CHECK (from_kid <> to_kid)
);

-- Before the insert: serialise with every other write of the key (token_events inserts take the
-- same lock), and refuse a version that is not a token of this (account, provider).
CREATE FUNCTION public.token_reseals_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(NEW.account), hashtext(NEW.provider));
    IF NOT EXISTS (SELECT 1 FROM public.token_events t
                    WHERE t.id = NEW.token_id AND t.account = NEW.account
                      AND t.provider = NEW.provider AND t.kind = 'token') THEN
        RAISE EXCEPTION 'token_reseals: no such token version for this account and provider'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    NEW.outcome := NULL;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION public.token_reseals_before_insert() FROM PUBLIC;

CREATE TRIGGER token_reseals_before_insert
    BEFORE INSERT ON public.token_reseals
    FOR EACH ROW EXECUTE FUNCTION public.token_reseals_before_insert();

-- After the insert (still under the key's lock, with a fresh snapshot): swap the sealed token in
-- if the version still holds one under from_kid and no newer token exists, then record the
-- outcome and drop the row's copy of the sealed token.
CREATE FUNCTION public.token_reseals_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result text;
BEGIN
    UPDATE public.token_events t
       SET sealed_token = NEW.sealed_token, kid = NEW.to_kid
     WHERE t.id = NEW.token_id
       AND t.kind = 'token'
       AND NOT t.pruned
       AND t.kid = NEW.from_kid
       AND NOT EXISTS (SELECT 1 FROM public.token_events n
                        WHERE n.account = t.account AND n.provider = t.provider
                          AND n.id > t.id AND n.kind = 'token');
    IF FOUND THEN
        result := 'resealed';
    ELSIF EXISTS (SELECT 1 FROM public.token_events t
                   WHERE t.id = NEW.token_id AND NOT t.pruned
                     AND NOT EXISTS (SELECT 1 FROM public.token_events n
                                      WHERE n.account = t.account AND n.provider = t.provider
                                        AND n.id > t.id AND n.kind = 'token')) THEN
        result := 'key_changed';
    ELSE
        result := 'superseded';
    END IF;
    UPDATE public.token_reseals SET outcome = result, sealed_token = NULL WHERE id = NEW.id;
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION public.token_reseals_after_insert() FROM PUBLIC;

CREATE TRIGGER token_reseals_after_insert
    AFTER INSERT ON public.token_reseals
    FOR EACH ROW EXECUTE FUNCTION public.token_reseals_after_insert();

-- The update guard of token_events now permits two changes: pruning a superseded token (as
-- before), and re-sealing a token that still holds a sealed token, with exactly the sealed token
-- and kid of a token_reseals row for it (so only the trigger above can do it).
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
    IF NEW.kid IS DISTINCT FROM OLD.kid OR NOT NEW.pruned THEN
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
    RETURN NEW;
END;
$$;

-- Re-sealing pages through the tokens not under the sealing key, and key retirement counts
-- tokens by kid: both over the rows that still hold a sealed token.
CREATE INDEX token_events_unpruned_kid ON public.token_events (kid, id)
    WHERE kind = 'token' AND NOT pruned;

-- Privileges. The writer appends (its conditions run in the owner's triggers) and reads back the
-- outcome; the reader reads.
REVOKE ALL ON public.token_reseals FROM PUBLIC;
GRANT INSERT (account, provider, token_id, from_kid, to_kid, sealed_token)
    ON public.token_reseals TO tokenvault_writer;
GRANT SELECT (id, outcome) ON public.token_reseals TO tokenvault_writer;
GRANT SELECT ON public.token_reseals TO tokenvault_reader;
