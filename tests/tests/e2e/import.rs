//! `tokenvault-import` against a real set-service and PostgreSQL: 5,000
//! tokens imported, the import killed part-way (its task dropped with stores
//! in flight) and run again, then once more: every token is stored exactly
//! once and opens to its original plaintext, bad lines are reported without
//! stopping the import, and no log line or file other than the input holds a
//! plaintext token. And `--verify` against the real authorization server,
//! with set-service down right after the refreshes that rotated the tokens.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Connection as _;
use tokenvault_import::{Format, ImportConfig, Options as ImportOptions, run};
use tokenvault_opener::PrivateKeyRing;
use tokenvault_store::{Latest, TokenReader};
use tokenvault_tests::pki::{TRUST_DOMAIN, TestPki};
use tokenvault_tests::services::{oidc_provider_config, set_service_config, start_set_service};
use tokenvault_tests::store::{Backend, TestStore};
use tokenvault_tests::system::{Options, System};
use tokenvault_tests::{captured_logs, init_tracing};
use tokenvault_tls::{IdentityPattern, Role, SpiffeId};

const TOKENS: u64 = 5_000;
/// Part of every plaintext token and of nothing else: finding it anywhere
/// but in the input is a leak.
const MARK: &str = "rt-import-9f3c1e7a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_tokens_interrupted_and_resumed_are_each_stored_once() {
    init_tracing();
    let pki = TestPki::new().unwrap();
    let store = TestStore::new(Backend::Postgres).await;
    let mut set_config = set_service_config(&pki, &store.writer_url).unwrap();
    let importer: SpiffeId = format!("spiffe://{TRUST_DOMAIN}/admin/import")
        .parse()
        .unwrap();
    set_config
        .allow
        .store_refresh_token
        .push(IdentityPattern::Exact(importer));
    let set = start_set_service(set_config).await.unwrap();

    // The input: 5,000 good lines, a tenth with metadata, and three bad ones.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tokens.jsonl");
    let mut expected = BTreeMap::new();
    let mut text = String::new();
    for i in 0..TOKENS {
        let account = format!("imported:{i:05}");
        let provider = if i % 2 == 0 { "google" } else { "github" };
        let token = format!("{MARK}-{i}-{}", "x".repeat(40));
        let metadata = if i % 10 == 0 {
            format!(r#","metadata":{{"tenant":"t{}"}}"#, i % 7)
        } else {
            String::new()
        };
        text.push_str(&format!(
            r#"{{"account":"{account}","provider":"{provider}","refresh_token":"{token}"{metadata}}}"#
        ));
        text.push('\n');
        expected.insert((account, provider.to_owned()), token);
        if i == 100 {
            text.push_str(&format!("{{\"account\":\"bad one\",\"provider\":\"google\",\"refresh_token\":\"{MARK}-bad-1\"}}\n"));
            text.push_str(&format!("{MARK}-not-json\n"));
            text.push_str(&format!("{{\"account\":\"imported:x\",\"provider\":\"nowhere\",\"refresh_token\":\"{MARK}-bad-3\"}}\n"));
        }
    }
    std::fs::write(&input, &text).unwrap();
    let config = ImportConfig {
        trust_domain: TRUST_DOMAIN.to_owned(),
        public_keys_dir: pki.public_keys_dir(),
        sealing_kid: None,
        set_service: tokenvault_import_config_set(&set.address()),
        tls: pki.issue(Role::Admin, Some("import")).unwrap(),
        providers: Vec::new(),
    };
    let options = ImportOptions {
        input: input.clone(),
        format: Format::Jsonl,
        progress: dir.path().join("tokens.progress"),
        concurrency: 16,
        verify: false,
    };

    // First run: killed once 2,000 lines are done, with stores in flight.
    let handled = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&handled);
    let (first_config, first_options) = (config.clone(), options.clone());
    let first = tokio::spawn(async move {
        run(&first_config, &first_options, |r| {
            seen.store(r.handled(), Ordering::SeqCst);
        })
        .await
    });
    while handled.load(Ordering::SeqCst) < 2_000 {
        assert!(!first.is_finished(), "the first run ended early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    let recorded = std::fs::read_to_string(&options.progress)
        .unwrap()
        .lines()
        .count() as u64;
    assert!(
        (1_997..TOKENS).contains(&recorded),
        "{recorded} lines recorded"
    );

    // Second run: the rest, and the bad lines reported.
    let second = run(&config, &options, |_| {}).await.unwrap();
    eprintln!("second run: {second:?}");
    assert_eq!(second.lines, TOKENS + 3);
    assert_eq!(second.done_before, recorded);
    assert_eq!(second.stored + second.already_stored + recorded, TOKENS);
    let failed: Vec<u64> = second.failed.iter().map(|(line, _)| *line).collect();
    assert_eq!(failed, [102, 103, 104], "{:?}", second.failed);
    assert!(
        second.failed[2].1.contains("InvalidArgument"),
        "{:?}",
        second.failed
    );

    // Third run: nothing left to store.
    let third = run(&config, &options, |_| {}).await.unwrap();
    assert_eq!(
        (third.stored, third.already_stored, third.done_before),
        (0, 0, TOKENS)
    );
    assert_eq!(third.failed.len(), 3);

    // Every token once, opening to its plaintext.
    let mut db = sqlx::PgConnection::connect(&store.owner_url).await.unwrap();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT account, provider, count(*) FROM token_events WHERE kind = 'token' \
         GROUP BY account, provider",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(rows.len() as u64, TOKENS);
    assert!(rows.iter().all(|(_, _, n)| *n == 1), "a token stored twice");
    let with_metadata: i64 = sqlx::query_scalar("SELECT count(*) FROM account_metadata")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(with_metadata as u64, TOKENS / 10);
    let reader = TokenReader::connect(&store.reader_url).await.unwrap();
    let ring = Arc::new(PrivateKeyRing::load_dir(&pki.private_keys_dir()).unwrap());
    let mut opened = tokio::task::JoinSet::new();
    for ((account, provider), token) in expected {
        let Latest::Token { sealed_token, .. } = reader.latest(&account, &provider).await.unwrap()
        else {
            panic!("nothing stored for {account}");
        };
        let ring = Arc::clone(&ring);
        opened.spawn_blocking(move || {
            let plaintext = ring.open(&sealed_token, &account, &provider).unwrap();
            assert_eq!(plaintext.as_slice(), token.as_bytes(), "{account}");
        });
        while opened.len() >= 4 {
            opened.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = opened.join_next().await {
        done.unwrap();
    }

    // No plaintext outside the input.
    assert!(!captured_logs().contains(MARK), "a token reached the logs");
    let report_text = format!("{second:?}{third:?}");
    assert!(!report_text.contains(MARK), "a token reached the report");
    assert_no_mark(dir.path(), &input);
    assert_no_mark(&pki.scratch(), &input);
    set.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refreshes_once_and_keeps_the_rotated_token_through_a_set_service_outage() {
    let importer: SpiffeId = format!("spiffe://{TRUST_DOMAIN}/admin/import")
        .parse()
        .unwrap();
    let mut sys = System::start(Options {
        set_store_allow: vec![IdentityPattern::Exact(importer)],
        ..Options::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tokens.csv");
    let mut text = "account,provider,refresh_token\n".to_owned();
    let mut originals = Vec::new();
    for i in 0..5 {
        let account = format!("verify-{i}");
        let tokens = sys.oidc.obtain_refresh_token(&account).await.unwrap();
        sys.secrets.push(tokens.refresh_token.clone());
        text.push_str(&format!("{account},oidc,{}\n", tokens.refresh_token));
        originals.push((account, tokens.refresh_token));
    }
    // The last one's grant is gone at the provider.
    assert_eq!(sys.oidc.revoke_grant("verify-4").await.unwrap(), 1);
    std::fs::write(&input, &text).unwrap();
    let config = ImportConfig {
        trust_domain: TRUST_DOMAIN.to_owned(),
        public_keys_dir: sys.pki.public_keys_dir(),
        sealing_kid: None,
        set_service: tokenvault_import_config_set(&sys.set.address()),
        tls: sys.pki.issue(Role::Admin, Some("import")).unwrap(),
        providers: vec![oidc_provider_config(&sys.oidc, 3).unwrap()],
    };
    let options = ImportOptions {
        input: input.clone(),
        format: Format::Csv,
        progress: dir.path().join("tokens.progress"),
        concurrency: 4,
        verify: true,
    };
    sys.oidc.reset_counters().await.unwrap();

    // set-service is down: each token is refreshed (and so rotated), then
    // cannot be stored.
    sys.stop_set_service().await.unwrap();
    let down = run(&config, &options, |_| {}).await.unwrap();
    assert_eq!((down.stored, down.failed.len()), (0, 5), "{down:?}");
    assert!(down.failed[4].1.contains("--verify"), "{down:?}");
    assert_eq!(sys.oidc.counters().await.unwrap().refresh_grants, 5);
    for (account, original) in &originals {
        assert!(
            !sys.oidc.refresh_token_is_active(original).await.unwrap(),
            "{account}: the input's token still lives"
        );
    }

    // Back up: the rotated tokens, journaled sealed, are stored without
    // another refresh; the dead grant is reported again.
    sys.restart_set_service().await.unwrap();
    let up = run(&config, &options, |_| {}).await.unwrap();
    assert_eq!((up.stored, up.failed.len()), (4, 1), "{up:?}");
    assert_eq!(up.failed[0].0, 6, "{up:?}");
    assert_eq!(sys.oidc.counters().await.unwrap().refresh_grants, 6);
    for (account, original) in &originals[..4] {
        let stored = sys.stored_refresh_token_of(account, "oidc").await.unwrap();
        assert_ne!(&stored, original, "{account}");
        assert!(
            sys.oidc.refresh_token_is_active(&stored).await.unwrap(),
            "{account}"
        );
        let token = sys
            .worker
            .access_token(account, "oidc", Duration::from_secs(1))
            .await
            .unwrap();
        sys.secrets.push(token.secret().to_owned());
    }
    sys.assert_no_secret_logged();
    let progress = std::fs::read_to_string(&options.progress).unwrap();
    for secret in &sys.secrets {
        assert!(
            !progress.contains(secret.as_str()),
            "a token in the progress file"
        );
    }
    sys.stop().await.unwrap();
}

/// set-service's address for the import.
fn tokenvault_import_config_set(address: &str) -> tokenvault_import::SetServiceConfig {
    tokenvault_import::SetServiceConfig {
        address: address.to_owned(),
        timeout_secs: 5,
    }
}

/// No file under `dir` but `input` contains [`MARK`].
fn assert_no_mark(dir: &Path, input: &Path) {
    for entry in walk(dir) {
        if entry == input {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(MARK.len()).any(|w| w == MARK.as_bytes()),
            "{} holds a plaintext token",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
