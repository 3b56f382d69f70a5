//! The mutual-TLS layer, through a real set-service on 127.0.0.1 port 0:
//! who gets in, who is refused at the handshake, and who gets
//! PERMISSION_DENIED.

use tokenvault_proto::v1::StoreRefreshTokenRequest;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_seal::PublicKeySet;
use tokenvault_tests::services::{set_service_config, sqlite_url};
use tokenvault_tests::{
    RunningService, TestPki, captured_logs, grpc_channel, init_tracing, start_set_service,
};
use tokenvault_tls::{Role, TlsFiles};
use tonic::Code;

struct Fixture {
    pki: TestPki,
    server: RunningService,
    keys: PublicKeySet,
}

async fn fixture() -> Fixture {
    init_tracing();
    let pki = TestPki::new().unwrap();
    let config = set_service_config(&pki, &sqlite_url(&pki.scratch())).unwrap();
    let server = start_set_service(config).await.unwrap();
    let keys = PublicKeySet::load_dir(&pki.public_keys_dir()).unwrap();
    Fixture { pki, server, keys }
}

impl Fixture {
    fn request(&self, account: &str) -> StoreRefreshTokenRequest {
        StoreRefreshTokenRequest {
            expected_version: None,
            account: account.to_owned(),
            provider: "oidc".to_owned(),
            sealed_token: self
                .keys
                .seal(account, "oidc", b"refresh-token-value")
                .unwrap(),
            metadata_json: String::new(),
            refresh_token_expires_at_unix: 0,
        }
    }

    async fn store_as(&self, files: &TlsFiles, account: &str) -> Result<(), tonic::Status> {
        let channel = grpc_channel(&self.server.address(), files, Role::SetService).unwrap();
        SetServiceClient::new(channel)
            .store_refresh_token(self.request(account))
            .await
            .map(|_| ())
    }
}

