//! The whole system started in one process for end-to-end tests and
//! benchmarks: a PKI, a store, the real authorization server (npm
//! `oidc-provider`), set-service, get-service, web-frontend and a worker
//! client.

use std::time::Duration;

use tokenvault_get_service::config::CacheConfig;
use tokenvault_opener::PrivateKeyRing;
use tokenvault_proto::v1::StoreRefreshTokenRequest;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_seal::PublicKeySet;
use tokenvault_store::{Latest, TokenReader};
use tokenvault_tls::Role;
use tokenvault_worker::{WorkerClient, WorkerConfig};

use crate::logs::{assert_not_logged, init_tracing};
use crate::oidc::{DEFAULT_REDIRECT_URI, OidcOptions, OidcServer, Tokens};
use crate::pki::TestPki;
use crate::services::{
    RunningService, WebProvider, get_service_config, grpc_channel, oidc_provider_config,
    set_service_config, start_get_service, start_set_service, start_set_service_at,
    start_web_frontend, web_frontend_config, web_provider_config,
};
use crate::store::{Backend, TestStore};
use crate::web::WebBrowser;

/// How to start the system.
#[derive(Debug)]
pub struct Options {
    /// The store backend.
    pub backend: Backend,
    /// Access-token lifetime at the authorization server.
    pub access_token_ttl: Duration,
    /// get-service's cache settings.
    pub cache: CacheConfig,
    /// Per-call provider timeout.
    pub provider_timeout_secs: u64,
    /// web-frontend's providers.
    pub web_providers: Vec<WebProvider>,
    /// How long a web sign-in stays valid.
    pub sign_in_ttl_secs: u64,
    /// get-service's revocation sweep: provider calls per sweep.
    pub revocation_batch_size: u32,
    /// get-service's providers: each a name for the one authorization
    /// server (so that a policy can tell providers apart).
    pub get_providers: Vec<&'static str>,
    /// Which of them get-service narrows scopes at (`narrow_scopes`).
    pub narrowing_providers: Vec<&'static str>,
    /// get-service's providers' `keep_alive_days`.
    pub keep_alive_days: Option<f64>,
    /// get-service's account policy rules (a rule file's text), written to
    /// [`System::policy_file`].
    pub policy: Option<String>,
    /// set-service's webhook endpoints (none by default); see
    /// [`crate::webhook_receiver::WebhookReceiver::endpoint`].
    pub webhooks: Vec<tokenvault_set_service::config::WebhookConfig>,
    /// Identities set-service admits to `StoreRefreshToken` besides its
    /// defaults (e.g. an import's).
    pub set_store_allow: Vec<tokenvault_tls::IdentityPattern>,
    /// Provider-catalogue entries configured in web-frontend and
    /// get-service under their own names, pointed at the authorization
    /// server (see [`crate::catalogue`]).
    pub catalogue: Vec<&'static str>,
    /// get-service providers for the authorization server's
    /// client-credentials client (`GetClientAccessToken`).
    pub client_credentials: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            access_token_ttl: Duration::from_secs(60),
            cache: CacheConfig {
                refresh_ahead_secs: 0,
                negative_ttl_secs: 300,
                refresh_deadline_secs: 4,
                revalidate_secs: 1,
                sweep_secs: 1,
            },
            provider_timeout_secs: 1,
            web_providers: vec![
                WebProvider::Oidc,
                WebProvider::Oauth2,
                WebProvider::NoOffline,
            ],
            sign_in_ttl_secs: 600,
            revocation_batch_size: 100,
            get_providers: vec!["oidc"],
            narrowing_providers: vec![],
            keep_alive_days: None,
            policy: None,
            webhooks: Vec::new(),
            catalogue: Vec::new(),
            client_credentials: Vec::new(),
            set_store_allow: Vec::new(),
        }
    }
}

