//! Tests of the oidc-provider test peer itself: that it behaves as the
//! get-service tests rely on (a real authorization server with rotation,
//! reuse detection, revocation, and the failure hooks).

use std::time::Duration;

use tokenvault_tests::oidc::{OidcOptions, OidcServer, TokenEndpointError, Tokens};
use tokenvault_tests::{assert_not_logged, init_tracing};

async fn server() -> OidcServer {
    OidcServer::start_with(OidcOptions {
        access_token_ttl: Duration::from_secs(30),
        ..OidcOptions::default()
    })
    .await
    .unwrap()
}

fn token_error(err: &anyhow::Error) -> &TokenEndpointError {
    err.downcast_ref::<TokenEndpointError>()
        .unwrap_or_else(|| panic!("not a token endpoint error: {err:#}"))
}

async fn assert_accepted(server: &OidcServer, tokens: &Tokens, account: &str) {
    let info = server.userinfo(&tokens.access_token).await.unwrap();
    assert_eq!(info["sub"], account);
    assert_eq!(info["email"], format!("{account}@example.test"));
    let introspection = server.introspect(&tokens.access_token).await.unwrap();
    assert_eq!(introspection["active"], true, "{introspection}");
    assert_eq!(introspection["sub"], account);
    assert_eq!(introspection["client_id"], "tokenvault");
}

#[tokio::test]
async fn issues_refresh_token_whose_access_token_is_accepted() {
    init_tracing();
    let server = server().await;
    let discovery = server.discovery().await.unwrap();
    assert_eq!(discovery["issuer"], server.issuer());
    assert_eq!(discovery["token_endpoint"], server.token_endpoint());
    assert_eq!(
        discovery["introspection_endpoint"],
        server.introspection_endpoint()
    );
    assert_eq!(
        discovery["revocation_endpoint"],
        server.revocation_endpoint()
    );
    assert_eq!(discovery["userinfo_endpoint"], server.userinfo_endpoint());

    let tokens = server.obtain_refresh_token("alice").await.unwrap();
    assert!(
        tokens.expires_in > 0 && tokens.expires_in <= 30,
        "{tokens:?}"
    );
    assert!(tokens.id_token.is_some());
    assert_eq!(tokens.token_type, "Bearer");
    assert_accepted(&server, &tokens, "alice").await;

    // Debug shows no token.
    let debug = format!("{tokens:?}");
    assert!(!debug.contains(&tokens.access_token) && !debug.contains(&tokens.refresh_token));

    // A garbage token is refused at userinfo and inactive at introspection.
    assert!(server.userinfo("not-a-token").await.is_err());
    assert_eq!(
        server.introspect("not-a-token").await.unwrap()["active"],
        false
    );

    // The peer's own log lines (re-logged under `oidc_peer`) carry no token.
    let counters = server.counters().await.unwrap();
    assert_eq!(counters.token_requests, 1);
    drop(server);
    assert_not_logged(&tokens.access_token, "the access token");
    assert_not_logged(&tokens.refresh_token, "the refresh token");
    assert_not_logged(tokens.id_token.as_deref().unwrap(), "the ID token");
}

