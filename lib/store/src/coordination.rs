//! What lets several get-service processes share one store safely.
//!
//! - **PostgreSQL: advisory locks** ([`Coordinator`]). get-service's locks use
//!   the single-`bigint` advisory-lock key space; the store's own per-key write
//!   lock uses the two-`int4` form, so the two never meet. Every lock a
//!   process holds is a session-level lock on one connection of its own: when
//!   the process dies, PostgreSQL sees that connection close and frees all of
//!   them at once (a vanished host is noticed by TCP keepalives within about
//!   11 s). If the connection breaks while the process lives, its locks are
//!   gone too: every [`Lease`] of it then says so ([`Lease::still_held`]), so
//!   a holder checks before it acts. Taking a lock never waits: callers poll,
//!   so waiting costs no connection.
//! - **SQLite: one host, one get-service** ([`SingleHost`]): an exclusive lock
//!   on a file beside the database, which the operating system frees when the
//!   process ends.
//!
//! Holds no token data: lock keys are hashes of names.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Mutex;

use crate::db::{self, ACQUIRE_TIMEOUT, Target};
use crate::{Result, StoreError};

/// A lock name: what it guards.
#[derive(Debug, Clone, Copy)]
pub enum LockName<'a> {
    /// One account's refresh at its provider.
    Refresh {
        /// The account id.
        account: &'a str,
        /// The provider name.
        provider: &'a str,
    },
    /// A periodic job that one replica at a time runs (e.g. `"revocation"`).
    Job(&'a str),
}

impl LockName<'_> {
    /// The advisory-lock key: the first 8 bytes of SHA-256 over a tag and
    /// the names.
    fn key(&self) -> i64 {
        let text = match self {
            LockName::Refresh { account, provider } => {
                format!("tokenvault/get-service/refresh\0{account}\0{provider}")
            }
            LockName::Job(name) => format!("tokenvault/get-service/job\0{name}"),
        };
        let digest = Sha256::digest(text.as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }
}

/// The lock connection and how many times it was (re)made.
#[derive(Debug)]
struct Session {
    conn: Option<PgConnection>,
    generation: u64,
}

/// Advisory locks on the PostgreSQL store, for get-service replicas. Cheap
/// to clone: clones share the lock connection.
#[derive(Debug, Clone)]
pub struct Coordinator(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    options: PgConnectOptions,
    session: Mutex<Session>,
}

impl Coordinator {
    /// A coordinator on the store at `url` (get-service's reader role will
    /// do: advisory locks need no privilege and work in read-only sessions),
    /// or `None` for a SQLite store, which is single-host ([`SingleHost`]).
    /// Connects at the first lock.
    pub fn connect_lazy(url: &str) -> Result<Option<Self>> {
        let options = match db::parse_url(url)? {
            Target::Sqlite(_) => return Ok(None),
            Target::Postgres(options) => options,
        };
        // A dead peer's locks are freed when its connection closes; a host
        // that vanished is noticed after about 5 + 3 x 2 seconds.
        let options = options
            .application_name("tokenvault-coordination")
            .options([
                ("tcp_keepalives_idle", "5"),
                ("tcp_keepalives_interval", "2"),
                ("tcp_keepalives_count", "3"),
                ("statement_timeout", "5s"),
            ]);
        Ok(Some(Self(Arc::new(Shared {
            options,
            session: Mutex::new(Session {
                conn: None,
                generation: 0,
            }),
        }))))
    }

    /// Takes `name`'s lock if no other process holds it; `None` if one does.
    pub async fn try_lock(&self, name: LockName<'_>) -> Result<Option<Lease>> {
        let key = name.key();
        let mut session = self.0.session.lock().await;
        let generation = self.connected(&mut session).await?;
        let Some(conn) = session.conn.as_mut() else {
            return Err(StoreError::Unavailable("no lock connection".into()));
        };
        // Session-level locks nest: a second lease of this process on the
        // same key is granted too (each release undoes one). Within a
        // process, get-service's own per-account lock keeps refreshes of an
        // account apart; the nesting lets the process that holds an
        // account's unstored rotation go on refreshing it.
        let taken: bool = match sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await
        {
            Ok(taken) => taken,
            Err(e) => {
                session.conn = None;
                return Err(e.into());
            }
        };
        Ok(taken.then(|| Lease {
            coordinator: self.clone(),
            key,
            generation,
            released: false,
        }))
    }

