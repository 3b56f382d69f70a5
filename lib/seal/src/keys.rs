//! The token-encryption public keys: loading them, computing their key ids
//! (RFC 7638 JWK SHA-256 thumbprints) and choosing the sealing key.
//!
//! Holds public keys only. The `rsa` crate is used here for PEM/SPKI parsing
//! and the thumbprint's `n` and `e`, never for a cryptographic operation.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPublicKey;
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::{KEY_BITS, SealError};

/// The largest public key file read, in bytes.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// The RFC 7638 JWK SHA-256 thumbprint of an RSA public key, base64url: the
/// key id (`kid`) of a token-encryption key.
pub fn thumbprint(public: &RsaPublicKey) -> String {
    let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
    let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
    // Members in lexicographic order, no whitespace (RFC 7638 section 3).
    let jwk = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// The key id of an RSA public key given as DER `SubjectPublicKeyInfo`.
pub fn kid_from_spki_der(der: &[u8]) -> Result<String, SealError> {
    RsaPublicKey::from_public_key_der(der)
        .map(|public| thumbprint(&public))
        .map_err(|_| SealError::InvalidInput("not an RSA SubjectPublicKeyInfo"))
}

/// One loaded public key.
struct Entry {
    key: OaepPublicEncryptingKey,
    /// Where it came from, for error messages.
    source: PathBuf,
    /// The file's modification time (`UNIX_EPOCH` for in-memory keys).
    modified: SystemTime,
}

/// The token-encryption public keys, by key id, and which one seals.
///
/// The sealing key is, unless chosen with [`with_sealing_kid`]
/// (Self::with_sealing_kid) or [`load`](Self::load)'s `sealing_kid`:
/// - for [`load_dir`](Self::load_dir), the key whose file was modified most
///   recently; on a tie, the one with the lexicographically greatest kid;
/// - for [`from_pems`](Self::from_pems), the last PEM given.
///
/// The other keys are still known, so a writer can accept tokens sealed under
/// them ([`contains`](Self::contains)) during a key rotation.
pub struct PublicKeySet {
    keys: BTreeMap<String, Entry>,
    sealing_kid: String,
}

impl fmt::Debug for PublicKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKeySet")
            .field("kids", &self.kids())
            .field("sealing_kid", &self.sealing_kid)
            .finish()
    }
}

impl PublicKeySet {
    /// Loads every `*.pem` file in `dir` (hidden files and non-files are
    /// skipped). Each must be an RSA-4096 public key in SPKI PEM
    /// (`-----BEGIN PUBLIC KEY-----`); any other file is an error naming it.
    /// The directory must hold at least one key. File names are not trusted:
    /// each key's id is computed from the key.
    pub fn load_dir(dir: &Path) -> Result<Self, SealError> {
        let files = pem_files(dir).map_err(|(path, reason)| key_load(&path, reason))?;
        let mut keys = BTreeMap::new();
        for (path, meta) in files {
            let pem = read_pem(&path)?;
            let (kid, key) = parse_public_pem(&pem).map_err(|reason| key_load(&path, reason))?;
            let modified = meta
                .modified()
                .map_err(|e| key_load(&path, e.to_string()))?;
            insert(&mut keys, kid, key, path, modified)?;
        }
        let sealing_kid = keys
            .iter()
            .max_by(|a, b| (a.1.modified, a.0).cmp(&(b.1.modified, b.0)))
            .map(|(kid, _)| kid.clone())
            .ok_or_else(|| key_load(dir, "no *.pem public keys in this directory".into()))?;
        Ok(Self { keys, sealing_kid })
    }

