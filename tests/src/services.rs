//! Services started in-process on 127.0.0.1 port 0, and clients for them.

use std::net::SocketAddr;
use std::path::Path;

use tokenvault_get_service::config::{CacheConfig, SetServiceConfig};
use tokenvault_oauth::ProviderConfig;
use tokenvault_runtime::settings::{Listeners, ServiceSettings};
use tokenvault_set_service::config::{AllowConfig, Limits, StoreConfig};
use tokenvault_tls::{IdentityPattern, Role, TlsFiles};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::oidc::OidcServer;
use crate::pki::{TRUST_DOMAIN, TestPki};

/// A service running in this process; stopped when dropped or by [`stop`].
///
/// [`stop`]: RunningService::stop
#[derive(Debug)]
pub struct RunningService {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its metrics endpoint listens (every in-process service has one).
    pub metrics_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningService {
    /// `127.0.0.1:<port>`, for clients.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// `http://127.0.0.1:<port>/metrics`, its metrics endpoint.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_addr
            .map(|a| format!("http://127.0.0.1:{}/metrics", a.port()))
    }

    /// A handle for a service that is not running (remembers its address).
    pub fn stopped(addr: SocketAddr) -> Self {
        Self {
            addr,
            metrics_addr: None,
            shutdown: None,
            task: None,
        }
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
        service: service_settings(pki.issue(Role::SetService, None)?)?,
        store: StoreConfig {
            url: store_url.to_owned(),
        },
        public_keys_dir: pki.public_keys_dir(),
        providers: vec!["oidc".to_owned(), "github".to_owned(), "google".to_owned()],
        allow: AllowConfig::default(),
        limits: Limits::default(),
        webhooks: Vec::new(),
        // Look for expiring refresh tokens every second (7 days ahead).
        expiry: tokenvault_set_service::config::ExpiryConfig {
            interval_secs: 1,
            ..Default::default()
        },
    })
}

/// The settings every service shares, for a service with certificate `tls`
/// listening on 127.0.0.1 port 0 (tests bind their own listeners).
pub fn service_settings(tls: TlsFiles) -> anyhow::Result<ServiceSettings> {
    Ok(ServiceSettings {
        listen: "127.0.0.1:0".parse()?,
        health_listen: None,
        metrics_listen: None,
        health: Default::default(),
        trust_domain: TRUST_DOMAIN.to_owned(),
        tls,
        audit: Default::default(),
        // Tests stop services often: drain at once.
        shutdown: tokenvault_runtime::settings::ShutdownConfig {
            drain_secs: 0,
            grace_secs: 10,
        },
    })
}

/// A SQLite store URL in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("tokenvault.db").display())
}

