//! The token history (token_events, token_status, token_revocations,
//! token_reseals) cannot be deleted or rewritten by the owner role outside
//! the documented pruning path (migrations postgres/0008, sqlite/0007), on
//! both backends; and that path still clears superseded sealed tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tokenvault_store::{
    Latest, ResealOutcome, RevocationOutcome, RowCounts, StoreAdmin, TokenReader, TokenWriter,
};
use tokenvault_tests::store::{Backend, TestStore};

const HISTORY: [&str; 4] = [
    "token_events",
    "token_status",
    "token_revocations",
    "token_reseals",
];

/// Asserts that the owner's `sql` fails with a message containing `needle`.
async fn refused(store: &TestStore, sql: &str, needle: &str) {
    match store.exec_as_owner(sql).await {
        Ok(rows) => panic!("{sql}: the owner changed {rows} rows"),
        Err(e) => assert!(e.to_string().contains(needle), "{sql}: {e}"),
    }
}

/// A store with rows in every history table: account `a` rotated once and
/// re-sealed, `b` disconnected and revoked, `c` disconnected and pending.
async fn fill(store: &TestStore) -> (TokenWriter, TokenReader, StoreAdmin) {
    let writer = TokenWriter::connect(&store.writer_url).await.unwrap();
    let reader = TokenReader::connect(&store.reader_url).await.unwrap();
    let admin = StoreAdmin::connect(&store.owner_url).await.unwrap();
    writer
        .store("a", "google", "sealed.a1", "k1")
        .await
        .unwrap();
    let a2 = writer
        .store("a", "google", "sealed.a2", "k1")
        .await
        .unwrap();
    let resealed = writer
        .reseal("a", "google", a2.version, "k1", "sealed.a2.k2", "k2")
        .await
        .unwrap();
    assert_eq!(resealed, ResealOutcome::Resealed);
    let b = writer.store("b", "google", "sealed.b", "k2").await.unwrap();
    writer.disconnect("b", "google").await.unwrap();
    let recorded = writer
        .record_revocation("b", "google", b.version, RevocationOutcome::Revoked)
        .await
        .unwrap();
    assert!(recorded);
    writer.store("c", "google", "sealed.c", "k2").await.unwrap();
    writer.disconnect("c", "google").await.unwrap();
    (writer, reader, admin)
}

async fn owner_cannot_delete_or_rewrite_history(store: &TestStore) {
    let (_writer, reader, admin) = fill(store).await;
    let before = admin.count_rows().await.unwrap();
    assert_eq!(
        before,
        RowCounts {
            token_events: 6,
            sealed_tokens: 2,
            // a: 2; b: active, disconnected, revoked; c: 2.
            status_records: 7,
        }
    );

    for table in HISTORY {
        refused(
            store,
            &format!("DELETE FROM {table}"),
            &format!("{table} is token history: DELETE is not allowed"),
        )
        .await;
        if store.backend == Backend::Postgres {
            refused(
                store,
                &format!("TRUNCATE {table}"),
                &format!("{table} is token history: TRUNCATE is not allowed"),
            )
            .await;
            // Refused as a statement, even when it matches no row.
            refused(
                store,
                &format!("DELETE FROM {table} WHERE id < 0"),
                &format!("{table} is token history: DELETE is not allowed"),
            )
            .await;
        }
    }
    refused(
        store,
        "UPDATE token_status SET reason = 'rewritten'",
        "token_status is token history: UPDATE is not allowed",
    )
    .await;
    refused(
        store,
        "UPDATE token_revocations SET outcome = 'unsupported'",
        "token_revocations is token history: UPDATE is not allowed",
    )
    .await;
    refused(
        store,
        "UPDATE token_reseals SET outcome = 'superseded'",
        "token_reseals is token history: an update may only record a new re-seal's outcome",
    )
    .await;
    let append_only = "token_events is append-only: an update may only prune a superseded token or re-seal a current one";
    for sql in [
        "UPDATE token_events SET account = 'z'",
        "UPDATE token_events SET kid = 'k9' WHERE account = 'a' AND sealed_token IS NULL",
        "UPDATE token_events SET kind = 'tombstone' WHERE account = 'a' AND sealed_token IS NULL",
        // Pruning an already-pruned row again: nothing flips.
        "UPDATE token_events SET sealed_token = NULL, pruned = TRUE WHERE sealed_token IS NULL \
         AND kind = 'token'",
    ] {
        refused(store, sql, append_only).await;
    }
    // Clearing c's token before get-service has revoked it at the provider.
    refused(
        store,
        "UPDATE token_events SET sealed_token = NULL, pruned = TRUE \
         WHERE account = 'c' AND kind = 'token'",
        "refusing to prune a disconnected token before its revocation is recorded",
    )
    .await;

    // Nothing changed, and c's token still waits for its revocation.
    assert_eq!(admin.count_rows().await.unwrap(), before);
    assert_eq!(admin.prune().await.unwrap(), 0);
    let pending = reader.pending_revocations(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].account, "c");
    match reader.latest("a", "google").await.unwrap() {
        Latest::Token {
            sealed_token, kid, ..
        } => assert_eq!(
            (sealed_token.as_str(), kid.as_str()),
            ("sealed.a2.k2", "k2")
        ),
        other => panic!("expected a's re-sealed token, got {other:?}"),
    }
}

async fn prune_path_still_clears_superseded_tokens(store: &TestStore) {
    let (writer, reader, admin) = fill(store).await;
    // The insert trigger cleared a1, the revocation trigger b's token.
    assert_eq!(admin.count_rows().await.unwrap().sealed_tokens, 2);
    // Recording c's revocation clears it through the guarded path.
    let c = reader.pending_revocations(0, 10).await.unwrap()[0].version;
    writer
        .record_revocation("c", "google", c, RevocationOutcome::Unsupported)
        .await
        .unwrap();
    assert_eq!(admin.count_rows().await.unwrap().sealed_tokens, 1);

    if store.backend == Backend::Postgres {
        // A version the insert trigger did not clear (as two concurrent
        // inserts can leave one): the catch-up prune clears it, and only it.
        store
            .exec_as_owner("ALTER TABLE token_events DISABLE TRIGGER token_events_after_insert")
            .await
            .unwrap();
        let a3 = writer
            .store("a", "google", "sealed.a3", "k2")
            .await
            .unwrap();
        store
            .exec_as_owner("ALTER TABLE token_events ENABLE TRIGGER token_events_after_insert")
            .await
            .unwrap();
        assert_eq!(admin.count_rows().await.unwrap().sealed_tokens, 2);
        assert_eq!(admin.prune().await.unwrap(), 1);
        assert_eq!(admin.count_rows().await.unwrap().sealed_tokens, 1);
        assert_eq!(
            reader.latest("a", "google").await.unwrap(),
            Latest::Token {
                version: a3.version,
                sealed_token: "sealed.a3".into(),
                kid: "k2".into(),
            }
        );
    }
    // A new token still clears the one before.
    writer
        .store("a", "google", "sealed.a4", "k2")
        .await
        .unwrap();
    assert_eq!(admin.count_rows().await.unwrap().sealed_tokens, 1);
    assert_eq!(admin.prune().await.unwrap(), 0);
}

tokenvault_tests::on_both_backends!(
    owner_cannot_delete_or_rewrite_history,
    prune_path_still_clears_superseded_tokens,
);
