//! Token-encryption key rotation end to end: `pki keygen` adds key 2, the
//! services seal with it, `get-service reseal` (the library function the
//! command calls) re-seals thousands of stored tokens through set-service —
//! interrupted part-way and run again — `retire-key` refuses while any token
//! needs key 1 and then removes it, and get-service still serves real tokens
//! with key 2 alone. Also set-service's `ResealRefreshToken`: compare-and-swap,
//! get-service only, nothing revived, bad input changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use tokenvault_get_service::reseal::{KeyRotationError, ResealOptions, reseal};
use tokenvault_get_service::retire::retire_key;
use tokenvault_opener::PrivateKeyRing;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{
    AccountStatus, DisconnectAccountRequest, RecordAccountStatusRequest, StoreRefreshTokenRequest,
};
use tokenvault_seal::PublicKeySet;
use tokenvault_store::{Latest, TokenReader, TokenStatus};
use tokenvault_tests::services::{get_service_config, oidc_provider_config, start_get_service};
use tokenvault_tests::system::{Options, System};
use tokenvault_tests::{Backend, RunningService, TestStore, assert_not_logged, grpc_channel};
use tokenvault_tls::Role;
use tokenvault_worker::{WorkerClient, WorkerConfig};
use tonic::transport::Channel;

mod cli;
mod rpc;

