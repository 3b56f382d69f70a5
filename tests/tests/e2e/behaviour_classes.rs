//! Every behaviour class of the provider catalogue, through the whole path
//! against the real authorization server (npm `oidc-provider`, told to
//! behave like the entry's provider with `/test/quirks`): connect in the
//! browser flow, an access token for a worker, a forced refresh (rotation
//! stored, or the same token kept), disconnect (revoked at the provider, or
//! only forgotten where the provider has no revocation endpoint).
//!
//! Each case is a real catalogue entry configured as an operator would
//! (`provider = "<entry>"` plus credentials; the endpoints and scope names
//! are the test server's), so what is tested is what the entry says.

use std::time::{Duration, Instant};

use tokenvault_catalogue::{Class, ProviderEntry};
use tokenvault_tests::catalogue::entry;
use tokenvault_tests::oidc::Decision;
use tokenvault_tests::system::{Options, System};

/// One class case: the entry, how the server must behave, who signs in
/// and the account id the entry's subject rule must find.
struct Case {
    entry: &'static str,
    quirks: &'static [(&'static str, &'static str)],
    login: &'static str,
    subject: &'static str,
}

/// The cases, together covering every class.
const CASES: &[Case] = &[
    // nested_token_response, comma_scopes, missing_expires_in, rotating,
    // client_auth_header, no_revocation; the account in the token answer.
    Case {
        entry: "slack",
        quirks: &[
            ("nested", "authed_user"),
            ("comma_scopes", "1"),
            ("omit_expires_in", "1"),
        ],
        login: "ursula",
        subject: "ursula",
    },
    // oidc_discovery, non_rotating, client_auth_body, idle_expiry; revoked
    // at disconnect through the discovered endpoint.
    Case {
        entry: "google",
        quirks: &[("rotate", "0")],
        login: "gina",
        subject: "gina",
    },
    // refresh_token_expiry_field under another name (Airtable's
    // refresh_expires_in), rotating, idle_expiry, the account from a user API.
    Case {
        entry: "airtable",
        quirks: &[("expiry_field", "refresh_expires_in")],
        login: "arno",
        subject: "arno",
    },
    // non_rotating, the account at the top of the token answer
    // (`account_id`).
    Case {
        entry: "dropbox",
        quirks: &[("rotate", "0"), ("subject_field", "account_id")],
        login: "dora",
        subject: "dora",
    },
    // No PKCE (the entry says the provider does not take it), the standard
    // refresh_token_expires_in.
    Case {
        entry: "linkedin",
        quirks: &[("pkce", "0"), ("rotate", "0")],
        login: "lina",
        subject: "lina",
    },
    // The account is the ID token's `oid` claim, without discovery (the
    // multi-tenant endpoints), rotating, client_auth_body.
    Case {
        entry: "microsoft",
        quirks: &[],
        login: "mia",
        subject: "oid-mia",
    },
];

/// The refresh-token lifetime the server reports, when the entry has a field
/// for it.
const REFRESH_TOKEN_LIFETIME_SECS: u64 = 3 * 86_400;