#[tokio::test]
async fn refresh_rotates_and_is_counted_once() {
    let server = server().await;
    let first = server.obtain_refresh_token("bob").await.unwrap();
    let before = server.counters().await.unwrap();
    assert_eq!(before.refresh_grants, 0);

    let second = server.refresh_directly(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_accepted(&server, &second, "bob").await;

    let after = server.counters().await.unwrap();
    assert_eq!(after.refresh_grants, before.refresh_grants + 1);
    assert_eq!(after.refresh_grants_succeeded, 1);
    assert_eq!(after.token_requests, before.token_requests + 1);

    // The newest refresh token keeps working.
    let third = server
        .refresh_directly(&second.refresh_token)
        .await
        .unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
    assert_eq!(server.counters().await.unwrap().refresh_grants, 2);

    server.reset_counters().await.unwrap();
    assert_eq!(server.counters().await.unwrap().refresh_grants, 0);
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_grant() {
    let server = server().await;
    let old = server.obtain_refresh_token("carol").await.unwrap();
    let new = server.refresh_directly(&old.refresh_token).await.unwrap();

    let err = server
        .refresh_directly(&old.refresh_token)
        .await
        .unwrap_err();
    let err = token_error(&err);
    assert_eq!(err.status, 400);
    assert_eq!(err.error.as_deref(), Some("invalid_grant"));

    // The whole grant is gone: the newest refresh token and its access token too.
    let err = server
        .refresh_directly(&new.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(token_error(&err).error.as_deref(), Some("invalid_grant"));
    assert_eq!(
        server.introspect(&new.access_token).await.unwrap()["active"],
        false
    );
    assert!(server.userinfo(&new.access_token).await.is_err());
    assert_eq!(server.counters().await.unwrap().grants_revoked, 1);

    // Another account's grant is untouched.
    let other = server.obtain_refresh_token("dave").await.unwrap();
    server.refresh_directly(&other.refresh_token).await.unwrap();
}

#[tokio::test]
async fn grants_can_be_revoked_by_hook_and_by_rfc7009() {
    let server = server().await;

    let tokens = server.obtain_refresh_token("erin").await.unwrap();
    assert_eq!(server.revoke_grant("erin").await.unwrap(), 1);
    let err = server
        .refresh_directly(&tokens.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(token_error(&err).error.as_deref(), Some("invalid_grant"));
    assert_eq!(
        server.introspect(&tokens.access_token).await.unwrap()["active"],
        false
    );
    assert_eq!(server.revoke_grant("erin").await.unwrap(), 0);

    let tokens = server.obtain_refresh_token("frank").await.unwrap();
    server
        .revoke_refresh_token(&tokens.refresh_token)
        .await
        .unwrap();
    let err = server
        .refresh_directly(&tokens.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(token_error(&err).error.as_deref(), Some("invalid_grant"));
    assert_eq!(
        server.introspect(&tokens.access_token).await.unwrap()["active"],
        false
    );
}

#[tokio::test]
async fn injected_failures_answer_the_status_with_retry_after() {
    let server = server().await;
    let tokens = server.obtain_refresh_token("grace").await.unwrap();

    server.fail_next(503, 1).await.unwrap();
    let err = server
        .refresh_directly(&tokens.refresh_token)
        .await
        .unwrap_err();
    let err = token_error(&err);
    assert_eq!(err.status, 503);
    assert_eq!(err.error.as_deref(), Some("temporarily_unavailable"));
    assert_eq!(err.retry_after.as_deref(), Some("1"));

    // Only the next one failed, and it did not use the refresh token.
    let refreshed = server
        .refresh_directly(&tokens.refresh_token)
        .await
        .unwrap();
    let counters = server.counters().await.unwrap();
    assert_eq!(counters.refresh_grants, 2);
    assert_eq!(counters.refresh_grants_succeeded, 1);

    server.fail_next(429, 2).await.unwrap();
    for _ in 0..2 {
        let err = server
            .refresh_directly(&refreshed.refresh_token)
            .await
            .unwrap_err();
        assert_eq!(token_error(&err).status, 429);
        assert_eq!(token_error(&err).retry_after.as_deref(), Some("1"));
    }
    server
        .fail_next_with(400, 1, "invalid_grant")
        .await
        .unwrap();
    let err = server
        .refresh_directly(&refreshed.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(token_error(&err).error.as_deref(), Some("invalid_grant"));
    assert_eq!(token_error(&err).retry_after, None);
    server
        .refresh_directly(&refreshed.refresh_token)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_slow_token_endpoint_does_not_use_an_abandoned_refresh_token() {
    let server = server().await;
    let tokens = server.obtain_refresh_token("heidi").await.unwrap();

    server.set_slow(1500).await.unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        server.refresh_directly(&tokens.refresh_token),
    )
    .await;
    assert!(abandoned.is_err(), "the slow refresh should have timed out");

    let started = std::time::Instant::now();
    server.refresh_directly("not-a-token").await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(1400));

    // The abandoned request was never processed: the token still works.
    server.set_slow(0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refreshed = server
        .refresh_directly(&tokens.refresh_token)
        .await
        .unwrap();
    assert_ne!(refreshed.refresh_token, tokens.refresh_token);
}

#[tokio::test]
async fn stop_and_restart_on_the_same_port_keeps_the_grants() {
    let mut server = server().await;
    let tokens = server.obtain_refresh_token("ivan").await.unwrap();
    let issuer = server.issuer().to_owned();
    let port = server.port();

    server.stop().await.unwrap();
    assert!(!server.is_running());
    let err = server
        .refresh_directly(&tokens.refresh_token)
        .await
        .unwrap_err();
    assert!(
        err.downcast_ref::<TokenEndpointError>().is_none(),
        "expected a connection error, got {err:#}"
    );

    server.restart().await.unwrap();
    assert!(server.is_running());
    assert_eq!(server.issuer(), issuer);
    assert_eq!(server.port(), port);

    // Tokens issued before the restart are still valid, and rotation goes on.
    assert_accepted(&server, &tokens, "ivan").await;
    let refreshed = server
        .refresh_directly(&tokens.refresh_token)
        .await
        .unwrap();
    assert_accepted(&server, &refreshed, "ivan").await;
    // Counters start again from zero with the new process.
    assert_eq!(server.counters().await.unwrap().refresh_grants, 1);

    // Restart while running works too.
    server.restart().await.unwrap();
    server
        .refresh_directly(&refreshed.refresh_token)
        .await
        .unwrap();
}

#[tokio::test]
async fn access_tokens_expire_after_the_configured_lifetime() {
    let server = OidcServer::start_with(OidcOptions {
        access_token_ttl: Duration::from_secs(2),
        ..OidcOptions::default()
    })
    .await
    .unwrap();
    let tokens = server.obtain_refresh_token("judy").await.unwrap();
    assert!(tokens.expires_in <= 2);
    assert_eq!(
        server.introspect(&tokens.access_token).await.unwrap()["active"],
        true
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        server.introspect(&tokens.access_token).await.unwrap()["active"],
        false
    );
    assert!(server.userinfo(&tokens.access_token).await.is_err());
    // The refresh token outlives it.
    let refreshed = server
        .refresh_directly(&tokens.refresh_token)
        .await
        .unwrap();
    assert_accepted(&server, &refreshed, "judy").await;
}
