//! Connection handling shared by the writer, reader and admin handles: URL → backend, pool settings
//! per role, per-backend SQL, and input validation. Holds no token data.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::types::{
    MAX_ACCOUNT_LEN, MAX_KEY_ID_LEN, MAX_METADATA_LEN, MAX_PROVIDER_LEN, MAX_SEALED_TOKEN_LEN,
};
use crate::{Result, StoreError};

/// How long to wait for a pooled connection (and to keep retrying a refused connect) before
/// reporting [`StoreError::Unavailable`].
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Server-side limit for one statement of the writer and reader (PostgreSQL).
const STATEMENT_TIMEOUT: &str = "10s";
/// How long SQLite waits for another connection's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open pool on one of the two backends.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    pub(crate) async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }

    /// `SELECT 1` on a pooled connection.
    pub(crate) async fn ping(&self) -> Result<()> {
        match self {
            Db::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Db::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }
}

/// Which handle a pool is for; decides pool size, session settings and SQLite open mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Owner,
    Writer,
    Reader,
}

/// The backend a URL selects.
pub(crate) enum Target {
    Postgres(PgConnectOptions),
    Sqlite(SqliteConnectOptions),
}

/// Parses a `sqlite:` or `postgres://` / `postgresql://` URL.
pub(crate) fn parse_url(url: &str) -> Result<Target> {
    if url.starts_with("sqlite:") {
        Ok(Target::Sqlite(SqliteConnectOptions::from_str(url)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Target::Postgres(PgConnectOptions::from_str(url)?))
    } else {
        // Do not echo the URL: it may carry a password.
        Err(StoreError::Invalid(
            "database URL must start with sqlite:, postgres:// or postgresql://".to_owned(),
        ))
    }
}

/// Opens a pool for `role`. Connects once eagerly, so a down database is reported here.
/// On SQLite, the reader opens the file read-only and fails if it does not exist; the writer and
/// owner create it if missing (WAL mode).
pub(crate) async fn connect(url: &str, role: Role) -> Result<Db> {
    match parse_url(url)? {
        Target::Postgres(options) => connect_postgres(options, role).await.map(Db::Postgres),
        Target::Sqlite(options) => connect_sqlite(options, role).await.map(Db::Sqlite),
    }
}

async fn connect_postgres(options: PgConnectOptions, role: Role) -> Result<PgPool> {
    let (name, max) = match role {
        Role::Owner => ("tokenvault-store-owner", 2),
        Role::Writer => ("tokenvault-store-writer", 16),
        Role::Reader => ("tokenvault-store-reader", 16),
    };
    let mut options = options.application_name(name);
    match role {
        Role::Owner => {}
        Role::Writer => options = options.options([("statement_timeout", STATEMENT_TIMEOUT)]),
        Role::Reader => {
            options = options.options([
                ("statement_timeout", STATEMENT_TIMEOUT),
                ("default_transaction_read_only", "on"),
            ])
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(Duration::from_secs(300))
        .connect_with(options)
        .await?;
    Ok(pool)
}

async fn connect_sqlite(options: SqliteConnectOptions, role: Role) -> Result<SqlitePool> {
    let busy = options.busy_timeout(SQLITE_BUSY_TIMEOUT);
    let (options, max) = match role {
        Role::Reader => {
            let path = busy.get_filename().to_path_buf();
            if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
                return Err(StoreError::Unavailable(format!(
                    "SQLite database file {} does not exist; the writer creates it",
                    path.display()
                )));
            }
            (busy.read_only(true).create_if_missing(false), 8)
        }
        Role::Writer | Role::Owner => (
            {
                create_private_file(busy.get_filename())?;
                busy
            }
            .read_only(false)
            .create_if_missing(true)
            // Pruned ciphertexts are overwritten, not left in free pages.
            .pragma("secure_delete", "ON")
            .journal_mode(SqliteJournalMode::Wal)
            // A stored token must survive a power loss once `store` has returned.
            .synchronous(SqliteSynchronous::Full),
            4,
        ),
    };
    let pool = SqlitePoolOptions::new()
        .max_connections(max)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Creates a missing SQLite file with mode 0600 before SQLite opens it, so the
/// sealed tokens (and the `-wal`/`-shm` files, which SQLite gives the same
/// mode) are not world-readable. An existing file keeps the mode ops gave it.
fn create_private_file(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot create SQLite file {}: {e}",
            path.display()
        ))),
    }
}

/// The same statement for both backends, or a variant per backend where their SQL differs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sql {
    pub(crate) postgres: &'static str,
    pub(crate) sqlite: &'static str,
}

