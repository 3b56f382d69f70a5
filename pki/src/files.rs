//! Writing PKI files safely: atomically (temp file, fsync, then link or
//! rename), with mode 0600 for private keys in 0700 directories, and never over
//! an existing file unless forced.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::PkiError;

/// File mode for private keys.
pub const PRIVATE_MODE: u32 = 0o600;
/// File mode for certificates and public keys.
pub const PUBLIC_MODE: u32 = 0o644;

/// Fails with [`PkiError::Exists`] if `path` exists and `force` is off.
pub fn ensure_writable(path: &Path, force: bool) -> Result<(), PkiError> {
    if !force && path.exists() {
        return Err(PkiError::Exists(path.to_owned()));
    }
    Ok(())
}

/// Writes `bytes` to `path` with `mode`, replacing it only if `force`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<(), PkiError> {
    ensure_writable(path, force)?;
    let err = |source| PkiError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        // A directory made for a private key is 0700.
        let dir_mode = if mode == PRIVATE_MODE { 0o700 } else { 0o755 };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(dir)
            .map_err(err)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    // The umask may have narrowed the mode; make it exact.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    let placed = if force {
        fs::rename(&tmp, path)
    } else {
        // link() fails if the target exists, so two concurrent runs cannot
        // overwrite each other's file.
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        linked
    };
    match placed {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&tmp);
            return Err(PkiError::Exists(path.to_owned()));
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(err(e));
        }
    }
    // Make the new directory entry durable too.
    if let Some(Ok(d)) = path.parent().map(fs::File::open) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a UTF-8 file, naming the path on failure.
pub fn read_text(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_not_overwritten() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("k/key.pem");
        write_file(&p, b"one", PRIVATE_MODE, false)?;
        assert_eq!(fs::metadata(&p)?.permissions().mode() & 0o777, 0o600);
        assert!(matches!(
            write_file(&p, b"two", PRIVATE_MODE, false),
            Err(PkiError::Exists(_))
        ));
        assert_eq!(fs::read(&p)?, b"one");
        write_file(&p, b"two", PRIVATE_MODE, true)?;
        assert_eq!(fs::read(&p)?, b"two");
        Ok(())
    }
}
