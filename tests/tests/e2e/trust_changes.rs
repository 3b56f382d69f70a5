//! Trust changes reach connections that are already open (the whole system
//! in-process, workers on long-lived HTTP/2 connections): after `rotate-ca
//! --finish` a connection opened with the old CA's certificate is closed
//! gracefully and the worker's next call succeeds on a new connection with
//! its renewed certificate; a certificate revoked before or after
//! `--finish`, from the old CA or the new one, is refused on every
//! connection and stays refused.

use std::path::Path;
use std::time::{Duration, Instant};

use tokenvault_tests::captured_logs;
use tokenvault_tests::pki::TRUST_DOMAIN;
use tokenvault_tests::system::{Options, System};
use tokenvault_tls::reload::RELOAD_POLL;
use tokenvault_tls::{Role, TlsFiles};
use tokenvault_worker::{WorkerClient, WorkerError};
use tonic::Code;

const ACCOUNT: &str = "acct-trust";
const TTL: Duration = Duration::from_secs(5);

fn worker(f: &System, files: &TlsFiles) -> WorkerClient {
    f.worker_with(files).unwrap()
}

/// `files` with its certificate and key copied to `dir`, so that `pki
/// renew` does not change what a client made from them presents; the CA
/// bundle and CRL stay the live ones.
fn pinned(files: &TlsFiles, dir: &Path, stem: &str) -> TlsFiles {
    let (cert, key) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::copy(&files.cert, &cert).unwrap();
    std::fs::copy(&files.key, &key).unwrap();
    TlsFiles {
        cert,
        key,
        ..files.clone()
    }
}

/// Waits for every service and client to have polled its files (and
/// retried once after a half-written pair).
async fn reloaded() {
    tokio::time::sleep(RELOAD_POLL * 3).await;
}

/// Lines saying a connection of `who` was closed for its certificate.
fn closed_for(who: &str) -> usize {
    captured_logs()
        .lines()
        .filter(|l| l.contains("closing a connection gracefully") && l.contains(who))
        .count()
}

fn refused_code(result: Result<impl std::fmt::Debug, WorkerError>) -> Code {
    match result {
        Ok(token) => panic!("served: {token:?}"),
        Err(WorkerError::Status(status)) => status.code(),
        // Refused before any status: the handshake.
        Err(_) => Code::Unavailable,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_closes_old_ca_connections_gracefully_and_revocations_stay() {
    let mut f = System::start(Options::default()).await.unwrap();
    f.connect(ACCOUNT).await.unwrap();
    let pins = f.pki.scratch().join("pinned");
    std::fs::create_dir_all(&pins).unwrap();
    // A follows its files, which `renew --all` renews; R and Q keep their
    // first (old-CA) certificates.
    let a = worker(&f, &f.pki.issue(Role::Worker, Some("a")).unwrap());
    let r_files = pinned(&f.pki.issue(Role::Worker, Some("r")).unwrap(), &pins, "r");
    let q_files = pinned(&f.pki.issue(Role::Worker, Some("q")).unwrap(), &pins, "q");
    let (r, q) = (worker(&f, &r_files), worker(&f, &q_files));
    for client in [&a, &r, &q] {
        client.access_token(ACCOUNT, "oidc", TTL).await.unwrap();
    }

    // R is revoked before the rotation: refused on its open connection.
    f.pki
        .revoke(&format!("spiffe://{TRUST_DOMAIN}/worker/r"))
        .unwrap();
    reloaded().await;
    assert_eq!(
        refused_code(r.access_token(ACCOUNT, "oidc", TTL).await),
        Code::Unauthenticated
    );

    // The rotation: new CA beside the old one, every certificate renewed.
    f.pki.rotate_ca().unwrap();
    reloaded().await;
    let report = f.pki.renew_all().unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    reloaded().await;
    // A's connection, opened with its old-CA certificate, still serves it,
    // and nothing has been closed yet.
    a.access_token(ACCOUNT, "oidc", TTL).await.unwrap();
    assert_eq!(closed_for("/worker/a"), 0);
    // R stays refused while the old CA is still trusted.
    assert_eq!(
        refused_code(r.access_token(ACCOUNT, "oidc", TTL).await),
        Code::Unauthenticated
    );

    // The old CA leaves the bundle: A's old connection is closed
    // gracefully within one reload, and A's next call succeeds on a new
    // connection with its renewed certificate.
    f.pki.finish_ca_rotation().unwrap();
    let finished = Instant::now();
    while closed_for("/worker/a") == 0 {
        assert!(
            finished.elapsed() < RELOAD_POLL * 3,
            "A's connection was not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "A's old-CA connection closed {:?} after --finish",
        finished.elapsed()
    );
    reloaded().await;
    a.access_token(ACCOUNT, "oidc", TTL).await.unwrap();
    a.access_token(ACCOUNT, "oidc", TTL).await.unwrap();

    // R (revoked before --finish) and Q (revoked after it, with the
    // certificate `renew --all` gave it) are refused on every connection,
    // now and after further reloads: their old-CA connections were closed,
    // and a new one with an old-CA certificate fails its handshake.
    f.pki
        .revoke(&format!("spiffe://{TRUST_DOMAIN}/worker/q"))
        .unwrap();
    reloaded().await;
    for _ in 0..2 {
        for client in [&r, &q] {
            let code = refused_code(client.access_token(ACCOUNT, "oidc", TTL).await);
            assert_ne!(code, Code::Ok);
        }
        f.pki.write_crl().unwrap();
        reloaded().await;
    }
    assert!(
        closed_for("/worker/q") >= 1,
        "Q's old-CA connection stayed open"
    );

    // A certificate of the new CA revoked after --finish: refused on its
    // open connection, from the next reload on, and it stays refused.
    let n = worker(&f, &f.pki.issue(Role::Worker, Some("n")).unwrap());
    n.access_token(ACCOUNT, "oidc", TTL).await.unwrap();
    f.pki
        .revoke(&format!("spiffe://{TRUST_DOMAIN}/worker/n"))
        .unwrap();
    reloaded().await;
    for _ in 0..2 {
        assert_eq!(
            refused_code(n.access_token(ACCOUNT, "oidc", TTL).await),
            Code::Unauthenticated
        );
        f.pki.write_crl().unwrap();
        reloaded().await;
    }
    // Everyone else carried on.
    a.access_token(ACCOUNT, "oidc", TTL).await.unwrap();
    f.stop().await.unwrap();
}
