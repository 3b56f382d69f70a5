//! The real OAuth 2.0 / OpenID Connect authorization server for tests: the
//! OpenID-certified npm package `oidc-provider`, run by `tests/oidc/server.mjs`
//! as a child process on 127.0.0.1.
//!
//! Install it once with `(cd tests/oidc && npm ci --no-audit --no-fund)`.
//!
//! What the peer does (see the header of `server.mjs` for the details):
//! - confidential clients [`CLIENT_ID`] (`client_secret_basic`) and
//!   [`POST_CLIENT_ID`] (`client_secret_post`), authorization code with PKCE
//!   S256, refresh tokens;
//! - a refresh token only when `offline_access` is granted, which needs
//!   `prompt=consent` in the authorization request;
//! - refresh tokens rotate on every use, and presenting an already-rotated one
//!   answers `invalid_grant` **and revokes the whole grant**;
//! - RFC 7009 revocation, introspection and userinfo are on;
//! - test hooks: counters, an injected delay, injected failures, and revoking
//!   every grant of an account.
//!
//! Its state (keys, grants, tokens) lives in a temporary directory, so
//! [`OidcServer::stop`] then [`OidcServer::restart`] brings it back on the same
//! port with every token it issued still valid.

use std::collections::VecDeque;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

mod device;
mod interaction;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::sync::oneshot;
use url::Url;

pub use interaction::{Decision, Seen};

/// The `client_secret_basic` client.
pub const CLIENT_ID: &str = "tokenvault";
/// The secret of [`CLIENT_ID`].
pub const CLIENT_SECRET: &str = "tokenvault-secret";
/// The `client_secret_post` client.
pub const POST_CLIENT_ID: &str = "tokenvault-post";
/// The secret of [`POST_CLIENT_ID`].
pub const POST_CLIENT_SECRET: &str = "tokenvault-post-secret";
/// The client-credentials client (scopes `api.read api.write`).
pub const MACHINE_CLIENT_ID: &str = "tokenvault-machine";
/// The secret of [`MACHINE_CLIENT_ID`].
pub const MACHINE_CLIENT_SECRET: &str = "tokenvault-machine-secret";
/// The device-flow client (RFC 8628; scope `openid offline_access profile
/// email`).
pub const DEVICE_CLIENT_ID: &str = "tokenvault-device";
/// The secret of [`DEVICE_CLIENT_ID`].
pub const DEVICE_CLIENT_SECRET: &str = "tokenvault-device-secret";
/// The redirect URI registered when none is given. Nothing listens there: the
/// harness reads the code from the redirect without following it.
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
/// The scope [`OidcServer::obtain_refresh_token`] asks for.
pub const SCOPE: &str = "openid offline_access email";
/// The tracing target under which the peer's own log lines are re-logged.
pub const LOG_TARGET: &str = "oidc_peer";

/// How long the peer may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The timeout of every harness HTTP call.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// How many of the peer's last stderr lines an error message quotes.
const STDERR_TAIL: usize = 30;

/// How to start an [`OidcServer`].
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// Registered redirect URIs of both clients; the first is the one
    /// [`OidcServer::obtain_refresh_token`] uses.
    pub redirect_uris: Vec<String>,
    /// Lifetime of access tokens (whole seconds, at least 1).
    pub access_token_ttl: Duration,
}

impl Default for OidcOptions {
    fn default() -> Self {
        Self {
            redirect_uris: vec![DEFAULT_REDIRECT_URI.to_owned()],
            access_token_ttl: Duration::from_secs(60),
        }
    }
}

/// The peer's test counters (`GET /test/counters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Requests that reached `POST /token`, including injected failures.
    pub token_requests: u64,
    /// Of those, requests with `grant_type=refresh_token`.
    pub refresh_grants: u64,
    /// Refresh grants that issued tokens.
    pub refresh_grants_succeeded: u64,
    /// Grants revoked for any reason (reuse of a rotated refresh token, RFC
    /// 7009 revocation of a refresh token, [`OidcServer::revoke_grant`]).
    pub grants_revoked: u64,
    /// Requests with `grant_type=client_credentials`.
    pub client_credentials_grants: u64,
    /// Device-code polls (`grant_type=urn:ietf:params:oauth:grant-type:device_code`).
    pub device_code_grants: u64,
}