impl Sql {
    pub(crate) const fn both(sql: &'static str) -> Self {
        Sql {
            postgres: sql,
            sqlite: sql,
        }
    }
}

/// Runs `$body` with `$pool` bound to the backend's pool and `$q` to the backend's SQL text.
/// `$body` is compiled once per backend, so it may use the generic sqlx query API freely.
macro_rules! on_db {
    // With `$pick`, a function giving any other `Sql`'s text for the same backend (for bodies
    // that run several statements, such as a transaction).
    ($db:expr, $sql:expr, |$pool:ident, $q:ident, $pick:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => {
                let $q: &'static str = $sql.postgres;
                let $pick = |sql: $crate::db::Sql| -> &'static str { sql.postgres };
                $body
            }
            $crate::db::Db::Sqlite($pool) => {
                let $q: &'static str = $sql.sqlite;
                let $pick = |sql: $crate::db::Sql| -> &'static str { sql.sqlite };
                $body
            }
        }
    };
    ($db:expr, $sql:expr, |$pool:ident, $q:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => {
                let $q: &'static str = $sql.postgres;
                $body
            }
            $crate::db::Db::Sqlite($pool) => {
                let $q: &'static str = $sql.sqlite;
                $body
            }
        }
    };
}
pub(crate) use on_db;

/// Checks an account and a provider: 1..=[`MAX_ACCOUNT_LEN`] and 1..=[`MAX_PROVIDER_LEN`] bytes,
/// no control characters.
pub(crate) fn check_key(account: &str, provider: &str) -> Result<()> {
    check_id("account", account, MAX_ACCOUNT_LEN)?;
    check_id("provider", provider, MAX_PROVIDER_LEN)
}

/// Checks a key id: 1..=[`MAX_KEY_ID_LEN`] bytes, no control characters.
pub(crate) fn check_kid(kid: &str) -> Result<()> {
    check_id("key id", kid, MAX_KEY_ID_LEN)
}

/// Checks an id: 1..=`max` bytes, no control characters.
fn check_id(what: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(StoreError::Invalid(format!("{what} is empty")));
    }
    if value.len() > max {
        return Err(StoreError::Invalid(format!(
            "{what} is longer than {max} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

/// Checks account metadata: 2..=[`MAX_METADATA_LEN`] bytes of JSON-object text (the caller
/// checks its shape), no control characters.
pub(crate) fn check_metadata(metadata: &str) -> Result<()> {
    if metadata.len() < 2 || metadata.len() > MAX_METADATA_LEN {
        return Err(StoreError::Invalid(format!(
            "metadata must be 2 to {MAX_METADATA_LEN} bytes"
        )));
    }
    if metadata.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "metadata contains control characters".to_owned(),
        ));
    }
    Ok(())
}

/// Checks a sealed token's size and characters. The message never quotes the token.
pub(crate) fn check_sealed_token(sealed_token: &str) -> Result<()> {
    if sealed_token.is_empty() {
        return Err(StoreError::Invalid("sealed token is empty".to_owned()));
    }
    if sealed_token.len() > MAX_SEALED_TOKEN_LEN {
        return Err(StoreError::Invalid(format!(
            "sealed token is {} bytes; at most {MAX_SEALED_TOKEN_LEN} are accepted",
            sealed_token.len()
        )));
    }
    if sealed_token.chars().any(char::is_control) {
        return Err(StoreError::Invalid(
            "sealed token contains control characters".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_scheme_without_echoing_url() {
        let err = parse_url("mysql://user:secret@host/db").err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("sqlite:"), "{msg}");
        assert!(!msg.contains("secret"), "{msg}");
    }

    #[test]
    fn id_and_token_checks() {
        assert!(check_key("acct-1", "google").is_ok());
        assert!(check_key("", "google").is_err());
        assert!(check_key("acct-1", "").is_err());
        assert!(check_key(&"a".repeat(MAX_ACCOUNT_LEN), &"p".repeat(MAX_PROVIDER_LEN)).is_ok());
        assert!(check_key(&"a".repeat(MAX_ACCOUNT_LEN + 1), "google").is_err());
        assert!(check_key("acct-1", &"p".repeat(MAX_PROVIDER_LEN + 1)).is_err());
        assert!(check_key("a\0b", "google").is_err());
        assert!(check_kid(&"k".repeat(MAX_KEY_ID_LEN)).is_ok());
        assert!(check_kid(&"k".repeat(MAX_KEY_ID_LEN + 1)).is_err());
        assert!(check_sealed_token("a.b.c.d.e").is_ok());
        let big = "x".repeat(MAX_SEALED_TOKEN_LEN + 1);
        let msg = check_sealed_token(&big)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!msg.contains("xxxx"), "{msg}");
    }
}
