//! Who may read which account: get-service's account policy.
//!
//! The RPC allow-lists (`[allow]`) say which identities may call
//! `GetAccessToken` and `GetAccountStatus` at all; the policy says, per
//! caller, which accounts at which providers they may read, and at most
//! which scopes. It lives in its own TOML file (`policy.file`), re-read when
//! it changes and on SIGHUP ([`watch`]):
//!
//! ```toml
//! [[rules]]
//! name = "billing"                 # named in audit events and refusals
//! callers = ["worker/billing"]     # see patterns: exact ids or `worker/*`
//! accounts = ["acme:*"]            # `*`, a prefix ending in `*`, or exact
//! providers = ["google"]           # configured names, or ["*"]
//! scopes = ["openid", "email"]     # optional ceiling
//!
//! [[rules]]
//! name = "reports"
//! callers = ["worker/reports"]
//! client_token = true              # the application's own token
//! providers = ["partner-api"]      # (accounts may be left out)
//! ```
//!
//! - The first rule that matches the caller, the account and the provider
//!   decides; once any rule is configured, a call no rule matches is
//!   refused (PERMISSION_DENIED).
//! - With no rule file every caller the allow-list admits reads every
//!   account, as before policies existed, and get-service warns at start. A
//!   file without rules is refused (it would open everything by mistake).
//! - The application's own client-credentials token of a provider is no
//!   account: only a rule with `client_token = true` allows it
//!   ([`Policy::decide_client`]), so that `accounts = ["*"]` never hands a
//!   worker the application's machine token; without a rule file, no
//!   caller gets one.
//! - A ceiling caps the scopes of the token the caller gets: asking beyond
//!   it is refused; asking for nothing gets the grant's scopes within it.
//! - The account inventory (`AccountInventory`, [`crate::inventory`])
//!   follows the same rules: a caller that some rule names lists and
//!   watches only the accounts and providers its rules allow it to read
//!   ([`Policy::names_caller`], [`Policy::allows`]); a caller no rule names,
//!   or any caller of an open policy, sees every account.
//!
//! Holds no token and no secret.

mod patterns;
pub mod watch;

use std::sync::Arc;

use serde::Deserialize;
use tokenvault_tls::SpiffeId;

pub use patterns::{AccountPattern, CallerPattern};

use crate::account::AccountKey;
use crate::scopes::ScopeSet;

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its name, unique in the file.
    pub name: String,
    /// `rule:<name>`, what audit events record of it.
    label: String,
    callers: Vec<CallerPattern>,
    accounts: Vec<AccountPattern>,
    /// Whether it allows the providers' client-credentials tokens.
    client_token: bool,
    /// `None`: every provider.
    providers: Option<Vec<String>>,
    /// The most scopes a token for these callers may carry; `None`: as many
    /// as the grant has.
    pub ceiling: Option<ScopeSet>,
}

impl Rule {
    fn matches(&self, caller: &SpiffeId, key: &AccountKey) -> bool {
        self.matches_parts(caller, &key.account, &key.provider)
    }

    fn names(&self, caller: &SpiffeId) -> bool {
        self.callers.iter().any(|c| c.matches(caller))
    }

    fn matches_parts(&self, caller: &SpiffeId, account: &str, provider: &str) -> bool {
        self.names(caller)
            && self.accounts.iter().any(|a| a.matches(account))
            && self.names_provider(provider)
    }

    fn names_provider(&self, provider: &str) -> bool {
        self.providers
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p == provider))
    }
}

/// What the policy says of one call.
#[derive(Debug, Clone)]
pub enum Decision {
    /// No rules are configured: allowed.
    Open,
    /// This rule allows it.
    Allowed(Arc<Rule>),
    /// Rules are configured and none allows it.
    NoRule,
}

impl Decision {
    /// What audit events record: `open`, `rule:<name>` or `none`.
    pub fn label(&self) -> &str {
        match self {
            Decision::Open => "open",
            Decision::Allowed(rule) => &rule.label,
            Decision::NoRule => "none",
        }
    }
}

/// A set of rules, in order.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Arc<Rule>>,
}

/// The rule file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rules: Vec<RuleText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleText {
    name: String,
    callers: Vec<String>,
    #[serde(default)]
    accounts: Vec<String>,
    #[serde(default)]
    client_token: bool,
    providers: Vec<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

impl Policy {
    /// Parses a rule file. Caller patterns without `spiffe://` are in
    /// `trust_domain`; `providers` are the configured provider names, which
    /// rules must name (or `*`). The error names the rule and the setting.
    pub fn parse(text: &str, trust_domain: &str, providers: &[&str]) -> Result<Self, String> {
        let file: RuleFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut rules: Vec<Arc<Rule>> = Vec::with_capacity(file.rules.len());
        for (i, text) in file.rules.into_iter().enumerate() {
            let name = text.name.clone();
            let rule = text
                .check(trust_domain, providers)
                .map_err(|e| format!("rules[{i}] ({name:?}): {e}"))?;
            if rules.iter().any(|r| r.name == rule.name) {
                return Err(format!(
                    "rules[{i}]: the name {:?} is used twice",
                    rule.name
                ));
            }
            rules.push(Arc::new(rule));
        }
        Ok(Self { rules })
    }

