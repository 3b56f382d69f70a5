//! What can go wrong talking to a provider, in words a person can act on.
//! Messages never contain a token, a code or a client secret: provider error
//! codes are kept, provider-supplied bodies are not.

/// A provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached, timed out, or answered 5xx.
    #[error("the provider could not be reached: {0}")]
    Unavailable(String),
    /// The provider refused the request with an OAuth error code.
    #[error("the provider refused: {0}")]
    Refused(String),
    /// The token response held no refresh token: offline access was not granted.
    #[error("the provider granted no refresh token")]
    NoRefreshToken,
    /// The account could not be identified (bad ID token, user API answer).
    #[error("the account could not be identified: {0}")]
    Identity(String),
    /// The provider's configuration or metadata is unusable.
    #[error("provider misconfigured: {0}")]
    Misconfigured(String),
}

/// Maps an oauth2 token-request error without quoting any body.
pub(crate) fn token_request_error<RE, T>(
    e: oauth2::RequestTokenError<RE, oauth2::StandardErrorResponse<T>>,
) -> ProviderError
where
    RE: std::error::Error + 'static,
    T: oauth2::ErrorResponseType + std::fmt::Display + 'static,
{
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => {
            let code = r.error().to_string();
            if code == "server_error" || code == "temporarily_unavailable" {
                ProviderError::Unavailable(format!("token endpoint answered {code}"))
            } else {
                ProviderError::Refused(sanitize(&code))
            }
        }
        oauth2::RequestTokenError::Request(e) => {
            ProviderError::Unavailable(format!("token endpoint: {}", root_cause(&e)))
        }
        // The body may hold tokens: never quote it.
        oauth2::RequestTokenError::Parse(_, _) => {
            ProviderError::Refused("unreadable token response".into())
        }
        oauth2::RequestTokenError::Other(_) => {
            ProviderError::Unavailable("unexpected token endpoint answer".into())
        }
    }
}

/// The innermost error's message (e.g. "Connection refused").
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    sanitize(&cause.to_string())
}

/// At most 100 printable characters.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}
