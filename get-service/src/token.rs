//! An access token as get-service caches and returns it. The token text is
//! held in a `Zeroizing` buffer and never printed by `Debug`.
//!
//! What a cached token costs beyond its own text: the token type and the
//! scope list are shared by every token that has the same ones
//! ([`Interner`]), so a cache of many accounts at one provider holds one
//! copy of each.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

/// A short-lived access token from a provider.
pub struct AccessToken {
    /// The token itself.
    pub token: Zeroizing<String>,
    /// Usually `Bearer`.
    pub token_type: Arc<str>,
    /// When it stops being valid, in seconds since the Unix epoch.
    pub expires_at_unix: i64,
    /// The scopes it was granted.
    pub scopes: Arc<[String]>,
    /// Its whole lifetime when it was obtained, in seconds.
    pub lifetime_secs: i64,
    /// Whether another get-service replica obtained it (and shared it).
    pub shared: bool,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_at_unix", &self.expires_at_unix)
            .field("scopes", &self.scopes)
            .field("lifetime_secs", &self.lifetime_secs)
            .field("shared", &self.shared)
            .finish()
    }
}

impl AccessToken {
    /// Seconds of validity left at `now_unix` (negative once expired).
    pub fn remaining_secs(&self, now_unix: i64) -> i64 {
        self.expires_at_unix - now_unix
    }
}

/// One shared copy of each token type and scope list in use; entries no
/// token uses any more leave at [`sweep`](Self::sweep).
#[derive(Debug, Default)]
pub(crate) struct Interner {
    token_types: Mutex<HashSet<Arc<str>>>,
    scope_lists: Mutex<HashSet<Arc<[String]>>>,
}

impl Interner {
    /// `token` with its type and scopes replaced by the shared copies.
    pub(crate) fn intern(&self, mut token: AccessToken) -> AccessToken {
        token.token_type = shared(&self.token_types, &token.token_type);
        token.scopes = shared(&self.scope_lists, &token.scopes);
        token
    }

    /// Forgets the copies only the interner still holds; returns how many
    /// are left.
    pub(crate) fn sweep(&self) -> usize {
        retain_used(&self.token_types) + retain_used(&self.scope_lists)
    }
}

fn shared<T: ?Sized + Eq + std::hash::Hash>(
    set: &Mutex<HashSet<Arc<T>>>,
    value: &Arc<T>,
) -> Arc<T> {
    let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
    match set.get(value) {
        Some(existing) => Arc::clone(existing),
        None => {
            set.insert(Arc::clone(value));
            Arc::clone(value)
        }
    }
}

fn retain_used<T: ?Sized + Eq + std::hash::Hash>(set: &Mutex<HashSet<Arc<T>>>) -> usize {
    let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
    set.retain(|v| Arc::strong_count(v) > 1);
    set.len()
}
