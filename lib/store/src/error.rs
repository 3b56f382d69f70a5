//! The store's error type and its mapping from sqlx errors.
//!
//! Messages carry the database's primary message and SQLSTATE/result code only — never a bound
//! value, a row's contents or a PostgreSQL `DETAIL` (which can quote a failing row), so a sealed
//! token never ends up in an error message.

use sqlx::error::DatabaseError;
use sqlx::migrate::MigrateError;
use sqlx::sqlite::SqliteError;

/// Errors of the token store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Nothing was ever stored for this (account, provider).
    #[error("nothing is stored for this account and provider")]
    NotFound,
    /// The request is malformed (empty or oversized field, unknown URL scheme, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request conflicts with the stored state (e.g. a status change for a disconnected account).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or is overloaded (down, refused, timed out, busy). Retryable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other database error (permissions, constraint violations, schema problems).
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// True for errors worth retrying later (the database was unavailable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(e) => StoreError::Unavailable(format!("I/O error: {e}")),
            sqlx::Error::Tls(e) => StoreError::Unavailable(format!("TLS error: {e}")),
            sqlx::Error::PoolTimedOut => {
                StoreError::Unavailable("timed out waiting for a database connection".to_owned())
            }
            sqlx::Error::PoolClosed => {
                StoreError::Unavailable("the connection pool is closed".to_owned())
            }
            sqlx::Error::WorkerCrashed => {
                StoreError::Unavailable("the database worker thread crashed".to_owned())
            }
            sqlx::Error::Configuration(e) => {
                StoreError::Invalid(format!("database configuration: {e}"))
            }
            sqlx::Error::Database(db) => from_database_error(db.as_ref()),
            // The remaining variants (protocol, decode, row-not-found, ...) do not quote bound
            // values; their Display is safe to pass on.
            other => StoreError::Database(other.to_string()),
        }
    }
}

fn from_database_error(db: &dyn DatabaseError) -> StoreError {
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let message = format!("{} (code {code})", db.message());
    let unavailable = if db.try_downcast_ref::<SqliteError>().is_some() {
        sqlite_code_is_unavailable(&code)
    } else {
        pg_code_is_unavailable(&code)
    };
    if unavailable {
        StoreError::Unavailable(message)
    } else {
        StoreError::Database(message)
    }
}

/// PostgreSQL SQLSTATEs meaning "the database is not available now": class 08 (connection
/// exception), 57P01..57P03 (shutting down / starting up), 57014 (statement timeout or cancel),
/// 53300 (too many connections).
fn pg_code_is_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "53300")
}

/// SQLite extended result codes meaning "not available now"; the primary code is the low byte:
/// 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL, 14 CANTOPEN.
fn sqlite_code_is_unavailable(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
}

impl From<MigrateError> for StoreError {
    fn from(err: MigrateError) -> Self {
        match err {
            MigrateError::Execute(e) => StoreError::from(e),
            MigrateError::ExecuteMigration(e, version) => match StoreError::from(e) {
                StoreError::Database(m) => {
                    StoreError::Database(format!("migration {version} failed: {m}"))
                }
                other => other,
            },
            other => StoreError::Database(format!("migrations: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_codes() {
        assert!(pg_code_is_unavailable("08006"));
        assert!(pg_code_is_unavailable("57P01"));
        assert!(!pg_code_is_unavailable("42501")); // insufficient_privilege
        assert!(!pg_code_is_unavailable("23505"));
        assert!(sqlite_code_is_unavailable("5")); // SQLITE_BUSY
        assert!(sqlite_code_is_unavailable("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(!sqlite_code_is_unavailable("8")); // SQLITE_READONLY
    }
}
