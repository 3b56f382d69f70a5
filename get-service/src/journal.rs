//! The local journal of rotated refresh tokens that set-service has not
//! acknowledged yet: what makes a rotation durable while set-service cannot
//! be reached.
//!
//! Each entry is one file, `<account hash>.json`, holding the account, the
//! provider, the stored version the token replaces and the token **sealed
//! with the public key** (the same JWE set-service would store), never the
//! plaintext. A file is written whole or not at all
//! ([`replace_file`]: temporary file, fsync, rename, fsync of the directory),
//! also across a crash. A newer rotation of the same account replaces its entry;
//! an entry is removed once set-service has stored the token or refused it
//! as superseded. get-service replays the entries at start and keeps
//! retrying them until set-service answers.
//!
//! The directory and its files are owner-only (0700/0600). Nothing here logs
//! a token, sealed or not.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokenvault_runtime::files::replace_file;

use crate::account::AccountKey;

/// The largest entry file read, in bytes (a sealed token is at most a few KiB).
const MAX_ENTRY_BYTES: u64 = 64 * 1024;

/// One rotated refresh token waiting for set-service. `Debug` shows no token.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalEntry {
    /// The application's account id.
    pub account: String,
    /// The provider name.
    pub provider: String,
    /// The stored version the token replaces (set-service's compare-and-swap).
    pub expected_version: i64,
    /// The rotated refresh token, sealed with the public key.
    pub sealed_token: String,
    /// When the provider said it expires, Unix seconds (absent in entries
    /// written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_at_unix: Option<i64>,
}

impl std::fmt::Debug for JournalEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalEntry")
            .field("account", &self.account)
            .field("provider", &self.provider)
            .field("expected_version", &self.expected_version)
            .finish_non_exhaustive()
    }
}

impl JournalEntry {
    /// The account it belongs to.
    pub fn key(&self) -> AccountKey {
        AccountKey::new(&self.account, &self.provider)
    }
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
#[error("rotation journal {}: {reason}", path.display())]
pub struct JournalError {
    /// The directory or file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> JournalError {
    JournalError {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The journal directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens (creating it, mode 0700) the journal in `dir`; refuses a
    /// directory that group or others may read.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(dir, e))?;
        let mode = fs::metadata(dir)
            .map_err(|e| fail(dir, e))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(
                dir,
                format!("mode {mode:04o} gives group or others access; it must be 0700"),
            ));
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path_of(&self, key: &AccountKey) -> PathBuf {
        let digest = Sha256::digest(format!("{}\0{}", key.account, key.provider).as_bytes());
        let name: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.json"))
    }

    /// Writes `entry` durably (replacing the account's earlier entry).
    pub fn write(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        let path = self.path_of(&entry.key());
        let body = serde_json::to_vec(entry).map_err(|e| fail(&path, e))?;
        replace_file(&path, &body, 0o600).map_err(|e| fail(&path, e))
    }

    /// Removes the account's entry, if it still is `entry` (a newer rotation
    /// may have replaced it meanwhile).
    pub fn remove(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        let path = self.path_of(&entry.key());
        match read_entry(&path) {
            Ok(Some(current)) if current == *entry => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(e),
        }
        fs::remove_file(&path).map_err(|e| fail(&path, e))?;
        self.sync_dir()
    }

    /// Every entry, oldest file first; unreadable files are errors naming
    /// them (they are kept for an operator to look at).
    pub fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for item in fs::read_dir(&self.dir).map_err(|e| fail(&self.dir, e))? {
            let path = item.map_err(|e| fail(&self.dir, e))?.path();
            if path.extension().is_some_and(|x| x == "json") {
                let modified = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map_err(|e| fail(&path, e))?;
                files.push((modified, path));
            }
        }
        files.sort();
        let mut entries = Vec::new();
        for (_, path) in files {
            if let Some(entry) = read_entry(&path)? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    fn sync_dir(&self) -> Result<(), JournalError> {
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail(&self.dir, e))
    }
}

fn read_entry(path: &Path) -> Result<Option<JournalEntry>, JournalError> {
    let bytes = match tokenvault_runtime::secret::read_secret_file(path, MAX_ENTRY_BYTES) {
        Ok(b) => b,
        Err(_) if !path.exists() => return Ok(None),
        Err(reason) => return Err(fail(path, reason)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| fail(path, format!("not a journal entry: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(account: &str, version: i64) -> JournalEntry {
        JournalEntry {
            refresh_token_expires_at_unix: None,
            account: account.into(),
            provider: "oidc".into(),
            expected_version: version,
            sealed_token: format!("sealed-{account}-{version}"),
        }
    }

    #[test]
    fn entries_replace_per_account_and_survive_reopening() -> Result<(), JournalError> {
        let dir = std::env::temp_dir().join(format!("tv-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let journal = Journal::open(&dir)?;
        journal.write(&entry("a", 1))?;
        journal.write(&entry("b", 7))?;
        journal.write(&entry("a", 1))?;
        let newer = JournalEntry {
            sealed_token: "sealed-a-again".into(),
            ..entry("a", 1)
        };
        journal.write(&newer)?;
        let reopened = Journal::open(&dir)?;
        let mut all = reopened.entries()?;
        all.sort_by(|x, y| x.account.cmp(&y.account));
        assert_eq!(all, vec![newer.clone(), entry("b", 7)]);
        // Removing a replaced entry leaves the newer one.
        reopened.remove(&entry("a", 1))?;
        assert_eq!(reopened.entries()?.len(), 2);
        reopened.remove(&newer)?;
        assert_eq!(reopened.entries()?, vec![entry("b", 7)]);
        let mode = fs::metadata(reopened.path_of(&entry("b", 7).key()))
            .map(|m| m.permissions().mode() & 0o777)
            .map_err(|e| fail(&dir, e))?;
        assert_eq!(mode, 0o600);
        assert!(!format!("{:?}", entry("b", 7)).contains("sealed-"));
        fs::remove_dir_all(&dir).map_err(|e| fail(&dir, e))
    }
}
