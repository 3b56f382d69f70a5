//! The whole system with every service as a separate process: PostgreSQL
//! (a private cluster, or a fresh database on the shared server), the real
//! authorization server (npm `oidc-provider`), and the release binaries of
//! set-service, get-service and web-frontend, with certificates from a
//! [`TestPki`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use tokenvault_get_service::config::CacheConfig;
use tokenvault_opener::PrivateKeyRing;
use tokenvault_proto::v1::AccountStatus;
use tokenvault_store::{Latest, RowCounts, StoreAdmin, TokenReader};
use tokenvault_tls::{Role, TlsFiles};
use tokenvault_web_frontend::link::{LinkAction, LinkSigner};
use tokenvault_worker::{WorkerClient, WorkerConfig};

use super::audit::AuditTable;
use super::command::{CommandOutput, run_async};
use super::postgres::{PgCluster, StoreUrls};
use super::process::{ServiceProcess, ServiceSpec};
use super::{binary, free_ports, tail, toml_path, toml_string, workspace_root};
use crate::logs::{captured_logs, init_tracing};
use crate::oidc::{
    CLIENT_ID, CLIENT_SECRET, DEFAULT_REDIRECT_URI, Decision, OidcOptions, OidcServer,
};
use crate::pki::{TRUST_DOMAIN, TestPki};
use crate::services::{LINK_SECRET, write_secret_file};
use crate::store::TestStore;
use crate::web::{Page, WebBrowser};

/// The provider name of the authorization server, in every service.
const PROVIDER: &str = "oidc";
/// How long one Python or Rust worker run may take.
const WORKER_RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the store lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// A fresh database on the shared server (127.0.0.1:5432), for tests
    /// that do not stop PostgreSQL.
    Shared,
    /// A private cluster ([`PgCluster`]) that the test may crash and restart.
    Private,
}

/// How to start a [`ProcSystem`].
#[derive(Debug, Clone)]
pub struct ProcOptions {
    /// Where the store lives.
    pub database: Database,
    /// Access-token lifetime at the authorization server.
    pub access_token_ttl: Duration,
    /// get-service's cache settings.
    pub cache: CacheConfig,
    /// get-service's time limit for one call to the provider.
    pub provider_timeout_secs: u64,
    /// get-service's `[shutdown]`: seconds of drain and of grace.
    pub get_shutdown: (u64, u64),
    /// Whether both gRPC services write the audit table (and get-service
    /// serves its metrics; then it has no replicas).
    pub audit: Option<AuditTable>,
    /// `[[webhooks]]` tables appended to set-service's config, as written.
    pub set_webhooks_toml: Option<String>,
}

impl Default for ProcOptions {
    fn default() -> Self {
        Self {
            database: Database::Shared,
            access_token_ttl: Duration::from_secs(60),
            cache: CacheConfig {
                refresh_ahead_secs: 0,
                negative_ttl_secs: 300,
                refresh_deadline_secs: 10,
                revalidate_secs: 1,
                sweep_secs: 1,
            },
            provider_timeout_secs: 5,
            get_shutdown: (0, 10),
            audit: None,
            set_webhooks_toml: None,
        }
    }
}

/// The store, kept alive for the system's life.
#[derive(Debug)]
enum StoreHandle {
    Shared(TestStore),
    Private(PgCluster),
}

/// What the Python worker printed.
#[derive(Debug, Clone)]
pub struct PythonReply {
    /// `OK` or the gRPC status name, e.g. `PERMISSION_DENIED`.
    pub code: String,
    /// The access token, on `OK`.
    pub access_token: Option<String>,
    /// The status message, on an error.
    pub details: Option<String>,
    /// The whole JSON reply.
    pub raw: Value,
}

