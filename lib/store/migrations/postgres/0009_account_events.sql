-- tokenvault token store, PostgreSQL schema v9: the embedding application's view of its accounts.
--
-- account_metadata: non-secret metadata from a signed connect link (a JSON object), appended with a
-- connect that carries it; the newest row of a key is the account's metadata.
-- account_events: the outbox. set-service appends one row per change of an account's state in the
-- same transaction as the change (tokenvault_store's writer), so no change is without its event
-- and no event without its change. Ids are the cursor: drawn under one transaction-scoped lock that
-- is held until commit, so ids become visible in commit order and a reader resuming after the
-- last id it saw misses nothing. Only event-producing transactions take it (rotations do not).
-- account_event_deliveries: one row per webhook delivery attempt (set-service's dispatcher).
-- token_expiries: when a stored refresh token expires, where the provider said
-- (refresh_token_expires_in); set-service's expiry watch appends one `expiring` event per token.
-- All four are append-only for every role. None holds a token.

CREATE TABLE public.account_metadata (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account    text        NOT NULL CHECK (char_length(account) BETWEEN 1 AND 256),
    provider   text        NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 256),
    metadata   text        NOT NULL CHECK (octet_length(metadata) BETWEEN 2 AND 4096),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX account_metadata_newest ON public.account_metadata (account, provider, id DESC);

CREATE SEQUENCE public.account_events_id_seq AS bigint;

CREATE TABLE public.account_events (
    id         bigint      PRIMARY KEY,
    account    text        NOT NULL CHECK (char_length(account) BETWEEN 1 AND 256),
    provider   text        NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 256),
    kind       text        NOT NULL CHECK (kind IN ('connected', 'reconnected',
                                'reauthorization_required', 'recovered', 'disconnected',
                                'revoked', 'expiring')),
    status     text        NOT NULL
        CHECK (status IN ('active', 'reauthorization_required', 'disconnected')),
    reason     text        NOT NULL CHECK (char_length(reason) <= 1024),
    metadata   text        CHECK (octet_length(metadata) BETWEEN 2 AND 4096),
    -- The stored token version an `expiring` event is about (one such event per token).
    token_id   bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER SEQUENCE public.account_events_id_seq OWNED BY public.account_events.id;

CREATE INDEX account_events_key ON public.account_events (account, provider, id DESC);
CREATE UNIQUE INDEX account_events_expiring_once ON public.account_events (token_id)
    WHERE kind = 'expiring';

CREATE TABLE public.token_expiries (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account    text        NOT NULL CHECK (char_length(account) BETWEEN 1 AND 256),
    provider   text        NOT NULL CHECK (char_length(provider) BETWEEN 1 AND 256),
    token_id   bigint      NOT NULL,
    -- Unix seconds.
    expires_at bigint      NOT NULL CHECK (expires_at > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX token_expiries_token ON public.token_expiries (token_id);
CREATE INDEX token_expiries_due ON public.token_expiries (expires_at);

-- The cursor: one lock for all event inserts (the single-bigint advisory form, a constant no
-- SHA-256-derived key of get-service's is expected to hit), held until commit, then the id.
CREATE FUNCTION public.account_events_before_insert() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(8389772946286736756);
    NEW.id := nextval('public.account_events_id_seq');
    NEW.created_at := clock_timestamp();
    RETURN NEW;
END;
$$;

REVOKE ALL ON FUNCTION public.account_events_before_insert() FROM PUBLIC;

CREATE TRIGGER account_events_before_insert
    BEFORE INSERT ON public.account_events
    FOR EACH ROW EXECUTE FUNCTION public.account_events_before_insert();

CREATE TABLE public.account_event_deliveries (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   bigint      NOT NULL REFERENCES public.account_events (id),
    endpoint   text        NOT NULL CHECK (char_length(endpoint) BETWEEN 1 AND 64),
    attempt    integer     NOT NULL CHECK (attempt >= 1),
    -- 'delivered': a 2xx; 'retrying': this attempt failed, another follows; 'failed': the last.
    outcome    text        NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'failed')),
    detail     text        NOT NULL CHECK (char_length(detail) <= 1024),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX account_event_deliveries_endpoint ON public.account_event_deliveries (endpoint, event_id DESC);
CREATE INDEX account_event_deliveries_failed ON public.account_event_deliveries (event_id)
    WHERE outcome = 'failed';

CREATE TRIGGER account_metadata_no_update_or_delete
    BEFORE UPDATE OR DELETE ON public.account_metadata
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER account_metadata_no_truncate
    BEFORE TRUNCATE ON public.account_metadata
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER account_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON public.account_events
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER account_events_no_truncate
    BEFORE TRUNCATE ON public.account_events
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER token_expiries_no_update_or_delete
    BEFORE UPDATE OR DELETE ON public.token_expiries
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER token_expiries_no_truncate
    BEFORE TRUNCATE ON public.token_expiries
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER account_event_deliveries_no_update_or_delete
    BEFORE UPDATE OR DELETE ON public.account_event_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();
CREATE TRIGGER account_event_deliveries_no_truncate
    BEFORE TRUNCATE ON public.account_event_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION public.token_history_append_only();

-- Privileges: nothing here is secret. The writer appends all three and reads what it classifies
-- and delivers; the reader reads.
REVOKE ALL ON public.account_metadata, public.account_events, public.account_event_deliveries,
    public.token_expiries FROM PUBLIC;
GRANT INSERT (account, provider, metadata) ON public.account_metadata TO tokenvault_writer;
GRANT SELECT ON public.account_metadata TO tokenvault_writer, tokenvault_reader;
GRANT INSERT (account, provider, kind, status, reason, metadata, token_id)
    ON public.account_events TO tokenvault_writer;
GRANT INSERT (account, provider, token_id, expires_at) ON public.token_expiries TO tokenvault_writer;
GRANT SELECT ON public.token_expiries TO tokenvault_writer, tokenvault_reader;
GRANT SELECT ON public.account_events TO tokenvault_writer, tokenvault_reader;
GRANT INSERT (event_id, endpoint, attempt, outcome, detail)
    ON public.account_event_deliveries TO tokenvault_writer;
GRANT SELECT ON public.account_event_deliveries TO tokenvault_writer, tokenvault_reader;
-- The writer classifies a change by the status before it.
GRANT SELECT (id, account, provider, status, reason, created_at)
    ON public.token_status TO tokenvault_writer;
