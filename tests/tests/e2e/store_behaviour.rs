//! Behaviour of the token store, run identically against SQLite and the real PostgreSQL.
//! Sealed tokens here are made-up strings; no crypto is involved.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tokenvault_store::{
    DisconnectOutcome, Latest, MAX_SEALED_TOKEN_LEN, RevocationOutcome, StoreAdmin, StoreError,
    TokenFacts, TokenReader, TokenStatus, TokenWriter,
};
use tokenvault_tests::store::TestStore;

struct Handles {
    writer: TokenWriter,
    reader: TokenReader,
    admin: StoreAdmin,
}

async fn open(store: &TestStore) -> Handles {
    let writer = TokenWriter::connect(&store.writer_url).await.unwrap();
    let reader = TokenReader::connect(&store.reader_url).await.unwrap();
    let admin = StoreAdmin::connect(&store.owner_url).await.unwrap();
    Handles {
        writer,
        reader,
        admin,
    }
}

fn token(version: &Latest) -> (i64, &str, &str) {
    match version {
        Latest::Token {
            version,
            sealed_token,
            kid,
        } => (*version, sealed_token, kid),
        other => panic!("expected a token, got {other:?}"),
    }
}

async fn round_trip(store: &TestStore) {
    let h = open(store).await;
    let out = h
        .writer
        .store("acct-1", "google", "sealed.A", "kid-1")
        .await
        .unwrap();
    assert!(!out.already_stored);
    let latest = h.reader.latest("acct-1", "google").await.unwrap();
    assert_eq!(token(&latest), (out.version, "sealed.A", "kid-1"));
    // Debug output never shows the sealed token.
    assert!(!format!("{latest:?}").contains("sealed.A"));

    let status = h.reader.status("acct-1", "google").await.unwrap().unwrap();
    assert_eq!(status.status, TokenStatus::Active);
    assert!(status.updated_at_unix > 1_600_000_000);

    // Other keys are independent.
    assert_eq!(
        h.reader.latest("acct-1", "github").await.unwrap(),
        Latest::NotFound
    );
    assert_eq!(
        h.reader.latest("acct-2", "google").await.unwrap(),
        Latest::NotFound
    );
}

async fn idempotent_retry(store: &TestStore) {
    let h = open(store).await;
    let first = h
        .writer
        .store("acct", "github", "sealed.1", "k")
        .await
        .unwrap();
    let before = h.admin.count_rows().await.unwrap();
    let retry = h
        .writer
        .store("acct", "github", "sealed.1", "k")
        .await
        .unwrap();
    assert!(retry.already_stored);
    assert_eq!(retry.version, first.version);
    assert_eq!(h.admin.count_rows().await.unwrap(), before);

    // The same sealed bytes for another account is a different row.
    let other = h
        .writer
        .store("acct-b", "github", "sealed.1", "k")
        .await
        .unwrap();
    assert!(!other.already_stored);
    assert!(other.version > first.version);
}

