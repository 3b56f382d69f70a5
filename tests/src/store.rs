//! Fresh stores for tests: a SQLite file in a temp dir, or a fresh PostgreSQL
//! database with a random name on the real server (superuser URL from
//! `TOKENVAULT_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`),
//! migrated by `tokenvault_owner` and dropped when the [`TestStore`] is
//! dropped. Holds only sealed tokens that tests made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// Environment variable overriding [`DEFAULT_PG_ADMIN_URL`] (a superuser URL).
pub const PG_URL_ENV: &str = "TOKENVAULT_TEST_PG_URL";
pub const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub const OWNER: &str = "tokenvault_owner";
pub const WRITER: &str = "tokenvault_writer";
pub const READER: &str = "tokenvault_reader";

pub fn pg_admin_url() -> String {
    std::env::var(PG_URL_ENV).unwrap_or_else(|_| DEFAULT_PG_ADMIN_URL.to_owned())
}

/// A name unique across concurrent tests and test processes.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `postgres://role@host:port/db` on the admin URL's server.
pub fn pg_url(role: &str, db: &str) -> String {
    let admin = PgConnectOptions::from_str(&pg_admin_url()).unwrap();
    format!(
        "postgres://{role}@{}:{}/{db}",
        admin.get_host(),
        admin.get_port()
    )
}

pub async fn pg_admin() -> PgConnection {
    PgConnection::connect(&pg_admin_url())
        .await
        .expect("connect to PostgreSQL as superuser (set TOKENVAULT_TEST_PG_URL)")
}

/// Creates the three roles if missing. Roles are cluster-global and tests run concurrently, so a
/// concurrent creation (duplicate_object / unique_violation) counts as success.
pub async fn ensure_roles(admin: &mut PgConnection) {
    for role in [OWNER, WRITER, READER] {
        let sql = format!(
            "DO $$ BEGIN CREATE ROLE {role} LOGIN; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        );
        sqlx::query(&sql).execute(&mut *admin).await.unwrap();
    }
}

pub async fn drop_pg_database(name: &str) {
    let mut admin = pg_admin().await;
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    let _ = sqlx::query(&sql).execute(&mut admin).await;
    let _ = admin.close().await;
}

/// Best-effort drop from `Drop` (also after a failed assertion): on a fresh thread with its own
/// runtime, since `Drop` cannot await.
pub fn drop_pg_database_blocking(name: String) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(drop_pg_database(&name));
        }
    })
    .join();
}

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One fresh, migrated store.
#[derive(Debug)]
pub struct TestStore {
    pub backend: Backend,
    pub owner_url: String,
    pub writer_url: String,
    pub reader_url: String,
    pg_database: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A SQLite file in a temp dir; the writer creates and migrates it on connect.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("vault.db").display());
        Self {
            backend: Backend::Sqlite,
            owner_url: url.clone(),
            writer_url: url.clone(),
            reader_url: url,
            pg_database: None,
            _dir: Some(dir),
        }
    }

    /// A fresh PostgreSQL database owned by `tokenvault_owner`, migrated as the owner.
    pub async fn postgres() -> Self {
        let name = unique_name("tv_test");
        let mut admin = pg_admin().await;
        ensure_roles(&mut admin).await;
        sqlx::query(&format!("CREATE DATABASE \"{name}\" OWNER {OWNER}"))
            .execute(&mut admin)
            .await
            .unwrap();
        // As deploy/postgres/setup.sql does.
        sqlx::query(&format!(
            "ALTER ROLE {READER} IN DATABASE \"{name}\" SET default_transaction_read_only = on"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
        let store = Self {
            backend: Backend::Postgres,
            owner_url: pg_url(OWNER, &name),
            writer_url: pg_url(WRITER, &name),
            reader_url: pg_url(READER, &name),
            pg_database: Some(name),
            _dir: None,
        };
        tokenvault_store::migrate(&store.owner_url).await.unwrap();
        store
    }

    /// The token tables, whose planner statistics the ingest tests and
    /// benchmarks control.
    pub const TOKEN_TABLES: [&str; 2] = ["token_events", "token_status"];

    /// A fresh PostgreSQL database whose token tables autovacuum never
    /// visits, so nothing analyses them unless [`analyse`](Self::analyse)
    /// is called.
    pub async fn postgres_never_analysed() -> Self {
        let store = Self::postgres().await;
        for table in Self::TOKEN_TABLES {
            store
                .exec_as_owner(&format!(
                    "ALTER TABLE {table} SET (autovacuum_enabled = false)"
                ))
                .await
                .unwrap();
        }
        store
    }

    /// `ANALYZE`s the token tables, as the owner.
    pub async fn analyse(&self) {
        for table in Self::TOKEN_TABLES {
            self.exec_as_owner(&format!("ANALYZE {table}"))
                .await
                .unwrap();
        }
    }

    /// Waits until every account event committed before this call can be read. PostgreSQL
    /// shows events only below the oldest transaction still running in the cluster (migration
    /// 0010), and other tests' transactions run meanwhile: this waits until every transaction
    /// that had begun writing by now has ended. SQLite: at once.
    pub async fn settle_events(&self) {
        if self.backend != Backend::Postgres {
            return;
        }
        let mut conn = PgConnection::connect(&self.reader_url).await.unwrap();
        let target: i64 =
            sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let horizon: i64 =
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            if horizon >= target {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "a transaction older than {target} is still open after 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let _ = conn.close().await;
    }

    /// Runs one SQL statement with owner rights (SQLite: a plain read-write connection).
    pub async fn exec_as_owner(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match self.backend {
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.owner_url).await?;
                let res = sqlx::query(sql).execute(&mut conn).await;
                let _ = conn.close().await;
                Ok(res?.rows_affected())
            }
            Backend::Sqlite => {
                let opts = SqliteConnectOptions::from_str(&self.owner_url)?;
                let mut conn = SqliteConnection::connect_with(&opts).await?;
                let res = sqlx::query(sql).execute(&mut conn).await;
                let _ = conn.close().await;
                Ok(res?.rows_affected())
            }
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(name) = self.pg_database.take() {
            drop_pg_database_blocking(name);
        }
    }
}

/// Runs each named `async fn(&TestStore)` as two tests, `sqlite::<name>`
/// and `postgres::<name>`, each on a fresh store of that backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let store = $crate::store::TestStore::new($crate::store::Backend::Sqlite).await;
                    super::$name(&store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let store = $crate::store::TestStore::new($crate::store::Backend::Postgres).await;
                    super::$name(&store).await;
                }
            )*
        }
    };
}
