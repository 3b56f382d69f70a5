//! The HTTP transport under oauth2: sends oauth2's prepared request through
//! the shared reqwest client, reads a size-limited body, and turns every
//! non-success answer into a classified [`ProviderError`] while the status
//! and headers (`Retry-After`) are still at hand; oauth2 only ever sees
//! successes. Also a plain GET for discovery.
//!
//! Holds request and response bodies, which contain a refresh token, an
//! access token or the client secret, only for the length of one call; it
//! logs status, size and timing, never a body.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Instant, SystemTime};

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::classify::{self, Exchange};
use crate::shape::ResponseShape;
use crate::{ProviderError, TRACE_TARGET};

/// Largest response body read; a success must fit, an error body is cut.
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// One oauth2 exchange over the shared client.
pub(crate) struct Transport<'a> {
    pub http: &'a reqwest::Client,
    pub provider: &'a str,
    pub exchange: Exchange,
    /// The last HTTP status seen (0: none), for the caller's trace event.
    status: AtomicU16,
    /// The OAuth error code of a failed answer, for the trace event.
    error_code: OnceLock<String>,
    /// How the provider shapes token answers (nested, renamed fields).
    shape: Option<&'a ResponseShape>,
}

impl<'a> Transport<'a> {
    pub fn new(http: &'a reqwest::Client, provider: &'a str, exchange: Exchange) -> Self {
        Self {
            http,
            provider,
            exchange,
            status: AtomicU16::new(0),
            error_code: OnceLock::new(),
            shape: None,
        }
    }

    /// Token answers are brought into the standard shape before oauth2
    /// parses them.
    pub fn with_shape(mut self, shape: &'a ResponseShape) -> Self {
        self.shape = Some(shape);
        self
    }

    /// The last HTTP status, if a response arrived.
    pub fn status(&self) -> Option<u16> {
        match self.status.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }

    /// The OAuth error code of a failed answer, if it had one.
    pub fn error_code(&self) -> Option<&str> {
        self.error_code.get().map(String::as_str)
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ProviderError> {
        let request = reqwest::Request::try_from(request).map_err(|e| {
            ProviderError::Misconfigured(format!(
                "cannot build the {} request: {}",
                self.exchange.as_str(),
                describe_reqwest(&e)
            ))
        })?;
        let (status, headers, body) = fetch(self.http, request, self.provider).await?;
        self.status.store(status.as_u16(), Ordering::Relaxed);
        // A success in the provider's own shape is read in the standard one.
        let body = match self.shape.filter(|_| status.is_success()) {
            Some(shape) => shape.normalize(&body).map_or(body, |n| n.to_vec()),
            None => body,
        };
        let checked =
            classify::check_response(self.exchange, status, &headers, &body, SystemTime::now());
        if let Err(e) = checked {
            if let Some((code, _)) = classify::oauth_error(&body) {
                let _ = self.error_code.set(code);
            }
            return Err(e);
        }
        // oauth2 wants exactly 200 (RFC 7009 allows any 2xx for revocation).
        let mut response = http_response(body);
        if let Some(ct) = headers.get(reqwest::header::CONTENT_TYPE) {
            response
                .headers_mut()
                .insert(reqwest::header::CONTENT_TYPE, ct.clone());
        }
        Ok(response)
    }
}

impl std::fmt::Debug for Transport<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("provider", &self.provider)
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

fn http_response(body: Vec<u8>) -> HttpResponse {
    let mut response = HttpResponse::new(body);
    *response.status_mut() = StatusCode::OK;
    response
}

impl<'c> AsyncHttpClient<'c> for Transport<'_> {
    type Error = ProviderError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, ProviderError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// Sends `request` and reads the answer (body cut at [`MAX_BODY`]; a success
/// body over the limit is an error). Refuses an answer that came from
/// another URL: the shared client must not follow redirects.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    request: reqwest::Request,
    provider: &str,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), ProviderError> {
    let started = Instant::now();
    let url = request.url().clone();
    let mut response = http.execute(request).await.map_err(|e| from_reqwest(&e))?;
    let status = response.status();
    if response.url() != &url {
        return Err(ProviderError::Misconfigured(
            "the HTTP client followed a redirect; build it with redirect::Policy::none()".into(),
        ));
    }
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| from_reqwest(&e))? {
        let room = MAX_BODY.saturating_sub(body.len());
        if chunk.len() > room {
            if status.is_success() {
                return Err(ProviderError::InvalidResponse(format!(
                    "response body is larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(chunk.get(..room).unwrap_or_default());
            break;
        }
        body.extend_from_slice(&chunk);
    }
    tracing::debug!(
        target: TRACE_TARGET,
        provider,
        status = status.as_u16(),
        bytes = body.len(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "provider answered"
    );
    Ok((status, headers, body))
}

/// A reqwest failure: timeouts and network trouble are transient.
pub(crate) fn from_reqwest(e: &reqwest::Error) -> ProviderError {
    if e.is_builder() {
        return ProviderError::Misconfigured(describe_reqwest(e));
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the connection failed while reading the answer"
    } else {
        "the request failed"
    };
    ProviderError::Transient {
        reason: format!("{what}: {}", describe_reqwest(e)),
        retry_after: None,
    }
}

/// The error and its causes on one line (URLs, never bodies).
fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    classify::sanitize_text(&text, 400)
}