/// The whole system as separate processes. Every process is killed when
/// this is dropped (services first, then the authorization server and
/// PostgreSQL).
#[allow(missing_debug_implementations)]
pub struct ProcSystem {
    /// set-service.
    pub set: ServiceProcess,
    /// get-service (its first replica).
    pub get: ServiceProcess,
    /// Further get-service replicas ([`ProcSystem::add_get_replicas`]),
    /// sharing the store.
    pub replicas: Vec<ServiceProcess>,
    /// web-frontend.
    pub web: ServiceProcess,
    /// The authorization server.
    pub oidc: OidcServer,
    /// web-frontend's public URL, `http://127.0.0.1:<port>`.
    pub web_url: String,
    /// The store's role URLs.
    pub urls: StoreUrls,
    /// A worker client (the Rust library) with a `worker/e2e` certificate.
    pub worker: WorkerClient,
    /// That worker's certificate files.
    pub worker_tls: TlsFiles,
    /// The certificate files web-frontend runs with.
    pub web_tls: TlsFiles,
    /// Every token the test saw, to check the logs for.
    pub secrets: Vec<String>,
    /// Certificates and keys (after the services, so their files outlive
    /// the processes).
    pub pki: TestPki,
    store: StoreHandle,
    /// The browser that connected each account, for disconnecting it.
    browsers: HashMap<String, WebBrowser>,
    stubs: Option<PathBuf>,
    options: ProcOptions,
    /// get-service's config, with `{port}` and `{journal}` to fill in.
    get_template: String,
    /// get-service's metrics endpoint, if it has one.
    get_metrics_port: Option<u16>,
}

