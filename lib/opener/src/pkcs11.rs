//! The optional PKCS#11-held token-encryption private key: its `[pkcs11]`
//! configuration, the PIN, and the errors; [`Pkcs11Key`] opens (unwraps the
//! content-encryption key of) sealed tokens inside the token, and
//! [`generate_key`] makes such a key.
//!
//! Holds the user PIN (in [`Zeroizing`] memory, never printed, logged or put
//! in an error) and handles of the token's objects. The private key itself
//! never leaves the token: it is made with `CKA_SENSITIVE` and without
//! `CKA_EXTRACTABLE`, and only `C_Decrypt` with `CKM_RSA_PKCS_OAEP`
//! (SHA-256, MGF1-SHA-256, empty label) is asked of it.

mod key;
mod keygen;
mod module;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokenvault_runtime::secret::{Secret, read_secret_file};
use zeroize::Zeroizing;

pub use key::Pkcs11Key;
pub(crate) use key::Unwrapped;
pub use keygen::{generate_configured_key, generate_key};

/// The largest PIN file read, in bytes.
const MAX_PIN_FILE_LEN: u64 = 1024;
/// The default number of sessions opened on the token.
const DEFAULT_SESSIONS: usize = 4;
/// The most sessions that may be configured.
const MAX_SESSIONS: usize = 64;

/// `[pkcs11]`: a token-encryption private key held in a PKCS#11 token.
///
/// The token is found by `slot` or `token_label` (if both are given, both
/// must match); the key by `key_label` (`CKA_LABEL` of an RSA-4096
/// `CKO_PRIVATE_KEY`). The user PIN comes from `pin_file` (owner-only mode,
/// like key files; one trailing newline is ignored) or, discouraged, `pin`.
/// Its `Debug` output never shows the PIN.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (shared library), e.g.
    /// `/usr/lib/x86_64-linux-gnu/pkcs11/libkryoptic_pkcs11.so`.
    pub module: PathBuf,
    /// The slot id.
    #[serde(default)]
    pub slot: Option<u64>,
    /// The token's label (`CKA_LABEL` of the token, as in `C_GetTokenInfo`).
    #[serde(default)]
    pub token_label: Option<String>,
    /// The private key's `CKA_LABEL`.
    pub key_label: String,
    /// A file holding the user PIN, mode 0600 or 0400.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// The user PIN itself; prefer `pin_file`.
    #[serde(default)]
    pub pin: Option<Secret>,
    /// How many sessions to open on the token: the most private-key
    /// operations run at once (1–64).
    #[serde(default = "default_sessions")]
    pub sessions: usize,
}

fn default_sessions() -> usize {
    DEFAULT_SESSIONS
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("slot", &self.slot)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("pin_file", &self.pin_file)
            .field("pin", &self.pin.as_ref().map(|_| "<redacted>"))
            .field("sessions", &self.sessions)
            .finish()
    }
}

impl Pkcs11Config {
    /// Checks what serde cannot; the reason names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.slot.is_none() && self.token_label.is_none() {
            return Err("set slot or token_label to choose the token".into());
        }
        if self.token_label.as_deref().is_some_and(str::is_empty) {
            return Err("token_label is empty".into());
        }
        if self.key_label.is_empty() {
            return Err("key_label is empty".into());
        }
        match (&self.pin_file, &self.pin) {
            (Some(_), Some(_)) => return Err("set pin_file or pin, not both".into()),
            (None, None) => return Err("set pin_file (or pin) to log in to the token".into()),
            (None, Some(pin)) if pin.is_empty() => return Err("pin is empty".into()),
            _ => {}
        }
        if !(1..=MAX_SESSIONS).contains(&self.sessions) {
            return Err(format!("sessions must be between 1 and {MAX_SESSIONS}"));
        }
        Ok(())
    }

    /// The user PIN: read from `pin_file` (checked like a key file), or
    /// `pin`.
    pub(crate) fn user_pin(&self) -> Result<Zeroizing<String>, Pkcs11Error> {
        match (&self.pin_file, &self.pin) {
            (Some(path), _) => read_pin_file(path),
            (None, Some(pin)) => Ok(Zeroizing::new(pin.expose().to_owned())),
            (None, None) => Err(Pkcs11Error::Pin(
                "neither pin_file nor pin is set".to_owned(),
            )),
        }
    }

    /// How the token was chosen, for messages.
    pub(crate) fn token_description(&self) -> String {
        match (&self.token_label, self.slot) {
            (Some(label), Some(slot)) => format!("token {label:?} in slot {slot}"),
            (Some(label), None) => format!("token {label:?}"),
            (None, Some(slot)) => format!("the token in slot {slot}"),
            (None, None) => "no token".to_owned(),
        }
    }
}

/// Why the PKCS#11 key could not be used. Never contains the PIN or key
/// material; each message names what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// A `[pkcs11]` setting is wrong.
    #[error("[pkcs11]: {0}")]
    Config(String),
    /// The module could not be loaded or initialised.
    #[error("PKCS#11 module {}: {reason}", path.display())]
    Module {
        /// The module's path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No token, or more than one, matches `slot`/`token_label`.
    #[error("{0}")]
    Token(String),
    /// The PIN file could not be read, or the token refused the PIN.
    #[error("PIN: {0}")]
    Pin(String),
    /// No usable key with `key_label`.
    #[error("key: {0}")]
    Key(String),
    /// A call into the token failed.
    #[error("{0}")]
    Call(String),
    /// Writing the public key file failed (key generation).
    #[error("public key file {}: {reason}", path.display())]
    PublicKeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Reads a PIN file: owner-only mode (checked on the open file), at most
/// [`MAX_PIN_FILE_LEN`] bytes of UTF-8, one trailing newline ignored.
fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, Pkcs11Error> {
    let fail = |reason: String| Pkcs11Error::Pin(format!("{}: {reason}", path.display()));
    let bytes = read_secret_file(path, MAX_PIN_FILE_LEN).map_err(fail)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| fail("not UTF-8 text".into()))?;
    let pin = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if pin.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    Ok(Zeroizing::new(pin.to_owned()))
}
