//! Retiring a token-encryption key (`get-service retire-key <kid>`): the last
//! step of a key rotation, once `get-service reseal` has moved every stored
//! token to the sealing key.
//!
//! It lives in get-service, not in the offline `pki` tool, because the
//! check needs the store (get-service's read-only role) and the key to
//! remove is get-service's deployed copy in `private_keys_dir`; `pki` has
//! neither database access nor that directory.
//!
//! Refuses the sealing key, a key whose public half is still in
//! get-service's `public_keys_dir` (the writers' copies go first, so nothing
//! is sealed under the key once it is gone), and any key that a stored token
//! someone may still need to open (a connected account's token, or a disconnected one's
//! waiting for revocation) is sealed under, saying how many. Otherwise it
//! removes `<private_keys_dir>/<kid>.pem`: first renamed to a hidden name
//! (which key loading skips), the store checked once more, then deleted, so
//! a token stored under the key in between puts the file back instead.
//! Never reads or prints key bytes.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::reseal::{KeyJob, KeyRotationError};

/// What a retirement did, and what is left for the operator.
#[derive(Debug, Clone)]
pub struct RetireReport {
    /// The retired key id.
    pub kid: String,
    /// The private key file removed.
    pub removed: PathBuf,
}

impl std::fmt::Display for RetireReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "retired token-encryption key {}: removed {}",
            self.kid,
            self.removed.display()
        )?;
        write!(
            f,
            "now restart get-service so that it drops the key from memory"
        )
    }
}

/// Retires `kid` from get-service (see the module docs).
pub async fn retire_key(config: &Config, kid: &str) -> Result<RetireReport, KeyRotationError> {
    check_kid(kid)?;
    let rotation = KeyJob::start(config).await?;
    if rotation.sealer.sealing_kid() == kid {
        return Err(KeyRotationError::RetireSealingKey {
            kid: kid.to_owned(),
        });
    }
    let path = config.private_keys_dir.join(format!("{kid}.pem"));
    if !path.is_file() {
        if rotation.ring.contains(kid) {
            return Err(KeyRotationError::RetireNotAFile {
                kid: kid.to_owned(),
            });
        }
        return Err(KeyRotationError::RetireUnknown {
            kid: kid.to_owned(),
            path,
        });
    }
    refuse_if_in_use(&rotation, kid).await?;
    let public = config.public_keys_dir.join(format!("{kid}.pem"));
    if public.exists() {
        return Err(KeyRotationError::RetirePublicKeyPresent {
            kid: kid.to_owned(),
            path: public,
        });
    }
    let hidden = config.private_keys_dir.join(format!(".{kid}.pem.retiring"));
    let io = |path: &Path, source| KeyRotationError::RetireIo {
        kid: kid.to_owned(),
        path: path.to_owned(),
        source,
    };
    std::fs::rename(&path, &hidden).map_err(|e| io(&path, e))?;
    if let Err(e) = refuse_if_in_use(&rotation, kid).await {
        std::fs::rename(&hidden, &path).map_err(|e| io(&hidden, e))?;
        return Err(e);
    }
    std::fs::remove_file(&hidden).map_err(|e| io(&hidden, e))?;
    tracing::info!(kid, path = %path.display(), "retired a token-encryption key");
    Ok(RetireReport {
        kid: kid.to_owned(),
        removed: path,
    })
}

async fn refuse_if_in_use(rotation: &KeyJob, kid: &str) -> Result<(), KeyRotationError> {
    let counts = rotation.reader.sealed_counts_by_kid().await?;
    match counts.iter().find(|(k, _)| k == kid) {
        Some((_, count)) if *count > 0 => Err(KeyRotationError::RetireInUse {
            kid: kid.to_owned(),
            count: *count,
        }),
        _ => Ok(()),
    }
}

/// A kid is an RFC 7638 thumbprint in base64url; anything else (a path, a
/// file name) is refused before it is used in a path.
fn check_kid(kid: &str) -> Result<(), KeyRotationError> {
    let ok = !kid.is_empty()
        && kid.len() <= 256
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(KeyRotationError::NotAKeyId)
    }
}
