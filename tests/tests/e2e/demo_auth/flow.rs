//! The flow through the endpoints: authorize, PKCE, rotation with reuse
//! detection, revocation, refusals, metadata, and the state file.

use reqwest::StatusCode;
use serde_json::Value;

use super::{CLIENT, REDIRECT, VERIFIER, basic_secret, redirect_query, start, str_of};

#[tokio::test]
async fn whole_flow_with_pkce_rotation_and_reuse_detection() {
    let s = start(None).await;

    // A wrong verifier is refused, and uses the code up.
    let code = s.code(VERIFIER, "bob").await;
    let wrong = "x".repeat(43);
    let (status, body) = s.exchange(&code, &wrong).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = s.exchange(&code, VERIFIER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The right one gets tokens.
    let code = s.code(VERIFIER, "bob").await;
    let (status, body) = s.exchange(&code, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "profile");
    let access = str_of(&body, "access_token");
    let refresh1 = str_of(&body, "refresh_token");
    assert!(access.len() >= 43 && refresh1.len() >= 43 && access != refresh1);

    let me: Value = s.userinfo(&access).await.json().await.unwrap();
    assert_eq!(me["sub"], "bob");

    // Rotation: a new refresh token each time; the old one stops working.
    let (status, body) = s.refresh(&refresh1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh2 = str_of(&body, "refresh_token");
    let access2 = str_of(&body, "access_token");
    assert_ne!(refresh2, refresh1);
    assert_eq!(s.userinfo(&access2).await.status(), StatusCode::OK);
    let (status, body) = s.refresh(&refresh2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh3 = str_of(&body, "refresh_token");

    // Reusing a rotated token is refused and revokes the whole grant.
    let (status, body) = s.refresh(&refresh1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, body) = s.refresh(&refresh3).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let gone = s.userinfo(&access2).await;
    assert_eq!(gone.status(), StatusCode::UNAUTHORIZED);
    let challenge = gone.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""));
    s.shutdown().await;
}

#[tokio::test]
async fn revocation_and_code_replay() {
    let s = start(None).await;
    let (access, refresh) = s.connect("carol").await;
    assert_eq!(s.revoke(&refresh).await, StatusCode::OK);
    let (status, body) = s.refresh(&refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(s.userinfo(&access).await.status(), StatusCode::UNAUTHORIZED);
    // RFC 7009: unknown tokens are a success; the client must still authenticate.
    assert_eq!(s.revoke("never-issued").await, StatusCode::OK);
    let r = s
        .http
        .post(s.url("/revoke"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A replayed code is refused and revokes what it produced.
    let code = s.code(VERIFIER, "dave").await;
    let (status, body) = s.exchange(&code, VERIFIER).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.exchange(&code, VERIFIER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s.refresh(&str_of(&body, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.shutdown().await;
}

#[tokio::test]
async fn authorize_refusals_and_deny() {
    let s = start(None).await;
    let mut query = s.authorize_query(VERIFIER);
    query[1].1 = "someone-else".into();
    let r = s
        .http
        .get(s.url("/authorize"))
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    let mut query = s.authorize_query(VERIFIER);
    query[2].1 = format!("{REDIRECT}/x");
    let r = s
        .http
        .get(s.url("/authorize"))
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    // Without PKCE S256: back to the client with invalid_request.
    let mut query = s.authorize_query(VERIFIER);
    query[6].1 = "plain".into();
    let r = s
        .http
        .get(s.url("/authorize"))
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let q = redirect_query(&r);
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("invalid_request", "st4te")
    );
    // Deny.
    let q = s.consent(VERIFIER, "alice", "deny").await;
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st4te");
    assert!(!q.contains_key("code"));
    // A form without a live consent token is refused.
    let mut form = s.authorize_query(VERIFIER);
    form.extend([
        ("consent", "forged".into()),
        ("username", "eve".into()),
        ("decision", "allow".into()),
    ]);
    let r = s
        .http
        .post(s.url("/authorize"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    s.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_errors_metadata_and_pages() {
    let s = start(None).await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "x"),
        ("client_id", CLIENT),
        ("client_secret", "wrong"),
    ];
    let r = s
        .http
        .post(s.url("/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = s
        .http
        .post(s.url("/token"))
        .basic_auth(CLIENT, Some(basic_secret()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let (status, body) = s.token(&[("grant_type", "password")], true).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (_, body) = s
        .token(&[("grant_type", "authorization_code")], false)
        .await;
    assert_eq!(body["error"], "invalid_request");

    let meta: Value = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], s.base);
    assert_eq!(meta["token_endpoint"], s.url("/token"));
    assert_eq!(meta["revocation_endpoint"], s.url("/revoke"));
    assert_eq!(meta["code_challenge_methods_supported"][0], "S256");
    let home = s
        .http
        .get(s.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("DEVELOPMENT ONLY") && home.contains("/userinfo"));
    let health = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    s.shutdown().await;
}

#[tokio::test]
async fn state_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo-auth-state.json");
    let s = start(Some(path.clone())).await;
    let (access, refresh) = s.connect("erin").await;
    s.shutdown().await;

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("erin"));
    assert!(
        !text.contains(&access) && !text.contains(&refresh),
        "no token in the file"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let s = start(Some(path.clone())).await;
    let me: Value = s.userinfo(&access).await.json().await.unwrap();
    assert_eq!(me["sub"], "erin");
    let (status, body) = s.refresh(&refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.shutdown().await;
    // The rotation was saved too: the old refresh token is refused after another restart.
    let s = start(Some(path)).await;
    let (status, _) = s.refresh(&refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.shutdown().await;
}
