//! A set of OAuth scopes as get-service compares them: a worker's request,
//! a policy rule's ceiling, what a token carries. Order and repeats do not
//! matter (RFC 6749 section 3.3). Scopes are not secret.

use std::collections::BTreeSet;
use std::fmt;

use tokenvault_oauth::checks::check_scope;

/// The most scopes one request or rule may name, and the longest scope.
pub use tokenvault_limits::{MAX_REQUEST_SCOPES as MAX_SCOPES, MAX_SCOPE_LEN};

/// A set of scopes, kept sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    /// Checks and collects `scopes` (at most [`MAX_SCOPES`], each 1 to
    /// [`MAX_SCOPE_LEN`] printable ASCII characters without spaces, quotes
    /// or backslashes). The error says which one is wrong.
    pub fn parse<S: AsRef<str>>(scopes: &[S]) -> Result<Self, String> {
        if scopes.len() > MAX_SCOPES {
            return Err(format!(
                "scopes: at most {MAX_SCOPES} scopes, got {}",
                scopes.len()
            ));
        }
        let mut set = BTreeSet::new();
        for scope in scopes {
            let scope = scope.as_ref();
            if scope.len() > MAX_SCOPE_LEN {
                return Err(format!(
                    "scopes: a scope is longer than {MAX_SCOPE_LEN} characters"
                ));
            }
            check_scope(scope).map_err(|e| format!("scopes: {e}"))?;
            set.insert(scope.to_owned());
        }
        Ok(Self(set))
    }

    /// The scopes a token says it carries, as providers spell them (no
    /// checks: they are only compared).
    pub fn of_token(scopes: &[String]) -> Self {
        Self(scopes.iter().cloned().collect())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every scope here is also in `other`.
    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The scopes here that `other` lacks.
    pub fn beyond(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.difference(&other.0).cloned().collect())
    }

    /// The scopes in both.
    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// The scopes, sorted.
    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

/// Space-separated, as in an OAuth `scope` parameter.
impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for scope in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(scope)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_compares_and_prints() {
        let asked = ScopeSet::parse(&["email", "openid", "email"]).unwrap();
        assert_eq!(asked.to_string(), "email openid");
        let grant = ScopeSet::of_token(&["openid".into(), "email".into(), "profile".into()]);
        assert!(asked.is_subset(&grant));
        assert!(!grant.is_subset(&asked));
        assert_eq!(grant.beyond(&asked).to_string(), "profile");
        assert_eq!(grant.intersection(&asked), asked);
        assert!(ScopeSet::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn refuses_bad_scopes() {
        for bad in [
            vec!["a b"],
            vec![""],
            vec!["a\"b"],
            vec![&"x".repeat(129)[..]],
        ] {
            assert!(ScopeSet::parse(&bad).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        assert!(ScopeSet::parse(&many).is_err());
    }
}