impl ProcSystem {
    /// Starts everything and waits until every service accepts connections.
    pub async fn start(options: ProcOptions) -> anyhow::Result<Self> {
        init_tracing();
        crate::install_crypto_provider();
        // Fail early, with the hint, if the binaries are not built.
        let (set_bin, get_bin, web_bin) = (
            binary("set-service")?,
            binary("get-service")?,
            binary("web-frontend")?,
        );
        let pki = TestPki::new()?;
        let (store, urls) = match options.database {
            Database::Shared => {
                let store = TestStore::postgres().await;
                let urls = StoreUrls {
                    owner: store.owner_url.clone(),
                    writer: store.writer_url.clone(),
                    reader: store.reader_url.clone(),
                };
                (StoreHandle::Shared(store), urls)
            }
            Database::Private => {
                let cluster = PgCluster::start_new().await?;
                let urls = cluster.create_tokenvault_database("tokenvault").await?;
                (StoreHandle::Private(cluster), urls)
            }
        };
        let ports = free_ports(4)?;
        let (set_port, get_port, web_port) = (ports[0], ports[1], ports[2]);
        let get_metrics_port = options.audit.is_some().then_some(ports[3]);
        let audit_table = |url: &str| {
            options
                .audit
                .map(|audit| audit.toml(url))
                .unwrap_or_default()
        };
        let web_url = format!("http://127.0.0.1:{web_port}");
        let oidc = OidcServer::start_with(OidcOptions {
            access_token_ttl: options.access_token_ttl,
            redirect_uris: vec![
                DEFAULT_REDIRECT_URI.to_owned(),
                format!("{web_url}/callback"),
            ],
        })
        .await?;

        let set_tls = pki.issue(Role::SetService, None)?;
        let set_config = format!(
            "listen = \"127.0.0.1:{set_port}\"\n\
             trust_domain = {td}\n\
             public_keys_dir = {public}\n\
             providers = [{provider}]\n\
             {tls}\
             [store]\nurl = {url}\n\
             {audit}\
             {webhooks}",
            td = toml_string(TRUST_DOMAIN),
            public = toml_path(&pki.public_keys_dir()),
            provider = toml_string(PROVIDER),
            tls = tls_table(&set_tls),
            url = toml_string(&urls.writer),
            audit = audit_table(&urls.writer),
            webhooks = options.set_webhooks_toml.clone().unwrap_or_default(),
        );
        let set = ServiceProcess::start(ServiceSpec::new(
            "set-service",
            set_bin,
            set_config,
            set_port,
        ))
        .await?;

        let get_tls = pki.issue(Role::GetService, None)?;
        let cache = &options.cache;
        let get_template = format!(
            "listen = \"127.0.0.1:{{port}}\"\n\
             {metrics}\
             trust_domain = {td}\n\
             private_keys_dir = {private}\n\
             public_keys_dir = {public}\n\
             {tls}\
             [shutdown]\ndrain_secs = {drain}\ngrace_secs = {grace}\n\
             [rotation]\njournal_dir = \"{{journal}}\"\n\
             [store]\nurl = {url}\n\
             [set_service]\naddress = \"127.0.0.1:{set_port}\"\n\
             [cache]\nrefresh_ahead_secs = {ahead}\nnegative_ttl_secs = {negative}\n\
             refresh_deadline_secs = {deadline}\nrevalidate_secs = {revalidate}\nsweep_secs = {sweep}\n\
             [revocation]\ninterval_secs = 1\n\
             [[providers]]\nname = {provider}\nissuer = {issuer}\nclient_id = {id}\n\
             client_secret = {secret}\nclient_auth = \"client_secret_basic\"\n\
             timeout_secs = {timeout}\n\
             {audit}",
            metrics = get_metrics_port
                .map(|port| format!("metrics_listen = \"127.0.0.1:{port}\"\n"))
                .unwrap_or_default(),
            audit = audit_table(&urls.reader),
            td = toml_string(TRUST_DOMAIN),
            private = toml_path(&pki.private_keys_dir()),
            public = toml_path(&pki.public_keys_dir()),
            tls = tls_table(&get_tls),
            drain = options.get_shutdown.0,
            grace = options.get_shutdown.1,
            url = toml_string(&urls.reader),
            ahead = cache.refresh_ahead_secs,
            negative = cache.negative_ttl_secs,
            deadline = cache.refresh_deadline_secs,
            revalidate = cache.revalidate_secs,
            sweep = cache.sweep_secs,
            provider = toml_string(PROVIDER),
            issuer = toml_string(oidc.issuer()),
            id = toml_string(CLIENT_ID),
            secret = toml_string(CLIENT_SECRET),
            timeout = options.provider_timeout_secs,
        );
        let get = start_get_replica(&get_template, &get_bin, get_port, &pki.scratch()).await?;

        let web_tls = pki.issue(Role::WebFrontend, None)?;
        let link_secret = pki.scratch().join("link-secret");
        write_secret_file(&link_secret, LINK_SECRET.as_bytes())?;
        // A fixed cookie key, so that sign-ins survive a web-frontend restart.
        let cookie_key = pki.scratch().join("cookie-key");
        write_secret_file(&cookie_key, &random_bytes(64)?)?;
        let web_config = format!(
            "listen = \"127.0.0.1:{web_port}\"\n\
             public_url = {public_url}\n\
             trust_domain = {td}\n\
             public_keys_dir = {public}\n\
             {tls}\
             [set_service]\naddress = \"127.0.0.1:{set_port}\"\ntimeout_secs = 5\n\
             [session]\nsign_in_ttl_secs = 600\ncookie_key_file = {cookie}\n\
             [links]\nsecret_file = {links}\nmax_lifetime_secs = 3600\n\
             [[providers]]\nname = {provider}\ndisplay_name = \"Test OpenID Provider\"\n\
             issuer = {issuer}\nscopes = [\"openid\", \"email\", \"offline_access\"]\n\
             auth_params = {{ prompt = \"consent\" }}\nclient_id = {id}\n\
             client_secret = {secret}\ntimeout_secs = 5\n",
            public_url = toml_string(&web_url),
            td = toml_string(TRUST_DOMAIN),
            public = toml_path(&pki.public_keys_dir()),
            tls = tls_table(&web_tls),
            cookie = toml_path(&cookie_key),
            links = toml_path(&link_secret),
            provider = toml_string(PROVIDER),
            issuer = toml_string(oidc.issuer()),
            id = toml_string(CLIENT_ID),
            secret = toml_string(CLIENT_SECRET),
        );
        let web = ServiceProcess::start(ServiceSpec::new(
            "web-frontend",
            web_bin,
            web_config,
            web_port,
        ))
        .await?;

        let worker_tls = pki.issue(Role::Worker, Some("e2e"))?;
        let worker = WorkerClient::new(&WorkerConfig {
            address: get.address(),
            trust_domain: TRUST_DOMAIN.to_owned(),
            tls: worker_tls.clone(),
        })?;
        Ok(Self {
            set,
            get,
            replicas: Vec::new(),
            web,
            oidc,
            web_url,
            urls,
            worker,
            worker_tls,
            web_tls,
            secrets: Vec::new(),
            pki,
            store,
            browsers: HashMap::new(),
            stubs: None,
            options,
            get_template,
            get_metrics_port,
        })
    }

