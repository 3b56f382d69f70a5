//! [`Pkcs11Key`]: the token-encryption private key in a PKCS#11 token, with
//! a bounded pool of logged-in sessions on which the content-encryption key
//! of a sealed token is unwrapped (`C_Decrypt`, RSA-OAEP-256).
//!
//! Holds the PIN (to log in again if the token forgot the login, e.g. after
//! every session was closed) in [`Zeroizing`] memory, sessions and object
//! handles; the unwrapped content-encryption key is returned in a buffer
//! wiped on drop. Every call here blocks: async callers run it on the
//! blocking thread pool (see `PrivateKeyRing::open_async`).

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use cryptoki::context::{Function, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;
use zeroize::Zeroizing;

use super::module::{check_mechanism, describe, find_key, find_slot, login, module, oaep_sha256};
use super::{Pkcs11Config, Pkcs11Error};

/// The private key in a PKCS#11 token. Cheap to clone (the session pool is
/// shared). Its `Debug` output shows the key id, module, token and label.
#[derive(Clone)]
pub struct Pkcs11Key {
    kid: String,
    pool: Arc<Pool>,
}

/// What unwrapping a content-encryption key gave.
pub(crate) enum Unwrapped {
    /// The decrypted key.
    Key(Zeroizing<Vec<u8>>),
    /// The token refused the ciphertext (bad padding, wrong key, wrong
    /// length): to be treated like a tampered token.
    Refused,
}

struct Pool {
    pkcs11: Pkcs11,
    slot: Slot,
    key_label: String,
    /// How the token was chosen, for messages.
    token: String,
    module: String,
    pin: Zeroizing<String>,
    max: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Pooled>,
    /// Sessions open, idle or leased.
    open: usize,
}

/// A session and the key's handle in it.
struct Pooled {
    session: Session,
    key: ObjectHandle,
}

impl fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("kid", &self.kid)
            .field("module", &self.pool.module)
            .field("token", &self.pool.token)
            .field("key_label", &self.pool.key_label)
            .field("sessions", &self.pool.max)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Key {
    /// Loads the module, finds the token, logs in once, finds the key by
    /// label and checks it (RSA-4096, may decrypt, sensitive, RSA-OAEP-256
    /// supported), and computes its key id from the public modulus and
    /// exponent. Blocks. Errors say which setting to check.
    pub fn open(config: &Pkcs11Config) -> Result<Self, Pkcs11Error> {
        config.validate().map_err(Pkcs11Error::Config)?;
        let pin = config.user_pin()?;
        let pkcs11 = module(&config.module)?;
        let slot = find_slot(&pkcs11, config)?;
        let token = config.token_description();
        let session = pkcs11.open_ro_session(slot).map_err(|e| {
            Pkcs11Error::Call(format!("{token}: cannot open a session: {}", describe(&e)))
        })?;
        login(&session, &pin)?;
        let (key, kid) = find_key(&session, &config.key_label, &token)?;
        check_mechanism(&session, key)?;
        let pool = Pool {
            pkcs11,
            slot,
            key_label: config.key_label.clone(),
            token,
            module: config.module.display().to_string(),
            pin,
            max: config.sessions,
            state: Mutex::new(PoolState {
                idle: vec![Pooled { session, key }],
                open: 1,
            }),
            returned: Condvar::new(),
        };
        Ok(Self {
            kid,
            pool: Arc::new(pool),
        })
    }

    /// The key id: the RFC 7638 thumbprint of the public half.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Decrypts `encrypted_key` (a JWE encrypted key) in the token. Blocks,
    /// at most `sessions` at a time. `Err` only when the token cannot be
    /// used (session lost, token removed, not logged in); a ciphertext the
    /// token refuses is [`Unwrapped::Refused`].
    pub(crate) fn unwrap_cek(&self, encrypted_key: &[u8]) -> Result<Unwrapped, Pkcs11Error> {
        let mut lease = self.pool.acquire(&self.kid)?;
        let Some(pooled) = lease.pooled.as_ref() else {
            return Err(Pkcs11Error::Call("no session".to_owned()));
        };
        match pooled
            .session
            .decrypt(&oaep_sha256(), pooled.key, encrypted_key)
        {
            Ok(plain) => Ok(Unwrapped::Key(Zeroizing::new(plain))),
            Err(e) if session_unusable(&e) => {
                lease.broken = true;
                Err(Pkcs11Error::Call(format!(
                    "{}: decrypting with key {:?} failed: {}",
                    self.pool.token,
                    self.pool.key_label,
                    describe(&e)
                )))
            }
            Err(_) => Ok(Unwrapped::Refused),
        }
    }
}

/// Whether a failed `C_Decrypt` says the session or token is unusable (it
/// does not depend on the ciphertext), rather than that the ciphertext was
/// refused. Modules differ in what they return for a bad OAEP block
/// (kryoptic: `CKR_DEVICE_ERROR`, SoftHSM: `CKR_GENERAL_ERROR`), so every
/// other error counts as refused, and is answered like a tampered token.
fn session_unusable(e: &Error) -> bool {
    match e {
        Error::Pkcs11(_, Function::DecryptInit) => true,
        Error::Pkcs11(rv, _) => matches!(
            rv,
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::CryptokiNotInitialized
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
                | RvError::OperationActive
                | RvError::OperationNotInitialized
                | RvError::HostMemory
                | RvError::DeviceMemory
                | RvError::FunctionCanceled
        ),
        _ => true,
    }
}

/// A session taken from the pool, returned (or, when broken, closed) on drop.
struct Lease<'a> {
    pool: &'a Pool,
    pooled: Option<Pooled>,
    broken: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.pool.state);
        match self.pooled.take() {
            Some(pooled) if !self.broken => state.idle.push(pooled),
            _ => state.open = state.open.saturating_sub(1),
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}

impl Pool {
    /// An idle session, a new one while fewer than `max` are open, or else
    /// the next one returned.
    fn acquire(&self, kid: &str) -> Result<Lease<'_>, Pkcs11Error> {
        let mut state = lock(&self.state);
        loop {
            if let Some(pooled) = state.idle.pop() {
                return Ok(self.lease(pooled));
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.open_session(kid) {
                    Ok(pooled) => Ok(self.lease(pooled)),
                    Err(e) => {
                        lock(&self.state).open -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn lease(&self, pooled: Pooled) -> Lease<'_> {
        Lease {
            pool: self,
            pooled: Some(pooled),
            broken: false,
        }
    }

    /// A new session, logged in (again, if the token forgot the login),
    /// with the key found by label; the key must still be the same key.
    fn open_session(&self, kid: &str) -> Result<Pooled, Pkcs11Error> {
        let call = |what: &str, e: Error| {
            Pkcs11Error::Call(format!("{}: {what}: {}", self.token, describe(&e)))
        };
        let session = self
            .pkcs11
            .open_ro_session(self.slot)
            .map_err(|e| call("cannot open a session", e))?;
        let state = session
            .get_session_info()
            .map_err(|e| call("cannot read the session state", e))?
            .session_state();
        if matches!(state, SessionState::RoPublic | SessionState::RwPublic) {
            tracing::warn!(token = %self.token, "the PKCS#11 token forgot the login; logging in again");
            login(&session, &self.pin)?;
        }
        let (key, found) = find_key(&session, &self.key_label, &self.token)?;
        if found != kid {
            return Err(Pkcs11Error::Key(format!(
                "the key labelled {:?} is now key id {found}, not {kid}; restart get-service to use it",
                self.key_label
            )));
        }
        Ok(Pooled { session, key })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
