//! Every way a request can fail, and the one place where each becomes an HTTP
//! status and an error page that says what went wrong and what to do. Error
//! texts never contain a token, a code or a secret.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokenvault_runtime::settings::ConfigError;

use crate::link::LinkError;
use crate::pages;
use crate::provider::ProviderError;
use tokenvault_set_client::SetError;

/// A request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No provider of that name is configured.
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    /// A signed link was refused.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The person declined at the provider.
    #[error("consent was declined at the provider")]
    Denied,
    /// The provider's authorization response carried an error code.
    #[error("the provider answered the authorization with {0}")]
    AuthorizationError(String),
    /// The callback has no state, or this browser has no sign-in in progress.
    #[error("no sign-in in progress for this browser")]
    StateMissing,
    /// The callback's state is not the one this browser's sign-in sent.
    #[error("the state does not match this browser's sign-in")]
    StateMismatch,
    /// The sign-in took too long.
    #[error("the sign-in expired")]
    StateExpired,
    /// The callback was used before.
    #[error("the sign-in was already used")]
    StateReused,
    /// Talking to the provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// set-service failed while storing a token.
    #[error(transparent)]
    SetService(#[from] SetError),
    /// set-service failed while disconnecting.
    #[error("disconnect failed: {0}")]
    DisconnectFailed(SetError),
    /// The request body is over the limit.
    #[error("the request is too large")]
    TooLarge,

    /// Sealing failed (a key problem on this server).
    #[error("sealing failed: {0}")]
    Seal(String),
    /// The browser may not do this (e.g. disconnect an account it did not connect).
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No such page.
    #[error("not found")]
    NotFound,
    /// Too many device flows are in progress.
    #[error("too many device sign-ins are in progress")]
    Busy,
}

/// What an error page says.
#[derive(Debug, Clone, Copy)]
pub struct ErrorPage {
    /// A stable machine-readable code (`data-error` on the page).
    pub code: &'static str,
    /// The heading.
    pub title: &'static str,
    /// What to do now.
    pub action: &'static str,
}

