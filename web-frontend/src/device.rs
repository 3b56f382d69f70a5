//! Connecting without a browser on the same host: the OAuth 2.0 device
//! authorization grant (RFC 8628), for a CLI or a headless box.
//!
//! - `POST /device/{provider}` asks the provider for a user code and answers
//!   JSON: the code, where to enter it, how long it lasts, and a
//!   `status_url`. The frontend itself then polls the provider in the
//!   background, so the device code never leaves this process. The account
//!   is always `<provider>:<subject>`: signed connect links are refused
//!   here, because the person who enters the code on another device never
//!   sees which account id the grant would be filed under, so a link's
//!   holder could have someone else's grant filed under its own account
//!   (RFC 8628 section 5.4, remote phishing). A request another site's page
//!   makes (`Sec-Fetch-Site: cross-site`) is refused too.
//! - When the person has entered the code and consented on any other
//!   device, the refresh token is sealed and stored through set-service
//!   exactly as a browser connect's ([`crate::routes::store_granted`]): the
//!   same audit event (`web.connect`), account status and account events;
//!   while set-service is down the sealed token is offered again for
//!   [`STORE_PATIENCE`].
//! - `GET /device/status/{id}` answers JSON: `pending`, `connected` (with
//!   the account id), or `failed` (with a reason: refused, expired, ...).
//!   The id is 128 random bits, the only handle on the flow.
//!
//! Flows are held in memory, at most [`MAX_FLOWS`] at once (a slot is taken
//! before the provider is asked), and forgotten [`KEEP_FINISHED`] after
//! they end. A stop refuses new flows, ends the polls of pending ones (the
//! person starts again) and waits, within the shutdown grace period, for
//! grants already received to be stored ([`DeviceFlows::stop`]). Nothing here holds a token: the device code stays
//! inside the polling task, the refresh token only between the provider's
//! answer and sealing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::WithRejection;
use serde_json::json;

use crate::error::WebError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::link::LinkParams;
use crate::provider::{MAX_DEVICE_WAIT, ProviderError};
use crate::routes::{AppState, audit, session_label, store_granted};

/// The most device flows held at once, pending or recently finished.
pub const MAX_FLOWS: usize = 1_000;
/// How long a granted refresh token (sealed) is offered to set-service
/// again while it is down: nobody is at a page to start over at once, and
/// a lost grant means asking the person again.
pub const STORE_PATIENCE: Duration = Duration::from_secs(120);
/// How long a finished flow's outcome can still be read.
pub const KEEP_FINISHED: Duration = Duration::from_secs(600);

/// Where one flow stands.
#[derive(Debug, Clone)]
enum Outcome {
    Pending,
    Connected { account: String },
    Failed { code: &'static str, reason: String },
}

#[derive(Debug)]
struct Flow {
    provider: String,
    outcome: Outcome,
    /// When it may be forgotten.
    until: Instant,
}

/// The device flows in progress and recently finished, and their tasks.
#[derive(Debug, Default)]
pub struct DeviceFlows {
    flows: Mutex<HashMap<String, Flow>>,
    tasks: TaskTracker,
    stopping: CancellationToken,
}

impl DeviceFlows {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flow>> {
        self.flows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// At a stop: refuses new flows, ends pending polls, and waits until
    /// `within` has passed for grants already received to be stored.
    /// Returns whether every task ended.
    pub async fn stop(&self, within: Duration) -> bool {
        self.stopping.cancel();
        self.tasks.close();
        tokio::time::timeout(within, self.tasks.wait())
            .await
            .is_ok()
    }

    /// Forgets a slot whose flow never started.
    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Registers a new pending flow (forgetting finished ones first);
    /// `None` when [`MAX_FLOWS`] are in progress.
    fn add(&self, provider: &str, until: Instant) -> Option<String> {
        let mut flows = self.lock();
        let now = Instant::now();
        flows.retain(|_, flow| flow.until > now);
        if flows.len() >= MAX_FLOWS {
            return None;
        }
        let id = new_id();
        flows.insert(
            id.clone(),
            Flow {
                provider: provider.to_owned(),
                outcome: Outcome::Pending,
                until,
            },
        );
        Some(id)
    }

    fn finish(&self, id: &str, outcome: Outcome) {
        if let Some(flow) = self.lock().get_mut(id) {
            flow.outcome = outcome;
            flow.until = Instant::now() + KEEP_FINISHED;
        }
    }