#[test]
fn the_cases_cover_every_class() {
    let mut covered = std::collections::BTreeSet::new();
    for case in CASES {
        covered.extend(entry(case.entry).unwrap().classes);
    }
    let missing: Vec<Class> = Class::ALL
        .into_iter()
        .filter(|c| !covered.contains(c))
        .collect();
    assert!(missing.is_empty(), "no case for {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_behaviour_class_connects_refreshes_and_disconnects_against_the_real_server() {
    let mut sys = System::start(Options {
        catalogue: CASES.iter().map(|c| c.entry).collect(),
        web_providers: vec![],
        access_token_ttl: Duration::from_secs(60),
        ..Options::default()
    })
    .await
    .unwrap();
    for case in CASES {
        run(&mut sys, case).await;
    }
    sys.assert_no_secret_logged();
    sys.stop().await.unwrap();
}

async fn run(sys: &mut System, case: &Case) {
    let name = case.entry;
    let entry = entry(name).unwrap();
    let has = |class: Class| entry.classes.contains(&class);
    sys.oidc.set_quirks(case.quirks).await.unwrap();
    let expiry = entry.refresh_token_expiry_field.is_some();
    sys.oidc
        .set_refresh_token_lifetime(if expiry {
            REFRESH_TOKEN_LIFETIME_SECS
        } else {
            0
        })
        .await
        .unwrap();

    // Connect in the browser flow.
    let mut browser = sys.browser().unwrap();
    let authorization_url = browser.start(name, "").await.unwrap();
    let url = url::Url::parse(&authorization_url).unwrap();
    let param = |key: &str| {
        url.query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    let scope = param("scope").unwrap_or_default();
    if has(Class::CommaScopes) {
        assert!(
            scope.contains(',') && !scope.contains(' '),
            "{name}: {scope}"
        );
    } else {
        assert!(!scope.contains(','), "{name}: {scope}");
    }
    assert_eq!(
        param("code_challenge").is_some(),
        entry.pkce != tokenvault_catalogue::Pkce::Unsupported,
        "{name}: {authorization_url}"
    );
    let callback = browser
        .at_provider(&sys.oidc, &authorization_url, case.login, Decision::Allow)
        .await
        .unwrap();
    let page = browser.get(callback.as_str()).await.unwrap();
    let account = format!("{name}:{}", case.subject);
    assert_eq!(
        page.kind().as_deref(),
        Some("connected"),
        "{name}: {page:?}"
    );
    assert_eq!(page.field("account").as_deref(), Some(account.as_str()));
    let connected_token = sys.stored_refresh_token_of(&account, name).await.unwrap();

    // A worker's token: the first one comes from a refresh.
    let refreshes = sys.oidc.counters().await.unwrap().refresh_grants;
    let first = sys
        .worker
        .access_token(&account, name, Duration::from_secs(1))
        .await
        .unwrap();
    sys.secrets.push(first.secret().to_owned());
    let introspected = sys.oidc.introspect(first.secret()).await.unwrap();
    assert_eq!(introspected["active"], true, "{name}: {introspected}");
    let lifetime = first.expires_at_unix - now();
    if has(Class::MissingExpiresIn) {
        // No expires_in: the entry's documented lifetime is assumed.
        let documented = i64::try_from(entry.access_token_lifetime_secs.unwrap()).unwrap();
        assert!(
            (documented - 5..=documented).contains(&lifetime),
            "{name}: {lifetime}"
        );
    } else {
        assert!((55..=60).contains(&lifetime), "{name}: {lifetime}");
    }
    let after_first = sys.stored_refresh_token_of(&account, name).await.unwrap();
    check_rotation(name, &entry, &connected_token, &after_first);

    // A forced refresh: a token that must outlive the cached one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = sys
        .worker
        .access_token(
            &account,
            name,
            Duration::from_secs(lifetime_secs(lifetime) - 1),
        )
        .await
        .unwrap();
    sys.secrets.push(second.secret().to_owned());
    assert_ne!(second.secret(), first.secret(), "{name}");
    let counters = sys.oidc.counters().await.unwrap();
    assert_eq!(counters.refresh_grants - refreshes, 2, "{name}");
    let after_second = sys.stored_refresh_token_of(&account, name).await.unwrap();
    check_rotation(name, &entry, &after_first, &after_second);
    assert!(
        sys.oidc
            .refresh_token_is_active(&after_second)
            .await
            .unwrap()
    );

    // What the inventory says, including the refresh token's lifetime where
    // the entry names the field that carries it.
    let admin = sys.admin_named("classes").unwrap();
    let summary = admin.account(&account, name).await.unwrap().unwrap();
    if expiry {
        let expected = now() + i64::try_from(REFRESH_TOKEN_LIFETIME_SECS).unwrap();
        let said = summary.refresh_token_expires_at_unix;
        assert!((expected - 30..=expected).contains(&said), "{name}: {said}");
    } else {
        assert_eq!(summary.refresh_token_expires_at_unix, 0, "{name}");
    }

    // Disconnect: revoked at the provider where it has an endpoint for
    // it, otherwise only forgotten here.
    let done = browser
        .post_form("/disconnect", &[("account", &account), ("provider", name)])
        .await
        .unwrap();
    assert_eq!(done.kind().as_deref(), Some("disconnected"), "{name}");
    // The cache looks at the store again within revalidate_secs (1 s here).
    let started = Instant::now();
    while sys
        .worker
        .access_token(&account, name, Duration::from_secs(1))
        .await
        .is_ok()
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: still served after the disconnect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if has(Class::NoRevocation) {
        // get-service sweeps every second; give it a few sweeps.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            sys.oidc
                .refresh_token_is_active(&after_second)
                .await
                .unwrap(),
            "{name}: revoked, though the entry has no revocation endpoint"
        );
    } else {
        let started = Instant::now();
        while sys
            .oidc
            .refresh_token_is_active(&after_second)
            .await
            .unwrap()
        {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{name}: not revoked at the provider"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A rotating entry stores a new refresh token on each refresh; a
/// non-rotating one keeps the one it has.
fn check_rotation(name: &str, entry: &ProviderEntry, before: &str, after: &str) {
    if entry.refresh_token_rotates {
        assert_ne!(before, after, "{name}: rotation not stored");
    } else {
        assert_eq!(before, after, "{name}: a non-rotating token changed");
    }
}

fn lifetime_secs(lifetime: i64) -> u64 {
    u64::try_from(lifetime).unwrap_or(1).max(2)
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}
