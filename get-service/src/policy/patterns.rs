//! The patterns a policy rule matches with: caller identities and account
//! ids. Neither is secret.
//!
//! Callers, written relative to get-service's trust domain or in full:
//!
//! | pattern | matches |
//! |---|---|
//! | `worker/billing`, `spiffe://td/worker/billing` | exactly that identity |
//! | `spiffe://td/worker` | exactly the unnamed worker identity |
//! | `worker/*`, `spiffe://td/worker/*` | every identity with that role |
//!
//! Accounts: `*` (every account), `acme:*` (every id that starts with
//! `acme:`, the tenant convention `<tenant>:<user>`; a prefix without the
//! `:` works too, e.g. `user-*`), or one exact id.

use std::fmt;

use tokenvault_proto::ids::check_account;
use tokenvault_tls::{Role, SpiffeId};

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerPattern {
    /// Exactly this identity.
    Exact(SpiffeId),
    /// Every identity with this role in this trust domain.
    AnyWithRole {
        /// The trust domain.
        trust_domain: String,
        /// The role.
        role: Role,
    },
}

impl CallerPattern {
    /// Parses `text`; relative patterns are in `trust_domain`.
    pub fn parse(text: &str, trust_domain: &str) -> Result<Self, String> {
        let wrong = |why: &str| format!("caller {text:?}: {why}");
        if text.starts_with("spiffe://") {
            if let Some(base) = text.strip_suffix("/*") {
                let id: SpiffeId = base.parse().map_err(|e| wrong(&format!("{e}")))?;
                if id.name().is_some() {
                    return Err(wrong("'/*' may only follow a role"));
                }
                return Ok(Self::AnyWithRole {
                    trust_domain: id.trust_domain().to_owned(),
                    role: id.role(),
                });
            }
            return text
                .parse()
                .map(Self::Exact)
                .map_err(|e| wrong(&format!("{e}")));
        }
        let Some((role, name)) = text.split_once('/') else {
            return Err(wrong(&format!(
                "write {text}/* for every identity with that role, {text}/<name> for one, or \
                 spiffe://{trust_domain}/{text} for the unnamed one"
            )));
        };
        let role: Role = role.parse().map_err(|e| wrong(&format!("{e}")))?;
        if name == "*" {
            return Ok(Self::AnyWithRole {
                trust_domain: trust_domain.to_owned(),
                role,
            });
        }
        SpiffeId::new(trust_domain, role, Some(name))
            .map(Self::Exact)
            .map_err(|e| wrong(&format!("{e}")))
    }

    /// Whether `id` is covered.
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Exact(exact) => exact == id,
            Self::AnyWithRole { trust_domain, role } => {
                id.role() == *role && id.trust_domain() == trust_domain
            }
        }
    }
}

impl fmt::Display for CallerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(id) => write!(f, "{id}"),
            Self::AnyWithRole { trust_domain, role } => {
                write!(f, "spiffe://{trust_domain}/{role}/*")
            }
        }
    }
}

/// Which accounts a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountPattern {
    /// Every account.
    Any,
    /// Every account id that starts with this (e.g. `acme:`).
    Prefix(String),
    /// One account id.
    Exact(String),
}

impl AccountPattern {
    /// Parses `text`: `*`, `<prefix>*` or an exact id.
    pub fn parse(text: &str) -> Result<Self, String> {
        let wrong = |why: &str| format!("account {text:?}: {why}");
        if text == "*" {
            return Ok(Self::Any);
        }
        let (body, prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        // `*` is not an account character: it can only end a pattern.
        check_account(body).map_err(|e| wrong(e.trim_start_matches("account: ")))?;
        Ok(if prefix {
            Self::Prefix(body.to_owned())
        } else {
            Self::Exact(body.to_owned())
        })
    }

    /// Whether `account` is covered.
    pub fn matches(&self, account: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Prefix(prefix) => account.starts_with(prefix.as_str()),
            Self::Exact(exact) => account == exact,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TD: &str = "tokenvault.local";

    fn id(text: &str) -> SpiffeId {
        text.parse().unwrap()
    }

    #[test]
    fn callers() {
        let billing = id("spiffe://tokenvault.local/worker/billing");
        let crm = id("spiffe://tokenvault.local/worker/crm");
        let unnamed = id("spiffe://tokenvault.local/worker");
        let other_td = id("spiffe://example.org/worker/billing");

        let p = CallerPattern::parse("worker/billing", TD).unwrap();
        assert!(p.matches(&billing) && !p.matches(&crm) && !p.matches(&other_td));
        let p = CallerPattern::parse("spiffe://tokenvault.local/worker/billing", TD).unwrap();
        assert!(p.matches(&billing) && !p.matches(&crm));
        let p = CallerPattern::parse("worker/*", TD).unwrap();
        assert!(p.matches(&billing) && p.matches(&crm) && p.matches(&unnamed));
        assert!(!p.matches(&other_td));
        assert!(!p.matches(&id("spiffe://tokenvault.local/web-frontend")));
        let p = CallerPattern::parse("spiffe://tokenvault.local/worker", TD).unwrap();
        assert!(p.matches(&unnamed) && !p.matches(&billing));
        let p = CallerPattern::parse("spiffe://example.org/worker/*", TD).unwrap();
        assert!(p.matches(&other_td) && !p.matches(&billing));
    }

    #[test]
    fn bad_callers_say_why() {
        let e = CallerPattern::parse("worker", TD).unwrap_err();
        assert!(e.contains("worker/*"), "{e}");
        for bad in [
            "operator/*",
            "worker/a b",
            "spiffe://tokenvault.local/worker/billing/*",
            "spiffe://tokenvault.local/boss",
            "",
        ] {
            assert!(CallerPattern::parse(bad, TD).is_err(), "{bad}");
        }
    }

    #[test]
    fn accounts() {
        let tenant = AccountPattern::parse("acme:*").unwrap();
        assert!(tenant.matches("acme:42"));
        assert!(!tenant.matches("acmecorp:42"));
        assert!(!tenant.matches("globex:42"));
        assert!(AccountPattern::parse("*").unwrap().matches("anything"));
        let exact = AccountPattern::parse("acme:42").unwrap();
        assert!(exact.matches("acme:42") && !exact.matches("acme:420"));
        for bad in ["", "**", "a*b*", "a b*", "acme:*:x"] {
            assert!(AccountPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
