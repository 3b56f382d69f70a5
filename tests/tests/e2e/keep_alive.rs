//! Keep-alive against the real authorization server (npm `oidc-provider`, which rotates refresh
//! tokens and revokes the grant when a rotated one is used again): a grant no worker asks for is
//! refreshed in the background once it has been idle for the provider's `keep_alive_days`, and the
//! rotated refresh token is stored like any rotation; a grant in use is left to the workers; a
//! keep-alive refresh while set-service is down is journaled and stored when it is back, so no
//! rotation is lost.

use std::time::Duration;

use tokenvault_tests::system::{Options, System};

/// Two seconds, in days.
const TWO_SECONDS: f64 = 2.0 / 86_400.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_grant_is_refreshed_in_the_background_and_its_rotation_stored() {
    let mut f = System::start(Options {
        keep_alive_days: Some(TWO_SECONDS),
        ..Options::default()
    })
    .await
    .unwrap();
    let first = f.connect("idle-1").await.unwrap();
    let before = f.refreshes().await.unwrap();
    // No worker asks for it: keep-alive refreshes it once it is 2 s idle.
    let rotated = f
        .stored_token_other_than("idle-1", &first.refresh_token, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(f.refreshes().await.unwrap() > before);
    assert!(f.oidc.refresh_token_is_active(&rotated).await.unwrap());
    // Refreshed again only after another idle window, not on every scan: over 5 s
    // (about 5 scans) at most 3 more refreshes.
    let counted = f.refreshes().await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let again = f.refreshes().await.unwrap() - counted;
    assert!(
        (1..=3).contains(&again),
        "{again} keep-alive refreshes in 5 s"
    );
    // The grant is alive: a worker gets a token from it.
    assert!(f.token("idle-1", 0).await.is_ok());
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_rotation_while_set_service_is_down_is_journaled_then_stored() {
    let mut f = System::start(Options {
        keep_alive_days: Some(TWO_SECONDS),
        ..Options::default()
    })
    .await
    .unwrap();
    let first = f.connect("idle-2").await.unwrap();
    f.stop_set_service().await.unwrap();
    let before = f.refreshes().await.unwrap();
    // Keep-alive refreshes while set-service is down: the provider rotates, get-service
    // journals the rotated token (sealed) instead of losing it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.refreshes().await.unwrap() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no keep-alive refresh"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first token is spent at the provider now (a reuse would revoke the grant).
    assert!(
        !f.oidc
            .refresh_token_is_active(&first.refresh_token)
            .await
            .unwrap()
    );
    f.restart_set_service().await.unwrap();
    let rotated = f
        .stored_token_other_than("idle-2", &first.refresh_token, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(f.oidc.refresh_token_is_active(&rotated).await.unwrap());
    assert!(f.token("idle-2", 0).await.is_ok());
    f.stop().await.unwrap();
}