/// Runs `serve` (a service's `run` with its listeners, config and shutdown
/// future) in a task, on `listener` and a metrics listener bound to
/// 127.0.0.1 port 0.
async fn spawn_service<F, Fut, E>(listener: TcpListener, serve: F) -> anyhow::Result<RunningService>
where
    F: FnOnce(Listeners, oneshot::Receiver<()>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: Into<anyhow::Error>,
{
    let addr = listener.local_addr()?;
    let metrics = TcpListener::bind("127.0.0.1:0").await?;
    let metrics_addr = Some(metrics.local_addr()?);
    let (tx, rx) = oneshot::channel();
    let listeners = Listeners {
        main: listener,
        metrics: Some(metrics),
    };
    let running = serve(listeners, rx);
    let task = tokio::spawn(async move { running.await.map_err(Into::into) });
    Ok(RunningService {
        addr,
        metrics_addr,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// Starts set-service on 127.0.0.1 port 0.
pub async fn start_set_service(
    config: tokenvault_set_service::Config,
) -> anyhow::Result<RunningService> {
    start_set_service_at(config, "127.0.0.1:0".parse()?).await
}

/// Starts set-service on `addr` (e.g. again on the port it had).
pub async fn start_set_service_at(
    config: tokenvault_set_service::Config,
    addr: SocketAddr,
) -> anyhow::Result<RunningService> {
    spawn_service(TcpListener::bind(addr).await?, |listeners, rx| {
        tokenvault_set_service::run(listeners, config, async {
            let _ = rx.await;
        })
    })
    .await
}

/// Starts get-service on 127.0.0.1 port 0.
pub async fn start_get_service(
    config: tokenvault_get_service::Config,
) -> anyhow::Result<RunningService> {
    spawn_service(TcpListener::bind("127.0.0.1:0").await?, |listeners, rx| {
        tokenvault_get_service::run(listeners, config, async {
            let _ = rx.await;
        })
    })
    .await
}

/// Runs get-service with `config`, which must stop it at start; returns the
/// error it stopped with.
pub async fn get_service_start_error(
    config: tokenvault_get_service::Config,
) -> anyhow::Result<String> {
    let listeners = Listeners {
        main: TcpListener::bind("127.0.0.1:0").await?,
        metrics: None,
    };
    match tokenvault_get_service::run(listeners, config, std::future::pending()).await {
        Ok(()) => anyhow::bail!("get-service started (and stopped) without an error"),
        Err(e) => Ok(e.to_string()),
    }
}

/// A get-service config for `pki`, reading `store_url`, writing through
/// set-service at `set_address`, with `providers`.
pub fn get_service_config(
    pki: &TestPki,
    store_url: &str,
    set_address: &str,
    providers: Vec<ProviderConfig>,
) -> anyhow::Result<tokenvault_get_service::Config> {
    Ok(tokenvault_get_service::Config {
        service: service_settings(pki.issue(Role::GetService, None)?)?,
        store: tokenvault_get_service::config::StoreConfig {
            url: store_url.to_owned(),
        },
        private_keys_dir: pki.private_keys_dir(),
        public_keys_dir: pki.public_keys_dir(),
        sealing_kid: None,
        set_service: SetServiceConfig {
            address: set_address.to_owned(),
        },
        providers,
        cache: CacheConfig::default(),
        allow: tokenvault_get_service::config::AllowConfig::default(),
        policy: tokenvault_get_service::config::PolicyConfig::default(),
        // Sweep for disconnected accounts to revoke every second.
        revocation: tokenvault_get_service::config::RevocationConfig {
            interval_secs: 1,
            batch_size: 100,
        },
        pkcs11: None,
        rotation: tokenvault_get_service::config::RotationConfig {
            journal_dir: Some(pki.scratch().join("get-service-journal")),
        },
        inventory: tokenvault_get_service::config::InventoryConfig::default(),
    })
}

/// The provider config of the test authorization server, named `oidc`,
/// configured by issuer URL through discovery, with `timeout_secs` per call.
pub fn oidc_provider_config(
    oidc: &OidcServer,
    timeout_secs: u64,
) -> anyhow::Result<ProviderConfig> {
    Ok(toml::from_str(&format!(
        r#"
name = "oidc"
issuer = "{issuer}"
client_id = "{id}"
client_secret = "{secret}"
client_auth = "client_secret_basic"
timeout_secs = {timeout_secs}
"#,
        issuer = oidc.issuer(),
        id = crate::oidc::CLIENT_ID,
        secret = crate::oidc::CLIENT_SECRET,
    ))?)
}

/// get-service's provider `name` for the test authorization server's
/// client-credentials client ([`crate::oidc::MACHINE_CLIENT_ID`]), asking
/// for `api.read` by default.
pub fn client_credentials_provider_config(
    oidc: &OidcServer,
    name: &str,
    timeout_secs: u64,
) -> anyhow::Result<ProviderConfig> {
    Ok(toml::from_str(&format!(
        r#"
name = "{name}"
issuer = "{issuer}"
client_id = "{id}"
client_secret = "{secret}"
client_credentials = true
scopes = ["api.read"]
timeout_secs = {timeout_secs}
"#,
        issuer = oidc.issuer(),
        id = crate::oidc::MACHINE_CLIENT_ID,
        secret = crate::oidc::MACHINE_CLIENT_SECRET,
    ))?)
}

/// get-service's provider `device`: the test authorization server's
/// device-flow client ([`crate::oidc::DEVICE_CLIENT_ID`]), whose refresh
/// tokens only that client may use.
pub fn device_provider_config(
    oidc: &OidcServer,
    timeout_secs: u64,
) -> anyhow::Result<ProviderConfig> {
    let mut provider = oidc_provider_config(oidc, timeout_secs)?;
    provider.name = "device".to_owned();
    provider.client_id = crate::oidc::DEVICE_CLIENT_ID.to_owned();
    provider.client_secret =
        tokenvault_oauth::Secret::new(crate::oidc::DEVICE_CLIENT_SECRET.to_owned());
    Ok(provider)
}

/// A lazily connecting mTLS channel to `address` with `files`, expecting the
/// server to have `server_role`.
pub fn grpc_channel(address: &str, files: &TlsFiles, server_role: Role) -> anyhow::Result<Channel> {
    let config =
        tokenvault_tls::client_config(files, TRUST_DOMAIN, IdentityPattern::Role(server_role))?;
    let (_tx, rx) = watch::channel(config);
    Ok(tokenvault_tls::channel(address, rx)?)
}

/// The signed-link secret every test web-frontend uses.
pub const LINK_SECRET: &str = "tokenvault-test-link-secret-0123456789abcdef";

/// A web-frontend config for `pki`: public URL `public_url`, storing through
/// set-service at `set_address`, with `providers` and a link secret
/// ([`LINK_SECRET`]) written under the PKI's scratch directory.
pub fn web_frontend_config(
    pki: &TestPki,
    public_url: &str,
    set_address: &str,
    providers: Vec<tokenvault_web_frontend::provider::ProviderConfig>,
) -> anyhow::Result<tokenvault_web_frontend::Config> {
    let secret_file = pki.scratch().join("link-secret");
    write_secret_file(&secret_file, LINK_SECRET.as_bytes())?;
    Ok(tokenvault_web_frontend::Config {
        service: service_settings(pki.issue(Role::WebFrontend, None)?)?,
        public_url: public_url.to_owned(),
        set_service: tokenvault_web_frontend::config::SetServiceConfig {
            address: set_address.to_owned(),
            timeout_secs: 5,
        },
        public_keys_dir: pki.public_keys_dir(),
        sealing_kid: None,
        providers,
        session: tokenvault_web_frontend::config::SessionConfig::default(),
        links: tokenvault_web_frontend::config::LinkConfig {
            secret_file: Some(secret_file),
            max_lifetime_secs: 3600,
        },
        limits: tokenvault_web_frontend::config::Limits::default(),
    })
}

/// How a web-frontend provider entry for the test authorization server asks
/// for access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebProvider {
    /// OpenID Connect with offline access (`offline_access` and
    /// `prompt=consent`), named `oidc`.
    Oidc,
    /// The same server as plain OAuth 2.0, identified through its userinfo
    /// endpoint as a user API (the way GitHub is configured), named `github`.
    Oauth2,
    /// OpenID Connect without asking for offline access (so no refresh
    /// token comes back), named `no-offline`.
    NoOffline,
    /// OpenID Connect through the device authorization grant (RFC 8628)
    /// with the server's device client, named `device`.
    Device,
}

/// A web-frontend provider entry for the test authorization server.
pub fn web_provider_config(
    oidc: &OidcServer,
    kind: WebProvider,
) -> anyhow::Result<tokenvault_web_frontend::provider::ProviderConfig> {
    let (client_id, client_secret) = match kind {
        WebProvider::Device => (
            crate::oidc::DEVICE_CLIENT_ID,
            crate::oidc::DEVICE_CLIENT_SECRET,
        ),
        _ => (crate::oidc::CLIENT_ID, crate::oidc::CLIENT_SECRET),
    };
    let credentials = format!(
        "client_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\ntimeout_secs = 3\n"
    );
    let entry = match kind {
        WebProvider::Oidc => format!(
            r#"name = "oidc"
display_name = "Test OpenID Provider"
issuer = "{issuer}"
scopes = ["openid", "email", "offline_access"]
auth_params = {{ prompt = "consent" }}
"#,
            issuer = oidc.issuer()
        ),
        WebProvider::Oauth2 => format!(
            r#"name = "github"
display_name = "OAuth 2.0 (GitHub-style)"
kind = "oauth2"
authorization_endpoint = "{auth}"
token_endpoint = "{token}"
user_endpoint = "{user}"
subject_field = "sub"
scopes = ["openid", "offline_access"]
auth_params = {{ prompt = "consent" }}
"#,
            auth = oidc.authorization_endpoint(),
            token = oidc.token_endpoint(),
            user = oidc.userinfo_endpoint()
        ),
        WebProvider::NoOffline => format!(
            r#"name = "no-offline"
display_name = "Without offline access"
issuer = "{issuer}"
scopes = ["openid", "email"]
"#,
            issuer = oidc.issuer()
        ),
        WebProvider::Device => format!(
            r#"name = "device"
display_name = "Test OpenID Provider (device flow)"
issuer = "{issuer}"
scopes = ["openid", "email", "offline_access"]
device_authorization_endpoint = "{issuer}/device/auth"
"#,
            issuer = oidc.issuer()
        ),
    };
    Ok(toml::from_str(&format!("{entry}{credentials}"))?)
}

/// Starts web-frontend on `listener` (bound beforehand, so that its address
/// can be registered as a redirect URI before it starts).
pub async fn start_web_frontend(
    listener: std::net::TcpListener,
    config: tokenvault_web_frontend::Config,
) -> anyhow::Result<RunningService> {
    listener.set_nonblocking(true)?;
    spawn_service(TcpListener::from_std(listener)?, |listeners, rx| {
        tokenvault_web_frontend::run(listeners, config, async {
            let _ = rx.await;
        })
    })
    .await
}

/// Writes a secret file as services expect one: owner-only (0600).
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