/// The whole system in one process: PKI, store, authorization server,
/// set-service, get-service, web-frontend and a worker client.
#[allow(missing_debug_implementations)]
pub struct System {
    /// Certificates and keys.
    pub pki: TestPki,
    /// The store.
    pub store: TestStore,
    /// The authorization server.
    pub oidc: OidcServer,
    /// set-service.
    pub set: RunningService,
    set_config: tokenvault_set_service::Config,
    /// get-service.
    pub get: RunningService,
    /// web-frontend.
    pub web: RunningService,
    /// web-frontend's public URL (`http://127.0.0.1:<port>`).
    pub web_url: String,
    /// The token-encryption public keys.
    pub keys: PublicKeySet,
    /// A worker client with a `worker/e2e` certificate.
    pub worker: WorkerClient,
    /// Every token the test saw, to check the logs for.
    pub secrets: Vec<String>,
    /// Accounts connected through [`System::connect`].
    connected: Vec<String>,
}

impl System {
    /// Starts everything.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        init_tracing();
        let pki = TestPki::new()?;
        let store = TestStore::new(options.backend).await;
        // web-frontend's port is known first, to register its redirect URI.
        let web_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let web_url = format!("http://127.0.0.1:{}", web_listener.local_addr()?.port());
        let oidc = OidcServer::start_with(OidcOptions {
            access_token_ttl: options.access_token_ttl,
            redirect_uris: vec![
                DEFAULT_REDIRECT_URI.to_owned(),
                format!("{web_url}/callback"),
            ],
        })
        .await?;
        if options.backend == Backend::Sqlite {
            // Create and migrate the file now (set-service would do it as it
            // starts), so that row counts can be read at once.
            tokenvault_store::TokenWriter::connect(&store.writer_url).await?;
        }
        let mut set_config = set_service_config(&pki, &store.writer_url)?;
        set_config.webhooks = options.webhooks.clone();
        set_config
            .allow
            .store_refresh_token
            .extend(options.set_store_allow.iter().cloned());
        set_config
            .providers
            .extend(options.catalogue.iter().map(|name| (*name).to_owned()));
        if options.web_providers.contains(&WebProvider::Device) {
            set_config.providers.push("device".to_owned());
        }
        let set = start_set_service(set_config.clone()).await?;
        // The SQLite reader needs the file the writer creates.
        let _ = TokenReader::connect(&store.reader_url).await;
        let mut get_providers = Vec::new();
        for name in &options.get_providers {
            let mut provider = oidc_provider_config(&oidc, options.provider_timeout_secs)?;
            provider.name = (*name).to_owned();
            provider.narrow_scopes = options.narrowing_providers.contains(name);
            provider.keep_alive_days = options.keep_alive_days;
            get_providers.push(provider);
        }
        for name in &options.catalogue {
            get_providers.push(crate::catalogue::get_provider(
                &oidc,
                name,
                options.provider_timeout_secs,
            )?);
        }
        if options.web_providers.contains(&WebProvider::Device) {
            get_providers.push(crate::services::device_provider_config(
                &oidc,
                options.provider_timeout_secs,
            )?);
        }
        for name in &options.client_credentials {
            get_providers.push(crate::services::client_credentials_provider_config(
                &oidc,
                name,
                options.provider_timeout_secs,
            )?);
        }
        let mut get_config =
            get_service_config(&pki, &store.reader_url, &set.address(), get_providers)?;
        if let Some(rules) = &options.policy {
            let path = pki.scratch().join("policy.toml");
            write_policy(&path, rules)?;
            get_config.policy.file = Some(path);
        }
        get_config.cache = options.cache;
        get_config.revocation.batch_size = options.revocation_batch_size;
        let get = start_get_service(get_config).await?;
        let mut web_providers = options
            .web_providers
            .iter()
            .map(|kind| web_provider_config(&oidc, *kind))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for name in &options.catalogue {
            web_providers.push(crate::catalogue::web_provider(&oidc, name)?);
        }
        let mut web_config = web_frontend_config(&pki, &web_url, &set.address(), web_providers)?;
        web_config.session.sign_in_ttl_secs = options.sign_in_ttl_secs;
        let web = start_web_frontend(web_listener, web_config).await?;
        let worker = WorkerClient::new(&WorkerConfig {
            address: get.address(),
            trust_domain: crate::pki::TRUST_DOMAIN.to_owned(),
            tls: pki.issue(Role::Worker, Some("e2e"))?,
        })?;
        let keys = PublicKeySet::load_dir(&pki.public_keys_dir())?;
        Ok(Self {
            pki,
            store,
            oidc,
            set,
            set_config,
            get,
            web,
            web_url,
            keys,
            worker,
            secrets: Vec::new(),
            connected: Vec::new(),
        })
    }

    /// Signs `account` in at the authorization server, then stores its
    /// refresh token through set-service as web-frontend would.
    pub async fn connect(&mut self, account: &str) -> anyhow::Result<Tokens> {
        self.connect_at(account, "oidc").await
    }

    /// [`System::connect`] under another of get-service's provider names.
    pub async fn connect_at(&mut self, account: &str, provider: &str) -> anyhow::Result<Tokens> {
        let tokens = self.oidc.obtain_refresh_token(account).await?;
        self.secrets.push(tokens.refresh_token.clone());
        self.secrets.push(tokens.access_token.clone());
        self.connected.push(account.to_owned());
        let web = self.pki.issue(Role::WebFrontend, None)?;
        let mut client =
            SetServiceClient::new(grpc_channel(&self.set.address(), &web, Role::SetService)?);
        client
            .store_refresh_token(StoreRefreshTokenRequest {
                expected_version: None,
                account: account.into(),
                provider: provider.into(),
                sealed_token: self
                    .keys
                    .seal(account, provider, tokens.refresh_token.as_bytes())?,
                metadata_json: String::new(),
                refresh_token_expires_at_unix: 0,
            })
            .await?;
        Ok(tokens)
    }

    /// A worker client with a `worker/<name>` certificate.
    pub fn worker_named(&self, name: &str) -> anyhow::Result<WorkerClient> {
        self.worker_with(&self.pki.issue(Role::Worker, Some(name))?)
    }

    /// A worker client (the Rust library, following its files) with the
    /// certificate `tls`.
    pub fn worker_with(&self, tls: &tokenvault_tls::TlsFiles) -> anyhow::Result<WorkerClient> {
        Ok(WorkerClient::new(&WorkerConfig {
            address: self.get.address(),
            trust_domain: crate::pki::TRUST_DOMAIN.to_owned(),
            tls: tls.clone(),
        })?)
    }

    /// Where get-service's account policy rules are (with [`Options::policy`]).
    pub fn policy_file(&self) -> std::path::PathBuf {
        self.pki.scratch().join("policy.toml")
    }

    /// Replaces the rule file with `rules`, as an operator's deploy would:
    /// written beside it, then renamed over it.
    pub fn replace_policy(&self, rules: &str) -> anyhow::Result<()> {
        write_policy(&self.policy_file(), rules)
    }

    /// A browser (no cookies yet) for web-frontend.
    pub fn browser(&self) -> anyhow::Result<WebBrowser> {
        WebBrowser::new(&self.web_url)
    }

    /// Every table's row count, to show that a failure stored nothing.
    pub async fn row_counts(&self) -> anyhow::Result<tokenvault_store::RowCounts> {
        let admin = tokenvault_store::StoreAdmin::connect(&self.store.owner_url).await?;
        let counts = admin.count_rows().await?;
        admin.close().await;
        Ok(counts)
    }

    /// Remembers `account` (connected through web-frontend) so that
    /// [`System::stop`] checks its stored token against the logs.
    pub fn remember_connected(&mut self, account: &str) {
        self.connected.push(account.to_owned());
    }

    /// Waits (up to `within`) until the stored refresh token of `account`
    /// differs from `old` (a rotation is stored after callers get their
    /// access token), and returns it.
    pub async fn stored_token_other_than(
        &mut self,
        account: &str,
        old: &str,
        within: Duration,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let now = self.stored_refresh_token(account).await?;
            if now != old {
                return Ok(now);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("the stored refresh token of {account} did not change");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops set-service, to be restarted with [`System::restart_set_service`].
    pub async fn stop_set_service(&mut self) -> anyhow::Result<()> {
        let addr = self.set.addr;
        let running = std::mem::replace(&mut self.set, RunningService::stopped(addr));
        running.stop().await
    }

    /// Starts set-service again on the address it had.
    pub async fn restart_set_service(&mut self) -> anyhow::Result<()> {
        self.set = start_set_service_at(self.set_config.clone(), self.set.addr).await?;
        Ok(())
    }

    /// An access token through the worker client, or the status code.
    pub async fn token(&mut self, account: &str, min_ttl: u64) -> Result<String, tonic::Code> {
        match self
            .worker
            .access_token(account, "oidc", Duration::from_secs(min_ttl))
            .await
        {
            Ok(t) => {
                self.secrets.push(t.secret().to_owned());
                Ok(t.secret().to_owned())
            }
            Err(e) => Err(e.code().unwrap_or(tonic::Code::Unknown)),
        }
    }

    /// The refresh token stored now for (`account`, `oidc`), opened.
    pub async fn stored_refresh_token(&mut self, account: &str) -> anyhow::Result<String> {
        self.stored_refresh_token_of(account, "oidc").await
    }

    /// The refresh token stored now for (`account`, `provider`), opened.
    pub async fn stored_refresh_token_of(
        &mut self,
        account: &str,
        provider: &str,
    ) -> anyhow::Result<String> {
        let reader = TokenReader::connect(&self.store.reader_url).await?;
        let Latest::Token { sealed_token, .. } = reader.latest(account, provider).await? else {
            anyhow::bail!("nothing stored for {account} at {provider}")
        };
        let ring = PrivateKeyRing::load_dir(&self.pki.private_keys_dir())?;
        let opened = ring.open(&sealed_token, account, provider)?;
        let token = String::from_utf8(opened.to_vec())?;
        self.secrets.push(token.clone());
        Ok(token)
    }

    pub async fn refreshes(&self) -> anyhow::Result<u64> {
        Ok(self.oidc.counters().await?.refresh_grants)
    }

    pub fn assert_no_secret_logged(&self) {
        for s in &self.secrets {
            assert_not_logged(s, "a token");
        }
    }

    /// Stops the services, after checking that no token the test saw, nor
    /// any refresh token stored now (rotated ones included), was logged.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for account in std::mem::take(&mut self.connected) {
            // Disconnected accounts have nothing stored; that is fine here.
            let _ = self.stored_refresh_token(&account).await;
        }
        self.assert_no_secret_logged();
        self.web.stop().await?;
        self.get.stop().await?;
        self.set.stop().await
    }

    /// An account-inventory client (the worker crate's `AdminClient`, as the
    /// `tokenvault-admin` CLI uses it) with an `admin/<name>` certificate.
    pub fn admin_named(&self, name: &str) -> anyhow::Result<tokenvault_worker::admin::AdminClient> {
        Ok(tokenvault_worker::admin::AdminClient::new(&WorkerConfig {
            address: self.get.address(),
            trust_domain: crate::pki::TRUST_DOMAIN.to_owned(),
            tls: self.pki.issue(Role::Admin, Some(name))?,
        })?)
    }

    /// Stops get-service (graceful: open calls and streams end first);
    /// [`System::stop`] then has nothing left to stop there.
    pub async fn stop_get_service(&mut self) -> anyhow::Result<()> {
        let addr = self.get.addr;
        let running = std::mem::replace(&mut self.get, RunningService::stopped(addr));
        running.stop().await
    }
}

/// Writes a rule file (mode 0644) at `path` whole, so that get-service reads
/// the old file or the new one.
pub fn write_policy(path: &std::path::Path, rules: &str) -> anyhow::Result<()> {
    Ok(tokenvault_runtime::files::replace_file(
        path,
        rules.as_bytes(),
        0o644,
    )?)
}