/// A token response. `Debug` shows no token.
#[derive(Clone)]
pub struct Tokens {
    /// The access token (opaque).
    pub access_token: String,
    /// The refresh token; the peer rotates it on every refresh.
    pub refresh_token: String,
    /// The ID token, when `openid` was granted.
    pub id_token: Option<String>,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The granted scope.
    pub scope: Option<String>,
    /// `Bearer`.
    pub token_type: String,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("token_type", &self.token_type)
            .finish()
    }
}

impl Tokens {
    fn from_response(body: &Value) -> anyhow::Result<Self> {
        let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        Ok(Self {
            access_token: text("access_token")
                .ok_or_else(|| anyhow!("token response without access_token"))?,
            refresh_token: text("refresh_token").ok_or_else(|| {
                anyhow!("token response without refresh_token (offline_access not granted?)")
            })?,
            id_token: text("id_token"),
            expires_in: body
                .get("expires_in")
                .and_then(Value::as_u64)
                .ok_or_else(|| anyhow!("token response without expires_in"))?,
            scope: text("scope"),
            token_type: text("token_type").unwrap_or_else(|| "Bearer".to_owned()),
        })
    }
}

/// A token endpoint answer other than success. Carries no token; get it from
/// an `anyhow::Error` with `downcast_ref::<TokenEndpointError>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEndpointError {
    /// The HTTP status.
    pub status: u16,
    /// The OAuth `error` code, e.g. `invalid_grant`.
    pub error: Option<String>,
    /// The `error_description`.
    pub error_description: Option<String>,
    /// The `Retry-After` header.
    pub retry_after: Option<String>,
}

