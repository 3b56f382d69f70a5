//! set-service's `ResealRefreshToken` on both stores: get-service only; an
//! in-place compare-and-swap that keeps the version, the status and the
//! revocation state (a disconnected account stays disconnected); a rotation
//! from the same version still applies afterwards; bad input is refused
//! with a clear status and writes nothing.

use tokenvault_opener::PrivateKeyRing;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{
    AccountStatus, DisconnectAccountRequest, RecordAccountStatusRequest, RecordRevocationRequest,
    ResealOutcome, ResealRefreshTokenRequest, RevocationOutcome, StoreRefreshTokenRequest,
};
use tokenvault_seal::PublicKeySet;
use tokenvault_store::{Latest, TokenReader, TokenStatus};
use tokenvault_tests::services::set_service_config;
use tokenvault_tests::{
    Backend, TestPki, TestStore, assert_not_logged, grpc_channel, init_tracing, start_set_service,
};
use tokenvault_tls::Role;
use tonic::Code;
use tonic::transport::Channel;

use super::{owner_i64, rows};

const PROVIDER: &str = "google";
const PLAINTEXT: &str = "rt-keyrot-SECRET-rpc-3f9a1c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reseal_refresh_token_swaps_in_place_for_get_service_only_and_bad_input_changes_nothing() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        reseal_rpc(backend).await;
    }
    assert_not_logged(PLAINTEXT, "a refresh token");
}

fn request(
    account: &str,
    version: i64,
    previous_kid: &str,
    sealed: String,
) -> ResealRefreshTokenRequest {
    ResealRefreshTokenRequest {
        account: account.into(),
        provider: PROVIDER.into(),
        token_version: u64::try_from(version).unwrap(),
        previous_kid: previous_kid.into(),
        sealed_token: sealed,
    }
}

