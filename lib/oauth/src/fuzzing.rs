//! The parsers a provider's answer reaches, on plain bytes and without a
//! server or a [`Provider`](crate::Provider), for the fuzz targets in
//! `fuzz/`. Each runs the code the client runs on a real answer; no service
//! calls them.
//!
//! Holds whatever the answer holds (an access token, for a refresh) for the
//! length of one call, as the client does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

use crate::classify::{Exchange, check_response};
use crate::client::refreshed;
use crate::config::{ClientAuth, ScopeSeparator};
use crate::discovery::endpoints_from_body;
use crate::shape::ResponseShape;
use crate::token_body::TokenBody;
use crate::{Endpoints, ProviderError, Refreshed};

/// The lifetime of a token whose answer names none.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// An answer's status and `Retry-After` header; `None` for a status code
/// HTTP does not have, or a header value HTTP cannot carry.
fn head(status: u16, retry_after: Option<&[u8]>) -> Option<(StatusCode, HeaderMap)> {
    let status = StatusCode::from_u16(status).ok()?;
    let mut headers = HeaderMap::new();
    if let Some(value) = retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from_bytes(value).ok()?);
    }
    Some((status, headers))
}

/// A token endpoint's answer to a refresh grant, taken at `now` as
/// [`Provider::refresh`](crate::Provider::refresh) takes it: a failure
/// classified; a success body parsed as oauth2 parses it (serde_json into
/// the token body) and turned into what a refresh returns, for the refresh
/// token `sent` asking for the scopes `asked`, after `shape` brought it
/// into the standard shape. `None` if `status` or `retry_after` cannot be
/// in an HTTP answer.
pub fn refresh_answer(
    status: u16,
    retry_after: Option<&[u8]>,
    body: &[u8],
    sent: &str,
    asked: &[String],
    shape: &ResponseShape,
    now: SystemTime,
) -> Option<Result<Refreshed, ProviderError>> {
    let (status, headers) = head(status, retry_after)?;
    let sent_at = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let normalized = status.is_success().then(|| shape.normalize(body)).flatten();
    let body = normalized.as_deref().map_or(body, Vec::as_slice);
    let result = check_response(Exchange::Refresh, status, &headers, body, now)
        .and_then(|()| {
            serde_json::from_slice::<TokenBody>(body)
                .map_err(|_| ProviderError::InvalidResponse("malformed token response".into()))
        })
        .map(|token| {
            refreshed(
                token,
                asked,
                ScopeSeparator::Comma,
                sent,
                sent_at,
                DEFAULT_LIFETIME,
            )
        });
    Some(result)
}

/// A revocation endpoint's answer (RFC 7009), classified at `now` as
/// [`Provider::revoke`](crate::Provider::revoke) classifies it. `None` if
/// `status` or `retry_after` cannot be in an HTTP answer.
pub fn revocation_answer(
    status: u16,
    retry_after: Option<&[u8]>,
    body: &[u8],
    now: SystemTime,
) -> Option<Result<(), ProviderError>> {
    let (status, headers) = head(status, retry_after)?;
    Some(check_response(
        Exchange::Revoke,
        status,
        &headers,
        body,
        now,
    ))
}

/// The endpoints a discovery document `body` gives a provider configured
/// with `issuer`, checked as discovery checks them.
pub fn discovery_answer(issuer: &str, body: &[u8]) -> Result<Endpoints, ProviderError> {
    endpoints_from_body("fuzz", issuer, ClientAuth::ClientSecretBasic, body)
}
