-- tokenvault token store, PostgreSQL schema v2: revoking a disconnected grant at the provider.
--
-- A tombstone no longer clears the sealed token it follows: get-service still needs it once, to
-- revoke the grant at the provider (RFC 7009). When get-service has done so, set-service appends
-- a token_revocations row, whose trigger then clears that sealed token. A new token (a reconnect)
-- still clears every earlier one, as before: revoking the old token then could revoke the new grant.

CREATE OR REPLACE FUNCTION public.token_events_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.kind = 'token' THEN
        UPDATE public.token_events
           SET sealed_token = NULL, pruned = true
         WHERE account = NEW.account
           AND provider = NEW.provider
           AND id < NEW.id
           AND kind = 'token'
           AND NOT pruned;
    END IF;

    INSERT INTO public.token_status (account, provider, status, reason)
    VALUES (NEW.account,
            NEW.provider,
            CASE NEW.kind WHEN 'token' THEN 'active' ELSE 'disconnected' END,
            CASE NEW.kind WHEN 'token' THEN 'token stored' ELSE 'disconnected' END);
    RETURN NULL;
END;
$$;

CREATE TABLE public.token_revocations (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account    text        NOT NULL CHECK (char_length(account) BETWEEN 1 AND 256),
    provider   text        NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 256),
    -- The token_events row whose refresh token was revoked.
    token_id   bigint      NOT NULL,
    -- 'revoked': the provider confirmed; 'unsupported': the provider offers no revocation.
    outcome    text        NOT NULL CHECK (outcome IN ('revoked', 'unsupported')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX token_revocations_once ON public.token_revocations (account, provider, token_id);

-- Tokens still holding a sealed token (one per connected or pending key): get-service's sweep for
-- pending revocations reads it instead of the whole append-only table.
CREATE INDEX token_events_unpruned ON public.token_events (id) WHERE kind = 'token' AND NOT pruned;

-- Only a token that a tombstone follows may be recorded as revoked; then its sealed token is
-- cleared and the status says so. Serialised with the key's token_events inserts.
CREATE FUNCTION public.token_revocations_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(NEW.account), hashtext(NEW.provider));
    IF NOT EXISTS (SELECT 1 FROM public.token_events t
                    WHERE t.id = NEW.token_id AND t.account = NEW.account
                      AND t.provider = NEW.provider AND t.kind = 'token')
       OR NOT EXISTS (SELECT 1 FROM public.token_events n
                       WHERE n.account = NEW.account AND n.provider = NEW.provider
                         AND n.id > NEW.token_id AND n.kind = 'tombstone') THEN
        RAISE EXCEPTION 'token_revocations: only a disconnected token can be recorded as revoked'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION public.token_revocations_before_insert() FROM PUBLIC;

CREATE TRIGGER token_revocations_before_insert
    BEFORE INSERT ON public.token_revocations
    FOR EACH ROW EXECUTE FUNCTION public.token_revocations_before_insert();

CREATE FUNCTION public.token_revocations_after_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE public.token_events
       SET sealed_token = NULL, pruned = true
     WHERE account = NEW.account
       AND provider = NEW.provider
       AND id <= NEW.token_id
       AND kind = 'token'
       AND NOT pruned;

    INSERT INTO public.token_status (account, provider, status, reason)
    SELECT NEW.account,
           NEW.provider,
           'disconnected',
           CASE NEW.outcome
               WHEN 'revoked' THEN 'disconnected; refresh token revoked at the provider'
               ELSE 'disconnected; the provider offers no revocation, refresh token deleted'
           END
     WHERE (SELECT kind FROM public.token_events
             WHERE account = NEW.account AND provider = NEW.provider
             ORDER BY id DESC LIMIT 1) = 'tombstone';
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION public.token_revocations_after_insert() FROM PUBLIC;

CREATE TRIGGER token_revocations_after_insert
    AFTER INSERT ON public.token_revocations
    FOR EACH ROW EXECUTE FUNCTION public.token_revocations_after_insert();

-- Privileges. The writer appends (its INSERT ... SELECT conditions read only non-secret columns);
-- the reader reads.
REVOKE ALL ON public.token_revocations FROM PUBLIC;
GRANT INSERT (account, provider, token_id, outcome) ON public.token_revocations TO tokenvault_writer;
GRANT SELECT (id, account, provider, token_id) ON public.token_revocations TO tokenvault_writer;
GRANT SELECT ON public.token_revocations TO tokenvault_reader;
