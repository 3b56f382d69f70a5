-- tokenvault_store_token with p_expected_version = 0: store only if nothing was ever stored for
-- the key (`tokenvault import`: an import never replaces a token tokenvault holds, nor revives a
-- disconnected account, and a line imported twice is stored once). Ids start at 1, so 0 never
-- names a stored version. Otherwise the function of migration 0010, unchanged.
CREATE OR REPLACE FUNCTION public.tokenvault_store_token(
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
    PERFORM pg_advisory_xact_lock(hashtext(p_account), hashtext(p_provider));
    IF p_expected_version IS NULL THEN
        INSERT INTO public.token_events (account, provider, kind, sealed_token, kid, token_hash)
        VALUES (p_account, p_provider, 'token', p_sealed_token, p_kid, p_token_hash)
        ON CONFLICT DO NOTHING
        RETURNING id INTO v_id;
    ELSE
        INSERT INTO public.token_events (account, provider, kind, sealed_token, kid, token_hash)
        SELECT p_account, p_provider, 'token', p_sealed_token, p_kid, p_token_hash
         WHERE COALESCE((SELECT id FROM public.token_events
                          WHERE account = p_account AND provider = p_provider
                          ORDER BY id DESC LIMIT 1), 0) = p_expected_version
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
