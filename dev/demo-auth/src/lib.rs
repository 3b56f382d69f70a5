//! **DEVELOPMENT ONLY.** A tiny OAuth 2.0 authorization server built into
//! tokenvault so that a newcomer running the quick start can click through
//! the signup flow without registering an app at a real provider. It is not
//! an identity provider: anyone who can reach it can "sign in" as any demo
//! user name, with no password. Never point real accounts or a public
//! network at it; it listens on 127.0.0.1 by default.
//!
//! What it does: one registered confidential client (`--client-id`,
//! `--client-secret`, exactly one `--redirect-uri`); the authorization-code
//! grant with PKCE S256 required; refresh tokens rotated on every use with
//! reuse detection (a rotated refresh token presented again revokes the
//! whole grant); RFC 7009 revocation; a user API (`/userinfo`, `sub` = the
//! demo user name); RFC 8414 metadata.
//!
//! What it holds: demo tokens only, and only as SHA-256 fingerprints, in
//! memory and, with `--state-file`, in a 0600 JSON file written atomically
//! (so connected demo accounts keep working across restarts). The tokens it
//! hands out are in no log line.
//!
//! - `authorize`: the sign-in and consent page;
//! - `oauth`: `/token`, `/revoke`, `/userinfo`, metadata;
//! - `grants`, `store`: codes, grants, rotation, the state file;
//! - `request`, `token`, `pages`: parsing, client authentication, tokens,
//!   HTML.
#![forbid(unsafe_code)]

mod authorize;
mod grants;
mod oauth;
mod pages;
mod request;
mod store;
mod token;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokenvault_runtime::secret::Secret;
use tokio::net::TcpListener;
use url::Url;

pub use authorize::DEFAULT_USERNAME;
pub use grants::CODE_TTL_SECS;

/// `--listen`.
pub const ENV_LISTEN: &str = "TOKENVAULT_DEMO_AUTH_LISTEN";
/// `--client-id`.
pub const ENV_CLIENT_ID: &str = "TOKENVAULT_DEMO_AUTH_CLIENT_ID";
/// `--client-secret`.
pub const ENV_CLIENT_SECRET: &str = "TOKENVAULT_DEMO_AUTH_CLIENT_SECRET";
/// `--redirect-uri`.
pub const ENV_REDIRECT_URI: &str = "TOKENVAULT_DEMO_AUTH_REDIRECT_URI";
/// `--state-file`.
pub const ENV_STATE_FILE: &str = "TOKENVAULT_DEMO_AUTH_STATE_FILE";
/// `--access-token-ttl-secs`.
pub const ENV_ACCESS_TOKEN_TTL_SECS: &str = "TOKENVAULT_DEMO_AUTH_ACCESS_TOKEN_TTL_SECS";
/// `--issuer`.
pub const ENV_ISSUER: &str = "TOKENVAULT_DEMO_AUTH_ISSUER";
/// The default listen address (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7404";
/// The default client id.
pub const DEFAULT_CLIENT_ID: &str = "tokenvault-demo";
/// The default access-token lifetime.
pub const DEFAULT_ACCESS_TOKEN_TTL_SECS: u64 = 3600;
/// The longest access-token lifetime accepted (one day).
pub const MAX_ACCESS_TOKEN_TTL_SECS: u64 = 86_400;
/// The largest request body read.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The startup warning, also in `--help`.
pub const DEVELOPMENT_ONLY: &str = "DEVELOPMENT ONLY: this demo authorization server lets anyone who can reach it \
     sign in as any made-up user without a password. Use it only to try tokenvault out on your own machine.";