impl fmt::Display for TokenEndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token endpoint answered HTTP {}: {} ({})",
            self.status,
            self.error.as_deref().unwrap_or("no error code"),
            self.error_description
                .as_deref()
                .unwrap_or("no description"),
        )?;
        if let Some(retry_after) = &self.retry_after {
            write!(f, ", Retry-After {retry_after}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TokenEndpointError {}

/// The running child process.
struct Peer {
    child: Child,
    // Held open: the peer exits when it closes (`--exit-with-stdin`), so it
    // cannot outlive this process even if Drop never runs.
    _stdin: Option<ChildStdin>,
}

impl Peer {
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The oidc-provider test peer, killed when dropped.
pub struct OidcServer {
    peer: Option<Peer>,
    port: u16,
    issuer: String,
    options: OidcOptions,
    state: TempDir,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl fmt::Debug for OidcServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcServer")
            .field("issuer", &self.issuer)
            .field("running", &self.peer.is_some())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Drop for OidcServer {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.take() {
            peer.kill();
        }
    }
}

/// `tests/oidc`, where `server.mjs` and its `node_modules` live.
pub fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

impl OidcServer {
    /// Starts the peer on a free port with [`OidcOptions::default`].
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(OidcOptions::default()).await
    }

    /// Starts the peer on a free port.
    pub async fn start_with(options: OidcOptions) -> anyhow::Result<Self> {
        if options.redirect_uris.is_empty() {
            bail!("at least one redirect URI is required");
        }
        if options.access_token_ttl.as_secs() == 0 {
            bail!("the access-token lifetime must be at least one second");
        }
        let mut server = Self {
            peer: None,
            port: 0,
            issuer: String::new(),
            options,
            state: tempfile::tempdir().context("creating the oidc peer's state directory")?,
            stderr_tail: Arc::new(Mutex::new(VecDeque::new())),
        };
        // Under a loaded machine a node start has once taken longer than the
        // ready timeout; a second, fresh attempt has always been quick.
        if let Err(first) = server.spawn(0).await {
            tracing::warn!(target: LOG_TARGET, error = %first, "the oidc peer did not start; trying once more");
            server.spawn(0).await?;
        }
        Ok(server)
    }

    /// The issuer, `http://127.0.0.1:<port>`; the same across restarts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The port it listens on; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The options it was started with.
    pub fn options(&self) -> &OidcOptions {
        &self.options
    }

    /// The redirect URI the harness uses (the first registered one).
    pub fn redirect_uri(&self) -> &str {
        self.options
            .redirect_uris
            .first()
            .map_or(DEFAULT_REDIRECT_URI, String::as_str)
    }

    /// Whether the child process is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.peer.is_some()
    }

    /// `issuer` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// `/.well-known/openid-configuration`, the discovery document's URL.
    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }

    /// The authorization endpoint.
    pub fn authorization_endpoint(&self) -> String {
        self.url("/auth")
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        self.url("/token")
    }

    /// The RFC 7009 revocation endpoint.
    pub fn revocation_endpoint(&self) -> String {
        self.url("/token/revocation")
    }

    /// The RFC 7662 introspection endpoint.
    pub fn introspection_endpoint(&self) -> String {
        self.url("/token/introspection")
    }

    /// The userinfo endpoint.
    pub fn userinfo_endpoint(&self) -> String {
        self.url("/me")
    }

    /// The JWKS endpoint.
    pub fn jwks_uri(&self) -> String {
        self.url("/jwks")
    }

    /// Fetches the discovery document.
    pub async fn discovery(&self) -> anyhow::Result<Value> {
        let response = http_client(false)?.get(self.discovery_url()).send().await?;
        json_or_error(response, "discovery").await
    }

    /// Kills the peer (as a crash would). Its state stays for [`restart`].
    ///
    /// [`restart`]: OidcServer::restart
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(peer) = self.peer.take() {
            tokio::task::spawn_blocking(move || peer.kill()).await?;
        }
        Ok(())
    }

    /// Starts the peer again on the same port with the same state (stopping
    /// it first if it runs). Tokens issued before are still valid.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        let port = self.port;
        let mut last = None;
        // The port was just released; give the kernel a moment if needed.
        for _ in 0..10 {
            match self.spawn(port).await {
                Ok(()) => return Ok(()),
                Err(e) if self.stderr_contains("EADDRINUSE") => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("could not restart the oidc peer on port {port}")))
    }

    /// The test counters.
    pub async fn counters(&self) -> anyhow::Result<Counters> {
        let response = http_client(false)?
            .get(self.url("/test/counters"))
            .send()
            .await?;
        let body = json_or_error(response, "GET /test/counters").await?;
        let n = |name: &str| {
            body.get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| anyhow!("/test/counters without {name}"))
        };
        Ok(Counters {
            token_requests: n("token_requests")?,
            refresh_grants: n("refresh_grants")?,
            refresh_grants_succeeded: n("refresh_grants_succeeded")?,
            grants_revoked: n("grants_revoked")?,
            client_credentials_grants: n("client_credentials_grants")?,
            device_code_grants: n("device_code_grants")?,
        })
    }

    /// Sets every counter to 0.
    pub async fn reset_counters(&self) -> anyhow::Result<()> {
        self.hook("/test/reset-counters", &[]).await.map(drop)
    }

    /// Makes every token-endpoint response wait `ms` milliseconds (0 = off). A
    /// request whose client hangs up during the wait is not processed.
    pub async fn set_slow(&self, ms: u64) -> anyhow::Result<()> {
        self.hook("/test/slow", &[("ms", ms.to_string())])
            .await
            .map(drop)
    }

    /// Makes token-endpoint answers that carry a refresh token also say
    /// `refresh_token_expires_in: secs` (0 = off), as GitHub Apps do.
    pub async fn set_refresh_token_lifetime(&self, secs: u64) -> anyhow::Result<()> {
        self.hook(
            "/test/refresh-token-lifetime",
            &[("secs", secs.to_string())],
        )
        .await
        .map(drop)
    }

    /// Makes the server behave like a provider with `quirks` (see
    /// `POST /test/quirks` in `tests/oidc/server.mjs`), e.g.
    /// `[("nested", "authed_user"), ("comma_scopes", "1")]`; none: standard.
    pub async fn set_quirks(&self, quirks: &[(&str, &str)]) -> anyhow::Result<()> {
        let quirks: Vec<(&str, String)> =
            quirks.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.hook("/test/quirks", &quirks).await.map(drop)
    }

    /// Makes the next `count` token-endpoint requests answer `status` without
    /// being processed (`Retry-After: 1` for 429 and 503); `count` 0 clears.
    /// The error code is `temporarily_unavailable` for 429 and 5xx,
    /// `invalid_request` otherwise.
    pub async fn fail_next(&self, status: u16, count: u32) -> anyhow::Result<()> {
        self.hook(
            "/test/fail",
            &[("status", status.to_string()), ("count", count.to_string())],
        )
        .await
        .map(drop)
    }

    /// Like [`fail_next`] with a chosen OAuth error code (e.g. `invalid_grant`
    /// to fake a dead grant without revoking it).
    ///
    /// [`fail_next`]: OidcServer::fail_next
    pub async fn fail_next_with(&self, status: u16, count: u32, error: &str) -> anyhow::Result<()> {
        self.hook(
            "/test/fail",
            &[
                ("status", status.to_string()),
                ("count", count.to_string()),
                ("error", error.to_owned()),
            ],
        )
        .await
        .map(drop)
    }

    /// Revokes every grant of `account` at the server, with all its tokens, as
    /// when the user removes the app at the provider. Returns how many grants
    /// there were.
    pub async fn revoke_grant(&self, account: &str) -> anyhow::Result<u64> {
        let body = self
            .hook("/test/revoke-grant", &[("account", account.to_owned())])
            .await?;
        body.get("revoked")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("/test/revoke-grant answered without a count"))
    }

    /// Revokes a refresh token through RFC 7009 as [`CLIENT_ID`]; at this
    /// peer that revokes its whole grant.
    pub async fn revoke_refresh_token(&self, refresh_token: &str) -> anyhow::Result<()> {
        let response = http_client(false)?
            .post(self.revocation_endpoint())
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("token", refresh_token),
                ("token_type_hint", "refresh_token"),
            ])
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            bail!("revocation answered HTTP {status}");
        }
        Ok(())
    }

    /// Runs the authorization-code flow for `account` over plain HTTP, as a
    /// browser would: `/auth` with `prompt=consent`, PKCE S256, state and
    /// nonce; the login form; the consent form; then exchanges the code with
    /// `client_secret_basic`. Every call makes a new grant.
    pub async fn obtain_refresh_token(&self, account: &str) -> anyhow::Result<Tokens> {
        let verifier = random_token()?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let state = random_token()?;
        let nonce = random_token()?;
        let redirect_uri = self.redirect_uri().to_owned();

        let mut url = Url::parse(&self.authorization_endpoint())?;
        url.query_pairs_mut()
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", SCOPE)
            .append_pair("prompt", "consent")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");

        let (callback, _) = self
            .authorize(url.as_str(), account, Decision::Allow)
            .await?;

        let param = |name: &str| {
            callback
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if let Some(error) = param("error") {
            bail!(
                "authorization failed: {error}: {}",
                param("error_description").unwrap_or_default()
            );
        }
        if param("state").as_deref() != Some(state.as_str()) {
            bail!("authorization response state does not match");
        }
        if param("iss").as_deref() != Some(self.issuer.as_str()) {
            bail!("authorization response iss does not match the issuer");
        }
        let code = param("code").ok_or_else(|| anyhow!("authorization response without code"))?;

        let response = http_client(false)?
            .post(self.token_endpoint())
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect_uri.as_str()),
                ("code_verifier", verifier.as_str()),
            ])
            .send()
            .await?;
        let tokens = Tokens::from_response(&token_json(response).await?)?;
        if !tokens
            .scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|s| s == "offline_access"))
        {
            bail!("offline_access was not granted");
        }
        Ok(tokens)
    }

    /// The raw refresh grant as [`CLIENT_ID`]. A refusal is an error that
    /// downcasts to [`TokenEndpointError`].
    pub async fn refresh_directly(&self, refresh_token: &str) -> anyhow::Result<Tokens> {
        let response = http_client(false)?
            .post(self.token_endpoint())
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await?;
        Tokens::from_response(&token_json(response).await?)
    }

    /// RFC 7662 introspection of an access token as [`CLIENT_ID`]; the
    /// response has `"active": true` while the token is valid.
    pub async fn introspect(&self, access_token: &str) -> anyhow::Result<Value> {
        let response = http_client(false)?
            .post(self.introspection_endpoint())
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("token", access_token), ("token_type_hint", "access_token")])
            .send()
            .await?;
        json_or_error(response, "introspection").await
    }

    /// Whether the authorization server still considers `refresh_token`
    /// valid (RFC 7662 introspection with `token_type_hint=refresh_token`).
    pub async fn refresh_token_is_active(&self, refresh_token: &str) -> anyhow::Result<bool> {
        let response = http_client(false)?
            .post(self.introspection_endpoint())
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("token", refresh_token),
                ("token_type_hint", "refresh_token"),
            ])
            .send()
            .await?;
        let answer = json_or_error(response, "introspection").await?;
        answer
            .get("active")
            .and_then(Value::as_bool)
            .ok_or_else(|| anyhow!("introspection answered without `active`"))
    }

    /// The userinfo response for a Bearer access token; an error if refused.
    pub async fn userinfo(&self, access_token: &str) -> anyhow::Result<Value> {
        let response = http_client(false)?
            .get(self.userinfo_endpoint())
            .bearer_auth(access_token)
            .send()
            .await?;
        json_or_error(response, "userinfo").await
    }

    /// POSTs a test hook and returns its JSON answer.
    async fn hook(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let response = http_client(false)?
            .post(self.url(path))
            .query(query)
            .send()
            .await?;
        json_or_error(response, path).await
    }

    fn stderr_contains(&self, needle: &str) -> bool {
        lock(&self.stderr_tail).iter().any(|l| l.contains(needle))
    }

    fn stderr_text(&self) -> String {
        lock(&self.stderr_tail)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Starts the child on `port` (0 = any) and waits for its ready line.
    async fn spawn(&mut self, port: u16) -> anyhow::Result<()> {
        let dir = peer_dir();
        if !dir.join("node_modules").join("oidc-provider").is_dir() {
            bail!(
                "oidc-provider is not installed in {}: run `(cd tests/oidc && npm ci --no-audit --no-fund)`",
                dir.display()
            );
        }
        lock(&self.stderr_tail).clear();
        let node = std::env::var("TOKENVAULT_TEST_NODE").unwrap_or_else(|_| "node".to_owned());
        let mut child = Command::new(&node)
            .current_dir(&dir)
            .arg("server.mjs")
            .arg("--port")
            .arg(port.to_string())
            .arg("--redirect-uris")
            .arg(self.options.redirect_uris.join(","))
            .arg("--access-token-ttl")
            .arg(self.options.access_token_ttl.as_secs().to_string())
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("--exit-with-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not run `{node}` (is Node.js installed?)"))?;

        let (ready_tx, ready_rx) = oneshot::channel();
        let stderr_done = match (child.stdout.take(), child.stderr.take()) {
            (Some(stdout), Some(stderr)) => {
                spawn_stdout_reader(stdout, ready_tx);
                spawn_stderr_reader(stderr, self.stderr_tail.clone())
            }
            _ => {
                Peer {
                    child,
                    _stdin: None,
                }
                .kill();
                bail!("the oidc peer's output is not piped");
            }
        };
        let peer = Peer {
            _stdin: child.stdin.take(),
            child,
        };

        let ready = tokio::time::timeout(READY_TIMEOUT, ready_rx).await;
        match ready {
            Ok(Ok(ready)) => {
                if port != 0 && ready.port != port {
                    peer.kill();
                    bail!("the oidc peer came up on port {} not {port}", ready.port);
                }
                self.port = ready.port;
                self.issuer = ready.issuer;
                self.peer = Some(peer);
                Ok(())
            }
            outcome => {
                tokio::task::spawn_blocking(move || peer.kill()).await?;
                // Let the stderr reader collect the last lines.
                let _ = tokio::time::timeout(Duration::from_secs(2), stderr_done).await;
                let why = if outcome.is_err() {
                    format!("no ready line within {READY_TIMEOUT:?}")
                } else {
                    "it exited before it was ready".to_owned()
                };
                let stderr = self.stderr_text();
                let hint = if stderr.contains("ERR_MODULE_NOT_FOUND")
                    || stderr.contains("Cannot find package")
                {
                    "\nrun `(cd tests/oidc && npm ci --no-audit --no-fund)`"
                } else {
                    ""
                };
                bail!("the oidc peer did not start: {why}; its stderr:\n{stderr}{hint}")
            }
        }
    }
}

