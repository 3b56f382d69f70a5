//! Writing a file that must be whole or absent (a journal entry, a config,
//! a state file): a crash or a concurrent reader sees the old file or the
//! new one, never a part. Holds nothing: callers pass the bytes.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replaces `path` with `bytes`, as a file of `mode`: written to a fresh
/// temporary file in the same directory (a unique `.tokenvault-*.tmp`
/// name), fsync'd, renamed over `path`, and the directory fsync'd so that
/// the rename survives a crash. A failure leaves `path` as it was.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tokenvault-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    // Exactly `mode`, whatever the umask.
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_with_the_mode_and_leaves_no_temporary_file() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.json");
        replace_file(&path, b"one", 0o600)?;
        replace_file(&path, b"two", 0o644)?;
        assert_eq!(std::fs::read(&path)?, b"two");
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }
}
