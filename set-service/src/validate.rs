//! Input checks that run before anything is written. Messages name the field
//! and the rule, never echo a sealed token.

use crate::error::RpcError;

pub use tokenvault_limits::{
    MAX_ACCOUNT_LEN, MAX_KEY_ID_LEN, MAX_PROVIDER_LEN, MAX_STATUS_REASON_LEN,
};

/// An account id in the contract's syntax.
pub fn account(account: &str) -> Result<(), RpcError> {
    tokenvault_proto::ids::check_account(account).map_err(|m| RpcError::InvalidArgument(m.into()))
}

/// A provider name in the contract's syntax.
pub fn provider_name(provider: &str) -> Result<(), RpcError> {
    tokenvault_proto::ids::check_provider(provider).map_err(|m| RpcError::InvalidArgument(m.into()))
}

/// A provider that is in the catalogue.
pub fn known_provider(provider: &str, known: &[String]) -> Result<(), RpcError> {
    provider_name(provider)?;
    if known.iter().any(|p| p == provider) {
        Ok(())
    } else {
        Err(RpcError::InvalidArgument(format!(
            "provider: {provider:?} is not a configured provider"
        )))
    }
}

/// A key id named in a request: 1 to [`MAX_KEY_ID_LEN`] printable ASCII
/// characters without spaces.
pub fn key_id(field: &str, kid: &str) -> Result<(), RpcError> {
    if kid.is_empty() || kid.len() > MAX_KEY_ID_LEN {
        return Err(RpcError::InvalidArgument(format!(
            "{field}: must be 1 to {MAX_KEY_ID_LEN} characters"
        )));
    }
    if !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RpcError::InvalidArgument(format!(
            "{field}: only printable ASCII characters without spaces are allowed"
        )));
    }
    Ok(())
}

/// A status reason: short, printable, single line.
pub fn reason(reason: &str) -> Result<(), RpcError> {
    if reason.len() > MAX_STATUS_REASON_LEN {
        return Err(RpcError::TooLarge(format!(
            "reason: longer than {MAX_STATUS_REASON_LEN} bytes"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(RpcError::InvalidArgument(
            "reason: control characters are not allowed".into(),
        ));
    }
    Ok(())
}

/// Account metadata: empty (none), or a JSON object as `tokenvault_proto::metadata` describes,
/// returned in compact form. Too long is RESOURCE_EXHAUSTED, a wrong shape INVALID_ARGUMENT.
pub fn metadata(json: &str) -> Result<Option<String>, RpcError> {
    if json.is_empty() {
        return Ok(None);
    }
    if json.len() > tokenvault_proto::metadata::MAX_METADATA_LEN {
        return Err(RpcError::TooLarge(format!(
            "metadata_json: longer than {} bytes",
            tokenvault_proto::metadata::MAX_METADATA_LEN
        )));
    }
    tokenvault_proto::metadata::check_metadata(json)
        .map(Some)
        .map_err(|m| RpcError::InvalidArgument(format!("{m} (metadata_json)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_must_be_in_the_catalogue() {
        let known = vec!["google".to_owned()];
        assert!(known_provider("google", &known).is_ok());
        assert!(matches!(
            known_provider("github", &known),
            Err(RpcError::InvalidArgument(_))
        ));
        assert!(known_provider("Google", &known).is_err());
        assert!(matches!(account("a b"), Err(RpcError::InvalidArgument(_))));
    }
}