/// A failed handshake surfaces as a transport error on the first call, never
/// as an answer from the service; and the server logs why it refused, which
/// must be one of `reasons`.
async fn assert_handshake_refused(result: Result<(), tonic::Status>, reasons: &[&str]) {
    let status = result.expect_err("the call should have failed at the handshake");
    assert!(
        matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Internal
        ),
        "expected a transport failure, got {status:?}"
    );
    // The server logs the refusal from its own task; give it a moment.
    for _ in 0..100 {
        let logs = captured_logs();
        if let Some(line) = logs.lines().find(|l| l.contains("TLS handshake refused")) {
            assert!(
                reasons.iter().any(|r| line.contains(r)),
                "refused for another reason than {reasons:?}: {line}"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the server logged no refused handshake");
}

#[tokio::test]
async fn allowed_caller_succeeds() {
    let f = fixture().await;
    let web = f.pki.issue(Role::WebFrontend, None).unwrap();
    f.store_as(&web, "alice").await.unwrap();
    let get = f.pki.issue(Role::GetService, None).unwrap();
    f.store_as(&get, "bob").await.unwrap();
    f.server.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_role_gets_permission_denied_naming_caller_and_rpc() {
    let f = fixture().await;
    let worker = f.pki.issue(Role::Worker, Some("billing")).unwrap();
    let status = f.store_as(&worker, "alice").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("spiffe://tokenvault.test/worker/billing"),
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .contains("tokenvault.v1.SetService/StoreRefreshToken"),
        "{}",
        status.message()
    );

    // get-service may store but not disconnect.
    let get = f.pki.issue(Role::GetService, None).unwrap();
    let channel = grpc_channel(&f.server.address(), &get, Role::SetService).unwrap();
    let status = SetServiceClient::new(channel)
        .disconnect_account(tokenvault_proto::v1::DisconnectAccountRequest {
            account: "alice".into(),
            provider: "oidc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("DisconnectAccount"));
}

#[tokio::test]
async fn certificate_from_another_ca_fails_the_handshake() {
    let f = fixture().await;
    let other = TestPki::new().unwrap();
    let mut foreign = other.issue(Role::WebFrontend, None).unwrap();
    // Trust our server, but present a certificate from the other CA.
    foreign.ca = f.pki.state().bundle_path();
    assert_handshake_refused(
        f.store_as(&foreign, "alice").await,
        &["UnknownIssuer", "BadSignature"],
    )
    .await;
}

#[tokio::test]
async fn expired_certificate_fails_the_handshake() {
    let f = fixture().await;
    let expired = f.pki.issue_expired(Role::WebFrontend).unwrap();
    assert_handshake_refused(
        f.store_as(&expired, "alice").await,
        &["certificate expired"],
    )
    .await;
}

#[tokio::test]
async fn certificate_without_spiffe_id_fails_the_handshake() {
    let f = fixture().await;
    let none = f.pki.issue_with_uris("no-spiffe", &[]).unwrap();
    assert_handshake_refused(f.store_as(&none, "alice").await, &["NoSpiffeId"]).await;
}

#[tokio::test]
async fn certificate_with_two_spiffe_ids_fails_the_handshake() {
    let f = fixture().await;
    let two = f
        .pki
        .issue_with_uris(
            "two-spiffe",
            &[
                "spiffe://tokenvault.test/web-frontend",
                "spiffe://tokenvault.test/worker/x",
            ],
        )
        .unwrap();
    assert_handshake_refused(f.store_as(&two, "alice").await, &["SeveralUris(2)"]).await;
}

#[tokio::test]
async fn certificate_from_another_trust_domain_fails_the_handshake() {
    let f = fixture().await;
    let foreign = f
        .pki
        .issue_with_uris("foreign-td", &["spiffe://elsewhere.test/web-frontend"])
        .unwrap();
    assert_handshake_refused(f.store_as(&foreign, "alice").await, &["ForeignTrustDomain"]).await;
}

#[tokio::test]
async fn plaintext_client_fails() {
    let f = fixture().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", f.server.address()))
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(5))
        .connect_lazy();
    let result = SetServiceClient::new(channel)
        .store_refresh_token(f.request("alice"))
        .await
        .map(|_| ());
    assert_handshake_refused(result, &["InvalidContentType", "corrupt message"]).await;
}

#[tokio::test]
async fn client_refuses_a_server_with_the_wrong_role() {
    let f = fixture().await;
    let web = f.pki.issue(Role::WebFrontend, None).unwrap();
    // web-frontend expects get-service here, but set-service answers.
    let channel = grpc_channel(&f.server.address(), &web, Role::GetService).unwrap();
    let result = SetServiceClient::new(channel)
        .store_refresh_token(f.request("alice"))
        .await
        .map(|_| ());
    // The client aborts after seeing the server's certificate; the server
    // sees the alert.
    assert_handshake_refused(result, &["UnexpectedPeer", "AlertReceived", "alert"]).await;
}

/// Replaces `to`'s certificate and key with `from`'s, each by an atomic
/// rename, as ops (or `pki issue --force`) would.
fn replace_files(from: &TlsFiles, to: &TlsFiles) {
    for (src, dst) in [(&from.cert, &to.cert), (&from.key, &to.key)] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    }
}

/// Waits (bounded) until a fresh connection's outcome is `ok`.
async fn until_new_connections(f: &Fixture, files: &TlsFiles, ok: bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if f.store_as(files, "acct-reload").await.is_ok() == ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Certificate rotation without a restart: set-service notices its files
/// changed and new handshakes use the new certificate, while a connection
/// made before carries on; files that do not load keep the previous config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificates_reload_without_a_restart() {
    let f = fixture().await;
    let web = f.pki.issue(Role::WebFrontend, None).unwrap();
    let server_files = f.pki.files("set-service");
    let early =
        SetServiceClient::new(grpc_channel(&f.server.address(), &web, Role::SetService).unwrap());
    early
        .clone()
        .store_refresh_token(f.request("acct-early"))
        .await
        .unwrap();

    // The server's files now hold a get-service certificate: once reloaded,
    // new handshakes fail (the client expects set-service), while the
    // connection made before still works.
    let wrong = f.pki.issue(Role::GetService, None).unwrap();
    replace_files(&wrong, &server_files);
    until_new_connections(&f, &web, false).await;
    early
        .clone()
        .store_refresh_token(f.request("acct-early-2"))
        .await
        .expect("the established connection carries on");

    // A renewed set-service certificate (new serial, same path): accepted.
    f.pki.issue(Role::SetService, None).unwrap();
    until_new_connections(&f, &web, true).await;

    // A key file that does not parse: the previous config stays.
    let errors = || {
        captured_logs()
            .matches("do not load; keeping the previous config")
            .count()
    };
    let before = errors();
    std::fs::write(&server_files.key, "not a key").unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while errors() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload error logged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    f.store_as(&web, "acct-after-broken").await.unwrap();

    // SIGHUP reloads at once, changed or not.
    let forced = || captured_logs().matches("forced=true").count();
    let before = forced();
    f.pki.issue(Role::SetService, None).unwrap();
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::HUP).unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while forced() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    f.store_as(&web, "acct-after-hup").await.unwrap();
}
