-- tokenvault token store, PostgreSQL schema v4: the optional append-only audit table.
--
-- One row per audited RPC or web action, written by the service that handled it (set-service as
-- tokenvault_writer, get-service as tokenvault_reader; both may only INSERT here). Rows are never
-- updated or deleted: the triggers below refuse UPDATE, DELETE and TRUNCATE even for a role that
-- was granted them by mistake. Never holds a token: the columns are who, when, what, where and the
-- outcome.

CREATE TABLE public.audit_events (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- When the service handled the call (its clock).
    at        timestamptz NOT NULL,
    -- The service that wrote the event: set-service, get-service or web-frontend.
    service   text        NOT NULL CHECK (char_length(service) BETWEEN 1 AND 64),
    -- Who: the caller's SPIFFE ID, or web-session:<label> for a browser sign-in.
    caller    text        NOT NULL CHECK (char_length(caller) <= 512),
    -- Where: the peer's address.
    peer      text        NOT NULL CHECK (char_length(peer) <= 128),
    -- What: the RPC or web action, and the account and provider it was for.
    action    text        NOT NULL CHECK (char_length(action) BETWEEN 1 AND 256),
    account   text        NOT NULL CHECK (char_length(account) <= 256),
    provider  text        NOT NULL CHECK (char_length(provider) <= 256),
    -- The outcome: ok, or a short error label; and the error's message.
    outcome   text        NOT NULL CHECK (char_length(outcome) BETWEEN 1 AND 64),
    error     text                 CHECK (char_length(error) <= 1024),
    -- When the row was inserted (the database's clock).
    stored_at timestamptz NOT NULL DEFAULT now(),
    -- The database role that inserted the row: not insertable, so a service
    -- cannot write rows that pass for the other's (`service` is what it says).
    db_role   text        NOT NULL DEFAULT session_user
);

CREATE INDEX audit_events_at ON public.audit_events (at);

CREATE FUNCTION public.audit_events_append_only() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

REVOKE ALL ON FUNCTION public.audit_events_append_only() FROM PUBLIC;

CREATE TRIGGER audit_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON public.audit_events
    FOR EACH ROW EXECUTE FUNCTION public.audit_events_append_only();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON public.audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION public.audit_events_append_only();

REVOKE ALL ON public.audit_events FROM PUBLIC;
GRANT INSERT (at, service, caller, peer, action, account, provider, outcome, error)
    ON public.audit_events TO tokenvault_writer, tokenvault_reader;