    /// How many rules there are.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (every admitted caller reads everything).
    pub fn is_open(&self) -> bool {
        self.rules.is_empty()
    }

    /// What the policy says of `caller` reading `key`.
    pub fn decide(&self, caller: &SpiffeId, key: &AccountKey) -> Decision {
        if self.is_open() {
            return Decision::Open;
        }
        match self.rules.iter().find(|r| r.matches(caller, key)) {
            Some(rule) => Decision::Allowed(Arc::clone(rule)),
            None => Decision::NoRule,
        }
    }

    /// What the policy says of `caller` getting `provider`'s own
    /// client-credentials token: only a `client_token` rule allows it.
    /// Unlike accounts, client tokens are never open: without rules, none
    /// is allowed.
    pub fn decide_client(&self, caller: &SpiffeId, provider: &str) -> Decision {
        let allows =
            |r: &&Arc<Rule>| r.client_token && r.names(caller) && r.names_provider(provider);
        match self.rules.iter().find(allows) {
            Some(rule) => Decision::Allowed(Arc::clone(rule)),
            None => Decision::NoRule,
        }
    }

    /// Whether some rule names `caller` among its callers, whatever accounts
    /// it covers. The account inventory lists everything to a caller no rule
    /// names, and only what [`Policy::allows`] to one that a rule names.
    pub fn names_caller(&self, caller: &SpiffeId) -> bool {
        self.rules.iter().any(|r| r.names(caller))
    }

    /// Whether a rule allows `caller` to read `account` at `provider`: what
    /// [`Policy::decide`] answers with [`Decision::Allowed`], without making
    /// an [`AccountKey`] (the inventory asks this of every row it lists).
    /// Never true of an open policy, which has no rule.
    pub fn allows(&self, caller: &SpiffeId, account: &str, provider: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.matches_parts(caller, account, provider))
    }
}