    /// Starts `n` more get-service replicas on the same store, each with a
    /// port and a rotation journal of its own.
    pub async fn add_get_replicas(&mut self, n: usize) -> anyhow::Result<()> {
        if self.get_metrics_port.is_some() {
            bail!("replicas would share get-service's metrics port");
        }
        let binary = binary("get-service")?;
        for port in free_ports(n)? {
            let replica =
                start_get_replica(&self.get_template, &binary, port, &self.pki.scratch()).await?;
            self.replicas.push(replica);
        }
        Ok(())
    }

    /// Every get-service replica: the first, then the others.
    pub fn get_replicas(&mut self) -> Vec<&mut ServiceProcess> {
        std::iter::once(&mut self.get)
            .chain(self.replicas.iter_mut())
            .collect()
    }

    /// Every replica's `127.0.0.1:<port>`, comma-separated (a worker's
    /// `address` for all of them).
    pub fn get_addresses(&self) -> String {
        std::iter::once(&self.get)
            .chain(&self.replicas)
            .map(ServiceProcess::address)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A worker client (the Rust library) for `address` with `tls`.
    pub fn worker_at(&self, address: &str, tls: &TlsFiles) -> anyhow::Result<WorkerClient> {
        Ok(WorkerClient::new(&WorkerConfig {
            address: address.to_owned(),
            trust_domain: TRUST_DOMAIN.to_owned(),
            tls: tls.clone(),
        })?)
    }

    /// Connects `login`'s account without the browser: signs in at the
    /// authorization server directly and stores the refresh token through
    /// set-service with the web-frontend certificate, as web-frontend does.
    /// Returns the account id (`oidc:<login>`).
    pub async fn connect_directly(&mut self, login: &str) -> anyhow::Result<String> {
        let account = format!("{PROVIDER}:{login}");
        let tokens = self.oidc.obtain_refresh_token(login).await?;
        self.secrets.push(tokens.refresh_token.clone());
        let keys = tokenvault_seal::PublicKeySet::load_dir(&self.pki.public_keys_dir())?;
        let sealed = keys.seal(&account, PROVIDER, tokens.refresh_token.as_bytes())?;
        let set = tokenvault_set_client::SetClient::new(
            &self.set.address(),
            &self.web_tls,
            TRUST_DOMAIN,
            Duration::from_secs(10),
        )?;
        set.store(&account, PROVIDER, sealed, None).await?;
        Ok(account)
    }

    /// get-service's metrics port, if it serves metrics (with an audit
    /// table).
    pub fn get_metrics_port(&self) -> Option<u16> {
        self.get_metrics_port
    }

    /// The options it was started with.
    pub fn options(&self) -> &ProcOptions {
        &self.options
    }

    /// The fresh database on the shared server ([`Database::Shared`] only).
    pub fn shared_store(&self) -> Option<&TestStore> {
        match &self.store {
            StoreHandle::Shared(store) => Some(store),
            StoreHandle::Private(_) => None,
        }
    }

    /// The private PostgreSQL cluster ([`Database::Private`] only).
    pub fn postgres(&mut self) -> Option<&mut PgCluster> {
        match &mut self.store {
            StoreHandle::Private(cluster) => Some(cluster),
            StoreHandle::Shared(_) => None,
        }
    }

    /// Issues a certificate for `role`/`name`.
    pub fn issue(&self, role: Role, name: Option<&str>) -> anyhow::Result<TlsFiles> {
        self.pki.issue(role, name)
    }

    /// A worker client for get-service with `tls`.
    pub fn worker_with(&self, tls: &TlsFiles) -> anyhow::Result<WorkerClient> {
        Ok(WorkerClient::new(&WorkerConfig {
            address: self.get.address(),
            trust_domain: TRUST_DOMAIN.to_owned(),
            tls: tls.clone(),
        })?)
    }

    /// A browser (no cookies yet) for web-frontend.
    pub fn browser(&self) -> anyhow::Result<WebBrowser> {
        WebBrowser::new(&self.web_url)
    }

    /// Connects `login`'s account at the authorization server through
    /// web-frontend's signup flow, as a browser would (sign in, allow), and
    /// returns the account id web-frontend stored (`oidc:<login>`).
    pub async fn connect(&mut self, login: &str) -> anyhow::Result<String> {
        let mut browser = self.browser()?;
        let page = browser
            .connect(&self.oidc, PROVIDER, "", login, Decision::Allow)
            .await?;
        if page.kind().as_deref() != Some("connected") {
            bail!(
                "connecting {login} ended on a {:?} page (HTTP {}, error {:?})",
                page.kind(),
                page.status(),
                page.error_code()
            );
        }
        let account = page
            .field("account")
            .ok_or_else(|| anyhow!("the connected page names no account"))?;
        self.browsers.insert(account.clone(), browser);
        Ok(account)
    }

    /// Disconnects `account` through web-frontend: with the browser that
    /// connected it if there is one, else with a signed disconnect link.
    /// Returns the page web-frontend answered (`disconnected` on success).
    pub async fn disconnect(&mut self, account: &str) -> anyhow::Result<Page> {
        if let Some(browser) = self.browsers.get_mut(account) {
            return browser
                .post_form(
                    "/disconnect",
                    &[("account", account), ("provider", PROVIDER)],
                )
                .await;
        }
        self.disconnect_with_link(account).await
    }

    /// Disconnects `account` through web-frontend with a signed disconnect
    /// link (as the embedding application would make one), posted from a
    /// fresh browser. Returns the page web-frontend answered.
    pub async fn disconnect_with_link(&mut self, account: &str) -> anyhow::Result<Page> {
        let signer = LinkSigner::new(LINK_SECRET.as_bytes(), 3600).map_err(anyhow::Error::msg)?;
        let expires = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)?
                .as_secs()
                .saturating_add(300),
        )?;
        let url = signer.url(
            &url::Url::parse(&self.web_url)?,
            LinkAction::Disconnect,
            account,
            Some(PROVIDER),
            expires,
            None,
        )?;
        let form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.browser()?.post_form("/disconnect", &form).await
    }

    /// An access token through the Rust worker library, or the status code.
    pub async fn token(&mut self, account: &str, min_ttl: u64) -> Result<String, tonic::Code> {
        match self
            .worker
            .access_token(account, PROVIDER, Duration::from_secs(min_ttl))
            .await
        {
            Ok(t) => {
                self.secrets.push(t.secret().to_owned());
                Ok(t.secret().to_owned())
            }
            Err(e) => Err(e.code().unwrap_or(tonic::Code::Unknown)),
        }
    }

    /// The account's status as get-service reports it.
    pub async fn status(&self, account: &str) -> anyhow::Result<(AccountStatus, String)> {
        Ok(self.worker.account_status(account, PROVIDER).await?)
    }

    /// The newest stored row of `account`, read as the reader role.
    pub async fn latest(&self, account: &str) -> anyhow::Result<Latest> {
        let reader = TokenReader::connect(&self.urls.reader).await?;
        let latest = reader.latest(account, PROVIDER).await;
        reader.close().await;
        Ok(latest?)
    }

    /// The version of the newest stored token of `account` (`None` if none
    /// is stored or it was disconnected).
    pub async fn stored_version(&self, account: &str) -> anyhow::Result<Option<i64>> {
        Ok(match self.latest(account).await? {
            Latest::Token { version, .. } => Some(version),
            Latest::Disconnected | Latest::NotFound => None,
        })
    }

    /// Waits (up to `within`) until a token newer than version `after` is
    /// stored for `account` (a rotation is stored after callers get their
    /// access token), and returns its version.
    pub async fn wait_for_version_after(
        &self,
        account: &str,
        after: i64,
        within: Duration,
    ) -> anyhow::Result<i64> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(version)) = self.stored_version(account).await
                && version > after
            {
                return Ok(version);
            }
            if Instant::now() > deadline {
                bail!(
                    "no token newer than version {after} was stored for {account} within {within:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The refresh token stored now for `account`, opened (and remembered
    /// as a secret to check the logs for).
    pub async fn stored_refresh_token(&mut self, account: &str) -> anyhow::Result<String> {
        let Latest::Token { sealed_token, .. } = self.latest(account).await? else {
            bail!("no token is stored for {account}");
        };
        let ring = PrivateKeyRing::load_dir(&self.pki.private_keys_dir())?;
        let opened = ring.open(&sealed_token, account, PROVIDER)?;
        let token = String::from_utf8(opened.to_vec())?;
        self.secrets.push(token.clone());
        Ok(token)
    }

    /// Whether the refresh token stored now for `account` is the live one at
    /// the authorization server (RFC 7662 introspection says `active`). The
    /// server rotates refresh tokens, so a stored token that is no longer
    /// active means a newer one exists only in get-service's memory, or was
    /// lost. Introspection does not consume the token.
    pub async fn stored_token_is_live(&mut self, account: &str) -> anyhow::Result<bool> {
        let token = self.stored_refresh_token(account).await?;
        let introspection = self.oidc.introspect(&token).await?;
        Ok(introspection.get("active") == Some(&Value::Bool(true)))
    }

    /// Every table's row count, read as the owner.
    pub async fn row_counts(&self) -> anyhow::Result<RowCounts> {
        let admin = StoreAdmin::connect(&self.urls.owner).await?;
        let counts = admin.count_rows().await;
        admin.close().await;
        Ok(counts?)
    }

    /// Runs the Python grpcio worker (`tests/interop/python_worker.py`, its
    /// stubs generated from `proto/` once per system) against get-service
    /// with `tls`, asking for `account`'s token valid for `min_ttl` seconds.
    pub async fn python_worker(
        &mut self,
        tls: &TlsFiles,
        account: &str,
        min_ttl: u64,
    ) -> anyhow::Result<PythonReply> {
        let stubs = match &self.stubs {
            Some(dir) => dir.clone(),
            None => {
                let dir = self.pki.scratch().join("python-stubs");
                python_stubs(&dir).await?;
                self.stubs = Some(dir.clone());
                dir
            }
        };
        let mut command = Command::new(python());
        command
            .arg(python_worker_script())
            .arg(&stubs)
            .arg(self.get.localhost_address())
            .arg(&tls.ca)
            .arg(&tls.cert)
            .arg(&tls.key)
            .arg(account)
            .arg(PROVIDER)
            .arg(min_ttl.to_string());
        let out = run_async(command, WORKER_RUN_TIMEOUT)
            .await?
            .success("python_worker.py")?;
        let raw: Value = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("python_worker.py printed {:?}", out.stdout))?;
        let text = |name: &str| raw.get(name).and_then(Value::as_str).map(str::to_owned);
        let reply = PythonReply {
            code: text("code").ok_or_else(|| anyhow!("no code in {raw}"))?,
            access_token: text("access_token"),
            details: text("details"),
            raw: raw.clone(),
        };
        if let Some(token) = &reply.access_token {
            self.secrets.push(token.clone());
        }
        Ok(reply)
    }

    /// Runs the release `tokenvault-worker` binary with `tls` and `args`
    /// after the connection flags (e.g. `token --account A --provider oidc
    /// --json`); tokens it prints are remembered as secrets.
    pub async fn worker_cli(
        &mut self,
        tls: &TlsFiles,
        args: &[&str],
    ) -> anyhow::Result<CommandOutput> {
        let mut command = Command::new(binary("tokenvault-worker")?);
        command
            .arg("--address")
            .arg(self.get.address())
            .arg("--trust-domain")
            .arg(TRUST_DOMAIN)
            .arg("--cert")
            .arg(&tls.cert)
            .arg("--key")
            .arg(&tls.key)
            .arg("--ca")
            .arg(&tls.ca)
            .args(args);
        let out = run_async(command, WORKER_RUN_TIMEOUT).await?;
        if let Ok(json) = serde_json::from_str::<Value>(out.stdout.trim())
            && let Some(token) = json.get("access_token").and_then(Value::as_str)
        {
            self.secrets.push(token.to_owned());
        }
        Ok(out)
    }

    /// Every service's log, the PostgreSQL log (private cluster) and this
    /// process's captured log, for leak checks.
    pub fn all_logs(&mut self) -> Vec<(String, String)> {
        let mut logs = vec![
            ("set-service".to_owned(), self.set.logs()),
            ("get-service".to_owned(), self.get.logs()),
            (
                "get-service replicas".to_owned(),
                self.replicas.iter().map(ServiceProcess::logs).collect(),
            ),
            ("web-frontend".to_owned(), self.web.logs()),
            ("this process".to_owned(), captured_logs()),
        ];
        if let Some(pg) = self.postgres() {
            let pg_logs = pg.logs();
            logs.push(("postgresql".to_owned(), pg_logs));
        }
        logs
    }

    /// An error if any token the test saw appears in any log.
    pub fn check_no_secret_logged(&mut self) -> anyhow::Result<()> {
        let secrets = self.secrets.clone();
        for (name, log) in self.all_logs() {
            for secret in &secrets {
                if !secret.is_empty() && log.contains(secret.as_str()) {
                    bail!("a token appeared in the log of {name}");
                }
            }
        }
        Ok(())
    }

    /// Checks that no token the test saw, nor any refresh token stored now
    /// for the accounts connected through the web flow, was logged; then
    /// stops the services with SIGTERM and checks that each exited cleanly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let accounts: Vec<String> = self.browsers.keys().cloned().collect();
        for account in accounts {
            // A disconnected account has nothing stored; that is fine here.
            let _ = self.stored_refresh_token(&account).await;
        }
        self.check_no_secret_logged()?;
        let mut services: Vec<&mut ServiceProcess> = vec![&mut self.web, &mut self.get];
        services.extend(self.replicas.iter_mut());
        services.push(&mut self.set);
        for service in services {
            if !service.is_running() {
                continue;
            }
            let status = service.stop().await?;
            if !status.success() {
                bail!(
                    "{} exited with {status} after SIGTERM; its log:\n{}",
                    service.name(),
                    tail(&service.logs(), 40)
                );
            }
        }
        Ok(())
    }
}