impl WebError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::UnknownProvider(_) | WebError::NotFound => StatusCode::NOT_FOUND,
            WebError::Link(_) | WebError::Denied | WebError::NotAllowed(_) => StatusCode::FORBIDDEN,
            WebError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::DisconnectFailed(SetError::Refused { .. }) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            WebError::DisconnectFailed(_) | WebError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            WebError::StateMissing
            | WebError::StateMismatch
            | WebError::StateExpired
            | WebError::StateReused
            | WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::AuthorizationError(_) => StatusCode::BAD_GATEWAY,
            WebError::Provider(ProviderError::Unavailable(_))
            | WebError::SetService(SetError::Unavailable(_) | SetError::Uncertain(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            WebError::Provider(ProviderError::Misconfigured(_))
            | WebError::SetService(SetError::Refused { .. })
            | WebError::Seal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::Provider(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The page's code, heading and advice.
    pub fn page(&self) -> ErrorPage {
        let (code, title, action) = match self {
            WebError::UnknownProvider(_) => (
                "unknown-provider",
                "Unknown provider",
                "Go back to the start page and choose one of the providers listed there.",
            ),
            WebError::Link(LinkError::Expired) => (
                "link-expired",
                "This link has expired",
                "Go back to the application that sent you here and ask it for a new link.",
            ),
            WebError::Link(LinkError::NotConfigured) => (
                "links-disabled",
                "Signed links are not enabled",
                "This server files accounts under the provider's identity. Open the start page without link parameters.",
            ),
            WebError::Link(_) => (
                "link-invalid",
                "This link is not valid",
                "Use the link exactly as the application gave it to you, or ask it for a new one.",
            ),
            WebError::Denied => (
                "access-denied",
                "Access was declined",
                "Nothing was stored. To connect the account, start again and allow access when the provider asks.",
            ),
            WebError::AuthorizationError(_) => (
                "authorization-error",
                "The provider did not authorize the connection",
                "Nothing was stored. Start again; if it keeps happening, tell the people who run this service.",
            ),
            WebError::StateMissing => (
                "state-missing",
                "No sign-in in progress",
                "This page must be reached from a sign-in started in this browser, with cookies enabled. Nothing was stored; start again.",
            ),
            WebError::StateMismatch => (
                "state-mismatch",
                "This sign-in does not match",
                "The answer belongs to a different sign-in than the one this browser started (perhaps another tab). Nothing was stored; start again.",
            ),
            WebError::StateExpired => (
                "state-expired",
                "The sign-in took too long",
                "For safety a sign-in must finish within a few minutes. Nothing was stored; start again.",
            ),
            WebError::StateReused => (
                "state-reused",
                "This sign-in was already used",
                "Each sign-in can be completed once; a reload or the back button repeats it. Nothing more was stored; start again if you need to.",
            ),
            WebError::Provider(ProviderError::NoRefreshToken) => (
                "no-refresh-token",
                "The provider did not grant offline access",
                "Nothing was stored. Start again and allow offline access. If it keeps happening, the provider's app settings must allow refresh tokens.",
            ),
            WebError::Provider(ProviderError::Unavailable(_)) => (
                "provider-unavailable",
                "The provider could not be reached",
                "Nothing was stored. Wait a few minutes and start again.",
            ),
            WebError::Provider(ProviderError::Refused(_)) => (
                "provider-refused",
                "The provider refused the connection",
                "Nothing was stored. Start again; if it keeps happening, tell the people who run this service.",
            ),
            WebError::Provider(ProviderError::Identity(_)) => (
                "identity-invalid",
                "Your account could not be identified",
                "Nothing was stored. Start again; if it keeps happening, tell the people who run this service.",
            ),
            WebError::Provider(ProviderError::Misconfigured(_)) => (
                "provider-misconfigured",
                "This provider is not set up correctly",
                "Nothing was stored. Tell the people who run this service.",
            ),
            WebError::SetService(SetError::Unavailable(_)) => (
                "set-service-unavailable",
                "The account could not be saved right now",
                "Nothing was stored. Wait a few minutes and start again.",
            ),
            WebError::SetService(SetError::Uncertain(_)) => (
                "set-service-uncertain",
                "The account may not have been saved",
                "The service did not confirm in time, so it may or may not have been saved. Connecting again is safe.",
            ),
            WebError::DisconnectFailed(SetError::Refused { .. }) => (
                "disconnect-failed",
                "The account was not disconnected",
                "The service refused. Tell the people who run this service.",
            ),
            WebError::DisconnectFailed(_) => (
                "disconnect-unavailable",
                "The account was not disconnected",
                "The service could not be reached or did not confirm. Wait a few minutes and try again.",
            ),
            WebError::TooLarge => (
                "too-large",
                "The request is too large",
                "Go back to the start page and try again.",
            ),
            WebError::SetService(SetError::Refused { .. }) | WebError::Seal(_) => (
                "store-failed",
                "The account could not be saved",
                "Nothing was stored. Tell the people who run this service.",
            ),
            WebError::NotAllowed(_) => (
                "not-allowed",
                "Not allowed",
                "Only the browser that connected an account, or a link from your application, can disconnect it.",
            ),
            WebError::BadRequest(_) => (
                "bad-request",
                "The request is not valid",
                "Go back to the start page and try again.",
            ),
            WebError::NotFound => ("not-found", "Page not found", "Go back to the start page."),
            WebError::Busy => (
                "busy",
                "Too many sign-ins in progress",
                "Nothing was stored. Wait a few minutes and start again.",
            ),
        };
        ErrorPage {
            code,
            title,
            action,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let page = self.page();
        if status.is_server_error() {
            tracing::warn!(code = page.code, error = %self, "request failed");
        } else {
            tracing::info!(code = page.code, error = %self, "request refused");
        }
        // Server-side failures show only their code: details (addresses,
        // upstream messages) stay in the log.
        let detail = if status.is_server_error() {
            String::new()
        } else {
            self.to_string()
        };
        (status, pages::error(&page, &detail)).into_response()
    }
}

impl From<axum::extract::rejection::QueryRejection> for WebError {
    fn from(_: axum::extract::rejection::QueryRejection) -> Self {
        WebError::BadRequest("malformed query string")
    }
}

impl From<axum::extract::rejection::PathRejection> for WebError {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        WebError::NotFound
    }
}

impl From<axum::extract::rejection::FormRejection> for WebError {
    fn from(e: axum::extract::rejection::FormRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            WebError::TooLarge
        } else {
            WebError::BadRequest("malformed form")
        }
    }
}

/// Why the web-frontend could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A provider entry is unusable.
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    /// The public keys cannot be loaded.
    #[error("public keys: {0}")]
    PublicKeys(#[from] tokenvault_seal::SealError),
    /// The set-service client cannot be built.
    #[error("set-service client: {0}")]
    Tls(#[from] tokenvault_tls::TlsError),
    /// The cookie key file is unusable.
    #[error("session.cookie_key_file: {0}")]
    CookieKey(String),
    /// The link secret file is unusable.
    #[error("links.secret_file: {0}")]
    LinkSecret(String),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}
