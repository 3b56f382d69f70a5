//! set-service against the real stores: the same behaviour on SQLite and on
//! PostgreSQL. Sealed with the public key by `tokenvault-seal`, stored over
//! mTLS, read back with the reader role, opened by get-service's key ring.

use tokenvault_opener::{OpenError, PrivateKeyRing};
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{
    AccountStatus, DisconnectAccountRequest, RecordAccountStatusRequest, StoreRefreshTokenRequest,
};
use tokenvault_seal::{PublicKeySet, SealError};
use tokenvault_store::{Latest, StoreAdmin, TokenReader, TokenStatus, TokenWriter};
use tokenvault_tests::procs::{UNDECODABLE, python_raw_call};
use tokenvault_tests::services::set_service_config;
use tokenvault_tests::{
    Backend, RunningService, TestPki, TestStore, assert_not_logged, grpc_channel, init_tracing,
    start_set_service,
};
use tokenvault_tls::Role;
use tonic::Code;
use tonic::transport::Channel;

const REFRESH_TOKEN: &[u8] = b"1//0refresh-token-that-must-never-leak";

struct Fixture {
    pki: TestPki,
    store: TestStore,
    server: RunningService,
    keys: PublicKeySet,
    web: SetServiceClient<Channel>,
}

async fn fixture(backend: Backend) -> Fixture {
    init_tracing();
    let pki = TestPki::new().unwrap();
    let store = TestStore::new(backend).await;
    let config = set_service_config(&pki, &store.writer_url).unwrap();
    let server = start_set_service(config).await.unwrap();
    let keys = PublicKeySet::load_dir(&pki.public_keys_dir()).unwrap();
    let web_files = pki.issue(Role::WebFrontend, None).unwrap();
    let web = SetServiceClient::new(
        grpc_channel(&server.address(), &web_files, Role::SetService).unwrap(),
    );
    Fixture {
        pki,
        store,
        server,
        keys,
        web,
    }
}

impl Fixture {
    fn sealed(&self, account: &str, provider: &str) -> String {
        self.keys.seal(account, provider, REFRESH_TOKEN).unwrap()
    }

    fn request(&self, account: &str, provider: &str) -> StoreRefreshTokenRequest {
        StoreRefreshTokenRequest {
            expected_version: None,
            account: account.into(),
            provider: provider.into(),
            sealed_token: self.sealed(account, provider),
            metadata_json: String::new(),
            refresh_token_expires_at_unix: 0,
        }
    }

    async fn rows(&self) -> i64 {
        let admin = StoreAdmin::connect(&self.store.owner_url).await.unwrap();
        let counts = admin.count_rows().await.unwrap();
        admin.close().await;
        counts.token_events + counts.status_records
    }

    async fn reader(&self) -> TokenReader {
        TokenReader::connect(&self.store.reader_url).await.unwrap()
    }

    fn key_ring(&self) -> PrivateKeyRing {
        PrivateKeyRing::load_dir(&self.pki.private_keys_dir()).unwrap()
    }
}

/// The encrypted key, ciphertext and tag of a sealed token (the header is not
/// secret).
fn secret_parts(sealed: &str) -> Vec<&str> {
    let parts: Vec<&str> = sealed.split('.').collect();
    vec![parts[1], parts[3], parts[4]]
}

fn assert_no_sealed_parts_logged(sealed: &str) {
    for part in secret_parts(sealed) {
        assert_not_logged(part, "part of a sealed token");
    }
}

async fn round_trip(backend: Backend) {
    let mut f = fixture(backend).await;
    let request = f.request("google:1001", "google");
    let sealed = request.sealed_token.clone();
    let stored = f
        .web
        .store_refresh_token(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!stored.already_stored);

    let Latest::Token {
        version,
        sealed_token,
        kid,
    } = f
        .reader()
        .await
        .latest("google:1001", "google")
        .await
        .unwrap()
    else {
        panic!("no token stored")
    };
    assert_eq!(version as u64, stored.version);
    assert_eq!(sealed_token, sealed);
    assert_eq!(kid, f.pki.kid);
    let opened = f
        .key_ring()
        .open(&sealed_token, "google:1001", "google")
        .unwrap();
    assert_eq!(opened.as_slice(), REFRESH_TOKEN);

    // A retried request is stored once.
    let rows = f.rows().await;
    let again = f
        .web
        .store_refresh_token(request)
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_stored);
    assert_eq!(again.version, stored.version);
    assert_eq!(f.rows().await, rows);

    assert_not_logged(
        std::str::from_utf8(REFRESH_TOKEN).unwrap(),
        "the refresh token",
    );
    assert_no_sealed_parts_logged(&sealed);
    f.server.stop().await.unwrap();
}

#[tokio::test]
async fn round_trip_sqlite() {
    round_trip(Backend::Sqlite).await;
}

#[tokio::test]
async fn round_trip_postgres() {
    round_trip(Backend::Postgres).await;
}

