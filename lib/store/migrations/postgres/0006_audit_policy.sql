-- tokenvault token store, PostgreSQL schema v6: audit events say which account-policy rule
-- decided a get-service call.
--
-- `policy` is `rule:<name>` (the rule that allowed the call), `none` (rules are configured and
-- none allowed it), `open` (no rules are configured: every caller the RPC allow-list admits may
-- read every account), or NULL for an event that no policy governs. Never holds a token.

ALTER TABLE public.audit_events
    ADD COLUMN policy text CHECK (char_length(policy) <= 128);

GRANT INSERT (policy) ON public.audit_events TO tokenvault_writer, tokenvault_reader;
