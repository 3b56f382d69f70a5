//! SQLite-only properties: the reader opens an existing file read-only (and says so clearly when
//! it is missing), and reads work whether or not the writer is running.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tokenvault_store::{Latest, StoreAdmin, StoreError, TokenReader, TokenWriter};

fn url_in(dir: &tempfile::TempDir) -> (String, std::path::PathBuf) {
    let path = dir.path().join("vault.db");
    (format!("sqlite://{}", path.display()), path)
}

#[tokio::test]
async fn reader_refuses_missing_file_and_does_not_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let (url, path) = url_in(&dir);
    let err = TokenReader::connect(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn reader_works_with_and_without_a_running_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = url_in(&dir);
    let writer = TokenWriter::connect(&url).await.unwrap();
    writer
        .store("acct", "google", "sealed.1", "k")
        .await
        .unwrap();

    let reader = TokenReader::connect(&url).await.unwrap();
    let v2 = writer
        .store("acct", "google", "sealed.2", "k")
        .await
        .unwrap();
    assert_eq!(
        reader.latest("acct", "google").await.unwrap(),
        Latest::Token {
            version: v2.version,
            sealed_token: "sealed.2".into(),
            kid: "k".into()
        }
    );
    reader.close().await;
    writer.close().await;

    // The writer is gone and its WAL checkpointed away; a fresh read-only reader still reads.
    for leftover in ["vault.db-wal", "vault.db-shm"] {
        assert!(
            !dir.path().join(leftover).exists(),
            "{leftover} should be gone"
        );
    }
    let reader = TokenReader::connect(&url).await.unwrap();
    assert!(matches!(
        reader.latest("acct", "google").await.unwrap(),
        Latest::Token { version, .. } if version == v2.version
    ));
}

#[tokio::test]
async fn migrate_creates_the_file_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (url, path) = url_in(&dir);
    tokenvault_store::migrate(&url).await.unwrap();
    assert!(path.exists());
    tokenvault_store::migrate(&url).await.unwrap();
    let writer = TokenWriter::connect(&url).await.unwrap();
    writer.store("a", "p", "s", "k").await.unwrap();
    let admin = StoreAdmin::connect(&url).await.unwrap();
    assert_eq!(admin.count_rows().await.unwrap().token_events, 1);
}

#[tokio::test]
async fn a_new_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (url, path) = url_in(&dir);
    let writer = TokenWriter::connect(&url).await.unwrap();
    writer.store("a", "p", "sealed", "kid").await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    writer.close().await;
}
