//! web-frontend at the HTTP level against the real authorization server
//! (npm `oidc-provider`): the signup flow for OIDC and plain OAuth 2.0
//! providers, what the responses carry (security headers, cookie attributes,
//! and never a token), signed connect links, reconnecting an account whose
//! grant died, and disconnecting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokenvault_proto::v1::AccountStatus;
use tokenvault_tests::oidc::Decision;
use tokenvault_tests::services::LINK_SECRET;
use tokenvault_tests::system::{Options, System};
use tokenvault_tests::{Backend, assert_not_logged};
use tokenvault_web_frontend::link::{LinkAction, LinkSigner};
use tonic::Code;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn signer() -> LinkSigner {
    LinkSigner::new(LINK_SECRET.as_bytes(), 3600).unwrap()
}

/// `?account=..&expires=..&sig=..` of a signed link.
fn link_query(action: LinkAction, account: &str, provider: Option<&str>, expires: i64) -> String {
    let url = signer()
        .url(
            &"http://x.test".parse().unwrap(),
            action,
            account,
            provider,
            expires,
            None,
        )
        .unwrap();
    format!("?{}", url.query().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_stores_a_token_that_a_worker_can_use_and_no_response_carries_a_token() {
    let mut f = System::start(Options {
        backend: Backend::Postgres,
        ..Options::default()
    })
    .await
    .unwrap();
    let mut browser = f.browser().unwrap();

    let home = browser.get("/").await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(home.kind().as_deref(), Some("home"));
    assert!(home.0.body.contains("data-provider=\"oidc\""));
    assert!(home.0.body.contains("data-provider=\"github\""));

    let authorization_url = browser.start("oidc", "").await.unwrap();
    // The authorization request: PKCE S256, a nonce, offline access the
    // provider's way, and the frontend's callback.
    let url = url::Url::parse(&authorization_url).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("nonce").is_some_and(|n| n.len() >= 16));
    assert!(param("state").is_some_and(|s| s.len() >= 16));
    assert!(
        param("scope")
            .unwrap()
            .split(' ')
            .any(|s| s == "offline_access")
    );
    assert_eq!(param("prompt").as_deref(), Some("consent"));
    assert_eq!(
        param("redirect_uri").unwrap(),
        format!("{}/callback", f.web_url)
    );
    // The state is bound to this browser by a Secure, HttpOnly, SameSite=Lax cookie.
    let set_cookie = browser
        .seen
        .last()
        .unwrap()
        .header("set-cookie")
        .unwrap()
        .to_owned();
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            set_cookie.contains(attribute),
            "{attribute} missing in {set_cookie}"
        );
    }
    assert!(
        !set_cookie.contains(&param("state").unwrap()),
        "the state must not be readable in the cookie"
    );

    let callback = browser
        .at_provider(&f.oidc, &authorization_url, "alice", Decision::Allow)
        .await
        .unwrap();
    let page = browser.get(callback.as_str()).await.unwrap();
    assert_eq!(page.status(), 200, "{:?}", page.error_code());
    assert_eq!(page.kind().as_deref(), Some("connected"));
    assert_eq!(page.field("account").as_deref(), Some("oidc:alice"));
    f.remember_connected("oidc:alice");

    // A worker gets an access token for that account, which the
    // authorization server accepts.
    let access = f.token("oidc:alice", 30).await.unwrap();
    assert_eq!(f.oidc.userinfo(&access).await.unwrap()["sub"], "alice");
    let stored = f.stored_refresh_token("oidc:alice").await.unwrap();

    // Every header and body of the flow (frontend and authorization server):
    // no refresh token, no access token.
    assert!(browser.seen.len() >= 6, "{:?}", browser.seen);
    for seen in &browser.seen {
        assert!(!seen.contains(&stored), "refresh token in {seen:?}");
        assert!(!seen.contains(&access), "access token in {seen:?}");
    }
    // Every frontend response carries the security headers.
    for seen in browser
        .seen
        .iter()
        .filter(|s| s.url.starts_with(&f.web_url))
    {
        let csp = seen.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
            "{seen:?}: {csp}"
        );
        assert_eq!(
            seen.header("referrer-policy"),
            Some("no-referrer"),
            "{seen:?}"
        );
        assert_eq!(
            seen.header("x-content-type-options"),
            Some("nosniff"),
            "{seen:?}"
        );
        // Served over plain http here, so no HSTS.
        assert_eq!(seen.header("strict-transport-security"), None, "{seen:?}");
    }
    assert_not_logged(&stored, "the stored refresh token");
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_sent_from_elsewhere_asks_first() {
    let f = System::start(Options::default()).await.unwrap();
    let mut browser = f.browser().unwrap();
    let query = link_query(LinkAction::Connect, "app-user-9", Some("oidc"), now() + 300);
    // Another site (or a link opened from elsewhere) cannot start a sign-in
    // silently: the browser gets a page to confirm on, and no cookie.
    for site in ["cross-site", "same-site", "none"] {
        let page = browser
            .get_from(&format!("/connect/oidc{query}"), site)
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{site}");
        assert_eq!(page.kind().as_deref(), Some("confirm-connect"), "{site}");
        assert_eq!(page.field("account").as_deref(), Some("app-user-9"));
        assert!(page.0.header("set-cookie").is_none(), "{site}");
        assert!(page.0.body.contains(&format!(
            "href=\"/connect/oidc{}\"",
            query.replace('&', "&amp;")
        )));
    }
    // The click on that page (same-origin) starts it.
    browser.start("oidc", &query).await.unwrap();
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_oauth2_provider_is_identified_through_its_user_api() {
    let mut f = System::start(Options::default()).await.unwrap();
    let mut browser = f.browser().unwrap();
    let page = browser
        .connect(&f.oidc, "github", "", "octocat", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(
        page.kind().as_deref(),
        Some("connected"),
        "{:?}",
        page.error_code()
    );
    assert_eq!(page.field("account").as_deref(), Some("github:octocat"));
    // What was stored is a refresh token the authorization server honours.
    let stored = f
        .stored_refresh_token_of("github:octocat", "github")
        .await
        .unwrap();
    let refreshed = f.oidc.refresh_directly(&stored).await.unwrap();
    f.secrets.push(refreshed.access_token.clone());
    assert_eq!(
        f.oidc.userinfo(&refreshed.access_token).await.unwrap()["sub"],
        "octocat"
    );
    for seen in &browser.seen {
        assert!(!seen.contains(&stored), "refresh token in {seen:?}");
    }
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_link_files_the_token_under_the_applications_account_id() {
    let mut f = System::start(Options::default()).await.unwrap();
    let mut browser = f.browser().unwrap();
    let query = link_query(LinkAction::Connect, "app-user-42", None, now() + 300);
    let home = browser.get(&format!("/{query}")).await.unwrap();
    assert_eq!(home.field("account").as_deref(), Some("app-user-42"));
    let page = browser
        .connect(&f.oidc, "oidc", &query, "carol", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(
        page.field("account").as_deref(),
        Some("app-user-42"),
        "{:?}",
        page.error_code()
    );
    f.remember_connected("app-user-42");

    // Tampered, expired, too long-lived, or for another provider: refused,
    // and nothing is stored.
    let before = f.row_counts().await.unwrap();
    let tampered = query.replace("app-user-42", "app-user-43");
    let expired = link_query(LinkAction::Connect, "app-user-42", None, now() - 1);
    let too_long = link_query(LinkAction::Connect, "app-user-42", None, now() + 86_400);
    let other_provider = link_query(
        LinkAction::Connect,
        "app-user-42",
        Some("github"),
        now() + 300,
    );
    for (query, code) in [
        (&tampered, "link-invalid"),
        (&expired, "link-expired"),
        (&too_long, "link-invalid"),
        (&other_provider, "link-invalid"),
    ] {
        let page = browser.get(&format!("/connect/oidc{query}")).await.unwrap();
        assert_eq!(page.status(), 403, "{query}");
        assert_eq!(page.error_code().as_deref(), Some(code), "{query}");
    }
    assert_eq!(f.row_counts().await.unwrap(), before);
    let access = f.token("app-user-42", 30).await.unwrap();
    assert_eq!(f.oidc.userinfo(&access).await.unwrap()["sub"], "carol");
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_signed_in_python_connects_the_applications_account_in_its_tenant() {
    let mut f = System::start(Options::default()).await.unwrap();
    let secret_file = f.pki.scratch().join("link-secret");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/sign_link.py");
    let web_url = f.web_url.clone();
    let sign = |extra: &'static [&'static str]| {
        let (script, secret_file, web_url) = (script.clone(), secret_file.clone(), web_url.clone());
        async move {
            let output = tokio::task::spawn_blocking(move || {
                std::process::Command::new("python3")
                    .arg(script)
                    .arg("--secret-file")
                    .arg(secret_file)
                    .args([
                        "--base-url",
                        &web_url,
                        "--tenant",
                        "acme",
                        "--account",
                        "py-user-1",
                    ])
                    .args(["--provider", "oidc"])
                    .args(extra)
                    .output()
            })
            .await
            .unwrap()
            .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            url::Url::parse(String::from_utf8(output.stdout).unwrap().trim()).unwrap()
        }
    };
    let link = sign(&[]).await;
    assert_eq!(link.path(), "/connect/oidc");
    let mut browser = f.browser().unwrap();
    let page = browser
        .connect(
            &f.oidc,
            "oidc",
            &format!("?{}", link.query().unwrap()),
            "mia",
            Decision::Allow,
        )
        .await
        .unwrap();
    assert_eq!(
        page.field("account").as_deref(),
        Some("acme:py-user-1"),
        "{:?}",
        page.error_code()
    );
    f.remember_connected("acme:py-user-1");
    let access = f.token("acme:py-user-1", 30).await.unwrap();
    assert_eq!(f.oidc.userinfo(&access).await.unwrap()["sub"], "mia");

    // The tenant's disconnect link, opened in another browser: confirmed,
    // then done.
    let link = sign(&["--disconnect"]).await;
    let mut other = f.browser().unwrap();
    let confirm = other
        .get(&format!("/disconnect?{}", link.query().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        confirm.field("account").as_deref(),
        Some("acme:py-user-1"),
        "{:?}",
        confirm.error_code()
    );
    let form: Vec<(String, String)> = link.query_pairs().into_owned().collect();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let done = other.post_form("/disconnect", &form).await.unwrap();
    assert_eq!(
        done.kind().as_deref(),
        Some("disconnected"),
        "{:?}",
        done.error_code()
    );
    // The cached token stops once get-service revalidates (every second here).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.token("acme:py-user-1", 0).await != Err(Code::NotFound) {
        assert!(tokio::time::Instant::now() < deadline, "still served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_needing_reauthorization_is_reconnected_from_a_link() {
    let mut f = System::start(Options::default()).await.unwrap();
    let mut browser = f.browser().unwrap();
    let query = link_query(LinkAction::Connect, "app-user-7", Some("oidc"), now() + 300);
    let page = browser
        .connect(&f.oidc, "oidc", &query, "dave", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(page.kind().as_deref(), Some("connected"));
    f.remember_connected("app-user-7");

    // The person removes the app at the provider: the grant is dead.
    f.oidc.revoke_grant("dave").await.unwrap();
    // Asking for more life than the cached token has forces a refresh,
    // which the provider refuses.
    assert_eq!(
        f.token("app-user-7", 60).await,
        Err(Code::FailedPrecondition)
    );
    let status = f.worker.account_status("app-user-7", "oidc").await.unwrap();
    assert_eq!(status.0, AccountStatus::ReauthorizationRequired);

    // The application sends a fresh link; the new token replaces the old.
    let relink = link_query(LinkAction::Connect, "app-user-7", Some("oidc"), now() + 300);
    let page = browser
        .connect(&f.oidc, "oidc", &relink, "dave", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(
        page.kind().as_deref(),
        Some("connected"),
        "{:?}",
        page.error_code()
    );
    let access = f.token("app-user-7", 0).await.unwrap();
    assert_eq!(f.oidc.userinfo(&access).await.unwrap()["sub"], "dave");
    let s = f.worker.account_status("app-user-7", "oidc").await.unwrap();
    assert_eq!(s.0, AccountStatus::Active);
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_tombstones_only_for_the_browser_that_connected_or_a_signed_link() {
    let mut f = System::start(Options::default()).await.unwrap();
    let mut browser = f.browser().unwrap();
    let page = browser
        .connect(&f.oidc, "oidc", "", "erin", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(page.kind().as_deref(), Some("connected"));
    f.remember_connected("oidc:erin");
    let initial = f.stored_refresh_token("oidc:erin").await.unwrap();
    f.token("oidc:erin", 30).await.unwrap();
    // The refresh rotated the token; wait until get-service has stored it.
    f.stored_token_other_than("oidc:erin", &initial, Duration::from_secs(5))
        .await
        .unwrap();

    // Another browser (no cookie), or a form posted from another site: refused.
    let before = f.row_counts().await.unwrap();
    let mut stranger = f.browser().unwrap();
    let refused = stranger
        .post_form(
            "/disconnect",
            &[("account", "oidc:erin"), ("provider", "oidc")],
        )
        .await
        .unwrap();
    assert_eq!(
        (refused.status(), refused.error_code().as_deref()),
        (403, Some("not-allowed"))
    );
    assert_eq!(f.row_counts().await.unwrap(), before);
    f.token("oidc:erin", 30).await.unwrap();

    // The browser that connected it disconnects it: workers get NOT_FOUND, and get-service
    // revokes the grant at the provider (RFC 7009), after which the sealed token is deleted.
    let live = f.stored_refresh_token("oidc:erin").await.unwrap();
    assert!(f.oidc.refresh_token_is_active(&live).await.unwrap());
    let done = browser
        .post_form(
            "/disconnect",
            &[("account", "oidc:erin"), ("provider", "oidc")],
        )
        .await
        .unwrap();
    assert_eq!(
        done.kind().as_deref(),
        Some("disconnected"),
        "{:?}",
        done.error_code()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(f.token("oidc:erin", 0).await, Err(Code::NotFound));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while f.oidc.refresh_token_is_active(&live).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refresh token was not revoked at the provider"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Recording the revocation deleted the sealed token: erin's was the only one stored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.row_counts().await.unwrap().sealed_tokens != 0 {
        assert!(tokio::time::Instant::now() < deadline, "sealed token kept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A signed disconnect link from the application works in any browser.
    let page = browser
        .connect(&f.oidc, "oidc", "", "frank", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(page.kind().as_deref(), Some("connected"));
    let query = link_query(
        LinkAction::Disconnect,
        "oidc:frank",
        Some("oidc"),
        now() + 300,
    );
    let mut other = f.browser().unwrap();
    let confirm = other.get(&format!("/disconnect{query}")).await.unwrap();
    assert_eq!(
        confirm.kind().as_deref(),
        Some("confirm-disconnect"),
        "{:?}",
        confirm.error_code()
    );
    let link: Vec<(String, String)> =
        url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
            .into_owned()
            .collect();
    let form: Vec<(&str, &str)> = link.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let done = other.post_form("/disconnect", &form).await.unwrap();
    assert_eq!(
        done.kind().as_deref(),
        Some("disconnected"),
        "{:?}",
        done.error_code()
    );
    assert_eq!(f.token("oidc:frank", 0).await, Err(Code::NotFound));
    f.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_pages_and_limits() {
    let f = System::start(Options::default()).await.unwrap();
    let mut browser = f.browser().unwrap();
    let unknown = browser.get("/connect/nope").await.unwrap();
    assert_eq!(
        (unknown.status(), unknown.error_code().as_deref()),
        (404, Some("unknown-provider"))
    );
    let missing = browser.get("/no/such/page").await.unwrap();
    assert_eq!(
        (missing.status(), missing.error_code().as_deref()),
        (404, Some("not-found"))
    );
    // Malformed input gets an error page, not a framework message. (The
    // oversized body is 16 KiB: over the 8 KiB limit, yet small enough to be
    // sent whole before the server answers 413 and closes.)
    let bad = browser.get("/?expires=soon").await.unwrap();
    assert_eq!(
        (bad.status(), bad.error_code().as_deref()),
        (400, Some("bad-request"))
    );
    let bad = browser.get("/disconnect").await.unwrap();
    assert_eq!(
        (bad.status(), bad.error_code().as_deref()),
        (400, Some("bad-request"))
    );
    let huge = browser
        .post_raw(
            "/disconnect",
            format!("account={}&provider=oidc", "a".repeat(16 * 1024)).into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(
        (huge.status(), huge.error_code().as_deref()),
        (413, Some("too-large"))
    );
    let css = browser.get("/static/style.css").await.unwrap();
    assert_eq!(
        css.0.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    f.stop().await.unwrap();
}

/// A disconnected account whose revocation keeps failing (its provider,
/// `github`, is not in get-service's catalogue) does not hold up the others,
/// even with one provider call per sweep: the stuck token waits for its
/// retry while the next one is revoked, and the stuck one stays sealed in the
/// store instead of being deleted unrevoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_that_keeps_failing_does_not_hold_up_others() {
    let mut f = System::start(Options {
        revocation_batch_size: 1,
        ..Options::default()
    })
    .await
    .unwrap();
    let mut browser = f.browser().unwrap();
    let page = browser
        .connect(&f.oidc, "github", "", "gina", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(page.kind().as_deref(), Some("connected"));
    let stuck = page.field("account").unwrap();
    let gone = browser
        .post_form(
            "/disconnect",
            &[("account", &stuck), ("provider", "github")],
        )
        .await
        .unwrap();
    assert_eq!(
        gone.kind().as_deref(),
        Some("disconnected"),
        "{:?}",
        gone.error_code()
    );

    let page = browser
        .connect(&f.oidc, "oidc", "", "hugo", Decision::Allow)
        .await
        .unwrap();
    assert_eq!(page.kind().as_deref(), Some("connected"));
    f.remember_connected("oidc:hugo");
    let live = f.stored_refresh_token("oidc:hugo").await.unwrap();
    let gone = browser
        .post_form(
            "/disconnect",
            &[("account", "oidc:hugo"), ("provider", "oidc")],
        )
        .await
        .unwrap();
    assert_eq!(
        gone.kind().as_deref(),
        Some("disconnected"),
        "{:?}",
        gone.error_code()
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while f.oidc.refresh_token_is_active(&live).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second revocation was held up by the stuck one"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The stuck account's token is still sealed in the store, waiting.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.row_counts().await.unwrap().sealed_tokens != 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f.stop().await.unwrap();
}