    fn get(&self, id: &str) -> Option<(String, Outcome)> {
        self.lock()
            .get(id)
            .filter(|flow| flow.until > Instant::now())
            .map(|flow| (flow.provider.clone(), flow.outcome.clone()))
    }
}

/// 128 random bits, hex.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Not reached in practice; an id that is still unguessable enough
        // would need randomness, so fall back to oauth2's generator.
        return oauth2::CsrfToken::new_random().secret().clone();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// A refusal as JSON: the error page's stable code, and (for the caller's
/// own mistakes) what went wrong.
fn json_error(e: &WebError) -> Response {
    let status = e.status();
    let message = if status.is_server_error() {
        String::new()
    } else {
        e.to_string()
    };
    json_response(
        status,
        &json!({ "error": e.page().code, "message": message }),
    )
}

/// `POST /device/{provider}`: starts a device flow and polls it in the
/// background.
pub async fn start(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    WithRejection(Path(provider_name), _): WithRejection<Path<String>, WebError>,
    WithRejection(Query(link), _): WithRejection<Query<LinkParams>, WebError>,
    headers: HeaderMap,
) -> Response {
    match begin(&app, peer, &provider_name, &headers, &link).await {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => {
            tracing::info!(provider = %provider_name.chars().take(64).collect::<String>(), error = %e, "device flow refused");
            json_error(&e)
        }
    }
}

async fn begin(
    app: &AppState,
    peer: SocketAddr,
    provider_name: &str,
    headers: &HeaderMap,
    link: &LinkParams,
) -> Result<serde_json::Value, WebError> {
    let provider = Arc::clone(app.provider(provider_name)?);
    if !provider.offers_device_flow() {
        return Err(WebError::BadRequest(
            "this provider is not configured for the device flow",
        ));
    }
    if link.is_present() {
        return Err(WebError::BadRequest(
            "the device flow takes no signed link: the person entering the code elsewhere \
             cannot see which account it would connect (the account is <provider>:<subject>)",
        ));
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(WebError::NotAllowed(
            "another site's page may not start a device sign-in",
        ));
    }
    let devices = app.devices();
    if devices.stopping.is_cancelled() {
        return Err(WebError::Busy);
    }
    // The slot first: a full table costs the provider nothing.
    let id = devices
        .add(
            provider.name(),
            Instant::now() + MAX_DEVICE_WAIT + KEEP_FINISHED,
        )
        .ok_or(WebError::Busy)?;
    let grant = match provider.begin_device().await {
        Ok(grant) => grant,
        Err(e) => {
            devices.remove(&id);
            return Err(e.into());
        }
    };
    let body = json!({
        "device": id,
        "user_code": grant.user_code(),
        "verification_uri": grant.verification_uri(),
        "verification_uri_complete": grant.verification_uri_complete(),
        "expires_in": grant.expires_in().as_secs(),
        "interval": grant.interval().as_secs(),
        "status_url": app
            .public_url()
            .join(&format!("device/status/{id}"))
            .map(|u| u.to_string())
            .unwrap_or_default(),
    });
    let (app, stopping) = (app.clone(), devices.stopping.clone());
    devices.tasks.spawn(async move {
        // A stop ends the poll; a grant already received is still stored.
        let polled = tokio::select! {
            polled = provider.finish_device(&grant) => polled,
            () = stopping.cancelled() => Err(ProviderError::Unavailable(
                "web-frontend stopped before the code was entered; start again".into(),
            )),
        };
        drop(grant);
        let result = match polled {
            Ok(granted) => {
                store_granted(&app, &provider, (None, None), granted, STORE_PATIENCE).await
            }
            Err(e) => Err(WebError::Provider(e)),
        };
        let session = session_label(&id);
        let outcome = match result {
            Ok(account) => {
                audit(
                    "web.connect",
                    &session,
                    peer,
                    &account,
                    provider.name(),
                    Ok(()),
                );
                Outcome::Connected { account }
            }
            Err(e) => {
                audit("web.connect", &session, peer, "", provider.name(), Err(&e));
                failed(&e)
            }
        };
        app.devices().finish(&id, outcome);
    });
    Ok(body)
}

/// What the status tells of a failed flow. Provider errors name no token
/// (only OAuth error codes); a failure here stays in the log.
fn failed(e: &WebError) -> Outcome {
    let code = match e {
        WebError::Provider(ProviderError::Refused(code)) if code == "access_denied" => "denied",
        WebError::Provider(ProviderError::Refused(code)) if code == "expired_token" => "expired",
        other => other.page().code,
    };
    let reason = match e {
        WebError::Provider(_) => e.to_string(),
        _ if e.status().is_server_error() => "the account could not be stored; try again".into(),
        _ => e.to_string(),
    };
    Outcome::Failed { code, reason }
}

/// `GET /device/status/{id}`: where a device flow stands.
pub async fn status(
    State(app): State<AppState>,
    WithRejection(Path(id), _): WithRejection<Path<String>, WebError>,
) -> Response {
    let Some((provider, outcome)) = app.devices().get(&id) else {
        return json_error(&WebError::NotFound);
    };
    let body = match outcome {
        Outcome::Pending => json!({ "state": "pending", "provider": provider }),
        Outcome::Connected { account } => {
            json!({ "state": "connected", "provider": provider, "account": account })
        }
        Outcome::Failed { code, reason } => {
            json!({ "state": "failed", "provider": provider, "error": code, "message": reason })
        }
    };
    json_response(StatusCode::OK, &body)
}