    /// Makes the lock connection if there is none; returns its generation.
    async fn connected(&self, session: &mut Session) -> Result<u64> {
        if session.conn.is_none() {
            let conn = tokio::time::timeout(ACQUIRE_TIMEOUT, self.0.options.connect())
                .await
                .map_err(|_| {
                    StoreError::Unavailable("timed out connecting for the advisory locks".into())
                })??;
            session.conn = Some(conn);
            session.generation += 1;
        }
        Ok(session.generation)
    }

    async fn unlock(&self, key: i64, generation: u64) {
        let mut session = self.0.session.lock().await;
        if session.generation != generation {
            return;
        }
        if let Some(conn) = session.conn.as_mut() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                // Closing the connection frees every lock it holds.
                session.conn = None;
            }
        }
    }

    async fn holds(&self, generation: u64) -> bool {
        let mut session = self.0.session.lock().await;
        if session.generation != generation {
            return false;
        }
        let alive = match session.conn.as_mut() {
            Some(conn) => conn.ping().await.is_ok(),
            None => false,
        };
        if !alive {
            session.conn = None;
        }
        alive
    }
}

/// A held advisory lock. [`release`](Self::release) frees it; a lease
/// dropped without that frees it in the background.
#[derive(Debug)]
pub struct Lease {
    coordinator: Coordinator,
    key: i64,
    generation: u64,
    released: bool,
}

impl Lease {
    /// Whether the lock is still held: the connection it was taken on
    /// answers. A lease whose connection broke may already be another
    /// replica's.
    pub async fn still_held(&mut self) -> bool {
        self.coordinator.holds(self.generation).await
    }

    /// Frees the lock.
    pub async fn release(mut self) {
        self.released = true;
        self.coordinator.unlock(self.key, self.generation).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (coordinator, key, generation) = (self.coordinator.clone(), self.key, self.generation);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { coordinator.unlock(key, generation).await });
        }
    }
}

/// The one get-service of a SQLite store: an exclusive lock on
/// `<database>.get-service.lock` for as long as this lives.
#[derive(Debug)]
pub struct SingleHost {
    _file: File,
    /// The lock file.
    pub path: PathBuf,
}

impl SingleHost {
    /// Claims the SQLite store at `url` for this process; `None` for
    /// PostgreSQL. [`StoreError::Conflict`] if another process holds it.
    pub fn claim(url: &str) -> Result<Option<Self>> {
        let path = match db::parse_url(url)? {
            Target::Postgres(_) => return Ok(None),
            Target::Sqlite(options) => lock_path(options.get_filename()),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file, path })),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Conflict(format!(
                "another get-service is already serving this SQLite store (it holds {}); SQLite \
                 is for one host and one get-service: stop the other one, or use PostgreSQL to \
                 run several replicas",
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".get-service.lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_by_kind_and_name() {
        let a = LockName::Refresh {
            account: "a",
            provider: "p",
        };
        let b = LockName::Refresh {
            account: "a\0p",
            provider: "",
        };
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), LockName::Job("a").key());
        assert_eq!(a.key(), a.key());
    }

    #[test]
    fn a_second_claim_of_one_sqlite_store_is_refused() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("tv-single-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let first = SingleHost::claim(&url)?;
        assert!(first.is_some());
        match SingleHost::claim(&url) {
            Err(StoreError::Conflict(m)) => assert!(m.contains("another get-service"), "{m}"),
            other => unreachable!("{other:?}"),
        }
        drop(first);
        assert!(SingleHost::claim(&url)?.is_some());
        assert!(SingleHost::claim("postgres://db/x")?.is_none());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
