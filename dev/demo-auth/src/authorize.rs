//! `GET /authorize` (the demo sign-in and consent page) and `POST /authorize`
//! (Allow / Deny).
//!
//! An unknown `client_id` or a `redirect_uri` other than the registered one
//! gets an error page (RFC 6749 4.1.2.1: never a redirect); other bad
//! requests are sent back to the client as `error=...`. PKCE S256 is
//! required. Responses name the issuer (`iss`, RFC 9207). The code is
//! single-use, lives 60 s and appears only in the redirect.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use url::Url;

use crate::AppState;
use crate::grants::{self, GrantError};
use crate::pages::{self, ConsentForm};
use crate::request::Params;
use crate::store::PendingCode;
use crate::token::{fingerprint, is_pkce_value, is_username, parse_scope};

/// The user name proposed on the form.
pub const DEFAULT_USERNAME: &str = "alice";
/// The longest `state` accepted.
const MAX_STATE_LEN: usize = 1024;

/// A checked authorization request.
#[derive(Debug)]
struct AuthRequest {
    client_id: String,
    redirect_uri: Option<String>,
    state: Option<String>,
    scope: String,
    code_challenge: String,
}

impl AuthRequest {
    /// What the consent token is bound to.
    fn digest(&self) -> String {
        let parts = [
            self.client_id.as_str(),
            self.redirect_uri.as_deref().unwrap_or(""),
            self.state.as_deref().unwrap_or(""),
            self.scope.as_str(),
            self.code_challenge.as_str(),
        ];
        fingerprint(&parts.join("\n"))
    }
}

/// Refused before anything can be sent back to the client.
fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    (status, pages::error(title, message)).into_response()
}

/// A boxed [`error_page`], for `Err` arms.
fn page(status: StatusCode, title: &str, message: &str) -> Box<Response> {
    Box::new(error_page(status, title, message))
}

/// Sends the browser back to the client with `params` plus `state` and `iss`.
fn back_to_client(
    app: &AppState,
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad redirect_uri",
            "The redirect_uri is not a URL.",
        );
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", &app.issuer);
    }
    Redirect::to(url.as_str()).into_response()
}

/// Checks a request; `Err` is the response to give (a page or a redirect).
fn check(app: &AppState, p: &Params) -> Result<AuthRequest, Box<Response>> {
    let config = &app.config;
    let client_id = match p.get("client_id") {
        Some(id) if id == config.client_id => id.to_owned(),
        Some(_) => {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "Unknown client",
                "This demo server knows only the client it was started with (--client-id).",
            ));
        }
        None => {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "client_id is missing.",
            ));
        }
    };
    let redirect_uri = match p.get("redirect_uri") {
        Some(r) if r == config.redirect_uri => Some(r.to_owned()),
        Some(_) => {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "Unregistered redirect_uri",
                "The redirect_uri is not exactly the one this demo server was started with (--redirect-uri).",
            ));
        }
        None => None,
    };
    let state = p.get("state").map(str::to_owned);
    let target = config.redirect_uri.as_str();
    let fail = |error: &str, description: &str| {
        Box::new(back_to_client(
            app,
            target,
            &[("error", error), ("error_description", description)],
            state.as_deref(),
        ))
    };
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(fail("invalid_request", "state is too long"));
    }
    match p.get("response_type") {
        Some("code") => {}
        Some(_) => return Err(fail("unsupported_response_type", "only response_type=code")),
        None => return Err(fail("invalid_request", "response_type is missing")),
    }
    let Some(code_challenge) = p.get("code_challenge") else {
        return Err(fail(
            "invalid_request",
            "PKCE is required: send code_challenge (S256)",
        ));
    };
    if p.get("code_challenge_method") != Some("S256") {
        return Err(fail(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if !is_pkce_value(code_challenge) {
        return Err(fail("invalid_request", "code_challenge is malformed"));
    }
    let Some(scope) = parse_scope(p.get("scope").unwrap_or("")) else {
        return Err(fail("invalid_scope", "scope is malformed"));
    };
    Ok(AuthRequest {
        client_id,
        redirect_uri,
        state,
        scope: scope.join(" "),
        code_challenge: code_challenge.to_owned(),
    })
}

fn busy(e: &GrantError) -> Response {
    tracing::error!(error = %e, "authorize failed");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The demo server could not handle this sign-in just now.",
    )
}

/// Renders the consent page with a new single-use form token.
async fn consent_page(
    app: &AppState,
    req: &AuthRequest,
    username: &str,
    error: Option<&str>,
) -> Response {
    let token = match grants::new_consent(&app.store, req.digest()).await {
        Ok(t) => t,
        Err(e) => return busy(&e),
    };
    let form = ConsentForm {
        client_id: &req.client_id,
        redirect_uri: req.redirect_uri.as_deref(),
        state: req.state.as_deref(),
        scope: &req.scope,
        code_challenge: &req.code_challenge,
        consent: token.expose(),
        username,
        error,
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, pages::consent(&form)).into_response()
}

/// `GET /authorize`.
pub(crate) async fn show(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Bad request", &e),
    };
    match check(&app, &params) {
        Ok(req) => consent_page(&app, &req, DEFAULT_USERNAME, None).await,
        Err(response) => *response,
    }
}

/// `POST /authorize`: Allow or Deny.
pub(crate) async fn decide(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match Params::form(&headers, &body) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Bad request", &e),
    };
    let req = match check(&app, &params) {
        Ok(req) => req,
        Err(response) => return *response,
    };
    let live = match params.get("consent") {
        Some(token) => grants::take_consent(&app.store, token, &req.digest()).await,
        None => false,
    };
    if !live {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in form has expired",
            "Forms are single-use and expire after 10 minutes.",
        );
    }
    let target = app.config.redirect_uri.as_str();
    match params.get("decision") {
        Some("allow") => {}
        Some("deny") => {
            tracing::info!("demo user denied the authorization");
            return back_to_client(
                &app,
                target,
                &[
                    ("error", "access_denied"),
                    ("error_description", "the demo user denied access"),
                ],
                req.state.as_deref(),
            );
        }
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "Choose Allow or Deny.",
            );
        }
    }
    let username = params.get("username").unwrap_or("").trim().to_owned();
    if !is_username(&username) {
        let shown = if username.len() <= 64 {
            username.as_str()
        } else {
            ""
        };
        return consent_page(
            &app,
            &req,
            shown,
            Some("The user name must be 1–32 characters of a–z, 0–9, '.', '_', '-'."),
        )
        .await;
    }
    let pending = PendingCode {
        client_id: req.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        code_challenge: req.code_challenge.clone(),
        username: username.clone(),
        scope: req.scope.clone(),
        expires_at: 0,
    };
    match grants::new_code(&app.store, pending).await {
        Ok(code) => {
            tracing::info!(user = %username, "demo user allowed the authorization: code issued");
            back_to_client(
                &app,
                target,
                &[("code", code.expose())],
                req.state.as_deref(),
            )
        }
        Err(e) => busy(&e),
    }
}