/// The server's settings.
#[derive(Clone)]
pub struct Config {
    /// The one registered client.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// The one registered redirect URI, compared character for character.
    pub redirect_uri: String,
    /// The issuer URL; `None`: `http://<listen address>`.
    pub issuer: Option<String>,
    /// Where grants are kept across restarts; `None`: memory only.
    pub state_file: Option<PathBuf>,
    /// Access-token lifetime in seconds.
    pub access_token_ttl_secs: u64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .field("issuer", &self.issuer)
            .field("state_file", &self.state_file)
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .finish()
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong; the message names it.
    #[error("{0}")]
    Config(String),
    /// The state file cannot be read.
    #[error("state file {path}: {message}")]
    StateFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Serving failed.
    #[error("serve: {0}")]
    Io(#[from] std::io::Error),
}

fn check_url(setting: &str, value: &str) -> Result<Url, Error> {
    let url = Url::parse(value).map_err(|e| Error::Config(format!("{setting}: {value:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.fragment().is_some() {
        return Err(Error::Config(format!(
            "{setting}: {value:?} must be an http(s) URL without a #fragment"
        )));
    }
    Ok(url)
}

impl Config {
    /// Checks the settings; the error names the flag.
    pub fn validate(&self) -> Result<(), Error> {
        if self.client_id.is_empty()
            || self.client_id.len() > 128
            || self.client_id.chars().any(char::is_control)
        {
            return Err(Error::Config(
                "--client-id: 1-128 characters without control characters".into(),
            ));
        }
        if self.client_secret.is_empty() {
            return Err(Error::Config("--client-secret: must not be empty".into()));
        }
        check_url("--redirect-uri", &self.redirect_uri)?;
        if let Some(issuer) = &self.issuer {
            let url = check_url("--issuer", issuer)?;
            if url.query().is_some() {
                return Err(Error::Config(
                    "--issuer: an issuer has no query string".into(),
                ));
            }
        }
        if !(1..=MAX_ACCESS_TOKEN_TTL_SECS).contains(&self.access_token_ttl_secs) {
            return Err(Error::Config(format!(
                "--access-token-ttl-secs: between 1 and {MAX_ACCESS_TOKEN_TTL_SECS}"
            )));
        }
        Ok(())
    }
}

/// Shared by the handlers.
#[derive(Clone, Debug)]
pub(crate) struct AppState(Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: Config,
    /// Without a trailing slash.
    pub issuer: String,
    pub store: store::Store,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

async fn home(State(app): State<AppState>) -> Response {
    pages::home(&app.issuer, &app.config.client_id, &app.config.redirect_uri).into_response()
}

async fn style() -> Response {
    let mut r = pages::STYLE.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600"),
    );
    r
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found() -> Response {
    (
        axum::http::StatusCode::NOT_FOUND,
        pages::error(
            "Not found",
            "This demo authorization server has no such page.",
        ),
    )
        .into_response()
}

/// Security headers on every response; nothing is cached unless a handler
/// says otherwise.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/authorize", get(authorize::show).post(authorize::decide))
        .route("/token", post(oauth::token))
        .route("/revoke", post(oauth::revoke))
        .route("/userinfo", get(oauth::userinfo))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::well_known),
        )
        .route("/static/style.css", get(style))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Serves the demo authorization server on `listener` until `shutdown`
/// resolves. DEVELOPMENT ONLY.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    config.validate()?;
    let local = listener.local_addr()?;
    let issuer = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{local}"))
        .trim_end_matches('/')
        .to_owned();
    let store =
        store::Store::open(config.state_file.clone()).map_err(|message| Error::StateFile {
            path: config.state_file.clone().unwrap_or_default(),
            message,
        })?;
    tracing::warn!("{DEVELOPMENT_ONLY}");
    if !local.ip().is_loopback() {
        tracing::warn!(listen = %local, "the demo authorization server listens beyond this machine: anyone who reaches it can sign in as anyone");
    }
    let grants = store.grant_count().await;
    tracing::info!(
        listen = %local,
        %issuer,
        client_id = %config.client_id,
        redirect_uri = %config.redirect_uri,
        state_file = ?config.state_file,
        grants,
        "demo authorization server serving"
    );
    let app = router(AppState(Arc::new(Inner {
        config,
        issuer,
        store,
    })));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("demo authorization server stopped");
    Ok(())
}
