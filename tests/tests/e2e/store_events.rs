//! The account-event outbox, run identically against SQLite and the real PostgreSQL: every change
//! of an account's state appends its event in the same transaction, classified by the status
//! before it; cursors become visible in commit order, so a reader polling by cursor while many
//! writers commit sees every event once; metadata rides with the connect and its events; the
//! inventory lists each account once. Sealed tokens here are made-up strings.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokenvault_store::{
    AccountFilter, EventKind, RevocationOutcome, StoreError, TokenFacts, TokenReader, TokenStatus,
    TokenWriter,
};
use tokenvault_tests::store::TestStore;

async fn open(store: &TestStore) -> (TokenWriter, TokenReader) {
    let writer = TokenWriter::connect(&store.writer_url).await.unwrap();
    let reader = TokenReader::connect(&store.reader_url).await.unwrap();
    (writer, reader)
}

fn with_metadata(metadata: &str) -> TokenFacts<'_> {
    TokenFacts {
        metadata: Some(metadata),
        refresh_token_expires_at: None,
    }
}

/// The kinds of the events of `account`, in order, once every event committed so far is visible.
async fn kinds(store: &TestStore, reader: &TokenReader, account: &str) -> Vec<EventKind> {
    store.settle_events().await;
    reader
        .events_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.account == account)
        .map(|e| e.kind)
        .collect()
}

async fn every_state_change_has_its_event(store: &TestStore) {
    let (w, r) = open(store).await;
    let (a, p) = ("acme:ada", "google");
    let meta = r#"{"display_name":"Ada","tags":["beta"]}"#;
    let v1 = w
        .store_with(a, p, "sealed.1", "kid-1", with_metadata(meta))
        .await
        .unwrap();
    // A retry of the same token stores nothing and says nothing.
    w.store_with(a, p, "sealed.1", "kid-1", with_metadata(meta))
        .await
        .unwrap();
    // A rotation at the provider is no change of state.
    let v2 = w
        .store_if_newest(a, p, "sealed.2", "kid-1", v1.version)
        .await
        .unwrap();
    // A rotation that lost a race writes nothing, event included.
    assert!(matches!(
        w.store_if_newest(a, p, "sealed.x", "kid-1", v1.version)
            .await,
        Err(StoreError::Conflict(_))
    ));
    w.record_status(a, p, TokenStatus::ReauthorizationRequired, "invalid_grant")
        .await
        .unwrap();
    // Said twice, it is one event.
    w.record_status(a, p, TokenStatus::ReauthorizationRequired, "invalid_grant")
        .await
        .unwrap();
    w.store(a, p, "sealed.3", "kid-1").await.unwrap();
    w.store(a, p, "sealed.4", "kid-1").await.unwrap();
    w.disconnect(a, p).await.unwrap();
    w.disconnect(a, p).await.unwrap();
    let newest = w.store(a, p, "sealed.5", "kid-1").await.unwrap();
    assert!(newest.version > v2.version);
    assert_eq!(
        kinds(store, &r, a).await,
        vec![
            EventKind::Connected,
            EventKind::ReauthorizationRequired,
            EventKind::Recovered,
            EventKind::Reconnected,
            EventKind::Disconnected,
            EventKind::Connected,
        ]
    );
    store.settle_events().await;
    let events = r.events_after(0, 100).await.unwrap();
    // Each event carries the status after it, its reason and the metadata of the time.
    assert_eq!(events[1].status, TokenStatus::ReauthorizationRequired);
    assert_eq!(events[1].reason, "invalid_grant");
    assert_eq!(events[4].status, TokenStatus::Disconnected);
    assert!(
        events
            .iter()
            .all(|e| e.metadata.as_deref() == Some(meta) && e.occurred_at_unix > 1_600_000_000)
    );
    assert!(events.windows(2).all(|w| w[0].cursor < w[1].cursor));

    // A revocation after a disconnect is an event too.
    let (b, q) = ("acme:bob", "github");
    let token = w.store(b, q, "sealed.b", "kid-1").await.unwrap();
    w.disconnect(b, q).await.unwrap();
    assert!(
        w.record_revocation(b, q, token.version, RevocationOutcome::Revoked)
            .await
            .unwrap()
    );
    assert!(
        !w.record_revocation(b, q, token.version, RevocationOutcome::Revoked)
            .await
            .unwrap()
    );
    assert_eq!(
        kinds(store, &r, b).await,
        vec![
            EventKind::Connected,
            EventKind::Disconnected,
            EventKind::Revoked
        ]
    );
    store.settle_events().await;
    let revoked = r.events_after(0, 100).await.unwrap().pop().unwrap();
    assert!(
        revoked.reason.contains("revoked at the provider"),
        "{revoked:?}"
    );
    assert_eq!(revoked.metadata, None);
}

