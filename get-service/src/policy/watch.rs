//! The policy in force: loaded from `policy.file` at start, re-read when the
//! file changes and on SIGHUP, like the TLS files. A file that fails to load
//! (unreadable, not TOML, a mistake in a rule, no rules at all, writable by
//! others) keeps the rules in force and logs an error; a start with such a
//! file fails.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenvault_tls::reload::{Reloader, watch_paths};
use tokio::sync::watch;

use super::Policy;

/// The tracing target of policy loads and reloads.
pub const POLICY_TARGET: &str = "tokenvault::policy";

/// The largest rule file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The rules in force, for every call to read.
pub type PolicyRx = watch::Receiver<Arc<Policy>>;

/// Where the rules come from and what they are checked against.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The rule file; `None`: no rules.
    pub file: Option<PathBuf>,
    /// The trust domain of relative caller patterns.
    pub trust_domain: String,
    /// The configured provider names.
    pub providers: Vec<String>,
}

impl PolicySource {
    /// Reads and checks the rule file (no file: no rules).
    pub fn load(&self) -> Result<Policy, String> {
        let Some(path) = &self.file else {
            return Ok(Policy::default());
        };
        let text = read_rule_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let providers: Vec<&str> = self.providers.iter().map(String::as_str).collect();
        let policy = Policy::parse(&text, &self.trust_domain, &providers)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        // An empty file (half written, a templating mistake) must not open
        // every account: no rules is what no file means.
        if policy.is_open() {
            return Err(format!(
                "{}: has no rules; to let every worker read every account, leave policy.file unset",
                path.display()
            ));
        }
        Ok(policy)
    }

    /// Loads the rules and keeps them current; the error is the start-up
    /// load's. The returned task stops watching when dropped.
    pub fn watch(self) -> Result<(PolicyRx, Option<Reloader>), String> {
        let policy = self.load()?;
        announce(&policy, false);
        let (tx, rx) = watch::channel(Arc::new(policy));
        let Some(path) = self.file.clone() else {
            return Ok((rx, None));
        };
        let reloader = watch_paths(vec![path], move |forced| match self.load() {
            Ok(policy) => {
                announce(&policy, forced);
                tx.send_replace(Arc::new(policy));
            }
            Err(e) => {
                tracing::error!(target: POLICY_TARGET, error = %e, "the account policy file changed but does not load; keeping the rules in force");
            }
        });
        Ok((rx, Some(reloader)))
    }
}

/// Logs the rules now in force (a warning when there are none).
fn announce(policy: &Policy, forced: bool) {
    if policy.is_open() {
        tracing::warn!(
            target: POLICY_TARGET,
            "no account policy rules: every caller the allow-lists admit may read every account; \
             set policy.file to restrict callers to their accounts"
        );
    } else {
        tracing::info!(target: POLICY_TARGET, rules = policy.rule_count(), forced, "account policy in force");
    }
}

/// Reads `path`, refusing a file that others could rewrite (group- or
/// world-writable), since the rules decide who reads which tokens.
fn read_rule_file(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(format!(
            "is writable by group or others (mode {:o}); chmod go-w it",
            meta.permissions().mode() & 0o777
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("is larger than {MAX_FILE_BYTES} bytes"));
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_file_others_can_rewrite_or_without_rules() {
        let dir = std::env::temp_dir().join(format!("tv-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.toml");
        std::fs::write(
            &path,
            "[[rules]]\nname = \"r\"\ncallers = [\"worker/*\"]\naccounts = [\"*\"]\nproviders = [\"*\"]\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let source = PolicySource {
            file: Some(path.clone()),
            trust_domain: "tokenvault.local".into(),
            providers: vec!["google".into()],
        };
        let e = source.load().unwrap_err();
        assert!(e.contains("writable by group or others"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(source.load().unwrap().rule_count(), 1);
        // A file without rules is refused: it would open every account.
        std::fs::write(&path, "# nothing yet\n").unwrap();
        let e = source.load().unwrap_err();
        assert!(e.contains("has no rules"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
