//! Every failure of the signup flow gets its own page that names what went
//! wrong, and stores nothing: the person declines consent; the state is
//! missing, mismatched, expired or reused; the provider grants no refresh
//! token, refuses the code, or is down; set-service is down. After each, the
//! store's row counts are unchanged.

use std::time::Duration;

use tokenvault_tests::oidc::Decision;
use tokenvault_tests::system::{Options, System};
use tokenvault_tests::web::Page;

/// Asserts an error page with `code` and `status`.
fn assert_error(page: &Page, status: u16, code: &str) {
    assert_eq!(page.kind().as_deref(), Some("error"), "{:?}", page.0);
    assert_eq!(page.error_code().as_deref(), Some(code), "{}", page.0.body);
    assert_eq!(page.status(), status, "{code}");
    // Each page says what to do next.
    assert!(page.field("action").is_some_and(|a| a.len() > 20), "{code}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_declined_and_state_problems() {
    let f = System::start(Options::default()).await.unwrap();
    let before = f.row_counts().await.unwrap();

    // The person cancels at the provider.
    let mut browser = f.browser().unwrap();
    let page = browser
        .connect(&f.oidc, "oidc", "", "gina", Decision::Deny)
        .await
        .unwrap();
    assert_error(&page, 403, "access-denied");

    // No state at all, and a state from a browser with no sign-in cookie.
    let page = browser.get("/callback?code=abc").await.unwrap();
    assert_error(&page, 400, "state-missing");
    let authorization_url = browser.start("oidc", "").await.unwrap();
    let callback = browser
        .at_provider(&f.oidc, &authorization_url, "gina", Decision::Allow)
        .await
        .unwrap();
    let mut stranger = f.browser().unwrap();
    let page = stranger.get(callback.as_str()).await.unwrap();
    assert_error(&page, 400, "state-missing");

    // A state that is not the one this browser's sign-in sent (the browser
    // started a second sign-in meanwhile).
    browser.start("oidc", "").await.unwrap();
    let page = browser.get(callback.as_str()).await.unwrap();
    assert_error(&page, 400, "state-mismatch");
    assert_eq!(f.row_counts().await.unwrap(), before);
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_state_is_refused_and_stores_nothing_more() {
    let mut f = System::start(Options::default()).await.unwrap();
    let mut browser = f.browser().unwrap();
    let authorization_url = browser.start("oidc", "").await.unwrap();
    let cookies = browser.cookies().clone();
    let callback = browser
        .at_provider(&f.oidc, &authorization_url, "hank", Decision::Allow)
        .await
        .unwrap();
    let page = browser.get(callback.as_str()).await.unwrap();
    assert_eq!(page.kind().as_deref(), Some("connected"));
    f.remember_connected("oidc:hank");
    let after_first = f.row_counts().await.unwrap();

    // Reloading the callback in the same browser...
    let page = browser.get(callback.as_str()).await.unwrap();
    assert_error(&page, 400, "state-reused");
    // ...and replaying it with the sign-in cookie as it was.
    browser.set_cookies(cookies);
    let page = browser.get(callback.as_str()).await.unwrap();
    assert_error(&page, 400, "state-reused");
    assert_eq!(f.row_counts().await.unwrap(), after_first);
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_state_is_refused() {
    let f = System::start(Options {
        sign_in_ttl_secs: 1,
        ..Options::default()
    })
    .await
    .unwrap();
    let before = f.row_counts().await.unwrap();
    let mut browser = f.browser().unwrap();
    let authorization_url = browser.start("oidc", "").await.unwrap();
    let cookies = browser.cookies().clone();
    let callback = browser
        .at_provider(&f.oidc, &authorization_url, "ivan", Decision::Allow)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // A browser drops the expired cookie itself; one that kept it still
    // cannot use it.
    browser.set_cookies(cookies);
    let page = browser.get(callback.as_str()).await.unwrap();
    assert_error(&page, 400, "state-expired");
    assert_eq!(f.row_counts().await.unwrap(), before);
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_store_nothing() {
    let mut f = System::start(Options::default()).await.unwrap();
    let before = f.row_counts().await.unwrap();
    let mut browser = f.browser().unwrap();

    // No offline access asked for, so no refresh token comes back.
    let page = browser
        .connect(&f.oidc, "no-offline", "", "judy", Decision::Allow)
        .await
        .unwrap();
    assert_error(&page, 502, "no-refresh-token");

    // The token endpoint refuses the code.
    let authorization_url = browser.start("oidc", "").await.unwrap();
    let callback = browser
        .at_provider(&f.oidc, &authorization_url, "judy", Decision::Allow)
        .await
        .unwrap();
    f.oidc
        .fail_next_with(400, 1, "invalid_grant")
        .await
        .unwrap();
    let page = browser.get(callback.as_str()).await.unwrap();
    assert_error(&page, 502, "provider-refused");

    // The token endpoint is failing (503), then the provider is down.
    let authorization_url = browser.start("oidc", "").await.unwrap();
    let callback = browser
        .at_provider(&f.oidc, &authorization_url, "judy", Decision::Allow)
        .await
        .unwrap();
    f.oidc.fail_next(503, 1).await.unwrap();
    let page = browser.get(callback.as_str()).await.unwrap();
    assert_error(&page, 503, "provider-unavailable");

    let authorization_url = browser.start("oidc", "").await.unwrap();
    let callback = browser
        .at_provider(&f.oidc, &authorization_url, "judy", Decision::Allow)
        .await
        .unwrap();
    f.oidc.stop().await.unwrap();
    let page = browser.get(callback.as_str()).await.unwrap();
    assert_error(&page, 503, "provider-unavailable");
    assert_eq!(f.row_counts().await.unwrap(), before);
    f.oidc.restart().await.unwrap();
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_service_down_stores_nothing_and_a_retry_works() {
    let mut f = System::start(Options::default()).await.unwrap();
    let before = f.row_counts().await.unwrap();
    let mut browser = f.browser().unwrap();
    let authorization_url = browser.start("oidc", "").await.unwrap();
    let callback = browser
        .at_provider(&f.oidc, &authorization_url, "kate", Decision::Allow)
        .await
        .unwrap();
    f.stop_set_service().await.unwrap();
    let page = browser.get(callback.as_str()).await.unwrap();
    assert_error(&page, 503, "set-service-unavailable");
    assert_eq!(f.row_counts().await.unwrap(), before);

    f.restart_set_service().await.unwrap();
    let page = browser
        .connect(&f.oidc, "oidc", "", "kate", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(
        page.kind().as_deref(),
        Some("connected"),
        "{:?}",
        page.error_code()
    );
    f.remember_connected("oidc:kate");
    f.token("oidc:kate", 30).await.unwrap();
    f.stop().await.unwrap();
}