/// Every synthetic refresh token starts with this, so one search of the
/// captured logs covers them all.
const SECRET_PREFIX: &str = "rt-keyrot-SECRET-";
const SYNTHETIC_PROVIDER: &str = "google";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_key_rotation_of_thousands_of_tokens_loses_none_and_resumes_after_interruption() {
    full_rotation(Backend::Postgres, 3000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_on_sqlite_loses_none_and_resumes_after_interruption() {
    full_rotation(Backend::Sqlite, 300).await;
}

/// One stored row, as the owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    version: i64,
    account: String,
    provider: String,
    kid: String,
    token_hash: Vec<u8>,
}

async fn full_rotation(backend: Backend, n: usize) {
    let mut system = System::start(Options {
        backend,
        ..Options::default()
    })
    .await
    .unwrap();
    let kid1 = system.pki.kid.clone();
    // Two real grants at the authorization server, sealed under key 1.
    system.connect("alice").await.unwrap();
    system.connect("bob").await.unwrap();
    // get-service with key 1 only; its revocation sweep would keep opening
    // the pending tokens below, so it is replaced right away.
    stop_get_service(&mut system).await;

    // n synthetic tokens under key 1, stored through set-service as
    // web-frontend, 16 at a time.
    let web = set_client(&system, Role::WebFrontend);
    let sealer = Arc::new(PublicKeySet::load_dir(&system.pki.public_keys_dir()).unwrap());
    assert_eq!(sealer.sealing_kid(), kid1);
    let plaintexts: BTreeMap<String, String> = (0..n)
        .map(|i| {
            let nonce: u64 = rand_u64();
            (
                format!("acct-{i:05}"),
                format!("{SECRET_PREFIX}{i}-{nonce:016x}"),
            )
        })
        .collect();
    let started = Instant::now();
    store_all(&web, &sealer, &plaintexts).await;
    eprintln!(
        "[key_rotation/{backend:?}] stored {n} tokens under key 1 in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Some disconnected (their tokens wait for revocation: no provider here
    // can revoke them), some with a dead grant.
    let get_identity = set_client(&system, Role::GetService);
    let accounts: Vec<&String> = plaintexts.keys().collect();
    let disconnected: Vec<String> = accounts.iter().step_by(30).map(|a| (*a).clone()).collect();
    let dead: Vec<String> = accounts
        .iter()
        .skip(7)
        .step_by(60)
        .map(|a| (*a).clone())
        .collect();
    for account in &disconnected {
        web.clone()
            .disconnect_account(DisconnectAccountRequest {
                account: account.clone(),
                provider: SYNTHETIC_PROVIDER.into(),
            })
            .await
            .unwrap();
    }
    for account in dead.iter().filter(|a| !disconnected.contains(a)) {
        get_identity
            .clone()
            .record_account_status(RecordAccountStatusRequest {
                account: account.clone(),
                provider: SYNTHETIC_PROVIDER.into(),
                status: AccountStatus::ReauthorizationRequired as i32,
                reason: "invalid_grant".into(),
            })
            .await
            .unwrap();
    }
    let before = rows(&system.store).await;
    assert_eq!(before.len(), n + 2);
    assert!(before.iter().all(|r| r.kid == kid1));

    // Key 2: `pki keygen`. The newest file seals; get-service's config also
    // names it explicitly. set-service and get-service are restarted to load
    // it (the runbook's order: set-service first).
    let kid2 = system.pki.state().keygen(false).unwrap().kid;
    assert_eq!(
        PublicKeySet::load_dir(&system.pki.public_keys_dir())
            .unwrap()
            .sealing_kid(),
        kid2
    );
    system.stop_set_service().await.unwrap();
    system.restart_set_service().await.unwrap();
    let mut config = get_config(&system);
    config.sealing_kid = Some(kid2.clone());
    config.revocation.interval_secs = 86_400;
    system.get = start_get_service(config.clone()).await.unwrap();
    let worker = worker_for(&system);
    // alice's first refresh through the new get-service rotates her grant:
    // the rotated token is stored under key 2.
    let alice_version = version_of(&system, "alice").await;
    let token = worker
        .access_token("alice", "oidc", Duration::ZERO)
        .await
        .unwrap();
    system.secrets.push(token.secret().to_owned());
    wait_until_rotated(&system, "alice", alice_version).await;

    // A trial run on a few tokens (`get-service reseal --limit 10`).
    let trial = reseal(
        &config,
        &ResealOptions {
            limit: Some(10),
            ..options()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(trial.progress.resealed, 10);
    assert_eq!(trial.progress.total, u64::try_from(n + 1).unwrap());

    // The re-seal job, aborted a third of the way through.
    let progress = Arc::new(AtomicU64::new(0));
    let job = tokio::spawn({
        let (config, progress) = (config.clone(), Arc::clone(&progress));
        async move {
            reseal(&config, &options(), move |p| {
                progress.store(p.resealed, Ordering::SeqCst);
            })
            .await
        }
    });
    let started = Instant::now();
    let cut = (n / 3) as u64;
    while progress.load(Ordering::SeqCst) < cut {
        assert!(
            !job.is_finished(),
            "the job ended before it was interrupted"
        );
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "re-seal too slow"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    job.abort();
    let first_secs = started.elapsed().as_secs_f64();
    assert!(job.await.unwrap_err().is_cancelled());
    // Let calls that were in flight settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = counts_by_kid(&system).await;
    let left = counts.get(&kid1).copied().unwrap_or(0);
    let first_done = counts.get(&kid2).copied().unwrap_or(0);
    eprintln!(
        "[key_rotation/{backend:?}] interrupted run: {first_done} under key 2 after {first_secs:.1} s \
         ({:.0} tokens/s), {left} left under key 1",
        progress.load(Ordering::SeqCst) as f64 / first_secs
    );
    assert!(left > 0 && first_done >= cut as i64, "{counts:?}");

    // Retiring key 1 is refused while tokens need it; so is the sealing key.
    match retire_key(&config, &kid1).await {
        Err(KeyRotationError::RetireInUse { kid, count }) => {
            assert_eq!((kid, count), (kid1.clone(), left));
        }
        other => panic!("retiring a key in use: {other:?}"),
    }
    let message = retire_key(&config, &kid1).await.unwrap_err().to_string();
    assert!(
        message.contains(&format!("{left} stored tokens")),
        "{message}"
    );
    assert!(
        system
            .pki
            .private_keys_dir()
            .join(format!("{kid1}.pem"))
            .is_file()
    );
    assert!(matches!(
        retire_key(&config, &kid2).await,
        Err(KeyRotationError::RetireSealingKey { .. })
    ));
    assert!(matches!(
        retire_key(&config, "../../etc/passwd").await,
        Err(KeyRotationError::NotAKeyId)
    ));
    assert!(matches!(
        retire_key(&config, "no-such-key").await,
        Err(KeyRotationError::RetireUnknown { .. })
    ));

    // The second run finds only what is left, and finishes.
    let started = Instant::now();
    let report = reseal(&config, &options(), |_| {}).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "[key_rotation/{backend:?}] resumed run: {} in {secs:.1} s ({:.0} tokens/s)",
        report.progress,
        report.progress.resealed as f64 / secs
    );
    assert_eq!(report.sealing_kid, kid2);
    assert_eq!(report.progress.total, u64::try_from(left).unwrap());
    assert_eq!(report.progress.resealed, report.progress.total);
    assert_eq!((report.progress.skipped, report.progress.failed), (0, 0));
    // A third run has nothing to do.
    let again = reseal(&config, &options(), |_| {}).await.unwrap();
    assert_eq!(again.progress.total, 0);

    // Nothing lost, nothing revived: the same rows (versions, token hashes),
    // every one under key 2 now, opened with key 2 alone to its original
    // plaintext.
    let after = rows(&system.store).await;
    let strip = |rows: &[Row]| -> BTreeSet<(i64, String, Vec<u8>)> {
        rows.iter()
            .filter(|r| r.account != "alice")
            .map(|r| (r.version, r.account.clone(), r.token_hash.clone()))
            .collect()
    };
    assert_eq!(strip(&before), strip(&after));
    assert!(
        after.iter().all(|r| r.kid == kid2),
        "a token is not under key 2"
    );
    let key2_only = tempfile::tempdir().unwrap();
    let name = format!("{kid2}.pem");
    std::fs::copy(
        system.pki.private_keys_dir().join(&name),
        key2_only.path().join(&name),
    )
    .unwrap();
    let ring = PrivateKeyRing::load_dir(key2_only.path()).unwrap();
    assert_eq!(ring.kids(), vec![kid2.as_str()]);
    let reader = TokenReader::connect(&system.store.reader_url)
        .await
        .unwrap();
    let stored = reader.sealed_not_under("none", 0, 100_000).await.unwrap();
    assert_eq!(stored.len(), n + 2);
    let mut opened = 0;
    for row in stored.iter().filter(|r| r.provider == SYNTHETIC_PROVIDER) {
        let plaintext = ring
            .open(&row.sealed_token, &row.account, &row.provider)
            .unwrap();
        assert_eq!(plaintext.as_slice(), plaintexts[&row.account].as_bytes());
        opened += 1;
    }
    assert_eq!(opened, n);
    for account in &disconnected {
        assert_eq!(
            reader.latest(account, SYNTHETIC_PROVIDER).await.unwrap(),
            Latest::Disconnected
        );
    }
    let pending = reader.pending_revocations(0, 10_000).await.unwrap();
    assert_eq!(pending.len(), disconnected.len());
    assert!(pending.iter().all(|p| p.kid == kid2));
    for account in dead.iter().filter(|a| !disconnected.contains(a)) {
        let status = reader
            .status(account, SYNTHETIC_PROVIDER)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.status, TokenStatus::ReauthorizationRequired);
    }

    // Now key 1 can go, once its public half is gone from the writers (so
    // nothing can be sealed under it); get-service serves real tokens with
    // key 2 alone.
    let public1 = system.pki.public_keys_dir().join(format!("{kid1}.pem"));
    let refused = retire_key(&config, &kid1).await.unwrap_err().to_string();
    assert!(refused.contains("its public key"), "{refused}");
    assert!(
        refused.contains("web-frontend, set-service and get-service"),
        "{refused}"
    );
    std::fs::remove_file(&public1).unwrap();
    let retired = retire_key(&config, &kid1).await.unwrap();
    assert!(!retired.removed.exists());
    assert!(retired.to_string().contains("restart get-service"));
    stop_get_service(&mut system).await;
    config.sealing_kid = None;
    system.get = start_get_service(config.clone()).await.unwrap();
    let worker = worker_for(&system);
    for account in ["alice", "bob"] {
        let token = worker
            .access_token(account, "oidc", Duration::ZERO)
            .await
            .unwrap();
        system.secrets.push(token.secret().to_owned());
        let userinfo = system.oidc.userinfo(token.secret()).await.unwrap();
        assert_eq!(userinfo["sub"], account);
    }
    assert_not_logged(SECRET_PREFIX, "a synthetic refresh token");
    system.stop().await.unwrap();
}

async fn stop_get_service(system: &mut System) {
    let addr = system.get.addr;
    std::mem::replace(&mut system.get, RunningService::stopped(addr))
        .stop()
        .await
        .unwrap();
}

fn options() -> ResealOptions {
    ResealOptions {
        concurrency: 4,
        ..ResealOptions::default()
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    u64::from_le_bytes(bytes)
}

fn set_client(system: &System, role: Role) -> SetServiceClient<Channel> {
    let files = system.pki.issue(role, None).unwrap();
    SetServiceClient::new(grpc_channel(&system.set.address(), &files, Role::SetService).unwrap())
}

fn get_config(system: &System) -> tokenvault_get_service::Config {
    get_service_config(
        &system.pki,
        &system.store.reader_url,
        &system.set.address(),
        vec![oidc_provider_config(&system.oidc, 2).unwrap()],
    )
    .unwrap()
}

fn worker_for(system: &System) -> WorkerClient {
    WorkerClient::new(&WorkerConfig {
        address: system.get.address(),
        trust_domain: tokenvault_tests::pki::TRUST_DOMAIN.to_owned(),
        tls: system.pki.issue(Role::Worker, Some("keyrot")).unwrap(),
    })
    .unwrap()
}

async fn store_all(
    web: &SetServiceClient<Channel>,
    sealer: &Arc<PublicKeySet>,
    plaintexts: &BTreeMap<String, String>,
) {
    let items: Arc<Vec<(String, String)>> = Arc::new(
        plaintexts
            .iter()
            .map(|(a, p)| (a.clone(), p.clone()))
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (web, sealer, items, next) = (
            web.clone(),
            Arc::clone(sealer),
            Arc::clone(&items),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = usize::try_from(next.fetch_add(1, Ordering::SeqCst)).unwrap();
                let Some((account, plaintext)) = items.get(i) else {
                    return;
                };
                let sealed = sealer
                    .seal(account, SYNTHETIC_PROVIDER, plaintext.as_bytes())
                    .unwrap();
                web.clone()
                    .store_refresh_token(StoreRefreshTokenRequest {
                        account: account.clone(),
                        provider: SYNTHETIC_PROVIDER.into(),
                        sealed_token: sealed,
                        expected_version: None,
                        metadata_json: String::new(),
                        refresh_token_expires_at_unix: 0,
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Every token row that still holds a sealed token, read as the owner.
async fn rows(store: &TestStore) -> Vec<Row> {
    const SQL: &str = "SELECT id, account, provider, kid, token_hash FROM token_events \
                       WHERE kind = 'token' AND sealed_token IS NOT NULL ORDER BY id";
    type Raw = (i64, String, String, String, Vec<u8>);
    let raw: Vec<Raw> = match store.backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&store.owner_url).await.unwrap();
            sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
        }
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&store.owner_url).unwrap();
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap();
            sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
        }
    };
    raw.into_iter()
        .map(|(version, account, provider, kid, token_hash)| Row {
            version,
            account,
            provider,
            kid,
            token_hash,
        })
        .collect()
}

/// One integer from `sql`, run as the owner.
async fn owner_i64(store: &TestStore, sql: &str) -> i64 {
    match store.backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&store.owner_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&store.owner_url).unwrap();
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        }
    }
}

async fn counts_by_kid(system: &System) -> BTreeMap<String, i64> {
    let reader = TokenReader::connect(&system.store.reader_url)
        .await
        .unwrap();
    reader
        .sealed_counts_by_kid()
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn version_of(system: &System, account: &str) -> i64 {
    let reader = TokenReader::connect(&system.store.reader_url)
        .await
        .unwrap();
    match reader.latest(account, "oidc").await.unwrap() {
        Latest::Token { version, .. } => version,
        other => panic!("{account}: {other:?}"),
    }
}

async fn wait_until_rotated(system: &System, account: &str, old: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while version_of(system, account).await == old {
        assert!(
            Instant::now() < deadline,
            "{account}'s rotation was not stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