async fn inventory_lists_each_account_once(store: &TestStore) {
    let (w, r) = open(store).await;
    for i in 0..250 {
        let provider = if i % 2 == 0 { "google" } else { "github" };
        let account = format!("t{}:user-{i:03}", i % 3);
        let meta = format!(r#"{{"n":"{i}"}}"#);
        w.store_with(
            &account,
            provider,
            &format!("sealed.{i}"),
            "kid-1",
            with_metadata(&meta),
        )
        .await
        .unwrap();
    }
    w.record_status(
        "t0:user-000",
        "google",
        TokenStatus::ReauthorizationRequired,
        "invalid_grant",
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let page = r
            .list_accounts(
                &AccountFilter::default(),
                after.as_ref().map(|(a, p)| (a.as_str(), p.as_str())),
                100,
            )
            .await
            .unwrap();
        let last = page.last().map(|s| (s.account.clone(), s.provider.clone()));
        let full = page.len() == 100;
        seen.extend(page);
        match (full, last) {
            (true, Some(last)) => after = Some(last),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 250);
    let keys: BTreeSet<_> = seen.iter().map(|s| (&s.account, &s.provider)).collect();
    assert_eq!(keys.len(), 250, "every account once");
    let ada = seen.iter().find(|s| s.account == "t0:user-000").unwrap();
    assert_eq!(ada.status, TokenStatus::ReauthorizationRequired);
    assert_eq!(ada.metadata.as_deref(), Some(r#"{"n":"0"}"#));
    assert!(ada.connected_at_unix > 0 && ada.token_stored_at_unix > 0);

    let only = |status, prefix: &str, provider: Option<&str>| AccountFilter {
        provider: provider.map(str::to_owned),
        status,
        account_prefix: prefix.to_owned(),
        changed_since_unix: 0,
    };
    let reauth = r
        .list_accounts(
            &only(Some(TokenStatus::ReauthorizationRequired), "", None),
            None,
            1000,
        )
        .await
        .unwrap();
    assert_eq!(reauth.len(), 1);
    let t1_github = r
        .list_accounts(&only(None, "t1:", Some("github")), None, 1000)
        .await
        .unwrap();
    assert!(!t1_github.is_empty());
    assert!(
        t1_github
            .iter()
            .all(|s| s.account.starts_with("t1:") && s.provider == "github")
    );
    let future = AccountFilter {
        changed_since_unix: 4_000_000_000,
        ..AccountFilter::default()
    };
    assert!(r.list_accounts(&future, None, 10).await.unwrap().is_empty());
}

/// Writers on many keys commit events while a reader polls by cursor: the union of what the
/// reader saw is exactly the final sequence, with no gap and no repeat.
async fn cursors_follow_commit_order(store: &TestStore) {
    let (w, r) = open(store).await;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let r = r.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = r.events_after(cursor, 50).await.unwrap();
                if let Some(last) = page.last() {
                    cursor = last.cursor;
                }
                let empty = page.is_empty();
                seen.extend(page.into_iter().map(|e| e.cursor));
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let w = w.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let account = format!("w{t}-{}", i % 5);
                    w.store(&account, "google", &format!("sealed.{t}.{i}"), "kid-1")
                        .await
                        .unwrap();
                    if i % 3 == 0 {
                        w.disconnect(&account, "google").await.unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    store.settle_events().await;
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let events = r.events_after(0, 100_000).await.unwrap();
    let all: Vec<i64> = events.iter().map(|e| e.cursor).collect();
    assert!(all.len() > 8 * 20, "{} events", all.len());
    assert_eq!(seen, all, "the poller saw every event once, in order");

    // Per account, the cursor order is the order of the changes each writer made.
    for t in 0..8 {
        for k in 0..5 {
            let account = format!("w{t}-{k}");
            let mut expected = Vec::new();
            let mut connected = false;
            for i in (0..40).filter(|i| i % 5 == k) {
                expected.push(if connected {
                    EventKind::Reconnected
                } else {
                    EventKind::Connected
                });
                connected = true;
                if i % 3 == 0 {
                    expected.push(EventKind::Disconnected);
                    connected = false;
                }
            }
            let got: Vec<EventKind> = events
                .iter()
                .filter(|e| e.account == account)
                .map(|e| e.kind)
                .collect();
            assert_eq!(got, expected, "{account}");
        }
    }
}

/// A refresh token the provider said expires soon gets one `expiring` event, only while it is
/// the account's newest token and the account is active; the inventory shows the expiry.
async fn expiring_refresh_tokens_are_announced_once(store: &TestStore) {
    let (w, r) = open(store).await;
    let now = 1_800_000_000;
    let soon = |days: i64| TokenFacts {
        metadata: None,
        refresh_token_expires_at: Some(now + days * 86_400),
    };
    w.store_with("exp:a", "google", "sealed.a", "kid-1", soon(3))
        .await
        .unwrap();
    w.store_with("exp:b", "google", "sealed.b", "kid-1", soon(30))
        .await
        .unwrap();
    let c = w
        .store_with("exp:c", "google", "sealed.c", "kid-1", soon(1))
        .await
        .unwrap();
    // Rotated since, without a known expiry: the old token's warning no longer applies.
    w.store_if_newest_with("exp:c", "google", "sealed.c2", "kid-1", c.version, None)
        .await
        .unwrap();
    w.store_with("exp:d", "google", "sealed.d", "kid-1", soon(2))
        .await
        .unwrap();
    w.disconnect("exp:d", "google").await.unwrap();

    let week = now + 7 * 86_400;
    assert_eq!(w.record_expiring(week, 100).await.unwrap(), 1);
    assert_eq!(
        w.record_expiring(week, 100).await.unwrap(),
        0,
        "once per token"
    );
    store.settle_events().await;
    let expiring: Vec<_> = r
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::Expiring)
        .collect();
    assert_eq!(expiring.len(), 1);
    assert_eq!(expiring[0].account, "exp:a");
    assert_eq!(expiring[0].status, TokenStatus::Active);
    assert!(
        expiring[0].reason.contains("expires at 2027-01-18T"),
        "{:?}",
        expiring[0]
    );
    // A later window reaches b; a rotation that records a new expiry starts over.
    assert_eq!(w.record_expiring(now + 40 * 86_400, 100).await.unwrap(), 1);
    let listed = r
        .list_accounts(
            &AccountFilter {
                account_prefix: "exp:".into(),
                ..AccountFilter::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    let expiry = |account: &str| {
        listed
            .iter()
            .find(|s| s.account == account)
            .map(|s| s.refresh_token_expires_at_unix)
    };
    assert_eq!(expiry("exp:a"), Some(now + 3 * 86_400));
    assert_eq!(
        expiry("exp:c"),
        Some(0),
        "the rotated token's expiry is unknown"
    );
}

tokenvault_tests::on_both_backends!(
    expiring_refresh_tokens_are_announced_once,
    every_state_change_has_its_event,
    inventory_lists_each_account_once,
    cursors_follow_commit_order,
);
