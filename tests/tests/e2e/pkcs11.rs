//! get-service with its private key in a PKCS#11 token (the kryoptic soft
//! token, built by `scripts/build-kryoptic`): the key is made inside the
//! token and never leaves it, a token sealed with its public half is opened
//! through PKCS#11 and served as an access token, file keys and the token's
//! key live in one key ring, and a wrong PIN or key label stops start-up
//! with a clear error.
//!
//! Each test runs again in a child process with `KRYOPTIC_CONF` naming a
//! fresh token (see `tokenvault_tests::kryoptic`). Without the library the
//! tests skip with a message, unless `TOKENVAULT_REQUIRE_PKCS11` is set.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokenvault_opener::pkcs11::{Pkcs11Config, generate_key};
use tokenvault_opener::{OpenError, PrivateKeyRing};
use tokenvault_proto::v1::StoreRefreshTokenRequest;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_seal::{PublicKeySet, SealError};
use tokenvault_tests::kryoptic::{PrivateKeyFacts, SoftToken, USER_PIN, run_test_with_token};
use tokenvault_tests::oidc::OidcServer;
use tokenvault_tests::pki::TRUST_DOMAIN;
use tokenvault_tests::services::{
    get_service_config, get_service_start_error, grpc_channel, oidc_provider_config,
    set_service_config,
};
use tokenvault_tests::{
    Backend, TestPki, TestStore, assert_not_logged, captured_logs, init_tracing, start_get_service,
    start_set_service,
};
use tokenvault_tls::Role;
use tokenvault_worker::{WorkerClient, WorkerConfig};

const KEY_LABEL: &str = "tokenvault-kek";

/// This test's token, in the child process; `None` in the test process
/// (after the child passed) or when skipped.
fn token_for(test: &str) -> Option<SoftToken> {
    run_test_with_token(&format!("pkcs11::{test}")).unwrap()
}

/// Generates the key in the token (on the blocking pool, as the CLI does),
/// writing `<kid>.pem` into `public_dir`.
async fn keygen(config: &Pkcs11Config, public_dir: &Path) -> String {
    let (config, dir) = (config.clone(), public_dir.to_owned());
    tokio::task::spawn_blocking(move || generate_key(&config, &dir))
        .await
        .unwrap()
        .unwrap()
}

