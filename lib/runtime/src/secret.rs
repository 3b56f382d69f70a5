//! Secrets in memory and on disk: [`Secret`] holds a secret string (a client
//! secret, a token) wiped on drop and never printed; [`read_secret_file`] is
//! the one way every service reads a secret file (a private key, a PIN, the
//! cookie key, the link secret): owner-only mode, bounded size, into a buffer
//! wiped on drop.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// A secret string (client secret, access token, refresh token): wiped on
/// drop, printed as `<redacted>` by `Debug`, and without `Display`.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`, which is wiped when the `Secret` is dropped.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself. Do not log it or put it in an error.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// Reads a secret file into a buffer wiped on drop: readable by its owner
/// only (checked on the open file, so the mode is that of what is read), at
/// most `max` bytes. The error is the reason, without the path.
pub fn read_secret_file(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} gives group or others access; it must be 0600 or 0400"
        ));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2-very-secret".into());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn secret_files_must_be_owner_only_and_small() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tv-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("s");
        std::fs::write(&path, b"0123456789")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let open = read_secret_file(&path, 64);
        assert!(open.is_err_and(|e| e.contains("0644")));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        assert_eq!(read_secret_file(&path, 64).map(|b| b.len()), Ok(10));
        assert!(read_secret_file(&path, 9).is_err_and(|e| e.contains("larger than 9")));
        std::fs::remove_dir_all(&dir)
    }
}