impl Drop for ProcSystem {
    /// After a failure, keeps every log under
    /// `<target>/tokenvault-test-logs/<unique>/` and prints where, with the
    /// end of each.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let dir = super::target_dir()
            .join("tokenvault-test-logs")
            .join(crate::store::unique_name("procs"));
        let _ = std::fs::create_dir_all(&dir);
        let mut report = format!("==== the processes' logs are kept in {}\n", dir.display());
        for (name, log) in self.all_logs() {
            let _ = std::fs::write(dir.join(format!("{}.log", name.replace(' ', "-"))), &log);
            if name != "this process" {
                report.push_str(&format!("==== end of {name}'s log:\n{}\n", tail(&log, 40)));
            }
        }
        #[allow(clippy::print_stdout)]
        {
            println!("{report}");
        }
    }
}

/// Starts a get-service replica from `template` on `port`, journaling in a
/// directory of its own under `scratch`.
async fn start_get_replica(
    template: &str,
    binary: &Path,
    port: u16,
    scratch: &Path,
) -> anyhow::Result<ServiceProcess> {
    let journal = scratch.join(format!("get-service-journal-{port}"));
    let config = template
        .replace("{port}", &port.to_string())
        .replace("{journal}", &journal.display().to_string());
    ServiceProcess::start(ServiceSpec::new(
        "get-service",
        binary.to_owned(),
        config,
        port,
    ))
    .await
}

