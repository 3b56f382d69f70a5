//! Scope narrowing against the real authorization server (npm
//! `oidc-provider`, grants of `openid offline_access email`): a token asked
//! with a subset is one the server's introspection endpoint accepts with
//! exactly that subset; a superset is refused (by get-service from the
//! grant it knows, or by the server); tokens for different scope sets are
//! cached apart; a policy rule's ceiling caps what a caller gets; a provider
//! not configured to narrow refuses subsets rather than hand out more.

use std::collections::BTreeSet;
use std::time::Duration;

use tokenvault_tests::store::Backend;
use tokenvault_tests::system::{Options, System};
use tokenvault_worker::{AccessToken, WorkerClient};
use tonic::Code;

const RULES: &str = r#"
[[rules]]
name = "mail-only"
callers = ["worker/mail"]
accounts = ["*"]
providers = ["*"]
scopes = ["email", "profile"]

[[rules]]
name = "everything"
callers = ["worker/e2e"]
accounts = ["*"]
providers = ["*"]
"#;

async fn scoped(
    f: &mut System,
    worker: &WorkerClient,
    account: &str,
    provider: &str,
    scopes: &[&str],
) -> Result<AccessToken, Code> {
    let token = worker
        .access_token_scoped(account, provider, Duration::ZERO, scopes)
        .await
        .map_err(|e| e.code().unwrap_or(Code::Unknown))?;
    f.secrets.push(token.secret().to_owned());
    Ok(token)
}

