//! Input checks that run before anything is written. Messages name the field
//! and the rule, never echo a sealed token.

use crate::error::RpcError;

/// The longest account id accepted.
pub const MAX_ACCOUNT_LEN: usize = 128;
/// The longest provider name accepted.
pub const MAX_PROVIDER_LEN: usize = 64;
/// The longest status reason accepted, in bytes.
pub const MAX_REASON_LEN: usize = 256;

/// An account id: 1-128 characters of `A-Z a-z 0-9 . _ : @ -`.
pub fn account(account: &str) -> Result<(), RpcError> {
    let ok = !account.is_empty()
        && account.len() <= MAX_ACCOUNT_LEN
        && account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RpcError::InvalidArgument(
            "account: use 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '@', '-'".into(),
        ))
    }
}

/// A provider name's syntax: 1-64 of `a-z 0-9 - _`.
pub fn provider_name(provider: &str) -> Result<(), RpcError> {
    let ok = !provider.is_empty()
        && provider.len() <= MAX_PROVIDER_LEN
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RpcError::InvalidArgument(
            "provider: use 1-64 characters of a-z, 0-9, '-', '_'".into(),
        ))
    }
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

/// A status reason: short, printable, single line.
pub fn reason(reason: &str) -> Result<(), RpcError> {
    if reason.len() > MAX_REASON_LEN {
        return Err(RpcError::TooLarge(format!(
            "reason: longer than {MAX_REASON_LEN} bytes"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(RpcError::InvalidArgument(
            "reason: control characters are not allowed".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts() {
        assert!(account("google:1234567890").is_ok());
        assert!(account("user@example.com").is_ok());
        assert!(matches!(account(""), Err(RpcError::InvalidArgument(_))));
        assert!(matches!(account("a b"), Err(RpcError::InvalidArgument(_))));
        assert!(matches!(
            account("a/../b"),
            Err(RpcError::InvalidArgument(_))
        ));
        assert!(matches!(
            account(&"a".repeat(129)),
            Err(RpcError::InvalidArgument(_))
        ));
    }

    #[test]
    fn providers() {
        let known = vec!["google".to_owned()];
        assert!(known_provider("google", &known).is_ok());
        assert!(known_provider("github", &known).is_err());
        assert!(known_provider("Google", &known).is_err());
    }
}