/// The peer's ready line.
struct Ready {
    issuer: String,
    port: u16,
}

/// Reads stdout: the first `{"ready":true,...}` line goes to `ready`; other
/// lines are re-logged.
fn spawn_stdout_reader(stdout: impl Read + Send + 'static, ready: oneshot::Sender<Ready>) {
    std::thread::spawn(move || {
        let mut ready = Some(ready);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let parsed = serde_json::from_str::<Value>(&line).ok().and_then(|v| {
                let issuer = v.get("issuer")?.as_str()?.to_owned();
                let port = u16::try_from(v.get("port")?.as_u64()?).ok()?;
                (v.get("ready")? == &Value::Bool(true)).then_some(Ready { issuer, port })
            });
            match (parsed, ready.take()) {
                (Some(r), Some(tx)) => {
                    let _ = tx.send(r);
                }
                (_, waiting) => {
                    ready = waiting;
                    tracing::info!(target: LOG_TARGET, "stdout: {line}");
                }
            }
        }
    });
}

/// Re-logs stderr lines and keeps the last ones for error messages; the
/// returned receiver fires at end of stream.
fn spawn_stderr_reader(
    stderr: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
) -> oneshot::Receiver<()> {
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            tracing::info!(target: LOG_TARGET, "{line}");
            let mut tail = lock(&tail);
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        let _ = done_tx.send(());
    });
    done_rx
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// 32 random bytes from the OS, base64url: PKCE verifier, state, nonce.
fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// An HTTP client for the peer: redirects are never followed; `browser` adds
/// a cookie store (the login session).
///
/// reqwest is built here without a crypto provider of its own and panics in
/// `build()` unless rustls has a process-default provider or is handed a
/// config. This crate does not depend on rustls directly, so it hands reqwest
/// a throwaway rustls config made by `tokenvault_tls::client_config` from a
/// self-signed certificate. The peer is plain HTTP; the config is never used.
fn http_client(browser: bool) -> anyhow::Result<reqwest::Client> {
    crate::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(browser)
        .timeout(HTTP_TIMEOUT)
        .no_proxy()
        .build()?)
}

async fn json_or_error(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let www_authenticate = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await?;
    if !status.is_success() {
        let detail = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .or(www_authenticate)
            .unwrap_or_default();
        bail!("{what} answered HTTP {status}: {detail}");
    }
    serde_json::from_str(&body).with_context(|| format!("{what} answered non-JSON"))
}

async fn token_json(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await?;
    let json = serde_json::from_str::<Value>(&body).ok();
    if !status.is_success() {
        let text = |name: &str| {
            json.as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        return Err(TokenEndpointError {
            status: status.as_u16(),
            error: text("error"),
            error_description: text("error_description"),
            retry_after,
        }
        .into());
    }
    json.ok_or_else(|| anyhow!("token endpoint answered HTTP {status} with non-JSON"))
}
