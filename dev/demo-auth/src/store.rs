//! The demo server's state: grants (persisted) and pending codes and consent
//! forms (memory only), behind one async mutex.
//!
//! Only SHA-256 fingerprints of tokens are held, never a token. With a state
//! file, every change to the grants is written to it (JSON, mode 0600,
//! through a temporary file and a rename) *before* the change takes effect
//! in memory, so an answer never hands out a token that a restart would
//! forget.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokenvault_runtime::files::replace_file;
use tokio::sync::Mutex;

use crate::grants::GrantError;

/// The state file's format version.
const STATE_VERSION: u32 = 1;

/// What the state file holds: grants by id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Persisted {
    /// Format version.
    pub version: u32,
    /// Note for whoever opens the file.
    #[serde(default)]
    pub note: String,
    /// Live grants by id.
    #[serde(default)]
    pub grants: BTreeMap<String, Grant>,
}

/// One authorization grant: a demo user allowed a client. Holds token
/// fingerprints only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Grant {
    /// The client it was granted to.
    pub client_id: String,
    /// The demo user.
    pub username: String,
    /// The granted scope (space-separated).
    pub scope: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Fingerprint of the current refresh token.
    pub refresh: String,
    /// Fingerprints of earlier, rotated refresh tokens (reuse detection).
    #[serde(default)]
    pub rotated: Vec<String>,
    /// Live access tokens.
    #[serde(default)]
    pub access: Vec<AccessToken>,
}

/// One access token's fingerprint and expiry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessToken {
    /// Fingerprint.
    pub hash: String,
    /// Unix seconds.
    pub expires_at: u64,
    /// The scope of this token.
    pub scope: String,
}

/// An authorization code waiting to be exchanged (memory only).
#[derive(Clone, Debug)]
pub(crate) struct PendingCode {
    pub client_id: String,
    /// `Some` when the authorization request carried `redirect_uri`, which
    /// the token request must then repeat.
    pub redirect_uri: Option<String>,
    pub code_challenge: String,
    pub username: String,
    pub scope: String,
    pub expires_at: u64,
}

/// Memory-only state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ephemeral {
    /// Pending codes by fingerprint.
    pub codes: HashMap<String, PendingCode>,
    /// Codes already exchanged, by fingerprint: (grant id, expiry), so that
    /// a replayed code revokes what it produced (RFC 6749 4.1.2).
    pub used_codes: HashMap<String, (String, u64)>,
    /// Consent forms shown, by fingerprint: (request digest, expiry).
    pub consents: HashMap<String, (String, u64)>,
}

/// Everything, cloned for each change so that a failed write changes nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct State {
    pub persisted: Persisted,
    pub ephemeral: Ephemeral,
}

impl State {
    /// Drops expired codes, consent forms and access tokens.
    fn prune(&mut self, now: u64) {
        let e = &mut self.ephemeral;
        e.codes.retain(|_, c| c.expires_at > now);
        e.used_codes.retain(|_, (_, exp)| *exp > now);
        e.consents.retain(|_, (_, exp)| *exp > now);
        for grant in self.persisted.grants.values_mut() {
            grant.access.retain(|a| a.expires_at > now);
        }
    }
}

/// The state and where it is saved.
#[derive(Debug)]
pub(crate) struct Store {
    state: Mutex<State>,
    path: Option<PathBuf>,
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// Opens the state file (a missing file is an empty state), or memory
    /// only when `path` is `None`.
    pub(crate) fn open(path: Option<PathBuf>) -> Result<Self, String> {
        let persisted = match &path {
            None => Persisted::default(),
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                let persisted = load(p)?;
                // Written at once: a state file that cannot be saved is
                // reported at start, not at the first sign-in.
                save(p, &persisted)?;
                persisted
            }
        };
        Ok(Self {
            state: Mutex::new(State {
                persisted,
                ephemeral: Ephemeral::default(),
            }),
            path,
        })
    }

    /// The number of live grants.
    pub(crate) async fn grant_count(&self) -> usize {
        self.state.lock().await.persisted.grants.len()
    }

    /// Runs `change` on a copy of the state; saves the grants if they
    /// changed, then keeps the copy. The copy is kept whether `change`
    /// succeeded or not (a failed exchange still uses up its code), but not
    /// if saving fails.
    pub(crate) async fn update<T>(
        &self,
        change: impl FnOnce(&mut State, u64) -> Result<T, GrantError>,
    ) -> Result<T, GrantError> {
        let mut guard = self.state.lock().await;
        let now = now();
        let mut next = guard.clone();
        next.prune(now);
        let outcome = change(&mut next, now);
        if next.persisted != guard.persisted
            && let Some(path) = &self.path
        {
            let path = path.clone();
            let snapshot = next.persisted.clone();
            let shown = path.display().to_string();
            tokio::task::spawn_blocking(move || save(&path, &snapshot))
                .await
                .map_err(|e| GrantError::Server(format!("state file writer: {e}")))?
                .map_err(|e| GrantError::Server(format!("state file {shown}: {e}")))?;
        }
        *guard = next;
        outcome
    }
}

fn load(path: &Path) -> Result<Persisted, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Persisted {
                version: STATE_VERSION,
                ..Persisted::default()
            });
        }
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let persisted: Persisted = serde_json::from_slice(&bytes)
        .map_err(|e| format!("not a demo authorization server state file: {e}"))?;
    if persisted.version != STATE_VERSION {
        return Err(format!(
            "format version {} is not {STATE_VERSION}; delete the file to start afresh",
            persisted.version
        ));
    }
    Ok(persisted)
}

/// Writes `persisted` to `path` whole or not at all, mode 0600.
fn save(path: &Path, persisted: &Persisted) -> Result<(), String> {
    let mut persisted = persisted.clone();
    persisted.version = STATE_VERSION;
    persisted.note = "tokenvault demo authorization server (DEVELOPMENT ONLY): demo grants, \
                      token fingerprints (SHA-256) only"
        .to_owned();
    let mut json = serde_json::to_vec_pretty(&persisted).map_err(|e| e.to_string())?;
    json.push(b'\n');
    replace_file(path, &json, 0o600).map_err(|e| format!("cannot write: {e}"))
}
