//! The token-encryption private keys get-service holds: files from a
//! directory (loaded into aws-lc-rs) and, optionally, one key in a PKCS#11
//! token ([`Pkcs11Key`]); both kinds live in one [`PrivateKeyRing`], by key
//! id, and a sealed token is opened with whichever holds its `kid`.
//!
//! Holds private keys: key files are read into buffers wiped on drop and
//! handed to aws-lc-rs; nothing here prints, logs or returns key bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{OaepPrivateDecryptingKey, PrivateDecryptingKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokenvault_runtime::secret::read_secret_file;
use tokenvault_seal::{KEY_BITS, kid_from_spki_der, pem_files};
use zeroize::Zeroizing;

use crate::pkcs11::{Pkcs11Config, Pkcs11Error, Pkcs11Key};
use crate::pool::DecryptPool;

/// The largest private key file read, in bytes.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;
const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const END: &str = "-----END PRIVATE KEY-----";

/// Why a private key could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
#[error("private key {}: {reason}", path.display())]
pub struct KeyLoadError {
    /// The key file, or the directory.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// Why the key ring could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RingLoadError {
    /// A key file or the directory.
    #[error("private_keys_dir: {0}")]
    File(#[from] KeyLoadError),
    /// The PKCS#11-held key.
    #[error("pkcs11: {0}")]
    Pkcs11(#[from] Pkcs11Error),
}

fn err(path: &Path, reason: impl Into<String>) -> KeyLoadError {
    KeyLoadError {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The token-encryption private keys, by key id (RFC 7638 thumbprint of the
/// public half). Its `Debug` output shows only the key ids and where each
/// key is held.
pub struct PrivateKeyRing {
    pub(crate) keys: BTreeMap<String, RingKey>,
    /// Where in-process keys decrypt for async callers.
    pub(crate) pool: DecryptPool,
}

/// One private key: in this process, or in a PKCS#11 token.
pub(crate) enum RingKey {
    /// Loaded from a key file into aws-lc-rs (shared with the thread that
    /// decrypts with it).
    InProcess(Arc<OaepPrivateDecryptingKey>),
    /// Held by a PKCS#11 token; only its handle is here.
    Pkcs11(Pkcs11Key),
}

impl fmt::Debug for PrivateKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held: BTreeMap<&str, &str> = self
            .keys
            .iter()
            .map(|(kid, key)| {
                let place = match key {
                    RingKey::InProcess(_) => "file",
                    RingKey::Pkcs11(_) => "pkcs11",
                };
                (kid.as_str(), place)
            })
            .collect();
        f.debug_struct("PrivateKeyRing")
            .field("kids", &held)
            .finish()
    }
}

impl PrivateKeyRing {
    /// Loads every `*.pem` file in `dir` (hidden files and non-files are
    /// skipped; symlinks are followed). Each must be an RSA-4096 private key
    /// in unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), readable by
    /// its owner only (no group/other permission bits), and named
    /// `<kid>.pem` where kid is computed from the key. Any other `*.pem`
    /// file, or an empty directory, is an error naming the path.
    pub fn load_dir(dir: &Path) -> Result<Self, KeyLoadError> {
        let ring = Self::load_dir_allowing_empty(dir)?;
        if ring.keys.is_empty() {
            return Err(err(dir, "no *.pem private keys in this directory"));
        }
        Ok(ring)
    }

    /// The keys get-service's configuration names: every key file in
    /// `private_keys_dir` (see [`load_dir`](Self::load_dir)) and, with
    /// `[pkcs11]`, the key in that token ([`Pkcs11Key::open`], run on the
    /// blocking thread pool). With `[pkcs11]` the directory may hold no key
    /// file. A key id found both in a file and in the token is refused.
    pub async fn load(
        private_keys_dir: &Path,
        pkcs11: Option<&Pkcs11Config>,
    ) -> Result<Self, RingLoadError> {
        let Some(config) = pkcs11 else {
            return Ok(Self::load_dir(private_keys_dir)?);
        };
        let mut ring = Self::load_dir_allowing_empty(private_keys_dir)?;
        let owned = config.clone();
        let key = tokio::task::spawn_blocking(move || Pkcs11Key::open(&owned))
            .await
            .map_err(|e| Pkcs11Error::Call(format!("opening the key stopped: {e}")))??;
        if ring.keys.contains_key(key.kid()) {
            return Err(RingLoadError::from(err(
                private_keys_dir,
                format!(
                    "key id {} is both in this directory and in the PKCS#11 token; remove the file",
                    key.kid()
                ),
            )));
        }
        tracing::info!(kid = %key.kid(), module = %config.module.display(), token = %config.token_description(),
            key_label = %config.key_label, sessions = config.sessions, "PKCS#11 token-encryption key ready");
        ring.keys.insert(key.kid().to_owned(), RingKey::Pkcs11(key));
        Ok(ring)
    }

    /// Every key file in `dir`, which may hold none.
    fn load_dir_allowing_empty(dir: &Path) -> Result<Self, KeyLoadError> {
        let files = pem_files(dir).map_err(|(path, reason)| err(&path, reason))?;
        let mut keys = BTreeMap::new();
        for (path, _) in files {
            let (kid, key) = load_file(&path)?;
            let stem = path.file_stem().map(|s| s.to_string_lossy());
            if stem.as_deref() != Some(kid.as_str()) {
                return Err(err(
                    &path,
                    format!("the key's id is {kid}; the file must be named {kid}.pem"),
                ));
            }
            keys.insert(kid, RingKey::InProcess(Arc::new(key)));
        }
        Ok(Self {
            keys,
            pool: DecryptPool::default(),
        })
    }

    /// Whether a key with this id is loaded.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// All loaded key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }
}

/// Reads, checks and parses one key file; returns its kid and the key.
fn load_file(path: &Path) -> Result<(String, OaepPrivateDecryptingKey), KeyLoadError> {
    let bytes = read_secret_file(path, MAX_KEY_FILE_LEN).map_err(|reason| err(path, reason))?;
    let pem = std::str::from_utf8(&bytes).map_err(|_| err(path, "not a PEM file"))?;
    let der = pkcs8_der(pem).map_err(|reason| err(path, reason))?;
    let key = PrivateDecryptingKey::from_pkcs8(&der)
        .map_err(|e| err(path, format!("not an RSA PKCS#8 private key ({e})")))?;
    let bits = key.key_size_bits();
    if bits != KEY_BITS {
        return Err(err(
            path,
            format!("an RSA-{bits} key; token-encryption keys must be RSA-{KEY_BITS}"),
        ));
    }
    let spki = key
        .public_key()
        .as_der()
        .map_err(|_| err(path, "cannot encode its public key"))?;
    let kid = kid_from_spki_der(spki.as_ref()).map_err(|e| err(path, e.to_string()))?;
    let key = OaepPrivateDecryptingKey::new(key)
        .map_err(|_| err(path, "rejected by aws-lc-rs for RSA-OAEP"))?;
    Ok((kid, key))
}

/// The DER inside a single unencrypted PKCS#8 PEM block.
fn pkcs8_der(pem: &str) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        return Err("a PKCS#1 key; convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)");
    }
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err("an encrypted PKCS#8 key; only unencrypted PKCS#8 is supported");
    }
    let start = pem
        .find(BEGIN)
        .map(|i| i + BEGIN.len())
        .ok_or("no -----BEGIN PRIVATE KEY----- block")?;
    let len = pem
        .get(start..)
        .and_then(|rest| rest.find(END))
        .ok_or("no -----END PRIVATE KEY----- line")?;
    if pem.matches(BEGIN).count() != 1 {
        return Err("more than one private key in one file");
    }
    let body: Zeroizing<Vec<u8>> = Zeroizing::new(
        pem.bytes()
            .skip(start)
            .take(len)
            .filter(|b| !b.is_ascii_whitespace())
            .collect(),
    );
    STANDARD
        .decode(body.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| "the PEM body is not valid base64")
}
