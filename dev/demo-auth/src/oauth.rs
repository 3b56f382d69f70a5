//! The JSON endpoints: `POST /token` (authorization_code with PKCE S256,
//! refresh_token with rotation), `POST /revoke` (RFC 7009), `GET /userinfo`
//! and the RFC 8414 metadata. Errors are RFC 6749 5.2 JSON.
//!
//! Token responses carry `Cache-Control: no-store`; tokens appear in no log
//! line and no error.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::grants::{self, GrantError, Revoked};
use crate::request::{ClientAuthError, Params, authenticate, bearer};
use crate::token::parse_scope;

/// A JSON response that no cache keeps.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// An RFC 6749 5.2 error.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn invalid_request(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn client_auth_error(e: &ClientAuthError) -> Response {
    match e {
        ClientAuthError::Malformed(why) => invalid_request(why),
        ClientAuthError::Failed => {
            let mut r = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed (client_secret_basic or client_secret_post)",
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"demo-authorization-server\""),
            );
            r
        }
    }
}

fn grant_error(e: &GrantError) -> Response {
    match e {
        GrantError::InvalidGrant(why) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why),
        GrantError::InvalidScope => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &e.to_string())
        }
        GrantError::Busy => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            &e.to_string(),
        ),
        GrantError::Server(why) => {
            tracing::error!(error = %why, "token endpoint failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the demo server could not save its state",
            )
        }
    }
}

/// Reads the form and authenticates the client.
fn form_and_client(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Params, String), Box<Response>> {
    let params = Params::form(headers, body).map_err(|e| Box::new(invalid_request(&e)))?;
    let client = authenticate(&app.config, headers, &params).map_err(|e| {
        tracing::info!("client authentication failed");
        Box::new(client_auth_error(&e))
    })?;
    Ok((params, client))
}

/// `POST /token`.
pub(crate) async fn token(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (params, client) = match form_and_client(&app, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let ttl = app.config.access_token_ttl_secs;
    let issued = match params.get("grant_type") {
        Some("authorization_code") => {
            let (code, verifier) = match (params.require("code"), params.require("code_verifier")) {
                (Ok(c), Ok(v)) => (c, v),
                (Err(e), _) | (_, Err(e)) => return invalid_request(&e),
            };
            grants::exchange_code(
                &app.store,
                &client,
                code,
                params.get("redirect_uri"),
                verifier,
                ttl,
            )
            .await
        }
        Some("refresh_token") => {
            let refresh_token = match params.require("refresh_token") {
                Ok(t) => t,
                Err(e) => return invalid_request(&e),
            };
            let scope = match params.get("scope").map(parse_scope) {
                None => None,
                Some(Some(s)) if !s.is_empty() => Some(s),
                Some(_) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        "scope is malformed",
                    );
                }
            };
            grants::refresh(&app.store, &client, refresh_token, scope, ttl).await
        }
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only authorization_code and refresh_token",
            );
        }
        None => return invalid_request("missing parameter \"grant_type\""),
    };
    match issued {
        Ok(t) => json_response(
            StatusCode::OK,
            &json!({
                "access_token": t.access_token.expose(),
                "token_type": "Bearer",
                "expires_in": t.expires_in,
                "refresh_token": t.refresh_token.expose(),
                "scope": t.scope,
            }),
        ),
        Err(e) => {
            if let GrantError::InvalidGrant(why) = &e {
                tracing::info!(reason = why, "token request refused: invalid_grant");
            }
            grant_error(&e)
        }
    }
}

/// `POST /revoke` (RFC 7009): unknown tokens are a success.
pub(crate) async fn revoke(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (params, client) = match form_and_client(&app, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let token = match params.require("token") {
        Ok(t) => t,
        Err(e) => return invalid_request(&e),
    };
    // token_type_hint is only a hint: both kinds are looked up either way.
    match grants::revoke(&app.store, &client, token).await {
        Ok(Revoked::OtherClient) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the token was issued to another client",
        ),
        Ok(what) => {
            if what == Revoked::Unknown {
                tracing::info!("revocation of an unknown token: nothing to do");
            }
            let mut r = StatusCode::OK.into_response();
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => grant_error(&e),
    }
}

/// `GET /userinfo` with `Authorization: Bearer`.
pub(crate) async fn userinfo(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let user = match bearer(&headers) {
        Some(token) => grants::user_of(&app.store, token).await,
        None => None,
    };
    match user {
        Some(name) => json_response(
            StatusCode::OK,
            &json!({
                "sub": name,
                "preferred_username": name,
                "name": format!("{name} (demo user)"),
            }),
        ),
        None => {
            let mut r = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is missing, unknown, expired or revoked",
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"demo-authorization-server\", error=\"invalid_token\"",
                ),
            );
            r
        }
    }
}

/// The RFC 8414 metadata document for `issuer`.
pub(crate) fn metadata(issuer: &str) -> Value {
    let auth_methods = ["client_secret_basic", "client_secret_post"];
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": ["profile"],
        "authorization_response_iss_parameter_supported": true,
        "service_documentation": format!("{issuer}/"),
    })
}

/// `GET /.well-known/oauth-authorization-server`.
pub(crate) async fn well_known(State(app): State<AppState>) -> Response {
    let mut r = json_response(StatusCode::OK, &metadata(&app.issuer));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    r
}