/// Copies every `*.pem` of `from` into `to`.
fn copy_pems(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pem") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_key_opens_sealed_token_and_serves_access_token() {
    let Some(token) = token_for("hsm_key_opens_sealed_token_and_serves_access_token") else {
        return;
    };
    init_tracing();
    let pki = TestPki::new().unwrap();
    let hsm = token.config(KEY_LABEL);

    // The key is made in the token; only its public half comes out.
    let public_dir = tempfile::tempdir().unwrap();
    let kid = keygen(&hsm, public_dir.path()).await;
    assert!(public_dir.path().join(format!("{kid}.pem")).is_file());
    assert_eq!(
        token.private_key_facts(KEY_LABEL).unwrap(),
        PrivateKeyFacts {
            sensitive: true,
            extractable: false,
            never_extractable: true,
            private_exponent_readable: false,
        }
    );
    let hsm_public = PublicKeySet::load_dir(public_dir.path()).unwrap();
    assert_eq!(hsm_public.kids(), vec![kid.as_str()]);
    // A second key with the same label is refused.
    let again = tempfile::tempdir().unwrap();
    let (h, d) = (hsm.clone(), again.path().to_owned());
    let e = tokio::task::spawn_blocking(move || generate_key(&h, &d))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        e.to_string().contains("already holds a key labelled"),
        "{e}"
    );

    // set-service accepts both the file key and the token's key.
    copy_pems(&pki.public_keys_dir(), public_dir.path());
    let store = TestStore::new(Backend::Sqlite).await;
    tokenvault_store::TokenWriter::connect(&store.writer_url)
        .await
        .unwrap();
    let mut set_config = set_service_config(&pki, &store.writer_url).unwrap();
    set_config.public_keys_dir = public_dir.path().to_owned();
    let set = start_set_service(set_config).await.unwrap();
    let oidc = OidcServer::start().await.unwrap();

    // get-service: no private key file at all, only the token's key.
    let no_key_files = tempfile::tempdir().unwrap();
    let mut get_config = get_service_config(
        &pki,
        &store.reader_url,
        &set.address(),
        vec![oidc_provider_config(&oidc, 2).unwrap()],
    )
    .unwrap();
    get_config.private_keys_dir = no_key_files.path().to_owned();
    get_config.public_keys_dir = public_dir.path().to_owned();
    get_config.pkcs11 = Some(hsm);
    let get = start_get_service(get_config).await.unwrap();

    // A refresh token sealed with the token's public half, stored.
    let tokens = oidc.obtain_refresh_token("alice").await.unwrap();
    let sealed = hsm_public
        .seal("alice", "oidc", tokens.refresh_token.as_bytes())
        .unwrap();
    let web = pki.issue(Role::WebFrontend, None).unwrap();
    SetServiceClient::new(grpc_channel(&set.address(), &web, Role::SetService).unwrap())
        .store_refresh_token(StoreRefreshTokenRequest {
            expected_version: None,
            account: "alice".into(),
            provider: "oidc".into(),
            sealed_token: sealed,
            metadata_json: String::new(),
            refresh_token_expires_at_unix: 0,
        })
        .await
        .unwrap();

    // get-service opens it through PKCS#11 and trades it for an access token.
    let worker = WorkerClient::new(&WorkerConfig {
        address: get.address(),
        trust_domain: TRUST_DOMAIN.to_owned(),
        tls: pki.issue(Role::Worker, Some("e2e")).unwrap(),
    })
    .unwrap();
    let access = worker
        .access_token("alice", "oidc", std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let userinfo = oidc.userinfo(access.secret()).await.unwrap();
    assert_eq!(userinfo["sub"], "alice");
    assert!(
        captured_logs().contains("PKCS#11 token-encryption key ready"),
        "no start-up line for the PKCS#11 key"
    );
    for (secret, what) in [
        (tokens.refresh_token.as_str(), "the refresh token"),
        (access.secret(), "the access token"),
        (USER_PIN, "the PIN"),
    ] {
        assert_not_logged(secret, what);
    }
    get.stop().await.unwrap();
    set.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_hsm_keys_share_one_ring() {
    let Some(token) = token_for("file_and_hsm_keys_share_one_ring") else {
        return;
    };
    let pki = TestPki::new().unwrap();
    let hsm = token.config(KEY_LABEL);
    let public_dir = tempfile::tempdir().unwrap();
    let hsm_kid = keygen(&hsm, public_dir.path()).await;
    let hsm_public = PublicKeySet::load_dir(public_dir.path()).unwrap();
    let file_public = PublicKeySet::load_dir(&pki.public_keys_dir()).unwrap();

    let ring = PrivateKeyRing::load(&pki.private_keys_dir(), Some(&hsm))
        .await
        .unwrap();
    assert!(ring.contains(&hsm_kid) && ring.contains(&pki.kid));
    let debug = format!("{ring:?} {hsm:?}");
    assert!(
        debug.contains("pkcs11") && debug.contains("file"),
        "{debug}"
    );
    assert!(!debug.contains(USER_PIN), "the PIN in Debug output");

    for (keys, secret) in [
        (&hsm_public, b"sealed-for-the-token".as_slice()),
        (&file_public, b"sealed-for-the-file".as_slice()),
    ] {
        let sealed = keys.seal("bob", "oidc", secret).unwrap();
        assert_eq!(
            ring.open(&sealed, "bob", "oidc").unwrap().as_slice(),
            secret
        );
        assert_eq!(
            ring.open_async(&sealed, "bob", "oidc")
                .await
                .unwrap()
                .as_slice(),
            secret
        );
        // Read for another row: refused before any private-key operation.
        assert!(matches!(
            ring.open(&sealed, "mallory", "oidc"),
            Err(OpenError::Invalid(SealError::ContextMismatch {
                field: "account"
            }))
        ));
    }

    // A tampered encrypted key, refused by the token, fails like any other
    // tampering; the session pool keeps working afterwards.
    let sealed = hsm_public.seal("bob", "oidc", b"x").unwrap();
    let mut parts: Vec<String> = sealed.split('.').map(str::to_owned).collect();
    let mut encrypted_key = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
    encrypted_key[100] ^= 1;
    parts[1] = URL_SAFE_NO_PAD.encode(&encrypted_key);
    let tampered = parts.join(".");
    for _ in 0..8 {
        assert!(matches!(
            ring.open(&tampered, "bob", "oidc"),
            Err(OpenError::DecryptionFailed)
        ));
    }
    assert_eq!(ring.open(&sealed, "bob", "oidc").unwrap().as_slice(), b"x");

    // More callers than sessions (4): all succeed.
    let ring = std::sync::Arc::new(ring);
    let callers: Vec<_> = (0..12)
        .map(|_| {
            let (ring, sealed) = (ring.clone(), sealed.clone());
            tokio::spawn(async move { ring.open_async(&sealed, "bob", "oidc").await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap().as_slice(), b"x");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_or_missing_key_is_a_clear_startup_error() {
    let Some(token) = token_for("wrong_pin_or_missing_key_is_a_clear_startup_error") else {
        return;
    };
    init_tracing();
    let pki = TestPki::new().unwrap();
    let public_dir = tempfile::tempdir().unwrap();
    keygen(&token.config(KEY_LABEL), public_dir.path()).await;
    let empty = tempfile::tempdir().unwrap();

    // get-service itself, with a wrong PIN: `run` returns the error.
    let mut config = get_service_config(
        &pki,
        "sqlite:///nonexistent/tokenvault.db",
        "127.0.0.1:9",
        vec![
            toml::from_str(
                "name = \"oidc\"\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"x\"\nclient_secret = \"y\"\n",
            )
            .unwrap(),
        ],
    )
    .unwrap();
    config.private_keys_dir = empty.path().to_owned();
    let mut wrong_pin = token.config(KEY_LABEL);
    wrong_pin.pin_file = Some(token.write_file("wrong.pin", "0000\n", 0o600).unwrap());
    config.pkcs11 = Some(wrong_pin);
    let e = get_service_start_error(config).await.unwrap();
    assert!(
        e.starts_with("pkcs11: PIN: the token refused the PIN"),
        "{e}"
    );

    // The same checks through the key ring loader that `run` uses.
    let load = |config: Pkcs11Config| {
        let dir = empty.path().to_owned();
        async move {
            PrivateKeyRing::load(&dir, Some(&config))
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let mut loose_pin = token.config(KEY_LABEL);
    loose_pin.pin_file = Some(
        token
            .write_file("loose.pin", &format!("{USER_PIN}\n"), 0o644)
            .unwrap(),
    );
    let e = load(loose_pin).await;
    assert!(e.contains("mode 0644 gives group or others access"), "{e}");

    let e = load(token.config("no-such-key")).await;
    assert!(
        e.contains("no private key with this label") && e.contains("\"no-such-key\""),
        "{e}"
    );

    let mut other_token = token.config(KEY_LABEL);
    other_token.token_label = Some("not-this-token".to_owned());
    let e = load(other_token).await;
    assert!(
        e.contains("token \"not-this-token\" is not in this module")
            && e.contains("tokenvault-test"),
        "{e}"
    );

    let mut no_module = token.config(KEY_LABEL);
    no_module.module = empty.path().join("libmissing.so");
    let e = load(no_module).await;
    assert!(e.contains("libmissing.so: cannot load it"), "{e}");

    // Without [pkcs11], an empty key directory is still an error; with the
    // right settings the same directory is fine.
    assert!(PrivateKeyRing::load(empty.path(), None).await.is_err());
    let ring = PrivateKeyRing::load(empty.path(), Some(&token.config(KEY_LABEL)))
        .await
        .unwrap();
    assert_eq!(ring.kids().len(), 1);
    assert_not_logged(USER_PIN, "the PIN");
}