async fn reseal_rpc(backend: Backend) {
    init_tracing();
    let pki = TestPki::new().unwrap();
    let kid1 = pki.kid.clone();
    let kid2 = pki.state().keygen(false).unwrap().kid;
    let store = TestStore::new(backend).await;
    let server = start_set_service(set_service_config(&pki, &store.writer_url).unwrap())
        .await
        .unwrap();
    let key1 = PublicKeySet::load(&pki.public_keys_dir(), Some(&kid1)).unwrap();
    let key2 = PublicKeySet::load_dir(&pki.public_keys_dir()).unwrap();
    assert_eq!(
        (key1.sealing_kid(), key2.sealing_kid()),
        (kid1.as_str(), kid2.as_str())
    );
    // A sealing_kid that is not in the directory is refused, naming what is.
    let err = PublicKeySet::load(&pki.public_keys_dir(), Some("nope")).unwrap_err();
    assert!(err.to_string().contains("sealing_kid \"nope\""), "{err}");
    assert!(err.to_string().contains(&kid1), "{err}");
    let unknown = PublicKeySet::from_pems([&tokenvault_tests::keys::pair().public_pem]).unwrap();
    let ring = PrivateKeyRing::load_dir(&pki.private_keys_dir()).unwrap();
    let client = |role| {
        let files = pki.issue(role, None).unwrap();
        SetServiceClient::new(grpc_channel(&server.address(), &files, Role::SetService).unwrap())
    };
    let (mut web, mut get): (SetServiceClient<Channel>, SetServiceClient<Channel>) =
        (client(Role::WebFrontend), client(Role::GetService));

    // a: connected, b: disconnected (waiting for revocation), c: dead grant.
    let mut versions = Vec::new();
    for account in ["a", "b", "c"] {
        let stored = web
            .store_refresh_token(StoreRefreshTokenRequest {
                account: account.into(),
                provider: PROVIDER.into(),
                sealed_token: key1.seal(account, PROVIDER, PLAINTEXT.as_bytes()).unwrap(),
                expected_version: None,
                metadata_json: String::new(),
                refresh_token_expires_at_unix: 0,
            })
            .await
            .unwrap();
        versions.push(i64::try_from(stored.into_inner().version).unwrap());
    }
    let (va, vb, vc) = (versions[0], versions[1], versions[2]);
    web.disconnect_account(DisconnectAccountRequest {
        account: "b".into(),
        provider: PROVIDER.into(),
    })
    .await
    .unwrap();
    get.record_account_status(RecordAccountStatusRequest {
        account: "c".into(),
        provider: PROVIDER.into(),
        status: AccountStatus::ReauthorizationRequired as i32,
        reason: "invalid_grant".into(),
    })
    .await
    .unwrap();
    let seal2 = |account: &str| key2.seal(account, PROVIDER, PLAINTEXT.as_bytes()).unwrap();

    // Only get-service may re-seal.
    let denied = web
        .reseal_refresh_token(request("a", va, &kid1, seal2("a")))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Bad input: a clear status, and nothing written anywhere.
    let snapshot = (
        rows(&store).await,
        owner_i64(&store, "SELECT COUNT(*) FROM token_reseals").await,
        owner_i64(&store, "SELECT COUNT(*) FROM token_status").await,
    );
    let mut wrong_provider = request("a", va, &kid1, seal2("a"));
    wrong_provider.provider = "nope".into();
    let cases = [
        (
            request("a", va, &kid2, seal2("a")),
            Code::InvalidArgument,
            "must change the key",
        ),
        (
            request("a", va, &kid1, seal2("b")),
            Code::InvalidArgument,
            "account",
        ),
        (
            request(
                "a",
                va,
                &kid1,
                unknown.seal("a", PROVIDER, PLAINTEXT.as_bytes()).unwrap(),
            ),
            Code::InvalidArgument,
            "unknown key id",
        ),
        (
            request("a", vb, &kid1, seal2("a")),
            Code::NotFound,
            "token_version",
        ),
        (
            request("a", 0, &kid1, seal2("a")),
            Code::InvalidArgument,
            "token_version",
        ),
        (
            request("a", va, "", seal2("a")),
            Code::InvalidArgument,
            "previous_kid",
        ),
        (
            request("a", va, "a b", seal2("a")),
            Code::InvalidArgument,
            "previous_kid",
        ),
        (
            request("a", va, &kid1, "not.a.jwe".into()),
            Code::InvalidArgument,
            "sealed_token",
        ),
        (
            request("a", va, &kid1, "x".repeat(9000)),
            Code::ResourceExhausted,
            "limit",
        ),
        (wrong_provider, Code::InvalidArgument, "provider"),
    ];
    for (req, code, needle) in cases {
        let status = get.reseal_refresh_token(req).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(needle), "{needle}: {status:?}");
        assert!(!status.message().contains(PLAINTEXT));
    }
    let now = (
        rows(&store).await,
        owner_i64(&store, "SELECT COUNT(*) FROM token_reseals").await,
        owner_i64(&store, "SELECT COUNT(*) FROM token_status").await,
    );
    assert_eq!(now, snapshot, "a refused re-seal wrote something");

    // a: swapped in place, same version and status; a retry changes nothing.
    let reader = TokenReader::connect(&store.reader_url).await.unwrap();
    let outcome = |r: tonic::Response<tokenvault_proto::v1::ResealRefreshTokenResponse>| {
        r.into_inner().outcome()
    };
    let resealed_a = seal2("a");
    let r = get
        .reseal_refresh_token(request("a", va, &kid1, resealed_a.clone()))
        .await
        .unwrap();
    assert_eq!(outcome(r), ResealOutcome::Resealed);
    let Latest::Token {
        version,
        sealed_token,
        kid,
    } = reader.latest("a", PROVIDER).await.unwrap()
    else {
        panic!("a lost its token");
    };
    assert_eq!(
        (version, kid.as_str(), sealed_token.as_str()),
        (va, kid2.as_str(), resealed_a.as_str())
    );
    assert_eq!(
        ring.open(&sealed_token, "a", PROVIDER).unwrap().as_slice(),
        PLAINTEXT.as_bytes()
    );
    assert_eq!(
        reader.status("a", PROVIDER).await.unwrap().unwrap().status,
        TokenStatus::Active
    );
    let r = get
        .reseal_refresh_token(request("a", va, &kid1, seal2("a")))
        .await
        .unwrap();
    assert_eq!(outcome(r), ResealOutcome::KeyChanged);
    assert!(matches!(reader.latest("a", PROVIDER).await.unwrap(),
        Latest::Token { sealed_token, .. } if sealed_token == resealed_a));

    // b: re-sealed but still disconnected, still waiting for revocation.
    let r = get
        .reseal_refresh_token(request("b", vb, &kid1, seal2("b")))
        .await
        .unwrap();
    assert_eq!(outcome(r), ResealOutcome::Resealed);
    assert_eq!(
        reader.latest("b", PROVIDER).await.unwrap(),
        Latest::Disconnected
    );
    assert_eq!(
        reader.status("b", PROVIDER).await.unwrap().unwrap().status,
        TokenStatus::Disconnected
    );
    let pending = reader.pending_revocations(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].version, pending[0].kid.as_str()),
        (vb, kid2.as_str())
    );

    // c: re-sealed, still "reauthorization required".
    let r = get
        .reseal_refresh_token(request("c", vc, &kid1, seal2("c")))
        .await
        .unwrap();
    assert_eq!(outcome(r), ResealOutcome::Resealed);
    assert_eq!(
        reader.status("c", PROVIDER).await.unwrap().unwrap().status,
        TokenStatus::ReauthorizationRequired
    );

    // A rotation started from a's version before the re-seal still applies;
    // a re-seal of the superseded version then changes nothing.
    let rotated = get
        .store_refresh_token(StoreRefreshTokenRequest {
            account: "a".into(),
            provider: PROVIDER.into(),
            sealed_token: key2
                .seal("a", PROVIDER, b"rt-keyrot-SECRET-rotated")
                .unwrap(),
            expected_version: Some(u64::try_from(va).unwrap()),
            metadata_json: String::new(),
            refresh_token_expires_at_unix: 0,
        })
        .await
        .unwrap();
    let va2 = i64::try_from(rotated.into_inner().version).unwrap();
    assert!(va2 > va);
    let r = get
        .reseal_refresh_token(request(
            "a",
            va,
            &kid2,
            key1.seal("a", PROVIDER, PLAINTEXT.as_bytes()).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(r), ResealOutcome::Superseded);
    // So does one of a token revoked meanwhile.
    get.record_revocation(RecordRevocationRequest {
        account: "b".into(),
        provider: PROVIDER.into(),
        token_version: u64::try_from(vb).unwrap(),
        outcome: RevocationOutcome::Revoked as i32,
    })
    .await
    .unwrap();
    let r = get
        .reseal_refresh_token(request(
            "b",
            vb,
            &kid2,
            key1.seal("b", PROVIDER, PLAINTEXT.as_bytes()).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(r), ResealOutcome::Superseded);
    assert_eq!(
        reader.latest("b", PROVIDER).await.unwrap(),
        Latest::Disconnected
    );

    // The log of re-seals never keeps a sealed token, and nothing but a
    // re-seal can swap one in.
    assert_eq!(
        owner_i64(
            &store,
            "SELECT COUNT(*) FROM token_reseals WHERE sealed_token IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(
        owner_i64(&store, "SELECT COUNT(*) FROM token_reseals").await,
        6
    );
    let forged =
        format!("UPDATE token_events SET sealed_token = 'x.y.z', kid = 'k' WHERE id = {va2}");
    let err = store.exec_as_owner(&forged).await.unwrap_err();
    assert!(err.to_string().contains("re-seal"), "{err}");
    if backend == Backend::Postgres {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&store.writer_url)
            .await
            .unwrap();
        for sql in [
            "SELECT sealed_token FROM token_reseals",
            "SELECT from_kid FROM token_reseals",
            "UPDATE token_reseals SET outcome = 'resealed'",
            "DELETE FROM token_reseals",
        ] {
            let err = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
            assert!(
                err.to_string().contains("permission denied"),
                "{sql}: {err}"
            );
        }
    }
    server.stop().await.unwrap();
}
