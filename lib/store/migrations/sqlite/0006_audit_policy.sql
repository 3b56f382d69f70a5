-- tokenvault token store, SQLite schema v6: audit events say which account-policy rule decided a
-- get-service call (`rule:<name>`, `none`, `open`; NULL where no policy governs). Never holds a
-- token.

ALTER TABLE audit_events ADD COLUMN policy TEXT CHECK (length(policy) <= 128);
