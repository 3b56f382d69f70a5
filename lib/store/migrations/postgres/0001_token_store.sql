-- tokenvault token store, PostgreSQL schema v1.
--
-- Run by `tokenvault_owner` (through `tokenvault_store::migrate`). The roles `tokenvault_writer` and
-- `tokenvault_reader` must already exist (deploy/postgres/setup.sql creates them).
--
-- token_events holds sealed (JWE) refresh tokens and tombstones only; never a plaintext token.
-- Both tables are append-only: the writer role may only INSERT. The one permitted in-place change is
-- made by the owner-defined trigger below, which clears the secret of superseded token rows.

-- Row ids are drawn by the BEFORE INSERT trigger below, never by the inserting role.
CREATE SEQUENCE public.token_events_id_seq AS bigint;

CREATE TABLE public.token_events (
    id           bigint      PRIMARY KEY,
    account      text        NOT NULL CHECK (char_length(account) BETWEEN 1 AND 256),
    provider     text        NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 256),
    kind         text        NOT NULL CHECK (kind IN ('token', 'tombstone')),
    sealed_token text        CHECK (octet_length(sealed_token) BETWEEN 1 AND 65536),
    kid          text        CHECK (char_length(kid) BETWEEN 1 AND 256),
    token_hash   bytea       CHECK (octet_length(token_hash) = 32),
    pruned       boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT token_events_shape CHECK (
        (kind = 'token' AND kid IS NOT NULL AND token_hash IS NOT NULL
            AND (sealed_token IS NULL) = pruned)
        OR
        (kind = 'tombstone' AND sealed_token IS NULL AND kid IS NULL AND token_hash IS NULL
            AND NOT pruned)
    )
);

ALTER SEQUENCE public.token_events_id_seq OWNED BY public.token_events.id;

-- Idempotent stores: the same sealed token for the same (account, provider) is stored once.
-- Tombstones have a NULL token_hash and never collide.
CREATE UNIQUE INDEX token_events_dedupe ON public.token_events (account, provider, token_hash);
-- Newest row per (account, provider).
CREATE INDEX token_events_newest ON public.token_events (account, provider, id DESC);

CREATE TABLE public.token_status (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account    text        NOT NULL CHECK (char_length(account) BETWEEN 1 AND 256),
    provider   text        NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 256),
    status     text        NOT NULL
        CHECK (status IN ('active', 'reauthorization_required', 'disconnected')),
    reason     text        NOT NULL CHECK (char_length(reason) <= 1024),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX token_status_newest ON public.token_status (account, provider, id DESC);

-- Before every insert: serialise inserts per (account, provider) until commit, and only then draw
-- the row id. So for one key, ids follow commit order, and the AFTER trigger below (whose statements
-- take fresh READ COMMITTED snapshots) sees every earlier row of its key, even under concurrent
-- inserts. Runs as the owner, so the writer needs no privilege on the sequence.
CREATE FUNCTION public.token_events_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(NEW.account), hashtext(NEW.provider));
    NEW.id := nextval('public.token_events_id_seq');
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION public.token_events_before_insert() FROM PUBLIC;

CREATE TRIGGER token_events_before_insert
    BEFORE INSERT ON public.token_events
    FOR EACH ROW EXECUTE FUNCTION public.token_events_before_insert();

-- After every new token or tombstone: clear the secret of all earlier token rows of the same
-- (account, provider) and append the implied status (token -> active, tombstone -> disconnected),
-- still under the per-key lock, so status rows of one key also follow commit order.
-- Runs as the owner (SECURITY DEFINER), so the writer needs no UPDATE privilege. It only touches rows
-- with a smaller id than the new row, so the newest row is never altered.
CREATE FUNCTION public.token_events_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.token_events
       SET sealed_token = NULL, pruned = true
     WHERE account = NEW.account
       AND provider = NEW.provider
       AND id < NEW.id
       AND kind = 'token'
       AND NOT pruned;

    INSERT INTO public.token_status (account, provider, status, reason)
    VALUES (NEW.account,
            NEW.provider,
            CASE NEW.kind WHEN 'token' THEN 'active' ELSE 'disconnected' END,
            CASE NEW.kind WHEN 'token' THEN 'token stored' ELSE 'disconnected' END);
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION public.token_events_after_insert() FROM PUBLIC;

CREATE TRIGGER token_events_after_insert
    AFTER INSERT ON public.token_events
    FOR EACH ROW EXECUTE FUNCTION public.token_events_after_insert();

-- Whoever updates (the trigger above, the owner's prune job, a human with owner rights): the only
-- permitted update clears the secret of a token row that has a newer row for the same key.
CREATE FUNCTION public.token_events_guard_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id
       OR NEW.account IS DISTINCT FROM OLD.account
       OR NEW.provider IS DISTINCT FROM OLD.provider
       OR NEW.kind IS DISTINCT FROM OLD.kind
       OR NEW.kid IS DISTINCT FROM OLD.kid
       OR NEW.token_hash IS DISTINCT FROM OLD.token_hash
       OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR NEW.sealed_token IS NOT NULL
       OR NOT NEW.pruned THEN
        RAISE EXCEPTION 'token_events is append-only: an update may only prune a superseded token'
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

REVOKE ALL ON FUNCTION public.token_events_guard_update() FROM PUBLIC;

CREATE TRIGGER token_events_guard_update
    BEFORE UPDATE ON public.token_events
    FOR EACH ROW EXECUTE FUNCTION public.token_events_guard_update();

-- Privileges. Nothing for PUBLIC.
REVOKE ALL ON public.token_events, public.token_status FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO tokenvault_writer, tokenvault_reader;

-- Writer: INSERT of the caller-supplied columns only (id, pruned and created_at are set by the
-- database), plus SELECT on the non-secret columns that its INSERT ... RETURNING, conflict lookups
-- and "is there anything stored" checks need. Never SELECT on sealed_token or kid.
-- No sequence privilege: token_events ids come from the owner's trigger, token_status ids from an
-- identity column (which needs none).
GRANT INSERT (account, provider, kind, sealed_token, kid, token_hash)
    ON public.token_events TO tokenvault_writer;
GRANT SELECT (id, account, provider, kind, token_hash)
    ON public.token_events TO tokenvault_writer;
GRANT INSERT (account, provider, status, reason)
    ON public.token_status TO tokenvault_writer;

-- Reader: SELECT only.
GRANT SELECT ON public.token_events, public.token_status TO tokenvault_reader;
