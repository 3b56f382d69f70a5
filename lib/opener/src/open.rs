//! Opening a sealed token: structural checks (via `tokenvault-seal`), the
//! account/provider check, RSA-OAEP key unwrap (in process with aws-lc-rs,
//! or inside a PKCS#11 token) and AES-256-GCM decryption.
//!
//! Holds the content-encryption key and the plaintext only in buffers wiped
//! on drop; the plaintext is returned to the caller in one.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand;
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey};
use tokenvault_seal::{CEK_LEN, SealError, SealedToken, TokenUse};
use zeroize::Zeroizing;

use crate::PrivateKeyRing;
use crate::keyring::RingKey;
use crate::pkcs11::{Pkcs11Key, Unwrapped};

/// Why a sealed token could not be opened. Messages never contain token
/// bytes or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// `tokenvault-seal`'s checks refused it before any private-key
    /// operation: not a well-formed JWE compact serialization with our
    /// header (`Malformed`, `TooLarge`, `Truncated`, `UnsupportedAlgorithm`),
    /// sealed for another account or provider than it was read for
    /// (`ContextMismatch`), or under a key this service does not hold
    /// (`UnknownKey`).
    #[error(transparent)]
    Invalid(SealError),
    /// Key unwrap or authenticated decryption failed (wrong key or tampered
    /// token); deliberately one error for both (RFC 7516 section 11.5).
    #[error("sealed token cannot be decrypted: wrong key or tampered")]
    DecryptionFailed,
    /// The key is in a PKCS#11 token that cannot be used now (session
    /// lost, token removed, not logged in): not the token's fault; retry
    /// later.
    #[error("token-encryption key {kid} is unavailable: {reason}")]
    KeyUnavailable {
        /// The key id.
        kid: String,
        /// What the PKCS#11 module said.
        reason: String,
    },
    /// The cryptographic library failed (e.g. random numbers).
    #[error("cryptographic operation failed")]
    Internal,
}

impl From<SealError> for OpenError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Crypto => Self::Internal,
            invalid => Self::Invalid(invalid),
        }
    }
}

impl PrivateKeyRing {
    /// Opens `token`, which must have been read for `expected_account` at
    /// `expected_provider`, and returns the plaintext refresh token.
    ///
    /// In order: structural validation ([`SealedToken::parse`]), the header's
    /// account and provider (`SealError::ContextMismatch`, before any
    /// private-key operation), the key id (`SealError::UnknownKey`), then
    /// decryption. A failed RSA-OAEP unwrap carries on with a random key, so
    /// it fails in AES-GCM like a tampered ciphertext, with the same
    /// [`OpenError::DecryptionFailed`] and similar timing.
    ///
    /// Blocks the calling thread for one RSA-4096 decryption, in process or
    /// in the PKCS#11 token (waiting for a free session if all are busy);
    /// from async code, use [`open_async`](Self::open_async), which runs it
    /// on other threads.
    pub fn open(
        &self,
        token: &str,
        expected_account: &str,
        expected_provider: &str,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let (sealed, key) = self.locate(
            TokenUse::Refresh,
            token,
            expected_account,
            expected_provider,
        )?;
        let cek = match key {
            RingKey::InProcess(key) => unwrap_cek(key, sealed.encrypted_key())?,
            RingKey::Pkcs11(key) => unwrap_cek_pkcs11(key, sealed.encrypted_key())?,
        };
        decrypt_content(&sealed, &cek)
    }

    /// [`open`](Self::open) for async callers: the same checks and result,
    /// but the decryption never runs on the caller's thread: an in-process
    /// key decrypts on the ring's private-key threads (one per core, at a
    /// lower priority: [`crate::pool`]), a PKCS#11 key's `C_Decrypt` on
    /// tokio's blocking thread pool (it mostly waits for the token).
    pub async fn open_async(
        &self,
        token: &str,
        expected_account: &str,
        expected_provider: &str,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        self.open_async_as(
            TokenUse::Refresh,
            token,
            expected_account,
            expected_provider,
        )
        .await
    }

