//! The HTTP handlers: start page, `/connect/{provider}`, `/callback`, and
//! disconnect. The refresh token exists here only between the code exchange
//! and sealing, inside a [`Secret`](tokenvault_runtime::secret::Secret); every
//! response, cookie, URL and log line is free of tokens.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Form;
use axum::extract::{ConnectInfo, FromRef, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::WithRejection;
use axum_extra::extract::cookie::{Key, PrivateCookieJar};
use maud::Markup;
use serde::Deserialize;
use tokenvault_runtime::logging::AUDIT_TARGET;
use tokenvault_seal::PublicKeySet;
use tokenvault_set_client::{SetClient, SetError, StoreExtras};
use url::Url;

use crate::error::WebError;
use crate::link::{LinkAction, LinkParams, LinkSigner, tenant_account};
use crate::pages::{self, ProviderEntry};
use crate::provider::{Catalogue, Provider, ProviderError};
use crate::signin::{
    CONNECTED_COOKIE, Connected, PendingSignIn, SIGNIN_COOKIE, StateUse, UsedStates, cookie,
    removal,
};

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState(pub(crate) Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub catalogue: Catalogue,
    pub sealer: PublicKeySet,
    pub set: SetClient,
    pub links: Option<LinkSigner>,
    pub used: UsedStates,
    pub cookie_key: Key,
    pub public_url: Url,
    pub sign_in_ttl_secs: i64,
    pub connected_ttl_secs: i64,
    pub devices: Arc<crate::device::DeviceFlows>,
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Key {
        state.0.cookie_key.clone()
    }
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A short, non-reversible name for one browser sign-in, for audit lines.
pub(crate) fn session_label(state: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, state.as_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One audit line per web connect or disconnect: who (the browser sign-in),
/// where, what, and the outcome.
pub(crate) fn audit(
    action: &str,
    session: &str,
    peer: SocketAddr,
    account: &str,
    provider: &str,
    outcome: Result<(), &WebError>,
) {
    let caller = format!("web-session:{session}");
    let account: String = account.chars().take(128).collect();
    let provider: String = provider.chars().take(64).collect();
    let (account, provider) = (account.as_str(), provider.as_str());
    match outcome {
        Ok(()) => {
            tracing::info!(target: AUDIT_TARGET, caller, peer = %peer, rpc = action, account, provider, outcome = "ok")
        }
        Err(e) => {
            tracing::warn!(target: AUDIT_TARGET, caller, peer = %peer, rpc = action, account, provider, outcome = e.page().code, error = %e)
        }
    }
}

impl AppState {
    pub(crate) fn devices(&self) -> &crate::device::DeviceFlows {
        &self.0.devices
    }

    pub(crate) fn public_url(&self) -> &Url {
        &self.0.public_url
    }

    pub(crate) fn provider(&self, name: &str) -> Result<&Arc<Provider>, WebError> {
        self.0
            .catalogue
            .get(name)
            .ok_or_else(|| WebError::UnknownProvider(name.chars().take(64).collect()))
    }

    pub(crate) fn signer(&self) -> Result<&LinkSigner, WebError> {
        self.0
            .links
            .as_ref()
            .ok_or(WebError::Link(crate::link::LinkError::NotConfigured))
    }
}

/// `GET /`: the providers, each with a Connect button.
pub async fn home(
    State(app): State<AppState>,
    WithRejection(Query(link), _): WithRejection<Query<LinkParams>, WebError>,
) -> Result<Markup, WebError> {
    let account = if link.is_present() {
        let provider = link.provider.clone().unwrap_or_default();
        Some(
            app.signer()?
                .verify(LinkAction::Connect, &link, &provider, now())?,
        )
    } else {
        None
    };
    let entries: Vec<ProviderEntry<'_>> = app
        .0
        .catalogue
        .iter()
        .filter(|p| link.provider.as_deref().is_none_or(|only| only == p.name()))
        .map(|p| ProviderEntry {
            name: p.name(),
            display_name: p.display_name(),
        })
        .collect();
    Ok(pages::home(
        &entries,
        account.as_deref().map(|a| (a, &link)),
    ))
}

/// `GET /connect/{provider}`: starts the authorization-code flow and binds
/// its state to this browser. Only a click on this site's own pages
/// (`Sec-Fetch-Site: same-origin`) starts it at once; a request from another
/// site, a link opened from elsewhere, or a client that does not say gets a
/// confirmation page first, so that no page can silently connect someone's
/// account (possibly under an account id of its choosing).
pub async fn connect(
    State(app): State<AppState>,
    WithRejection(Path(provider_name), _): WithRejection<Path<String>, WebError>,
    WithRejection(Query(link), _): WithRejection<Query<LinkParams>, WebError>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
) -> Result<Response, WebError> {
    let provider = app.provider(&provider_name)?;
    let (account, metadata) = if link.is_present() {
        let (account, metadata) = app.signer()?.verify_with_metadata(
            LinkAction::Connect,
            &link,
            provider.name(),
            now(),
        )?;
        (Some(account), metadata)
    } else {
        (None, None)
    };
    if fetch_site(&headers) != Some("same-origin") {
        return Ok(pages::confirm_connect(
            provider.name(),
            provider.display_name(),
            account.as_deref(),
            &link,
        )
        .into_response());
    }
    let authorization = provider.begin().await?;
    let pending = PendingSignIn {
        state: authorization.state,
        verifier: authorization.verifier.to_string(),
        nonce: authorization.nonce,
        provider: provider.name().to_owned(),
        account,
        metadata,
        expires_at: now() + app.0.sign_in_ttl_secs,
    };
    let value = serde_json::to_string(&pending).map_err(|_| WebError::BadRequest("sign-in"))?;
    let jar = jar.add(cookie(SIGNIN_COOKIE, value, app.0.sign_in_ttl_secs));
    Ok((jar, Redirect::to(authorization.url.as_str())).into_response())
}

/// The `Sec-Fetch-Site` request header, if the browser sent one.
fn fetch_site(headers: &HeaderMap) -> Option<&str> {
    headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
}

/// The provider's answer at `/callback`. `Debug` omits the code and state.
#[derive(Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

impl std::fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackParams")
            .field("error", &self.error)
            .field("iss", &self.iss)
            .finish_non_exhaustive()
    }
}

/// `GET /callback`: checks state, exchanges the code, identifies the account,
/// seals the refresh token and stores it through set-service.
pub async fn callback(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    params: Result<Query<CallbackParams>, axum::extract::rejection::QueryRejection>,
    RawQuery(query): RawQuery,
    jar: PrivateCookieJar,
) -> Response {
    // The sign-in cookie is spent whatever happens next, even for a
    // malformed callback.
    let Ok(Query(params)) = params else {
        return (
            jar.remove(removal(SIGNIN_COOKIE)),
            WebError::BadRequest("malformed callback"),
        )
            .into_response();
    };
    let pending = jar
        .get(SIGNIN_COOKIE)
        .and_then(|c| serde_json::from_str::<PendingSignIn>(c.value()).ok());
    // The sign-in cookie is spent whatever happens next.
    let jar = jar.remove(removal(SIGNIN_COOKIE));
    let session = params
        .state
        .as_deref()
        .map(session_label)
        .unwrap_or_default();
    let (account, provider) = pending
        .as_ref()
        .map(|p| (p.account.clone().unwrap_or_default(), p.provider.clone()))
        .unwrap_or_default();
    match finish(&app, params, query.as_deref(), pending).await {
        Ok((account, provider)) => {
            audit(
                "web.connect",
                &session,
                peer,
                &account,
                provider.name(),
                Ok(()),
            );
            let mut connected =
                Connected::parse(jar.get(CONNECTED_COOKIE).as_ref().map(|c| c.value()), now());
            connected.add(&account, provider.name(), now() + app.0.connected_ttl_secs);
            let value = serde_json::to_string(&connected).unwrap_or_default();
            let jar = jar.add(cookie(CONNECTED_COOKIE, value, app.0.connected_ttl_secs));
            (
                jar,
                pages::connected(provider.name(), provider.display_name(), &account),
            )
                .into_response()
        }
        Err(e) => {
            audit("web.connect", &session, peer, &account, &provider, Err(&e));
            (jar, e).into_response()
        }
    }
}

async fn finish(
    app: &AppState,
    params: CallbackParams,
    query: Option<&str>,
    pending: Option<PendingSignIn>,
) -> Result<(String, Arc<Provider>), WebError> {
    let state = params.state.ok_or(WebError::StateMissing)?;
    let Some(pending) = pending else {
        return Err(if app.0.used.was_used(&state) {
            WebError::StateReused
        } else {
            WebError::StateMissing
        });
    };
    if !constant_time_eq(state.as_bytes(), pending.state.as_bytes()) {
        return Err(WebError::StateMismatch);
    }
    let now = now();
    if pending.expires_at < now {
        return Err(WebError::StateExpired);
    }
    if app.0.used.consume(&state, pending.expires_at, now) == StateUse::Reused {
        return Err(WebError::StateReused);
    }
    let provider = Arc::clone(app.provider(&pending.provider)?);
    if let Some(error) = params.error {
        return Err(if error == "access_denied" {
            WebError::Denied
        } else {
            WebError::AuthorizationError(
                error
                    .chars()
                    .filter(char::is_ascii_graphic)
                    .take(64)
                    .collect(),
            )
        });
    }
    if let Some(iss) = params.iss.as_deref()
        && !provider.issuer_matches(iss)
    {
        return Err(WebError::Provider(ProviderError::Identity(
            "the authorization response names another issuer".into(),
        )));
    }
    let code = params
        .code
        .ok_or(WebError::BadRequest("the callback has no code"))?;
    let granted = provider
        .finish(code, &pending.verifier, &pending.nonce, query)
        .await?;
    // A person is waiting at the page: no retries, the error page says so.
    let account = store_granted(
        app,
        &provider,
        (pending.account, pending.metadata),
        granted,
        std::time::Duration::ZERO,
    )
    .await?;
    Ok((account, provider))
}

/// Seals `granted`'s refresh token for `account` (or, without one,
/// `<provider>:<subject>`) and stores it through set-service with
/// `metadata`; returns the account id. While set-service is unavailable
/// (or did not confirm: storing again is safe), the sealed token is stored
/// again until `patience` has passed.
pub(crate) async fn store_granted(
    app: &AppState,
    provider: &Provider,
    (account, metadata): (Option<String>, Option<String>),
    granted: crate::provider::Granted,
    patience: std::time::Duration,
) -> Result<String, WebError> {
    let account = match account {
        Some(account) => account,
        None => format!("{}:{}", provider.name(), granted.subject),
    };
    tokenvault_proto::ids::check_account(&account).map_err(|_| {
        WebError::Provider(ProviderError::Identity(
            "the account id would be too long".into(),
        ))
    })?;
    let sealed = app
        .0
        .sealer
        .seal(
            &account,
            provider.name(),
            granted.refresh_token.expose().as_bytes(),
        )
        .map_err(|e| WebError::Seal(e.to_string()))?;
    let refresh_token_expires_at_unix = granted
        .refresh_token_expires_in
        .and_then(|secs| i64::try_from(secs).ok())
        .map(|secs| now().saturating_add(secs));
    drop(granted);
    let extras = StoreExtras {
        metadata,
        refresh_token_expires_at_unix,
    };
    // Only the sealed token is kept for another attempt.
    let deadline = tokio::time::Instant::now() + patience;
    let mut pause = std::time::Duration::from_millis(200);
    let version = loop {
        let stored = app
            .0
            .set
            .store_with(&account, provider.name(), sealed.clone(), None, &extras)
            .await;
        match stored {
            Err(SetError::Unavailable(_) | SetError::Uncertain(_))
                if tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::warn!(
                    account,
                    provider = provider.name(),
                    "set-service unavailable; storing the sealed token again shortly"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            other => break other?,
        }
    };
    tracing::info!(
        account,
        provider = provider.name(),
        version,
        "account connected"
    );
    Ok(account)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// A disconnect request: the account and provider, and a signed link's
/// `expires` and `sig` when it came from one. A `tenant` is folded into the
/// account id as it arrives, as in every link ([`LinkParams`]).
#[derive(Debug, Deserialize)]
#[serde(try_from = "DisconnectQuery")]
pub struct DisconnectParams {
    account: String,
    provider: String,
    expires: Option<i64>,
    sig: Option<String>,
}

/// A disconnect request as written, `tenant` apart.
#[derive(Debug, Deserialize)]
struct DisconnectQuery {
    tenant: Option<String>,
    account: String,
    provider: String,
    expires: Option<i64>,
    sig: Option<String>,
}

impl TryFrom<DisconnectQuery> for DisconnectParams {
    type Error = &'static str;

    fn try_from(q: DisconnectQuery) -> Result<Self, Self::Error> {
        Ok(Self {
            account: match &q.tenant {
                Some(tenant) => tenant_account(tenant, &q.account)?,
                None => q.account,
            },
            provider: q.provider,
            expires: q.expires,
            sig: q.sig,
        })
    }
}

impl DisconnectParams {
    fn link(&self) -> LinkParams {
        LinkParams {
            account: Some(self.account.clone()),
            provider: Some(self.provider.clone()),
            expires: self.expires,
            metadata: None,
            sig: self.sig.clone(),
        }
    }
}

/// Whether this request may disconnect (account, provider): a signed
/// disconnect link, or this browser connected it recently.
fn may_disconnect(
    app: &AppState,
    params: &DisconnectParams,
    jar: &PrivateCookieJar,
) -> Result<(), WebError> {
    app.provider(&params.provider)?;
    if params.sig.is_some() {
        let account = app.signer()?.verify(
            LinkAction::Disconnect,
            &params.link(),
            &params.provider,
            now(),
        )?;
        return if account == params.account {
            Ok(())
        } else {
            Err(WebError::NotAllowed("the link is for another account"))
        };
    }
    let connected = Connected::parse(jar.get(CONNECTED_COOKIE).as_ref().map(|c| c.value()), now());
    if connected.contains(&params.account, &params.provider) {
        Ok(())
    } else {
        Err(WebError::NotAllowed(
            "this browser did not connect that account",
        ))
    }
}

/// `GET /disconnect`: a confirmation page (POST does the work).
pub async fn confirm_disconnect(
    State(app): State<AppState>,
    WithRejection(Query(params), _): WithRejection<Query<DisconnectParams>, WebError>,
    jar: PrivateCookieJar,
) -> Result<Markup, WebError> {
    may_disconnect(&app, &params, &jar)?;
    Ok(pages::confirm_disconnect(
        &params.provider,
        &params.account,
        &params.link(),
    ))
}

/// `POST /disconnect`: tombstones the account through set-service.
pub async fn disconnect(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
    WithRejection(Form(params), _): WithRejection<Form<DisconnectParams>, WebError>,
) -> Response {
    let session = jar
        .get(CONNECTED_COOKIE)
        .map(|c| session_label(c.value()))
        .unwrap_or_else(|| "link".to_owned());
    let result = async {
        check_origin(&app, &headers)?;
        may_disconnect(&app, &params, &jar)?;
        app.0
            .set
            .disconnect(&params.account, &params.provider)
            .await?;
        Ok::<_, WebError>(())
    }
    .await;
    audit(
        "web.disconnect",
        &session,
        peer,
        &params.account,
        &params.provider,
        result.as_ref().map(|_| ()),
    );
    match result {
        Ok(()) => {
            tracing::info!(
                account = params.account,
                provider = params.provider,
                "account disconnected"
            );
            let mut connected =
                Connected::parse(jar.get(CONNECTED_COOKIE).as_ref().map(|c| c.value()), now());
            connected.remove(&params.account, &params.provider);
            let value = serde_json::to_string(&connected).unwrap_or_default();
            let jar = jar.add(cookie(CONNECTED_COOKIE, value, app.0.connected_ttl_secs));
            (jar, pages::disconnected(&params.provider, &params.account)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// A form POST must come from this site's own pages. Browsers say where a
/// request comes from in `Sec-Fetch-Site`; older ones only in `Origin`,
/// which is `null` on our pages (they send no referrer), so `null` and a
/// missing `Origin` pass, and the `SameSite=Lax` cookie still guards them.
fn check_origin(app: &AppState, headers: &HeaderMap) -> Result<(), WebError> {
    let refused = WebError::NotAllowed("the form was posted from another site");
    match fetch_site(headers) {
        Some("same-origin") => return Ok(()),
        Some(_) => return Err(refused),
        None => {}
    }
    let expected = app.0.public_url.origin().ascii_serialization();
    match headers.get(header::ORIGIN).map(|v| v.as_bytes()) {
        None | Some(b"null") => Ok(()),
        Some(origin) if origin == expected.as_bytes() => Ok(()),
        Some(_) => Err(refused),
    }
}

/// `GET /static/style.css`.
pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        pages::STYLE,
    )
        .into_response()
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok\n")
}

/// Anything else.
pub async fn not_found() -> WebError {
    WebError::NotFound
}