/// The scopes the authorization server says `token` carries (it must be
/// active).
async fn introspected(f: &System, token: &AccessToken) -> BTreeSet<String> {
    let answer = f.oidc.introspect(token.secret()).await.unwrap();
    assert_eq!(answer["active"], true, "{answer}");
    answer["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn set(scopes: &[&str]) -> BTreeSet<String> {
    scopes.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_tokens_carry_exactly_the_subset_and_are_cached_apart() {
    // PostgreSQL: the cross-replica lock and access-token sharing are in
    // play (narrowed tokens take the one, and are kept out of the other).
    let mut f = System::start(Options {
        backend: Backend::Postgres,
        get_providers: vec!["oidc", "github"],
        narrowing_providers: vec!["oidc"],
        policy: Some(RULES.to_owned()),
        ..Options::default()
    })
    .await
    .unwrap();
    f.connect("acme:alice").await.unwrap();
    let worker = f.worker.clone();
    let refreshes = f.refreshes().await.unwrap();

    let full = scoped(&mut f, &worker, "acme:alice", "oidc", &[])
        .await
        .unwrap();
    let grant = set(&["openid", "offline_access", "email"]);
    assert_eq!(introspected(&f, &full).await, grant);
    let openid_email = scoped(&mut f, &worker, "acme:alice", "oidc", &["openid", "email"])
        .await
        .unwrap();
    assert_eq!(
        introspected(&f, &openid_email).await,
        set(&["openid", "email"])
    );
    assert_eq!(
        openid_email.scopes.iter().cloned().collect::<BTreeSet<_>>(),
        set(&["openid", "email"])
    );
    let email = scoped(&mut f, &worker, "acme:alice", "oidc", &["email"])
        .await
        .unwrap();
    assert_eq!(introspected(&f, &email).await, set(&["email"]));
    assert_eq!(f.refreshes().await.unwrap(), refreshes + 3);

    // Asked again, each scope set gets its own cached token: no refresh.
    let again = |scopes: &'static [&'static str]| {
        let worker = worker.clone();
        async move {
            worker
                .access_token_scoped("acme:alice", "oidc", Duration::ZERO, scopes)
                .await
                .unwrap()
                .secret()
                .to_owned()
        }
    };
    assert_eq!(again(&["email", "openid"]).await, openid_email.secret());
    assert_eq!(again(&["email"]).await, email.secret());
    assert_eq!(again(&[]).await, full.secret());
    // All of the grant's scopes is the grant's own token.
    assert_eq!(
        again(&["openid", "offline_access", "email"]).await,
        full.secret()
    );
    assert_ne!(openid_email.secret(), email.secret());
    assert_eq!(f.refreshes().await.unwrap(), refreshes + 3);

    // Beyond the grant: refused from the grant get-service knows...
    let stored = f.stored_refresh_token("acme:alice").await.unwrap();
    assert_eq!(
        scoped(&mut f, &worker, "acme:alice", "oidc", &["email", "profile"])
            .await
            .err(),
        Some(Code::PermissionDenied)
    );
    assert_eq!(f.refreshes().await.unwrap(), refreshes + 3);
    assert_eq!(f.stored_refresh_token("acme:alice").await.unwrap(), stored);
    // ...or, for an account it has no token for yet, by the server
    // (invalid_scope), which leaves the refresh token as it was.
    f.connect("acme:bob").await.unwrap();
    let bob_stored = f.stored_refresh_token("acme:bob").await.unwrap();
    let e = worker
        .access_token_scoped("acme:bob", "oidc", Duration::ZERO, &["email", "profile"])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
    assert!(
        e.to_string()
            .contains("beyond what account acme:bob granted"),
        "{e}"
    );
    assert_eq!(
        f.stored_refresh_token("acme:bob").await.unwrap(),
        bob_stored
    );
    let bob = scoped(&mut f, &worker, "acme:bob", "oidc", &["email"])
        .await
        .unwrap();
    assert_eq!(introspected(&f, &bob).await, set(&["email"]));

    // A caller whose rule caps scopes at email and profile: asking for
    // nothing gets the grant's scopes within the cap; asking beyond it is
    // refused.
    let mail = f.worker_named("mail").unwrap();
    let capped = scoped(&mut f, &mail, "acme:alice", "oidc", &[])
        .await
        .unwrap();
    assert_eq!(introspected(&f, &capped).await, set(&["email"]));
    assert_eq!(
        capped.secret(),
        email.secret(),
        "the email-only token is shared"
    );
    let e = mail
        .access_token_scoped("acme:alice", "oidc", Duration::ZERO, &["openid"])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
    assert!(
        e.to_string()
            .contains("beyond what its account policy rule allows"),
        "{e}"
    );

    // A provider not configured to narrow: a subset is refused rather than
    // answered with more; the whole grant, or nothing, is fine.
    f.connect_at("acme:alice", "github").await.unwrap();
    let e = worker
        .access_token_scoped("acme:alice", "github", Duration::ZERO, &["email"])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
    assert!(
        e.to_string().contains("not configured to narrow scopes"),
        "{e}"
    );
    let github = scoped(
        &mut f,
        &worker,
        "acme:alice",
        "github",
        &["email", "openid", "offline_access"],
    )
    .await
    .unwrap();
    assert_eq!(introspected(&f, &github).await, grant);
    // The capped caller cannot have it either.
    let e = mail
        .access_token_scoped("acme:alice", "github", Duration::ZERO, &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
    f.stop().await.unwrap();
}

/// Narrowed and full refreshes of one account, asked at once over and over
/// at a provider that rotates refresh tokens and revokes the grant on reuse:
/// they take turns on the one refresh token, so every call succeeds, each
/// scope set refreshes once per round, and the grant survives. Then the
/// grant dies: no token of any scope set is served again, even after the
/// dead grant is no longer remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_of_every_scope_set_take_turns_and_a_dead_grant_ends_them_all() {
    let mut f = System::start(Options {
        backend: Backend::Postgres,
        narrowing_providers: vec!["oidc"],
        cache: tokenvault_get_service::config::CacheConfig {
            negative_ttl_secs: 1,
            ..Options::default().cache
        },
        ..Options::default()
    })
    .await
    .unwrap();
    f.connect("acme:carol").await.unwrap();
    let sets: [&'static [&'static str]; 3] = [&[], &["email"], &["openid", "email"]];
    // 60 s tokens, their expiry in whole seconds: asking for 58 s refreshes
    // a token 3.5 s old (56 or 57 s left), and takes one just refreshed (59
    // or 60 s left).
    let refreshes = f.refreshes().await.unwrap();
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(3500)).await;
        }
        let mut calls = Vec::new();
        for scopes in sets {
            for _ in 0..4 {
                let worker = f.worker.clone();
                calls.push(tokio::spawn(async move {
                    worker
                        .access_token_scoped("acme:carol", "oidc", Duration::from_secs(58), scopes)
                        .await
                        .map(|t| t.secret().to_owned())
                        .map_err(|e| e.to_string())
                }));
            }
        }
        for call in calls {
            let token = call.await.unwrap().unwrap();
            f.secrets.push(token);
        }
    }
    assert_eq!(f.refreshes().await.unwrap(), refreshes + 9);
    let stored = f.stored_refresh_token("acme:carol").await.unwrap();
    assert!(f.oidc.refresh_token_is_active(&stored).await.unwrap());

    // The person revokes the grant; a full refresh (forced: the cached token
    // has less than 60 s left a second later) finds it dead.
    f.oidc.revoke_grant("acme:carol").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let e = f
        .worker
        .access_token("acme:carol", "oidc", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
    // The narrowed tokens cached before are not served, neither while the
    // dead grant is remembered nor after.
    for wait in [0, 1500] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        for scopes in &sets[1..] {
            let e = f
                .worker
                .access_token_scoped("acme:carol", "oidc", Duration::ZERO, scopes)
                .await
                .unwrap_err();
            assert_eq!(
                e.code(),
                Some(Code::FailedPrecondition),
                "{scopes:?} after {wait} ms: {e}"
            );
            assert!(e.to_string().contains("reauthorization required"), "{e}");
        }
    }
    f.stop().await.unwrap();
}