/// An attacker with the writer's database access copies alice's ciphertext
/// onto bob's row. Opening it as bob's token is refused.
async fn copied_ciphertext_is_refused(backend: Backend) {
    let mut f = fixture(backend).await;
    let alice = f.request("alice", "github");
    f.web.store_refresh_token(alice.clone()).await.unwrap();

    // set-service itself refuses the copy: the header names alice.
    let mut copy = alice.clone();
    copy.account = "bob".into();
    let status = f.web.store_refresh_token(copy).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // So write it directly with the writer role, bypassing set-service.
    let writer = TokenWriter::connect(&f.store.writer_url).await.unwrap();
    writer
        .store("bob", "github", &alice.sealed_token, &f.pki.kid)
        .await
        .unwrap();
    let Latest::Token { sealed_token, .. } =
        f.reader().await.latest("bob", "github").await.unwrap()
    else {
        panic!("the copy was not stored")
    };
    let err = f
        .key_ring()
        .open(&sealed_token, "bob", "github")
        .unwrap_err();
    assert!(
        matches!(err, OpenError::Invalid(SealError::ContextMismatch { .. })),
        "{err:?}"
    );
    f.server.stop().await.unwrap();
}

#[tokio::test]
async fn copied_ciphertext_is_refused_sqlite() {
    copied_ciphertext_is_refused(Backend::Sqlite).await;
}

#[tokio::test]
async fn copied_ciphertext_is_refused_postgres() {
    copied_ciphertext_is_refused(Backend::Postgres).await;
}

