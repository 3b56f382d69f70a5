//! Which accounts a caller of the inventory sees, under the account policy
//! in force. Never sees a token: it decides on account ids, provider names
//! and the caller's SPIFFE ID.
//!
//! - No rules (an open policy): every account.
//! - Rules, none of which names the caller: every account. The inventory's
//!   allow-lists (`admin` by default) decide who may list at all; the policy
//!   narrows only the callers it was written for.
//! - Rules that name the caller: only the (account, provider) pairs those
//!   rules allow it to read ([`Policy::allows`], what `Policy::decide`
//!   allows), both in `ListAccounts` and in `WatchAccountEvents`.

use std::sync::Arc;

use tokenvault_tls::SpiffeId;

use crate::policy::Policy;

/// What one caller sees.
#[derive(Debug, Clone)]
pub(crate) enum Visibility {
    /// No rules: everything.
    Open,
    /// Rules, none naming the caller: everything.
    Unnamed,
    /// Rules naming the caller: what they allow it (nothing without a
    /// caller identity).
    Filtered {
        policy: Arc<Policy>,
        caller: Option<SpiffeId>,
    },
}

impl Visibility {
    /// What `caller` sees under `policy`.
    pub(crate) fn of(policy: &Arc<Policy>, caller: Option<&SpiffeId>) -> Self {
        if policy.is_open() {
            return Self::Open;
        }
        match caller {
            Some(id) if !policy.names_caller(id) => Self::Unnamed,
            caller => Self::Filtered {
                policy: Arc::clone(policy),
                caller: caller.cloned(),
            },
        }
    }

    /// Whether the caller sees `account` at `provider`.
    pub(crate) fn shows(&self, account: &str, provider: &str) -> bool {
        match self {
            Self::Open | Self::Unnamed => true,
            Self::Filtered { policy, caller } => caller
                .as_ref()
                .is_some_and(|id| policy.allows(id, account, provider)),
        }
    }

    /// Whether some rows may be hidden from the caller.
    pub(crate) fn filters(&self) -> bool {
        matches!(self, Self::Filtered { .. })
    }

    /// What the call's audit event records as its `policy`: `open` (no
    /// rules), `unnamed` (no rule names the caller: everything listed) or
    /// `filtered` (only what the caller's rules allow).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Unnamed => "unnamed",
            Self::Filtered { .. } => "filtered",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TD: &str = "tokenvault.local";
    const RULES: &str = r#"
[[rules]]
name = "ops-acme"
callers = ["admin/ops"]
accounts = ["acme:*"]
providers = ["google"]

[[rules]]
name = "ops-one"
callers = ["admin/ops"]
accounts = ["globex:7"]
providers = ["*"]

[[rules]]
name = "workers"
callers = ["worker/*"]
accounts = ["*"]
providers = ["*"]
"#;

    fn id(path: &str) -> SpiffeId {
        format!("spiffe://{TD}/{path}").parse().unwrap()
    }

    fn policy() -> Arc<Policy> {
        Arc::new(Policy::parse(RULES, TD, &["google", "github"]).unwrap())
    }

    #[test]
    fn a_named_caller_sees_what_its_rules_allow() {
        let view = Visibility::of(&policy(), Some(&id("admin/ops")));
        assert_eq!(view.label(), "filtered");
        assert!(view.filters());
        assert!(view.shows("acme:1", "google"));
        assert!(!view.shows("acme:1", "github"));
        assert!(view.shows("globex:7", "github"));
        assert!(!view.shows("globex:70", "github"));
        assert!(!view.shows("initech:1", "google"));
    }

    #[test]
    fn an_unnamed_caller_or_an_open_policy_sees_everything() {
        let unnamed = Visibility::of(&policy(), Some(&id("admin/audit")));
        assert_eq!(unnamed.label(), "unnamed");
        assert!(!unnamed.filters());
        assert!(unnamed.shows("initech:1", "github"));
        let open = Visibility::of(&Arc::new(Policy::default()), Some(&id("admin/ops")));
        assert_eq!(open.label(), "open");
        assert!(open.shows("anything", "any"));
        let anonymous_open = Visibility::of(&Arc::new(Policy::default()), None);
        assert!(anonymous_open.shows("anything", "any"));
    }

    #[test]
    fn without_an_identity_rules_show_nothing() {
        let view = Visibility::of(&policy(), None);
        assert_eq!(view.label(), "filtered");
        assert!(!view.shows("acme:1", "google"));
    }
}