/// The `[tls]` table for `files`.
fn tls_table(files: &TlsFiles) -> String {
    let mut table = format!(
        "[tls]\ncert = {}\nkey = {}\nca = {}\n",
        toml_path(&files.cert),
        toml_path(&files.key),
        toml_path(&files.ca)
    );
    if let Some(crl) = &files.crl {
        table.push_str(&format!("crl = {}\n", toml_path(crl)));
    }
    table
}

/// `PYTHON`, or `python3`.
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// `tests/interop/python_worker.py`.
pub fn python_worker_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/python_worker.py")
}

/// Request bodies that are no tokenvault request message: garbage (a varint
/// that never ends), field 1 (`account` in every request) cut short, and
/// `account` that is not UTF-8.
pub const UNDECODABLE: [(&str, &[u8]); 3] = [
    ("garbage", &[0xff, 0xff, 0xff, 0xff]),
    ("a field cut short", &[0x0a, 0x10, b'a']),
    ("an account that is not UTF-8", &[0x0a, 0x02, 0xc3, 0x28]),
];

/// Sends `body` (raw bytes, not a message) as one call of `method` (a gRPC
/// path, `/package.Service/Method`) to `address` with grpcio
/// (`tests/interop/raw_call.py`), as `tls`; returns the status name and
/// its details.
pub async fn python_raw_call(
    address: &str,
    tls: &TlsFiles,
    method: &str,
    body: &[u8],
) -> anyhow::Result<(String, String)> {
    let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
    let mut command = Command::new(python());
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/raw_call.py"))
        .arg(address)
        .arg(&tls.ca)
        .arg(&tls.cert)
        .arg(&tls.key)
        .arg(method)
        .arg(hex);
    let out = run_async(command, WORKER_RUN_TIMEOUT)
        .await?
        .success("raw_call.py")?;
    let raw: Value = serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("raw_call.py printed {:?}", out.stdout))?;
    let text = |name: &str| raw.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok((
        text("code").ok_or_else(|| anyhow!("no code in {raw}"))?,
        text("details").unwrap_or_default(),
    ))
}

/// Generates the Python gRPC stubs of `proto/` into `dir` with grpcio-tools.
pub async fn python_stubs(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    // protoc wants the file textually under the -I path: no "..".
    let root = std::fs::canonicalize(workspace_root())?;
    let include = root.join("proto/proto");
    let mut command = Command::new(python());
    command
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&include)
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .arg(include.join("tokenvault/v1/tokenvault.proto"));
    run_async(command, WORKER_RUN_TIMEOUT)
        .await?
        .success("python -m grpc_tools.protoc (pip install -r tests/requirements.txt?)")?;
    Ok(())
}

/// `n` random bytes from the OS.
fn random_bytes(n: usize) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes)
}
