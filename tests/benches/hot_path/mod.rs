//! What the get-service benchmarks share: a bare tonic `GetService` on the
//! same mTLS accept loop (the baseline), worker clients, and a driver that
//! makes a fixed number of cached `GetAccessToken` calls and reports
//! throughput and latency.
// Each bench binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenvault_proto::v1::get_service_server::{GetService, GetServiceServer};
use tokenvault_proto::v1::{
    GetAccessTokenRequest, GetAccessTokenResponse, GetAccountStatusRequest,
    GetAccountStatusResponse, GetClientAccessTokenRequest,
};
use tokenvault_tests::TestPki;
use tokenvault_tests::pki::TRUST_DOMAIN;
use tokenvault_tests::system::System;
use tokenvault_tls::{Role, incoming, server_config};
use tokenvault_worker::{WorkerClient, WorkerConfig};
use tonic::{Request, Response, Status};

/// The baseline: returns a fixed 200-byte token.
struct Bare;

#[tonic::async_trait]
impl GetService for Bare {
    async fn get_access_token(
        &self,
        _: Request<GetAccessTokenRequest>,
    ) -> Result<Response<GetAccessTokenResponse>, Status> {
        Ok(Response::new(fixed_token()))
    }

    async fn get_client_access_token(
        &self,
        _: Request<GetClientAccessTokenRequest>,
    ) -> Result<Response<GetAccessTokenResponse>, Status> {
        Ok(Response::new(fixed_token()))
    }

    async fn get_account_status(
        &self,
        _: Request<GetAccountStatusRequest>,
    ) -> Result<Response<GetAccountStatusResponse>, Status> {
        Err(Status::unimplemented("bare"))
    }
}

/// The baseline's answer: a fixed 200-byte token.
fn fixed_token() -> GetAccessTokenResponse {
    GetAccessTokenResponse {
        access_token: "x".repeat(200),
        token_type: "Bearer".into(),
        expires_at_unix: i64::MAX,
        scopes: vec![],
    }
}

/// Starts the baseline server on `pki`; returns its address.
pub async fn bare_server(pki: &TestPki) -> String {
    let bare_tls = server_config(
        &pki.issue(Role::GetService, Some("bare")).unwrap(),
        TRUST_DOMAIN,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (_tx, rx) = tokio::sync::watch::channel(Arc::clone(&bare_tls.config));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GetServiceServer::new(Bare))
            .serve_with_incoming(incoming(listener, rx)),
    );
    address
}

/// One run's figures.
pub struct Figures {
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl Figures {
    /// `rps p50 p99` columns.
    pub fn columns(&self) -> String {
        format!(
            "{:>9.0} {:>8.3} {:>8.3}",
            self.rps,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        )
    }
}

/// `calls` calls of `GetAccessToken(account, "oidc", scopes)` spread over
/// `clients`, each caller in its own task.
pub async fn drive(
    clients: &[WorkerClient],
    calls: usize,
    account: &str,
    scopes: &[&'static str],
) -> Figures {
    let per_caller = calls / clients.len();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in clients {
        let (client, account, scopes) = (client.clone(), account.to_owned(), scopes.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_caller);
            for _ in 0..per_caller {
                let t = Instant::now();
                let token = client
                    .access_token_scoped(&account, "oidc", Duration::from_secs(1), &scopes)
                    .await
                    .unwrap();
                assert!(!token.secret().is_empty());
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// `n` worker clients (one connection each) with a `worker/<name>`
/// certificate, for `address`.
pub fn clients(system: &System, address: &str, name: &str, n: usize) -> Vec<WorkerClient> {
    let tls = system.pki.issue(Role::Worker, Some(name)).unwrap();
    (0..n)
        .map(|_| {
            WorkerClient::new(&WorkerConfig {
                address: address.to_owned(),
                trust_domain: TRUST_DOMAIN.to_owned(),
                tls: tls.clone(),
            })
            .unwrap()
        })
        .collect()
}