    /// [`open_async`](Self::open_async) for a token of `token_use`: an
    /// access token shared between replicas opens only as
    /// [`TokenUse::Access`], a refresh token only as [`TokenUse::Refresh`]
    /// (`SealError::ContextMismatch` on `token_use` otherwise).
    pub async fn open_async_as(
        &self,
        token_use: TokenUse,
        token: &str,
        expected_account: &str,
        expected_provider: &str,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let (sealed, key) = self.locate(token_use, token, expected_account, expected_provider)?;
        match key {
            RingKey::InProcess(key) => {
                let key = Arc::clone(key);
                self.pool
                    .run(move || {
                        let cek = unwrap_cek(&key, sealed.encrypted_key())?;
                        decrypt_content(&sealed, &cek)
                    })
                    .await
            }
            RingKey::Pkcs11(key) => {
                let (key, encrypted_key) = (key.clone(), sealed.encrypted_key().to_vec());
                let cek =
                    tokio::task::spawn_blocking(move || unwrap_cek_pkcs11(&key, &encrypted_key))
                        .await
                        .map_err(|_| OpenError::Internal)??;
                decrypt_content(&sealed, &cek)
            }
        }
    }

    /// Parses `token`, checks it was sealed for this account and provider
    /// and holds a token of `token_use`, and finds the key that opens it.
    fn locate(
        &self,
        token_use: TokenUse,
        token: &str,
        expected_account: &str,
        expected_provider: &str,
    ) -> Result<(SealedToken, &RingKey), OpenError> {
        let sealed = SealedToken::parse(token)?;
        sealed.check_context_of(token_use, expected_account, expected_provider)?;
        let key = self
            .keys
            .get(sealed.kid())
            .ok_or_else(|| OpenError::Invalid(SealError::UnknownKey(sealed.kid().to_owned())))?;
        Ok((sealed, key))
    }
}

/// AES-256-GCM decryption of the content with `cek`, the header as AAD.
fn decrypt_content(
    sealed: &SealedToken,
    cek: &Zeroizing<[u8; CEK_LEN]>,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let aes = UnboundKey::new(&AES_256_GCM, cek.as_ref()).map_err(|_| OpenError::Internal)?;
    let (ciphertext, tag) = (sealed.ciphertext(), sealed.tag());
    let mut buf = Zeroizing::new(Vec::with_capacity(ciphertext.len() + tag.len()));
    buf.extend_from_slice(ciphertext);
    buf.extend_from_slice(tag);
    let len = LessSafeKey::new(aes)
        .open_in_place(
            Nonce::assume_unique_for_key(*sealed.iv()),
            Aad::from(sealed.aad()),
            buf.as_mut_slice(),
        )
        .map_err(|_| OpenError::DecryptionFailed)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// The RSA-OAEP-SHA256 unwrap inside a PKCS#11 token, with the same rule as
/// [`unwrap_cek`]: a ciphertext the token refuses (or a key of the wrong
/// length) gives a random key. Only an unusable token is an error.
fn unwrap_cek_pkcs11(
    key: &Pkcs11Key,
    encrypted_key: &[u8],
) -> Result<Zeroizing<[u8; CEK_LEN]>, OpenError> {
    match key.unwrap_cek(encrypted_key) {
        Ok(Unwrapped::Key(unwrapped)) => cek_or_random(Some(&unwrapped)),
        Ok(Unwrapped::Refused) => cek_or_random(None),
        Err(e) => Err(OpenError::KeyUnavailable {
            kid: key.kid().to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// RSA-OAEP-SHA256 unwrap of the content-encryption key. Per RFC 7516
/// section 11.5, if it fails (or yields a key of the wrong length) a random
/// key is returned instead, so the failure surfaces only at AES-GCM.
fn unwrap_cek(
    key: &OaepPrivateDecryptingKey,
    encrypted_key: &[u8],
) -> Result<Zeroizing<[u8; CEK_LEN]>, OpenError> {
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let unwrapped = key
        .decrypt(&OAEP_SHA256_MGF1SHA256, encrypted_key, &mut out, None)
        .ok();
    cek_or_random(unwrapped.as_deref())
}

/// The unwrapped key if there is one of the right length, else a random key
/// (RFC 7516 section 11.5), made either way so both paths cost the same.
fn cek_or_random(unwrapped: Option<&[u8]>) -> Result<Zeroizing<[u8; CEK_LEN]>, OpenError> {
    let mut cek = Zeroizing::new([0u8; CEK_LEN]);
    rand::fill(cek.as_mut()).map_err(|_| OpenError::Internal)?;
    if let Some(key) = unwrapped.filter(|k| k.len() == CEK_LEN) {
        cek.copy_from_slice(key);
    }
    Ok(cek)
}
