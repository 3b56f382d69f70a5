-- tokenvault token store, PostgreSQL schema v5: access tokens shared between get-service replicas.
--
-- get-service replicas coordinate each account's refresh through PostgreSQL advisory locks (their
-- own key space: the single-bigint form; the store's per-key write lock uses the two-int form).
-- The replica that refreshed shares the access token it obtained, sealed with the token-encryption
-- public key (a JWE whose protected header says "token_use":"access"), through set-service, so that
-- the other replicas serve it instead of refreshing again. The writer can only append (it never
-- reads a share); the reader reads. A share names the token_events row (version) it was obtained
-- with and is used only while that version is the account's newest token and the account is
-- active. At most two shares per account exist: each new one deletes the older ones.

CREATE TABLE public.shared_access_tokens (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account         text        NOT NULL CHECK (char_length(account) BETWEEN 1 AND 256),
    provider        text        NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 256),
    -- The token_events row whose refresh token (or rotated successor) came with it.
    token_id        bigint      NOT NULL,
    sealed_token    text        NOT NULL CHECK (octet_length(sealed_token) BETWEEN 1 AND 65536),
    kid             text        NOT NULL CHECK (char_length(kid) BETWEEN 1 AND 256),
    expires_at_unix bigint      NOT NULL,
    lifetime_secs   bigint      NOT NULL CHECK (lifetime_secs >= 0),
    token_type      text        NOT NULL CHECK (char_length(token_type) BETWEEN 1 AND 64),
    -- Space-separated.
    scopes          text        NOT NULL CHECK (char_length(scopes) <= 4096),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX shared_access_tokens_newest ON public.shared_access_tokens (account, provider, id DESC);

-- Before the insert: serialise with the key's token_events inserts, and skip (insert nothing) a
-- share whose version is no longer the key's newest token: rotated, reconnected or disconnected
-- meanwhile. The writer sees no row come back.
CREATE FUNCTION public.shared_access_tokens_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(NEW.account), hashtext(NEW.provider));
    IF NEW.token_id IS DISTINCT FROM (SELECT max(t.id) FROM public.token_events t
                                        WHERE t.account = NEW.account
                                          AND t.provider = NEW.provider)
       OR NOT EXISTS (SELECT 1 FROM public.token_events t
                       WHERE t.id = NEW.token_id AND t.kind = 'token') THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION public.shared_access_tokens_before_insert() FROM PUBLIC;

CREATE TRIGGER shared_access_tokens_before_insert
    BEFORE INSERT ON public.shared_access_tokens
    FOR EACH ROW EXECUTE FUNCTION public.shared_access_tokens_before_insert();

-- After the insert: older shares of the key are of no use any more.
CREATE FUNCTION public.shared_access_tokens_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM public.shared_access_tokens
     WHERE account = NEW.account AND provider = NEW.provider AND id < NEW.id;
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION public.shared_access_tokens_after_insert() FROM PUBLIC;

CREATE TRIGGER shared_access_tokens_after_insert
    AFTER INSERT ON public.shared_access_tokens
    FOR EACH ROW EXECUTE FUNCTION public.shared_access_tokens_after_insert();

-- Privileges: the writer appends and learns only the new row's id; the reader reads.
REVOKE ALL ON public.shared_access_tokens FROM PUBLIC;
GRANT INSERT (account, provider, token_id, sealed_token, kid, expires_at_unix, lifetime_secs,
              token_type, scopes)
    ON public.shared_access_tokens TO tokenvault_writer;
GRANT SELECT (id) ON public.shared_access_tokens TO tokenvault_writer;
GRANT SELECT ON public.shared_access_tokens TO tokenvault_reader;