/// An import stores only where nothing was ever stored: once per key, never
/// over a token, never reviving a disconnected account.
async fn store_if_absent_stores_once(store: &TestStore) {
    let h = open(store).await;
    let facts = || TokenFacts {
        metadata: Some(r#"{"tenant":"t1"}"#),
        refresh_token_expires_at: Some(4_000_000_000),
    };
    let first = h
        .writer
        .store_if_absent_with("imp", "github", "sealed.i1", "k", facts())
        .await
        .unwrap();
    assert!(!first.already_stored);
    // The same line again (sealed anew): refused, nothing written.
    let before = h.admin.count_rows().await.unwrap();
    let again = h
        .writer
        .store_if_absent_with("imp", "github", "sealed.i2", "k", facts())
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(h.admin.count_rows().await.unwrap(), before);
    // The very same sealed bytes (a retry of the first call) is that call's.
    let retry = h
        .writer
        .store_if_absent_with("imp", "github", "sealed.i1", "k", facts())
        .await
        .unwrap();
    assert!(retry.already_stored && retry.version == first.version);
    // A disconnected account is not revived by an import.
    h.writer.disconnect("imp", "github").await.unwrap();
    let revived = h
        .writer
        .store_if_absent_with("imp", "github", "sealed.i3", "k", facts())
        .await;
    assert!(
        matches!(revived, Err(StoreError::Conflict(_))),
        "{revived:?}"
    );
    assert!(matches!(
        h.reader.latest("imp", "github").await.unwrap(),
        Latest::Disconnected
    ));
}

async fn tombstone_hides_and_store_revives(store: &TestStore) {
    let h = open(store).await;
    h.writer
        .store("acct", "microsoft", "sealed.1", "k")
        .await
        .unwrap();
    let v2 = h
        .writer
        .store("acct", "microsoft", "sealed.2", "k")
        .await
        .unwrap();

    let gone = h.writer.disconnect("acct", "microsoft").await.unwrap();
    assert!(!gone.already_disconnected);
    assert!(gone.version > v2.version);
    assert_eq!(
        h.reader.latest("acct", "microsoft").await.unwrap(),
        Latest::Disconnected
    );
    let status = h.reader.status("acct", "microsoft").await.unwrap().unwrap();
    assert_eq!(status.status, TokenStatus::Disconnected);
    // A tombstone keeps the last token (sealed) until its revocation at the provider is recorded;
    // the earlier one was pruned when the last was stored.
    assert_eq!(h.admin.count_rows().await.unwrap().sealed_tokens, 1);
    assert_eq!(h.admin.prune().await.unwrap(), 0, "pending revocation kept");

    // Disconnecting again is a no-op.
    let again = h.writer.disconnect("acct", "microsoft").await.unwrap();
    assert_eq!(
        again,
        DisconnectOutcome {
            version: gone.version,
            already_disconnected: true
        }
    );
    // A late retry of the pre-disconnect token does not revive the account.
    let late = h
        .writer
        .store("acct", "microsoft", "sealed.2", "k")
        .await
        .unwrap();
    assert!(late.already_stored);
    assert_eq!(
        h.reader.latest("acct", "microsoft").await.unwrap(),
        Latest::Disconnected
    );

    // A new token reconnects.
    let v3 = h
        .writer
        .store("acct", "microsoft", "sealed.3", "k2")
        .await
        .unwrap();
    assert!(!v3.already_stored);
    let latest = h.reader.latest("acct", "microsoft").await.unwrap();
    assert_eq!(token(&latest), (v3.version, "sealed.3", "k2"));
    let status = h.reader.status("acct", "microsoft").await.unwrap().unwrap();
    assert_eq!(status.status, TokenStatus::Active);
}

async fn pruning_keeps_newest_only(store: &TestStore) {
    let h = open(store).await;
    let v1 = h
        .writer
        .store("acct", "oidc", "sealed.1", "k")
        .await
        .unwrap();
    h.writer
        .store("acct", "oidc", "sealed.2", "k")
        .await
        .unwrap();
    let v3 = h
        .writer
        .store("acct", "oidc", "sealed.3", "k")
        .await
        .unwrap();
    h.writer
        .store("other", "oidc", "sealed.x", "k")
        .await
        .unwrap();

    let counts = h.admin.count_rows().await.unwrap();
    assert_eq!(counts.token_events, 4);
    assert_eq!(counts.sealed_tokens, 2, "one live token per key");
    assert_eq!(
        token(&h.reader.latest("acct", "oidc").await.unwrap()).0,
        v3.version
    );
    assert_eq!(
        token(&h.reader.latest("other", "oidc").await.unwrap()).1,
        "sealed.x"
    );

    // A late retry of a superseded token is recognised and never becomes the newest version.
    let late = h
        .writer
        .store("acct", "oidc", "sealed.1", "k")
        .await
        .unwrap();
    assert!(late.already_stored);
    assert_eq!(late.version, v1.version);
    let latest = h.reader.latest("acct", "oidc").await.unwrap();
    assert_eq!(token(&latest), (v3.version, "sealed.3", "k"));
    assert_eq!(h.admin.count_rows().await.unwrap(), counts);

    // The catch-up job finds nothing left, and nothing may clear the newest row.
    assert_eq!(h.admin.prune().await.unwrap(), 0);
    let sql = format!(
        "UPDATE token_events SET sealed_token = NULL, pruned = TRUE WHERE id = {}",
        v3.version
    );
    let err = store.exec_as_owner(&sql).await.unwrap_err();
    assert!(
        err.to_string().contains("append-only") || err.to_string().contains("newest"),
        "{err}"
    );
    // Nor resurrect a pruned one.
    let sql = format!(
        "UPDATE token_events SET sealed_token = 'x', pruned = FALSE WHERE id = {}",
        v1.version
    );
    assert!(store.exec_as_owner(&sql).await.is_err());
    assert_eq!(
        token(&h.reader.latest("acct", "oidc").await.unwrap()).1,
        "sealed.3"
    );
}

async fn concurrent_stores(store: &TestStore) {
    let h = open(store).await;
    let mut tasks = Vec::new();
    for i in 0..80 {
        let writer = h.writer.clone();
        // Every token is sent twice, as a retried request would be.
        tasks.push(tokio::spawn(async move {
            writer
                .store("acct", "google", &format!("sealed.{}", i % 40), "k")
                .await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap().version);
    }
    let newest = *versions.iter().max().unwrap();
    assert_eq!(
        token(&h.reader.latest("acct", "google").await.unwrap()).0,
        newest
    );
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 40, "one version per distinct token");
    // Concurrent inserts of one key still leave exactly one sealed token: each insert's trigger
    // saw every earlier row of its key, so the catch-up job has nothing left to do.
    let counts = h.admin.count_rows().await.unwrap();
    assert_eq!(counts.token_events, 40);
    assert_eq!(counts.sealed_tokens, 1);
    assert_eq!(h.admin.prune().await.unwrap(), 0);
}

async fn status_record_and_read(store: &TestStore) {
    let h = open(store).await;
    h.writer
        .store("acct", "google", "sealed.1", "k")
        .await
        .unwrap();
    h.writer
        .record_status(
            "acct",
            "google",
            TokenStatus::ReauthorizationRequired,
            "invalid_grant",
        )
        .await
        .unwrap();
    let status = h.reader.status("acct", "google").await.unwrap().unwrap();
    assert_eq!(status.status, TokenStatus::ReauthorizationRequired);
    assert_eq!(status.reason, "invalid_grant");

    // Disconnected is recorded by disconnect(), not record_status().
    let err = h
        .writer
        .record_status("acct", "google", TokenStatus::Disconnected, "x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");

    // Reconnecting (a new token) makes it active again.
    h.writer
        .store("acct", "google", "sealed.2", "k")
        .await
        .unwrap();
    let status = h.reader.status("acct", "google").await.unwrap().unwrap();
    assert_eq!(status.status, TokenStatus::Active);

    // A disconnected account's status cannot be changed except by reconnecting.
    h.writer.disconnect("acct", "google").await.unwrap();
    let err = h
        .writer
        .record_status("acct", "google", TokenStatus::Active, "")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let status = h.reader.status("acct", "google").await.unwrap().unwrap();
    assert_eq!(status.status, TokenStatus::Disconnected);
}

async fn unknown_accounts(store: &TestStore) {
    let h = open(store).await;
    let err = h.writer.disconnect("nobody", "google").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
    let err = h
        .writer
        .record_status(
            "nobody",
            "google",
            TokenStatus::ReauthorizationRequired,
            "x",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err}");
    assert_eq!(
        h.reader.latest("nobody", "google").await.unwrap(),
        Latest::NotFound
    );
    assert_eq!(h.reader.status("nobody", "google").await.unwrap(), None);
    let counts = h.admin.count_rows().await.unwrap();
    assert_eq!((counts.token_events, counts.status_records), (0, 0));
}

async fn invalid_input(store: &TestStore) {
    let h = open(store).await;
    for (account, provider, sealed, kid) in [
        ("", "google", "s", "k"),
        ("a", "", "s", "k"),
        ("a", "google", "", "k"),
        ("a", "google", "s", ""),
        ("a\0b", "google", "s", "k"),
    ] {
        let err = h
            .writer
            .store(account, provider, sealed, kid)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    }
    let huge = "Q".repeat(MAX_SEALED_TOKEN_LEN + 1);
    let err = h.writer.store("a", "google", &huge, "k").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
    assert!(!err.to_string().contains("QQQQ"));
    let max = "Q".repeat(MAX_SEALED_TOKEN_LEN);
    h.writer.store("a", "google", &max, "k").await.unwrap();
    assert_eq!(h.admin.count_rows().await.unwrap().token_events, 1);
}

async fn revocation_clears_the_disconnected_token(store: &TestStore) {
    let h = open(store).await;
    let v1 = h
        .writer
        .store("acct", "google", "sealed.1", "k")
        .await
        .unwrap();
    // Nothing pending while the account is connected, and a revocation cannot be recorded.
    assert!(
        h.reader
            .pending_revocations(0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let refused = h
        .writer
        .record_revocation("acct", "google", v1.version, RevocationOutcome::Revoked)
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");

    h.writer.disconnect("acct", "google").await.unwrap();
    let pending = h.reader.pending_revocations(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].account.as_str(), pending[0].provider.as_str()),
        ("acct", "google")
    );
    assert_eq!(pending[0].version, v1.version);
    assert_eq!(pending[0].sealed_token, "sealed.1");
    assert!(
        h.reader
            .still_pending("acct", "google", v1.version)
            .await
            .unwrap()
    );
    // Paging: nothing after the last version seen.
    assert!(
        h.reader
            .pending_revocations(v1.version, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!format!("{:?}", pending[0]).contains("sealed.1"));
    // Not a token of this key, or a wrong version: refused, nothing changes.
    for (account, version) in [("other", v1.version), ("acct", v1.version + 100)] {
        let err = h
            .writer
            .record_revocation(account, "google", version, RevocationOutcome::Revoked)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    }
    assert_eq!(h.reader.pending_revocations(0, 10).await.unwrap().len(), 1);

    assert!(
        h.writer
            .record_revocation("acct", "google", v1.version, RevocationOutcome::Revoked)
            .await
            .unwrap()
    );
    assert!(
        h.reader
            .pending_revocations(0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !h.reader
            .still_pending("acct", "google", v1.version)
            .await
            .unwrap()
    );
    assert_eq!(h.admin.count_rows().await.unwrap().sealed_tokens, 0);
    let status = h.reader.status("acct", "google").await.unwrap().unwrap();
    assert_eq!(status.status, TokenStatus::Disconnected);
    assert!(status.reason.contains("revoked"), "{}", status.reason);
    // Recording it again is a no-op.
    assert!(
        !h.writer
            .record_revocation("acct", "google", v1.version, RevocationOutcome::Revoked)
            .await
            .unwrap()
    );

    // A reconnect after a disconnect clears the old token at once: revoking it later could
    // revoke the new grant at providers that revoke per client and user.
    let a = h
        .writer
        .store("acct", "github", "sealed.a", "k")
        .await
        .unwrap();
    h.writer.disconnect("acct", "github").await.unwrap();
    assert!(
        h.reader
            .still_pending("acct", "github", a.version)
            .await
            .unwrap()
    );
    h.writer
        .store("acct", "github", "sealed.b", "k")
        .await
        .unwrap();
    assert!(
        !h.reader
            .still_pending("acct", "github", a.version)
            .await
            .unwrap()
    );
    assert!(
        h.reader
            .pending_revocations(0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.admin.count_rows().await.unwrap().sealed_tokens, 1);
}

tokenvault_tests::on_both_backends!(
    round_trip,
    idempotent_retry,
    store_if_absent_stores_once,
    tombstone_hides_and_store_revives,
    revocation_clears_the_disconnected_token,
    pruning_keeps_newest_only,
    concurrent_stores,
    status_record_and_read,
    unknown_accounts,
    invalid_input,
);