/// Every malformed request gets a clear status and writes nothing.
async fn malformed_input_writes_nothing(backend: Backend) {
    let mut f = fixture(backend).await;
    f.web
        .store_refresh_token(f.request("seed", "oidc"))
        .await
        .unwrap();
    let before = f.rows().await;

    let good = f.request("alice", "oidc");
    let other_pki = TestPki::new().unwrap();
    let foreign_keys = PublicKeySet::load_dir(&other_pki.public_keys_dir()).unwrap();
    let parts: Vec<&str> = good.sealed_token.split('.').collect();
    let with = |account: &str, provider: &str, token: String| StoreRefreshTokenRequest {
        expected_version: None,
        account: account.into(),
        provider: provider.into(),
        sealed_token: token,
        metadata_json: String::new(),
        refresh_token_expires_at_unix: 0,
    };
    let tampered_ciphertext = {
        let mut p: Vec<String> = parts.iter().map(|s| (*s).to_owned()).collect();
        let mut c: Vec<char> = p[3].chars().collect();
        c[5] = if c[5] == 'A' { 'B' } else { 'A' };
        p[3] = c.into_iter().collect();
        p.join(".")
    };
    let cases: Vec<(&str, StoreRefreshTokenRequest, Code)> = vec![
        (
            "empty account",
            with("", "oidc", good.sealed_token.clone()),
            Code::InvalidArgument,
        ),
        (
            "account with a space",
            with("a b", "oidc", good.sealed_token.clone()),
            Code::InvalidArgument,
        ),
        (
            "account too long",
            with(&"a".repeat(200), "oidc", good.sealed_token.clone()),
            Code::InvalidArgument,
        ),
        (
            "unknown provider",
            with("alice", "myspace", f.sealed("alice", "myspace")),
            Code::InvalidArgument,
        ),
        (
            "not a JWE",
            with("alice", "oidc", "hello".into()),
            Code::InvalidArgument,
        ),
        (
            "bad base64",
            with(
                "alice",
                "oidc",
                format!("{}.!!!.{}.{}.{}", parts[0], parts[2], parts[3], parts[4]),
            ),
            Code::InvalidArgument,
        ),
        (
            "unknown key id",
            with(
                "alice",
                "oidc",
                foreign_keys.seal("alice", "oidc", REFRESH_TOKEN).unwrap(),
            ),
            Code::InvalidArgument,
        ),
        (
            "header names another account",
            with("alice", "oidc", f.sealed("mallory", "oidc")),
            Code::InvalidArgument,
        ),
        (
            "header names another provider",
            with("alice", "oidc", f.sealed("alice", "github")),
            Code::InvalidArgument,
        ),
        (
            "truncated token",
            with(
                "alice",
                "oidc",
                good.sealed_token[..good.sealed_token.len() - 10].to_owned(),
            ),
            Code::InvalidArgument,
        ),
        (
            "too large",
            with(
                "alice",
                "oidc",
                format!("{}{}", good.sealed_token, "A".repeat(9000)),
            ),
            Code::ResourceExhausted,
        ),
        (
            "message over the transport limit",
            with("alice", "oidc", "A".repeat(70 * 1024)),
            Code::OutOfRange,
        ),
    ];
    for (what, request, code) in cases {
        let status = f
            .web
            .store_refresh_token(request.clone())
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{what}: {status:?}");
        for secret in secret_parts(&good.sealed_token) {
            assert!(!status.message().contains(secret), "{what}: token echoed");
        }
        assert_eq!(f.rows().await, before, "{what}: rows changed");
    }
    // Tampered ciphertext is well-formed JWE: set-service cannot tell (it holds
    // no private key) and stores it, but get-service refuses to open it.
    f.web
        .store_refresh_token(with("alice", "oidc", tampered_ciphertext.clone()))
        .await
        .unwrap();
    let err = f
        .key_ring()
        .open(&tampered_ciphertext, "alice", "oidc")
        .unwrap_err();
    assert!(matches!(err, OpenError::DecryptionFailed), "{err:?}");
    assert_no_sealed_parts_logged(&good.sealed_token);

    // Bytes that are no request message at all, from grpcio.
    let web_files = f.pki.issue(Role::WebFrontend, None).unwrap();
    let address = f.server.address().replace("127.0.0.1", "localhost");
    let stored = f.rows().await;
    for (what, body) in UNDECODABLE {
        let (code, details) = python_raw_call(
            &address,
            &web_files,
            "/tokenvault.v1.SetService/StoreRefreshToken",
            body,
        )
        .await
        .unwrap();
        assert_eq!(code, "INVALID_ARGUMENT", "{what}: {details}");
        assert_eq!(f.rows().await, stored, "{what}: rows changed");
    }

    // Status and disconnect calls validate too.
    let bad_status = f
        .web
        .record_account_status(RecordAccountStatusRequest {
            account: "seed".into(),
            provider: "oidc".into(),
            status: AccountStatus::Unspecified as i32,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_status.code(), Code::InvalidArgument);
    let unknown = f
        .web
        .disconnect_account(DisconnectAccountRequest {
            account: "nobody".into(),
            provider: "oidc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    f.server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_input_writes_nothing_sqlite() {
    malformed_input_writes_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn malformed_input_writes_nothing_postgres() {
    malformed_input_writes_nothing(Backend::Postgres).await;
}

/// Status, disconnect and reconnect.
async fn status_disconnect_and_reconnect(backend: Backend) {
    let mut f = fixture(backend).await;
    f.web
        .store_refresh_token(f.request("carol", "oidc"))
        .await
        .unwrap();
    let get_files = f.pki.issue(Role::GetService, None).unwrap();
    let mut get = SetServiceClient::new(
        grpc_channel(&f.server.address(), &get_files, Role::SetService).unwrap(),
    );
    get.record_account_status(RecordAccountStatusRequest {
        account: "carol".into(),
        provider: "oidc".into(),
        status: AccountStatus::ReauthorizationRequired as i32,
        reason: "invalid_grant".into(),
    })
    .await
    .unwrap();
    let reader = f.reader().await;
    let status = reader.status("carol", "oidc").await.unwrap().unwrap();
    assert_eq!(status.status, TokenStatus::ReauthorizationRequired);
    assert_eq!(status.reason, "invalid_grant");

    f.web
        .disconnect_account(DisconnectAccountRequest {
            account: "carol".into(),
            provider: "oidc".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        reader.latest("carol", "oidc").await.unwrap(),
        Latest::Disconnected
    );
    let status = reader.status("carol", "oidc").await.unwrap().unwrap();
    assert_eq!(status.status, TokenStatus::Disconnected);

    // Reconnecting stores a new version that is live again.
    f.web
        .store_refresh_token(f.request("carol", "oidc"))
        .await
        .unwrap();
    assert!(matches!(
        reader.latest("carol", "oidc").await.unwrap(),
        Latest::Token { .. }
    ));
    f.server.stop().await.unwrap();
}

#[tokio::test]
async fn status_disconnect_and_reconnect_sqlite() {
    status_disconnect_and_reconnect(Backend::Sqlite).await;
}

#[tokio::test]
async fn status_disconnect_and_reconnect_postgres() {
    status_disconnect_and_reconnect(Backend::Postgres).await;
}

/// A conditional store (a rotated token) after a disconnect is refused with
/// ABORTED and writes nothing; it cannot revive the account.
async fn conditional_store_cannot_revive(backend: Backend) {
    let mut f = fixture(backend).await;
    let v1 = f
        .web
        .store_refresh_token(f.request("mia", "oidc"))
        .await
        .unwrap()
        .into_inner()
        .version;
    f.web
        .disconnect_account(DisconnectAccountRequest {
            account: "mia".into(),
            provider: "oidc".into(),
        })
        .await
        .unwrap();
    let rows = f.rows().await;
    let mut rotated = f.request("mia", "oidc");
    rotated.expected_version = Some(v1);
    let status = f.web.store_refresh_token(rotated).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert_eq!(f.rows().await, rows);
    assert_eq!(
        f.reader().await.latest("mia", "oidc").await.unwrap(),
        Latest::Disconnected
    );
    // With the right version, it is stored.
    let v2 = f
        .web
        .store_refresh_token(f.request("mia", "oidc"))
        .await
        .unwrap()
        .into_inner()
        .version;
    let mut rotated = f.request("mia", "oidc");
    rotated.expected_version = Some(v2);
    f.web.store_refresh_token(rotated).await.unwrap();
    f.server.stop().await.unwrap();
}

#[tokio::test]
async fn conditional_store_cannot_revive_sqlite() {
    conditional_store_cannot_revive(Backend::Sqlite).await;
}

#[tokio::test]
async fn conditional_store_cannot_revive_postgres() {
    conditional_store_cannot_revive(Backend::Postgres).await;
}
