-- tokenvault: PostgreSQL roles and database. Idempotent; re-running also rotates the passwords.
--
-- Run as a superuser (or a role with CREATEROLE and CREATEDB), with the passwords as psql variables:
--
--   psql -h db.internal -U postgres -v ON_ERROR_STOP=1 \
--        -v owner_password="$OWNER_PW" -v writer_password="$WRITER_PW" -v reader_password="$READER_PW" \
--        [-v dbname=tokenvault] -f deploy/postgres/setup.sql
--
-- Then apply the schema as the owner (deploy/README.md, "PostgreSQL"):
--   TOKENVAULT_SET_OWNER_URL=postgres://tokenvault_owner@host/tokenvault PGPASSWORD="$OWNER_PW" set-service migrate
-- The migrations grant the table privileges:
--   tokenvault_owner   owns the database and schema objects; runs migrations (never used by a service)
--   tokenvault_writer  set-service: INSERT only, plus SELECT on non-secret columns; never sealed_token
--   tokenvault_reader  get-service: SELECT only (and read-only sessions by default)
--
-- The passwords are sent to the server in plain text inside ALTER ROLE statements (the server stores
-- a SCRAM hash). Keep statement logging off while this runs, and feed the variables from a secret
-- store rather than your shell history.

\set ON_ERROR_STOP on

\if :{?dbname}
\else
  \set dbname tokenvault
\endif

\if :{?owner_password}
\else
  \echo 'setup.sql: missing -v owner_password=...'
  DO $$ BEGIN RAISE EXCEPTION 'missing psql variable owner_password'; END $$;
\endif
\if :{?writer_password}
\else
  \echo 'setup.sql: missing -v writer_password=...'
  DO $$ BEGIN RAISE EXCEPTION 'missing psql variable writer_password'; END $$;
\endif
\if :{?reader_password}
\else
  \echo 'setup.sql: missing -v reader_password=...'
  DO $$ BEGIN RAISE EXCEPTION 'missing psql variable reader_password'; END $$;
\endif

SELECT :'owner_password' = '' OR :'writer_password' = '' OR :'reader_password' = '' AS empty_password
\gset
\if :empty_password
  DO $$ BEGIN RAISE EXCEPTION 'passwords must not be empty'; END $$;
\endif

-- Roles (cluster-global). Create if missing, then (re)apply attributes and passwords.
SELECT format('CREATE ROLE %I', r)
  FROM unnest(ARRAY['tokenvault_owner', 'tokenvault_writer', 'tokenvault_reader']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec

ALTER ROLE tokenvault_owner  WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'owner_password';
ALTER ROLE tokenvault_writer WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'writer_password';
ALTER ROLE tokenvault_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'reader_password';

-- The database, owned by the owner role.
SELECT format('CREATE DATABASE %I OWNER tokenvault_owner TEMPLATE template0 ENCODING %L',
              :'dbname', 'UTF8')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'dbname')
\gexec

ALTER DATABASE :"dbname" OWNER TO tokenvault_owner;
REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"dbname" TO tokenvault_writer, tokenvault_reader;
-- Defence in depth: the reader's sessions are read-only even before privileges are checked.
ALTER ROLE tokenvault_reader IN DATABASE :"dbname" SET default_transaction_read_only = on;

-- Nobody but the owner may create objects in the schema the migrations use.
\connect -reuse-previous=on :"dbname"
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

\echo 'tokenvault roles and database are ready; now run the migrations as tokenvault_owner'
