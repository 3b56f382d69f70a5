//! PostgreSQL-only properties: the roles' privileges (the writer can never read a sealed token,
//! the reader can never write), the deploy script, and a down database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use sqlx::{Connection, postgres::PgConnection};
use tokenvault_store::{Latest, StoreError, TokenReader, TokenWriter};
use tokenvault_tests::store::{self as common, Backend, TestStore};

/// Runs `sql` and returns the SQLSTATE it failed with (panics if it succeeded).
async fn sqlstate_of(conn: &mut PgConnection, sql: &str) -> String {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(_) => panic!("expected {sql:?} to fail"),
        Err(sqlx::Error::Database(e)) => e.code().map(|c| c.into_owned()).unwrap_or_default(),
        Err(e) => panic!("unexpected error for {sql:?}: {e}"),
    }
}

const PERMISSION_DENIED: &str = "42501";

#[tokio::test]
async fn writer_role_cannot_read_update_or_delete() {
    let store = TestStore::new(Backend::Postgres).await;
    let writer = TokenWriter::connect(&store.writer_url).await.unwrap();
    writer
        .store("acct", "google", "sealed.1", "k")
        .await
        .unwrap();

    let mut conn = PgConnection::connect(&store.writer_url).await.unwrap();
    for sql in [
        "SELECT sealed_token FROM token_events",
        "SELECT * FROM token_events",
        "SELECT kid FROM token_events",
        "SELECT count(*) FROM token_events WHERE sealed_token IS NOT NULL",
        "SELECT * FROM token_status",
        "UPDATE token_events SET kid = 'x'",
        "UPDATE token_events SET sealed_token = NULL",
        "DELETE FROM token_events",
        "DELETE FROM token_status",
        "TRUNCATE token_events",
        // Columns the database sets itself are not insertable.
        "INSERT INTO token_events (account, provider, kind, pruned) VALUES ('a', 'b', 'tombstone', false)",
        "INSERT INTO token_status (account, provider, status, reason, created_at) \
         VALUES ('a', 'b', 'active', '', now())",
    ] {
        assert_eq!(
            sqlstate_of(&mut conn, sql).await,
            PERMISSION_DENIED,
            "{sql}"
        );
    }
    // What it may read: non-secret columns.
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM token_events WHERE kind = 'token' AND token_hash IS NOT NULL AND id > 0",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(n, 1);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn reader_role_cannot_write() {
    let store = TestStore::new(Backend::Postgres).await;
    let writer = TokenWriter::connect(&store.writer_url).await.unwrap();
    let v = writer
        .store("acct", "google", "sealed.1", "k")
        .await
        .unwrap();

    // A plain connection (without the read-only session the crate sets): privileges alone refuse.
    let mut conn = PgConnection::connect(&store.reader_url).await.unwrap();
    for sql in [
        "INSERT INTO token_events (account, provider, kind) VALUES ('acct', 'google', 'tombstone')",
        "INSERT INTO token_status (account, provider, status, reason) \
         VALUES ('acct', 'google', 'active', '')",
        "UPDATE token_events SET kid = 'x'",
        "UPDATE token_status SET reason = 'x'",
        "DELETE FROM token_events",
        "DELETE FROM token_status",
        "TRUNCATE token_events",
    ] {
        assert_eq!(
            sqlstate_of(&mut conn, sql).await,
            PERMISSION_DENIED,
            "{sql}"
        );
    }
    let (sealed,): (String,) = sqlx::query_as("SELECT sealed_token FROM token_events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(sealed, "sealed.1");
    conn.close().await.unwrap();

    let reader = TokenReader::connect(&store.reader_url).await.unwrap();
    assert!(matches!(
        reader.latest("acct", "google").await.unwrap(),
        Latest::Token { version, .. } if version == v.version
    ));
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let store = TestStore::new(Backend::Postgres).await;
    tokenvault_store::migrate(&store.owner_url).await.unwrap();
}

#[tokio::test]
async fn database_down_is_unavailable_quickly() {
    let url = "postgres://tokenvault_writer@127.0.0.1:1/tokenvault";
    let (writer, reader, migrate) = tokio::join!(
        timed(TokenWriter::connect(url)),
        timed(TokenReader::connect(url)),
        timed(tokenvault_store::migrate(url)),
    );
    for (err, elapsed) in [writer, reader, migrate] {
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert!(err.is_retryable());
        assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    }
}

async fn timed<T>(f: impl Future<Output = Result<T, StoreError>>) -> (StoreError, Duration) {
    let start = Instant::now();
    let err = match f.await {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => e,
    };
    (err, start.elapsed())
}

#[tokio::test]
async fn unknown_url_scheme_is_invalid() {
    let err = TokenWriter::connect("mysql://u:secret@h/db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(!err.to_string().contains("secret"));
}

/// deploy/postgres/setup.sql creates the roles and a database owned by the owner, twice over,
/// and the migrations then run on it.
#[tokio::test]
async fn setup_script_is_idempotent_and_migratable() {
    let name = common::unique_name("tv_setup");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/postgres/setup.sql");
    let guard = DropDb(name.clone());
    for _ in 0..2 {
        let out = std::process::Command::new("psql")
            .arg(common::pg_admin_url())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-v", "owner_password=owner-test-pw"])
            .args(["-v", "writer_password=writer-test-pw"])
            .args(["-v", "reader_password=reader-test-pw"])
            .args(["-v", &format!("dbname={name}")])
            .args(["-f", script])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut admin = common::pg_admin().await;
    let (owner,): (String,) =
        sqlx::query_as("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(owner, common::OWNER);
    let (logins,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND rolname = ANY($1)",
    )
    .bind([common::OWNER, common::WRITER, common::READER])
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(logins, 3);
    admin.close().await.unwrap();

    tokenvault_store::migrate(&common::pg_url(common::OWNER, &name))
        .await
        .unwrap();
    let writer = TokenWriter::connect(&common::pg_url(common::WRITER, &name))
        .await
        .unwrap();
    let reader = TokenReader::connect(&common::pg_url(common::READER, &name))
        .await
        .unwrap();
    writer
        .store("acct", "google", "sealed.1", "k")
        .await
        .unwrap();
    assert!(matches!(
        reader.latest("acct", "google").await.unwrap(),
        Latest::Token { .. }
    ));
    // The script makes the reader's sessions read-only by default on that database.
    let mut conn = PgConnection::connect(&common::pg_url(common::READER, &name))
        .await
        .unwrap();
    let (read_only,): (String,) = sqlx::query_as("SHOW default_transaction_read_only")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(read_only, "on");
    conn.close().await.unwrap();
    writer.close().await;
    reader.close().await;
    drop(guard);
}

struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        common::drop_pg_database_blocking(std::mem::take(&mut self.0));
    }
}
