-- tokenvault token store, PostgreSQL schema v7: the per-row triggers of token_events cost the
-- same with or without planner statistics.
--
-- The AFTER INSERT trigger of token_events (0001, 0002) and the revocation trigger (0002) clear
-- the earlier tokens of one (account, provider) with
--     UPDATE ... WHERE account = $1 AND provider = $2 AND id < $3 (<= in the revocation trigger)
--                  AND kind = 'token' AND NOT pruned
-- PL/pgSQL keeps a generic plan of it for the session's life, made after a session's first few
-- inserts. On a table that was never analysed (a new database with autovacuum off), a plan made
-- while the table is still small reads token_events_unpruned_kid (0003) or token_events_unpruned
-- (0002) with `id < $3` as its only index condition: every live token of every key, on every
-- insert. Ingest of new accounts fell from about 2,000 rows/s to about 200 at 20,000 rows, and on
-- as the table grew.
--
-- The statements are restated so that only indexes keyed by (account, provider) can serve them:
-- `kind = 'token' AND sealed_token IS NOT NULL` instead of `kind = 'token' AND NOT pruned`. These
-- are the same rows (token_events_shape: a token is pruned exactly when its sealed token is NULL,
-- and a tombstone never holds one), but they do not imply the predicate of the id-keyed partial
-- indexes, so the planner cannot use those here. The index below holds exactly the rows the
-- statements may change and has their equality columns and range as its keys; token_events_newest
-- and token_events_dedupe are the other index choices, also per key. The primary key could serve
-- `id < $3`, and a sequential scan is always possible, but until the table is first vacuumed or
-- analysed the planner takes its size as 10 pages or more, at which both cost more than a per-key
-- index; once analysed, the statistics say the same.
--
-- The re-seal trigger (0003) looked for a newer token with a subquery correlated to the updated
-- row, planned without statistics as a sequential scan of token_events per re-seal. It is
-- restated with the same conditions on NEW, whose token_id the BEFORE trigger has checked to be
-- a token of NEW.account and NEW.provider (which no update can change).
--
-- Each function keeps its SECURITY DEFINER, search_path, conditions and results. Nothing here
-- rewrites token_events, so statistics it has stay in place.

CREATE INDEX token_events_unpruned_key ON public.token_events (account, provider, id)
    WHERE sealed_token IS NOT NULL;

-- As in 0002, with the restated UPDATE.
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
           AND sealed_token IS NOT NULL;
    END IF;

    INSERT INTO public.token_status (account, provider, status, reason)
    VALUES (NEW.account,
            NEW.provider,
            CASE NEW.kind WHEN 'token' THEN 'active' ELSE 'disconnected' END,
            CASE NEW.kind WHEN 'token' THEN 'token stored' ELSE 'disconnected' END);
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION public.token_events_after_insert() FROM PUBLIC;

-- As in 0002, with the restated UPDATE.
CREATE OR REPLACE FUNCTION public.token_revocations_after_insert() RETURNS trigger
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
       AND sealed_token IS NOT NULL;

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

-- As in 0003, with the newer-token check stated on NEW.
CREATE OR REPLACE FUNCTION public.token_reseals_after_insert() RETURNS trigger
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
       AND t.account = NEW.account
       AND t.provider = NEW.provider
       AND t.kind = 'token'
       AND NOT t.pruned
       AND t.kid = NEW.from_kid
       AND NOT EXISTS (SELECT 1 FROM public.token_events n
                        WHERE n.account = NEW.account AND n.provider = NEW.provider
                          AND n.id > NEW.token_id AND n.kind = 'token');
    IF FOUND THEN
        result := 'resealed';
    ELSIF EXISTS (SELECT 1 FROM public.token_events t
                   WHERE t.id = NEW.token_id
                     AND t.account = NEW.account
                     AND t.provider = NEW.provider
                     AND NOT t.pruned
                     AND NOT EXISTS (SELECT 1 FROM public.token_events n
                                      WHERE n.account = NEW.account AND n.provider = NEW.provider
                                        AND n.id > NEW.token_id AND n.kind = 'token')) THEN
        result := 'key_changed';
    ELSE
        result := 'superseded';
    END IF;
    UPDATE public.token_reseals SET outcome = result, sealed_token = NULL WHERE id = NEW.id;
    RETURN NULL;
END;
$$;

REVOKE ALL ON FUNCTION public.token_reseals_after_insert() FROM PUBLIC;