impl RuleText {
    fn check(self, trust_domain: &str, providers: &[&str]) -> Result<Rule, String> {
        check_name(&self.name)?;
        let nonempty = |what: &str, len: usize| {
            if len == 0 {
                Err(format!("{what}: name at least one (or \"*\")"))
            } else {
                Ok(())
            }
        };
        nonempty("callers", self.callers.len())?;
        if !self.client_token {
            nonempty("accounts", self.accounts.len())?;
        }
        nonempty("providers", self.providers.len())?;
        let callers = self
            .callers
            .iter()
            .map(|c| CallerPattern::parse(c, trust_domain))
            .collect::<Result<Vec<_>, _>>()?;
        let accounts = self
            .accounts
            .iter()
            .map(|a| AccountPattern::parse(a))
            .collect::<Result<Vec<_>, _>>()?;
        let any_provider = self.providers.iter().any(|p| p == "*");
        if !any_provider
            && let Some(unknown) = self
                .providers
                .iter()
                .find(|p| !providers.contains(&p.as_str()))
        {
            return Err(format!(
                "providers: {unknown:?} is not a configured provider (configured: {})",
                providers.join(", ")
            ));
        }
        let ceiling = match self.scopes {
            None => None,
            Some(scopes) if scopes.is_empty() => {
                return Err(
                    "scopes: an empty ceiling would allow no token; leave scopes out for no ceiling"
                        .into(),
                );
            }
            Some(scopes) => Some(ScopeSet::parse(&scopes)?),
        };
        Ok(Rule {
            label: format!("rule:{}", self.name),
            name: self.name,
            callers,
            accounts,
            client_token: self.client_token,
            providers: (!any_provider).then_some(self.providers),
            ceiling,
        })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name: {name:?} must be 1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TD: &str = "tokenvault.local";
    const PROVIDERS: &[&str] = &["google", "github"];
    const RULES: &str = r#"
[[rules]]
name = "billing"
callers = ["worker/billing"]
accounts = ["acme:*"]
providers = ["google"]
scopes = ["openid", "email"]

[[rules]]
name = "crm"
callers = ["worker/crm"]
accounts = ["globex:*"]
providers = ["*"]
"#;

    fn caller(name: &str) -> SpiffeId {
        format!("spiffe://{TD}/worker/{name}").parse().unwrap()
    }

    #[test]
    fn the_first_matching_rule_decides_and_none_means_no() {
        let policy = Policy::parse(RULES, TD, PROVIDERS).unwrap();
        let decide = |who: &str, account: &str, provider: &str| {
            policy
                .decide(&caller(who), &AccountKey::new(account, provider))
                .label()
                .to_owned()
        };
        assert_eq!(decide("billing", "acme:1", "google"), "rule:billing");
        assert_eq!(decide("billing", "acme:1", "github"), "none");
        assert_eq!(decide("billing", "globex:1", "google"), "none");
        assert_eq!(decide("crm", "globex:1", "github"), "rule:crm");
        assert_eq!(decide("crm", "acme:1", "google"), "none");
        assert_eq!(decide("ops", "acme:1", "google"), "none");
        let decision = policy.decide(&caller("billing"), &AccountKey::new("acme:1", "google"));
        let ceiling = match decision {
            Decision::Allowed(rule) => rule.ceiling.clone(),
            _ => None,
        };
        assert_eq!(ceiling.unwrap().to_string(), "email openid");
    }

    #[test]
    fn only_client_token_rules_allow_a_client_token() {
        let text = format!(
            "{RULES}\n[[rules]]\nname = \"reports\"\ncallers = [\"worker/reports\"]\n\
             client_token = true\nproviders = [\"github\"]\n"
        );
        let policy = Policy::parse(&text, TD, PROVIDERS).unwrap();
        let decide = |who: &str, provider: &str| {
            policy
                .decide_client(&caller(who), provider)
                .label()
                .to_owned()
        };
        assert_eq!(decide("reports", "github"), "rule:reports");
        assert_eq!(decide("reports", "google"), "none");
        // A rule for every account of a provider is no client-token rule.
        assert_eq!(decide("crm", "github"), "none");
        // And a client-token rule without accounts allows no account.
        let account = AccountKey::new("acme:1", "github");
        assert_eq!(policy.decide(&caller("reports"), &account).label(), "none");
        // Without client_token, accounts are still required.
        let missing = "[[rules]]\nname = \"x\"\ncallers = [\"worker/x\"]\nproviders = [\"*\"]\n";
        assert!(Policy::parse(missing, TD, PROVIDERS).is_err());
        assert_eq!(
            Policy::parse("", TD, PROVIDERS)
                .unwrap()
                .decide_client(&caller("x"), "github")
                .label(),
            "none"
        );
    }

    #[test]
    fn names_caller_is_about_callers_only() {
        let policy = Policy::parse(RULES, TD, PROVIDERS).unwrap();
        assert!(policy.names_caller(&caller("billing")));
        assert!(policy.names_caller(&caller("crm")));
        assert!(!policy.names_caller(&caller("ops")));
        let admin: SpiffeId = format!("spiffe://{TD}/admin/ops").parse().unwrap();
        assert!(!policy.names_caller(&admin));
        let every_admin = Policy::parse(
            &RULES.replace("[\"worker/crm\"]", "[\"admin/*\"]"),
            TD,
            PROVIDERS,
        )
        .unwrap();
        assert!(every_admin.names_caller(&admin));
        assert!(!Policy::default().names_caller(&admin));
    }

    #[test]
    fn allows_agrees_with_decide() {
        let policy = Policy::parse(RULES, TD, PROVIDERS).unwrap();
        for who in ["billing", "crm", "ops"] {
            for account in ["acme:1", "acme:", "globex:9", "initech:1"] {
                for provider in ["google", "github", "other"] {
                    let decided = matches!(
                        policy.decide(&caller(who), &AccountKey::new(account, provider)),
                        Decision::Allowed(_)
                    );
                    assert_eq!(
                        policy.allows(&caller(who), account, provider),
                        decided,
                        "{who} {account} {provider}"
                    );
                }
            }
        }
        assert!(!Policy::default().allows(&caller("ops"), "acme:1", "google"));
    }

    #[test]
    fn no_rules_is_open() {
        for text in ["", "rules = []"] {
            let policy = Policy::parse(text, TD, PROVIDERS).unwrap();
            assert!(policy.is_open());
            assert_eq!(
                policy
                    .decide(&caller("x"), &AccountKey::new("a", "google"))
                    .label(),
                "open"
            );
        }
    }

    #[test]
    fn mistakes_name_the_rule_and_setting() {
        let cases = [
            (
                RULES.replace("\"google\"]", "\"gogle\"]"),
                "\"gogle\" is not a configured provider",
            ),
            (RULES.replace("\"crm\"\n", "\"billing\"\n"), "used twice"),
            (
                RULES.replace("[\"worker/crm\"]", "[]"),
                "callers: name at least one",
            ),
            (
                RULES.replace("[\"worker/crm\"]", "[\"worker\"]"),
                "worker/*",
            ),
            (
                RULES.replace("scopes = [\"openid\", \"email\"]", "scopes = []"),
                "empty ceiling",
            ),
            (
                RULES.replace("accounts = [\"acme:*\"]", "accounts = [\"a*c\"]"),
                "account \"a*c\"",
            ),
            (
                RULES.replace("name = \"crm\"", "name = \"crm\"\ncolour = 1"),
                "unknown field",
            ),
        ];
        for (text, want) in cases {
            let e = Policy::parse(&text, TD, PROVIDERS).unwrap_err();
            assert!(e.contains(want), "want {want:?} in {e}");
        }
    }
}
