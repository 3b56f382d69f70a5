//! Services started in-process on 127.0.0.1 port 0, and clients for them.

use std::net::SocketAddr;
use std::path::Path;

use tokenvault_mtls::{IdentityPattern, Role, TlsFiles};
use tokenvault_set_service::config::{AllowConfig, Limits, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::pki::{TRUST_DOMAIN, TestPki};

/// A service running in this process; stopped when dropped or by [`stop`].
///
/// [`stop`]: RunningService::stop
#[derive(Debug)]
pub struct RunningService {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningService {
    /// `127.0.0.1:<port>`, for clients.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A set-service config for `pki`, writing to `store_url`.
pub fn set_service_config(
    pki: &TestPki,
    store_url: &str,
) -> anyhow::Result<tokenvault_set_service::Config> {
    Ok(tokenvault_set_service::Config {
        listen: "127.0.0.1:0".parse()?,
        trust_domain: TRUST_DOMAIN.to_owned(),
        tls: pki.issue(Role::SetService, None)?,
        store: StoreConfig {
            url: store_url.to_owned(),
        },
        public_keys_dir: pki.public_keys_dir(),
        providers: vec!["oidc".to_owned(), "github".to_owned(), "google".to_owned()],
        allow: AllowConfig::default(),
        limits: Limits::default(),
    })
}

/// A SQLite store URL in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("tokenvault.db").display())
}

/// Starts set-service on 127.0.0.1 port 0 and waits until it accepts.
pub async fn start_set_service(
    config: tokenvault_set_service::Config,
) -> anyhow::Result<RunningService> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel();
    let (ready_tx, mut ready_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let _ = ready_tx.send(true);
        tokenvault_set_service::run(listener, config, async {
            let _ = rx.await;
        })
        .await
        .map_err(anyhow::Error::from)
    });
    let _ = ready_rx.changed().await;
    Ok(RunningService {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// A lazily connecting mTLS channel to `address` with `files`, expecting the
/// server to have `server_role`.
pub fn grpc_channel(address: &str, files: &TlsFiles, server_role: Role) -> anyhow::Result<Channel> {
    let config =
        tokenvault_mtls::client_config(files, TRUST_DOMAIN, IdentityPattern::Role(server_role))?;
    let (_tx, rx) = watch::channel(config);
    Ok(tokenvault_mtls::channel(address, rx)?)
}
