//! tokenvault's web-frontend: the public signup flow. A person picks a
//! provider, signs in there and allows offline access; the frontend exchanges
//! the code, identifies the account, seals the refresh token with the
//! token-encryption **public** key and stores it through set-service over
//! mutual TLS.
//!
//! What it may hold: the public keys, its own `web-frontend` client
//! certificate, provider client secrets, the cookie key and the link secret.
//! It holds no private key and links no code that could open a sealed token
//! (no `tokenvault-get-service`), and it has no database credentials (no
//! `tokenvault-store`). A refresh token passes through memory once, between
//! the code exchange and sealing, and is never written to a response, a
//! cookie, a URL or a log line.
//!
//! - [`config`]: the typed TOML config.
//! - [`provider`]: the catalogue (OIDC with discovery and ID-token
//!   validation; plain OAuth 2.0 with a user API).
//! - [`link`]: connect links signed by the embedding application.
//! - [`signin`]: the sign-in cookies and single-use state.
//! - [`routes`], [`pages`], [`headers`]: the HTTP side; [`device`]: the
//!   device authorization grant (RFC 8628) for hosts without a browser.
//! - [`metrics`]: requests by route and status, served with the certificate
//!   expiry on the optional `metrics_listen` endpoint.
#![forbid(unsafe_code)]

pub mod config;
pub mod device;
pub mod error;
pub mod headers;
pub mod link;
pub mod metrics;
pub mod pages;
pub mod provider;
pub mod routes;
pub mod signin;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokenvault_runtime::settings::ServiceConfig as _;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum_extra::extract::cookie::Key;
use tokenvault_runtime::metrics::{CertExpiry, HttpMetrics, Registry};
use tokenvault_runtime::secret::read_secret_file;
use tokenvault_runtime::settings::Listeners;
use tokenvault_seal::PublicKeySet;
use tokenvault_set_client::SetClient;

pub use config::Config;
pub use error::{ServeError, WebError};

use crate::link::LinkSigner;
use crate::provider::Catalogue;
use crate::routes::{AppState, Inner};
use crate::signin::UsedStates;

/// The shortest cookie key file accepted, in bytes.
pub const MIN_COOKIE_KEY_LEN: usize = 64;
/// The longest cookie key file read, in bytes.
const MAX_COOKIE_KEY_LEN: u64 = 4096;

/// Builds the router for `config` (no network yet).
pub fn router(config: &Config) -> Result<Router, ServeError> {
    router_with_metrics(config, &mut tokenvault_runtime::metrics::new_registry())
}

/// [`router`] that registers its request and certificate metrics in
/// `registry`.
pub fn router_with_metrics(config: &Config, registry: &mut Registry) -> Result<Router, ServeError> {
    build(config, registry, Arc::default())
}

/// The router, its device flows in `devices` (so that a stop can end them).
fn build(
    config: &Config,
    registry: &mut Registry,
    devices: Arc<device::DeviceFlows>,
) -> Result<Router, ServeError> {
    config.validate()?;
    let http_metrics = HttpMetrics::register(registry);
    let expiry = CertExpiry::register(registry);
    let public_url = config.public_url()?;
    let redirect_uri = public_url
        .join("callback")
        .map_err(|e| ServeError::Provider(provider::ProviderError::Misconfigured(e.to_string())))?;
    let catalogue = Catalogue::new(&config.providers, &redirect_uri)?;
    let sealer = PublicKeySet::load(&config.public_keys_dir, config.sealing_kid.as_deref())?;
    tracing::info!(
        sealing_kid = sealer.sealing_kid(),
        "loaded token-encryption public keys"
    );
    let set = SetClient::reporting(
        &config.set_service.address,
        &config.service.tls,
        &config.service.trust_domain,
        std::time::Duration::from_secs(config.set_service.timeout_secs),
        expiry,
    )?;
    let links = config
        .links
        .secret_file
        .as_deref()
        .map(|path| LinkSigner::from_file(path, config.links.max_lifetime_secs))
        .transpose()
        .map_err(ServeError::LinkSecret)?;
    let cookie_key = match &config.session.cookie_key_file {
        Some(path) => {
            let bytes = read_secret_file(path, MAX_COOKIE_KEY_LEN).map_err(|e| {
                ServeError::CookieKey(format!("cannot read {}: {e}", path.display()))
            })?;
            if bytes.len() < MIN_COOKIE_KEY_LEN {
                return Err(ServeError::CookieKey(format!(
                    "{} holds {} bytes; it needs at least {MIN_COOKIE_KEY_LEN} random bytes",
                    path.display(),
                    bytes.len()
                )));
            }
            Key::try_from(&bytes[..]).map_err(|e| ServeError::CookieKey(e.to_string()))?
        }
        None => {
            tracing::warn!(
                "no session.cookie_key_file: using a random cookie key; sign-ins in progress will not survive a restart"
            );
            Key::generate()
        }
    };
    let https = public_url.scheme() == "https";
    let state = AppState(Arc::new(Inner {
        catalogue,
        sealer,
        set,
        links,
        used: UsedStates::default(),
        cookie_key,
        public_url,
        sign_in_ttl_secs: i64::try_from(config.session.sign_in_ttl_secs).unwrap_or(600),
        connected_ttl_secs: i64::try_from(config.session.connected_ttl_secs).unwrap_or(3600),
        devices,
    }));
    Ok(Router::new()
        .route("/", get(routes::home))
        .route("/connect/{provider}", get(routes::connect))
        .route("/callback", get(routes::callback))
        .route("/device/{provider}", post(device::start))
        .route("/device/status/{id}", get(device::status))
        .route(
            "/disconnect",
            get(routes::confirm_disconnect).post(routes::disconnect),
        )
        .route("/static/style.css", get(routes::style))
        .route("/healthz", get(routes::healthz))
        .fallback(routes::not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            https,
            headers::security_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            http_metrics,
            metrics::record,
        )))
}

/// Serves the web-frontend on `listeners` until `shutdown` resolves.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // reqwest and the set-service client use aws-lc-rs, the one crypto
    // provider in the tree.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut registry = tokenvault_runtime::metrics::new_registry();
    let devices = Arc::new(device::DeviceFlows::default());
    let app = build(&config, &mut registry, Arc::clone(&devices))?;
    let _metrics = listeners
        .metrics
        .map(|l| tokenvault_runtime::metrics::serve(l, registry));
    tracing::info!(listen = ?listeners.main.local_addr().ok(), public_url = %config.public_url, "web-frontend serving");
    // On the signal, keep serving for `shutdown.drain_secs` while the load
    // balancer moves browsers away, then finish open requests and stop.
    let drain = config.service.shutdown.drain();
    let shutdown = async move {
        shutdown.await;
        tracing::info!(drain_secs = drain.as_secs(), "web-frontend stopping");
        tokio::time::sleep(drain).await;
    };
    axum::serve(
        listeners.main,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    // Device grants already received are stored within the grace period.
    let grace = config.service.shutdown.grace().saturating_sub(drain);
    if !devices.stop(grace).await {
        tracing::warn!("device flows still storing at the end of the grace period were cut");
    }
    tracing::info!("web-frontend stopped");
    Ok(())
}
