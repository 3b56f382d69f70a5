//! get-service errors, and the one place where they become gRPC statuses.
//! No message here ever contains a token.

use tonic::Status;

pub use tokenvault_runtime::settings::ConfigError;

/// Why get-service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Serve(#[from] tokenvault_rpc::ServeError),
    #[error("set_service: {0}")]
    SetClient(#[from] tokenvault_tls::TlsError),
    #[error(transparent)]
    PrivateKeys(#[from] tokenvault_opener::RingLoadError),
    #[error("public_keys_dir: {0}")]
    PublicKeys(tokenvault_seal::SealError),
    #[error("store.url: {0}")]
    Store(tokenvault_store::StoreError),
    #[error("providers: {0}")]
    Provider(tokenvault_oauth::ProviderError),
    #[error("provider HTTP client: {0}")]
    Http(String),
    #[error("rotation.journal_dir: {0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error("policy.file: {0}")]
    Policy(String),
}

/// Why one access-token request failed. Cloneable, because one refresh's
/// outcome is handed to every caller waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("no refresh token is stored for this account and provider")]
    UnknownAccount,
    #[error("the account was disconnected; reconnect it through the web flow")]
    Disconnected,
    #[error(
        "reauthorization required: the provider rejected the refresh grant ({0}); reconnect the account through the web flow"
    )]
    ReauthorizationRequired(String),
    /// The account policy, or the grant, does not allow this read.
    #[error("{0}")]
    PermissionDenied(String),
    /// The scopes asked for cannot be had from this provider.
    #[error("{0}")]
    ScopesUnavailable(String),
    /// A narrowed refresh got `invalid_grant` (the OAuth error here): the
    /// grant may be dead, or the provider refuses the scopes that way. The
    /// broker settles which with a full refresh; callers never see this.
    #[error("the provider rejected a narrowed refresh ({0})")]
    NarrowedRefreshRejected(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl TokenError {
    /// A short outcome label for logs and audit lines.
    pub fn outcome(&self) -> &'static str {
        match self {
            TokenError::InvalidArgument(_) => "invalid_argument",
            TokenError::UnknownAccount => "unknown_account",
            TokenError::Disconnected => "disconnected",
            TokenError::ReauthorizationRequired(_) => "reauthorization_required",
            TokenError::PermissionDenied(_) => "permission_denied",
            TokenError::ScopesUnavailable(_) => "scopes_unavailable",
            TokenError::NarrowedRefreshRejected(_) => "narrowed_refresh_rejected",
            TokenError::Unavailable(_) => "unavailable",
            TokenError::Internal(_) => "internal",
        }
    }
}

impl From<TokenError> for Status {
    fn from(e: TokenError) -> Self {
        let msg = e.to_string();
        match e {
            TokenError::InvalidArgument(_) => Status::invalid_argument(msg),
            TokenError::UnknownAccount | TokenError::Disconnected => Status::not_found(msg),
            TokenError::ReauthorizationRequired(_)
            | TokenError::ScopesUnavailable(_)
            | TokenError::NarrowedRefreshRejected(_) => Status::failed_precondition(msg),
            TokenError::PermissionDenied(_) => Status::permission_denied(msg),
            TokenError::Unavailable(_) => Status::unavailable(msg),
            TokenError::Internal(_) => Status::internal(msg),
        }
    }
}

impl From<tokenvault_store::StoreError> for TokenError {
    fn from(e: tokenvault_store::StoreError) -> Self {
        match e {
            tokenvault_store::StoreError::Unavailable(_) => {
                TokenError::Unavailable(format!("the store is unavailable: {e}"))
            }
            other => TokenError::Internal(format!("store error: {other}")),
        }
    }
}
