//! The get-service benchmarks' rig: PostgreSQL, set-service and get-service
//! started in-process, a local token endpoint that answers every refresh at
//! once, the bare tonic baseline, raw tonic clients, and sealed accounts
//! stored from a child process (so that their bytes stay out of the
//! measuring process's heap).
// Each bench binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokenvault_proto::v1::GetAccessTokenRequest;
use tokenvault_proto::v1::get_service_client::GetServiceClient;
use tokenvault_seal::PublicKeySet;
use tokenvault_tests::pki::TRUST_DOMAIN;
use tokenvault_tests::services::{
    RunningService, get_service_config, set_service_config, start_get_service, start_set_service,
};
use tokenvault_tests::{TestPki, TestStore};
use tokenvault_tls::{IdentityPattern, Role};
use tonic::transport::Channel;

use crate::hot_path::bare_server;

pub const PROVIDER: &str = "fast";
/// The access tokens the local token endpoint issues: 43 bytes, like a
/// base64url-encoded 256-bit token.
pub const ACCESS_TOKEN_LEN: usize = 43;
/// The argument that makes a bench binary the seeding child.
pub const SEED_ARG: &str = "--seed";

pub struct Rig {
    pub pki: TestPki,
    pub store: TestStore,
    _set: RunningService,
    pub get: RunningService,
    /// The bare baseline's address.
    pub bare: String,
}

/// A token endpoint that answers every refresh at once, with a new
/// 43-byte token valid for an hour and the same scopes.
async fn token_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let issued = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let issued = issued.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    let token = format!("{n:0>width$}", width = ACCESS_TOKEN_LEN);
                    let body = format!(
                        r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600,"scope":"openid offline_access"}}"#
                    );
                    let response = http::Response::builder()
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                        .unwrap();
                    std::future::ready(Ok::<_, Infallible>(response))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    url
}

/// Starts everything, with one stored account, `hot`.
pub async fn start_rig() -> Rig {
    let pki = TestPki::new().unwrap();
    let store = TestStore::postgres().await;
    let set = start_set_service(set_service_config(&pki, &store.writer_url).unwrap())
        .await
        .unwrap();
    let provider = toml::from_str(&format!(
        r#"
name = "{PROVIDER}"
token_endpoint = "{}"
client_id = "bench"
client_secret = "bench-secret"
client_auth = "client_secret_basic"
client_credentials = true
timeout_secs = 10
"#,
        token_endpoint().await
    ))
    .unwrap();
    let mut config =
        get_service_config(&pki, &store.reader_url, &set.address(), vec![provider]).unwrap();
    config.cache.revalidate_secs = 3600;
    // The bench workers may read every account and the client token.
    let policy = pki.scratch().join("bench-policy.toml");
    tokenvault_tests::system::write_policy(
        &policy,
        "[[rules]]\nname = \"bench\"\ncallers = [\"worker/bench\"]\naccounts = [\"*\"]\n\
         providers = [\"*\"]\nclient_token = true\n",
    )
    .unwrap();
    config.policy.file = Some(policy);
    let get = start_get_service(config).await.unwrap();
    let bare = bare_server(&pki).await;
    let keys = PublicKeySet::load_dir(&pki.public_keys_dir()).unwrap();
    let sealed = keys.seal("hot", PROVIDER, b"a-refresh-token").unwrap();
    tokenvault_store::TokenWriter::connect(&store.writer_url)
        .await
        .unwrap()
        .store("hot", PROVIDER, &sealed, &pki.kid)
        .await
        .unwrap();
    Rig {
        pki,
        store,
        _set: set,
        get,
        bare,
    }
}

/// `k` raw tonic clients (one connection each) with a worker certificate.
pub fn channels(rig: &Rig, address: &str, k: usize) -> Vec<GetServiceClient<Channel>> {
    let files = rig.pki.issue(Role::Worker, Some("bench")).unwrap();
    let config = tokenvault_tls::client_config(
        &files,
        TRUST_DOMAIN,
        IdentityPattern::Role(Role::GetService),
    )
    .unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(config);
    (0..k)
        .map(|_| GetServiceClient::new(tokenvault_tls::channel(address, rx.clone()).unwrap()))
        .collect()
}

pub fn request(account: &str) -> GetAccessTokenRequest {
    GetAccessTokenRequest {
        account: account.to_owned(),
        provider: PROVIDER.to_owned(),
        min_ttl_seconds: 1,
        scopes: vec![],
    }
}

/// The process's resident set, in bytes.
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// Seals and stores `count` accounts (`mem-<i>`) from a child process: this
/// binary run with [`SEED_ARG`], which calls [`seed_child`].
pub fn seed(rig: &Rig, count: usize) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            SEED_ARG,
            &rig.store.writer_url,
            &rig.pki.public_keys_dir().display().to_string(),
            &rig.pki.kid,
            &count.to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The child: stores `count` sealed tokens with 16 writers.
pub async fn seed_child(args: &[String]) {
    let (url, keys_dir, kid, count) = (&args[0], &args[1], &args[2], args[3].parse().unwrap());
    let keys = Arc::new(PublicKeySet::load_dir(std::path::Path::new(keys_dir)).unwrap());
    let writer = Arc::new(tokenvault_store::TokenWriter::connect(url).await.unwrap());
    let tasks: Vec<_> = (0..16usize)
        .map(|w| {
            let (keys, writer, kid) = (keys.clone(), writer.clone(), kid.clone());
            tokio::spawn(async move {
                for i in (w..count).step_by(16) {
                    let account = format!("mem-{i}");
                    let sealed = keys.seal(&account, PROVIDER, b"a-refresh-token").unwrap();
                    writer
                        .store(&account, PROVIDER, &sealed, &kid)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// A server runtime (`srv`) and a client runtime (`cli`), one worker per
/// core each.
pub fn runtimes() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
    let cores = std::thread::available_parallelism().unwrap().get();
    let build = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name(name)
            .enable_all()
            .build()
            .unwrap()
    };
    (build("srv"), build("cli"))
}
