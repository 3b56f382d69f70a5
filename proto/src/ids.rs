//! The syntax of account ids and provider names, as the `.proto` documents
//! it. Both services check requests with these before doing anything else.

pub use tokenvault_limits::{MAX_ACCOUNT_LEN, MAX_PROVIDER_LEN};

/// An account id: 1-128 characters of `A-Z a-z 0-9 . _ : @ -`.
pub fn check_account(account: &str) -> Result<(), &'static str> {
    let ok = !account.is_empty()
        && account.len() <= MAX_ACCOUNT_LEN
        && account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("account: use 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '@', '-'")
    }
}

/// A provider name: 1-64 characters of `a-z 0-9 - _`.
pub fn check_provider(provider: &str) -> Result<(), &'static str> {
    let ok = !provider.is_empty()
        && provider.len() <= MAX_PROVIDER_LEN
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("provider: use 1-64 characters of a-z, 0-9, '-', '_'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_providers() {
        assert!(check_account("google:1234567890").is_ok());
        assert!(check_account("user@example.com").is_ok());
        assert!(check_account(&"a".repeat(MAX_ACCOUNT_LEN)).is_ok());
        for bad in ["", "a b", "a/../b", &"a".repeat(MAX_ACCOUNT_LEN + 1)] {
            assert!(check_account(bad).is_err(), "{bad}");
        }
        assert!(check_provider("google").is_ok());
        assert!(check_provider(&"a".repeat(MAX_PROVIDER_LEN)).is_ok());
        for bad in ["", "Google", "a.b", &"a".repeat(MAX_PROVIDER_LEN + 1)] {
            assert!(check_provider(bad).is_err(), "{bad}");
        }
    }
}