    /// Builds a set from SPKI PEM strings (errors name them `<pem #i>`,
    /// counting from 0). The last one is the sealing key.
    pub fn from_pems<I, S>(pems: I) -> Result<Self, SealError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys = BTreeMap::new();
        let mut sealing_kid = None;
        for (i, pem) in pems.into_iter().enumerate() {
            let label = PathBuf::from(format!("<pem #{i}>"));
            let (kid, key) =
                parse_public_pem(pem.as_ref()).map_err(|reason| key_load(&label, reason))?;
            sealing_kid = Some(kid.clone());
            insert(&mut keys, kid, key, label, SystemTime::UNIX_EPOCH)?;
        }
        let sealing_kid =
            sealing_kid.ok_or_else(|| key_load(Path::new("<pems>"), "no keys given".into()))?;
        Ok(Self { keys, sealing_kid })
    }

    /// Loads `dir` like [`load_dir`](Self::load_dir), then makes
    /// `sealing_kid` the sealing key when it is given (a service's
    /// `sealing_kid` setting). Naming the key explicitly makes the choice
    /// independent of file modification times, which a copy without `-p`,
    /// a package or a configuration-management tool can reset. A
    /// `sealing_kid` that is not among the keys in `dir` is a
    /// [`SealError::KeyLoad`] error naming the directory and the ids found.
    pub fn load(dir: &Path, sealing_kid: Option<&str>) -> Result<Self, SealError> {
        let set = Self::load_dir(dir)?;
        match sealing_kid {
            None => Ok(set),
            Some(kid) if set.contains(kid) => set.with_sealing_kid(kid),
            Some(kid) => {
                let reason = format!(
                    "sealing_kid {kid:?} is not the id of any public key here (found: {})",
                    set.kids().join(", ")
                );
                Err(key_load(dir, reason))
            }
        }
    }

    /// Makes `kid` the sealing key; [`SealError::UnknownKey`] if not loaded.
    pub fn with_sealing_kid(mut self, kid: &str) -> Result<Self, SealError> {
        if !self.contains(kid) {
            return Err(SealError::UnknownKey(kid.to_owned()));
        }
        kid.clone_into(&mut self.sealing_kid);
        Ok(self)
    }

    /// Whether a key with this id is loaded.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The id of the key [`seal`](Self::seal) uses.
    pub fn sealing_kid(&self) -> &str {
        &self.sealing_kid
    }

    /// All loaded key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// The sealing key and its id.
    pub(crate) fn sealing_key(&self) -> Result<(&str, &OaepPublicEncryptingKey), SealError> {
        self.keys
            .get(&self.sealing_kid)
            .map(|entry| (self.sealing_kid.as_str(), &entry.key))
            .ok_or_else(|| SealError::UnknownKey(self.sealing_kid.clone()))
    }
}

/// The key files of `dir`: its `*.pem` entries that are regular files
/// (following symlinks), hidden ones skipped, each with its metadata. An
/// error gives the path it is about and what failed.
pub fn pem_files(dir: &Path) -> Result<Vec<(PathBuf, fs::Metadata)>, (PathBuf, String)> {
    let listing = |e: std::io::Error| (dir.to_owned(), format!("cannot list: {e}"));
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing)? {
        let path = entry.map_err(listing)?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden || path.extension().is_none_or(|ext| ext != "pem") {
            continue;
        }
        let meta = fs::metadata(&path).map_err(|e| (path.clone(), e.to_string()))?;
        if meta.is_file() {
            files.push((path, meta));
        }
    }
    Ok(files)
}

fn key_load(path: &Path, reason: String) -> SealError {
    SealError::KeyLoad {
        path: path.to_owned(),
        reason,
    }
}

fn insert(
    keys: &mut BTreeMap<String, Entry>,
    kid: String,
    key: OaepPublicEncryptingKey,
    source: PathBuf,
    modified: SystemTime,
) -> Result<(), SealError> {
    if let Some(other) = keys.get(&kid) {
        let reason = format!("same key (kid {kid}) as {}", other.source.display());
        return Err(key_load(&source, reason));
    }
    keys.insert(
        kid,
        Entry {
            key,
            source,
            modified,
        },
    );
    Ok(())
}

fn read_pem(path: &Path) -> Result<String, SealError> {
    let mut pem = String::new();
    File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_LEN + 1).read_to_string(&mut pem))
        .map_err(|e| key_load(path, e.to_string()))?;
    if pem.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(key_load(
            path,
            format!("larger than {MAX_KEY_FILE_LEN} bytes"),
        ));
    }
    Ok(pem)
}

/// Parses an SPKI PEM RSA-4096 public key; the error says why it is refused.
fn parse_public_pem(pem: &str) -> Result<(String, OaepPublicEncryptingKey), String> {
    if pem.contains("PRIVATE KEY") {
        return Err("contains a private key; only public keys belong here".into());
    }
    let public = RsaPublicKey::from_public_key_pem(pem).map_err(|e| {
        format!("not an RSA public key in SPKI PEM (-----BEGIN PUBLIC KEY-----): {e}")
    })?;
    let bits = public.n().bits();
    if bits != KEY_BITS {
        return Err(format!(
            "an RSA-{bits} key; token-encryption keys must be RSA-{KEY_BITS}"
        ));
    }
    let der = public
        .to_public_key_der()
        .map_err(|e| format!("cannot encode: {e}"))?;
    let key = PublicEncryptingKey::from_der(der.as_bytes())
        .map_err(|e| format!("rejected by aws-lc-rs: {e}"))?;
    let key = OaepPublicEncryptingKey::new(key)
        .map_err(|_| "rejected by aws-lc-rs for RSA-OAEP".to_owned())?;
    Ok((thumbprint(&public), key))
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() -> Result<(), Box<dyn std::error::Error>> {
        // The example key of RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let n = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(n)?);
        let e = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode("AQAB")?);
        let public = RsaPublicKey::new(n, e)?;
        assert_eq!(
            thumbprint(&public),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        Ok(())
    }
}
