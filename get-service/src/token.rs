//! An access token as get-service caches and returns it. The token text is
//! held in a `Zeroizing` buffer and never printed by `Debug`.

use std::fmt;

use zeroize::Zeroizing;

/// A short-lived access token from a provider.
pub struct AccessToken {
    /// The token itself.
    pub token: Zeroizing<String>,
    /// Usually `Bearer`.
    pub token_type: String,
    /// When it stops being valid, in seconds since the Unix epoch.
    pub expires_at_unix: i64,
    /// The scopes it was granted.
    pub scopes: Vec<String>,
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
