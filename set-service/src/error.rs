//! set-service errors, and the one place where they become gRPC statuses.
//! No message here ever contains a sealed token.

use tonic::Status;

pub use tokenvault_runtime::settings::ConfigError;

/// Why set-service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Serve(#[from] tokenvault_rpc::ServeError),
    #[error("public_keys_dir: {0}")]
    Keys(tokenvault_seal::SealError),
    #[error("store.url: {0}")]
    Store(tokenvault_store::StoreError),
    #[error("webhooks: {0}")]
    Webhooks(String),
}

/// Why one RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl RpcError {
    /// A short outcome label for logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            RpcError::InvalidArgument(_) => "invalid_argument",
            RpcError::TooLarge(_) => "too_large",
            RpcError::NotFound(_) => "not_found",
            RpcError::Aborted(_) => "aborted",
            RpcError::Unavailable(_) => "unavailable",
            RpcError::Internal(_) => "internal",
        }
    }
}

impl From<RpcError> for Status {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::InvalidArgument(m) => Status::invalid_argument(m),
            RpcError::TooLarge(m) => Status::resource_exhausted(m),
            RpcError::NotFound(m) => Status::not_found(m),
            RpcError::Aborted(m) => Status::aborted(m),
            RpcError::Unavailable(m) => Status::unavailable(m),
            RpcError::Internal(m) => Status::internal(m),
        }
    }
}

impl From<tokenvault_seal::SealError> for RpcError {
    fn from(e: tokenvault_seal::SealError) -> Self {
        match e {
            tokenvault_seal::SealError::TooLarge { .. } => {
                RpcError::TooLarge(format!("sealed_token: {e}"))
            }
            other => RpcError::InvalidArgument(format!("sealed_token: {other}")),
        }
    }
}

impl From<tokenvault_store::StoreError> for RpcError {
    fn from(e: tokenvault_store::StoreError) -> Self {
        use tokenvault_store::StoreError as S;
        match e {
            S::NotFound => {
                RpcError::NotFound("nothing is stored for this account and provider".into())
            }
            S::Unavailable(_) => RpcError::Unavailable(format!("the store is unavailable: {e}")),
            S::Invalid(m) => RpcError::InvalidArgument(m),
            S::Conflict(m) => RpcError::Aborted(m),
            other => RpcError::Internal(format!("store error: {other}")),
        }
    }
}
