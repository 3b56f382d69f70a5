//! Structural validation of a sealed token, without any key.
//!
//! [`SealedToken::parse`] checks everything that can be checked without the
//! private key, so that writers refuse bad input before storing it and
//! `get-service` refuses it before any private-key operation. Holds only the
//! (public) header fields and the still-encrypted parts.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::seal::b64_len;
use crate::{ALG, ENC, ENCRYPTED_KEY_LEN, IV_LEN, MAX_SEALED_TOKEN_LEN, SealError, TAG_LEN};
use tokenvault_limits::MAX_KEY_ID_LEN;

/// The protected header as parsed. Unknown members are ignored, except the
/// ones that change how the token must be processed.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    enc: Option<String>,
    kid: Option<String>,
    account: Option<String>,
    provider: Option<String>,
    token_use: Option<String>,
    crit: Option<IgnoredAny>,
    zip: Option<IgnoredAny>,
}

/// What a sealed token holds: a refresh token (the header has no
/// `token_use`) or an access token (`"token_use":"access"`). Each is opened
/// only where that kind is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// A refresh token, stored in the token store.
    Refresh,
    /// An access token, shared between get-service replicas.
    Access,
}

impl TokenUse {
    /// The header member's value (`None`: no member).
    pub(crate) fn header_value(self) -> Option<&'static str> {
        match self {
            TokenUse::Refresh => None,
            TokenUse::Access => Some("access"),
        }
    }
}

/// A sealed token that passed structural validation: five base64url parts,
/// a supported header naming a key, an account and a provider, and parts of
/// the right lengths. Whether it decrypts is only known to `get-service`.
#[derive(Clone)]
pub struct SealedToken {
    protected: String,
    kid: String,
    account: String,
    provider: String,
    token_use: TokenUse,
    encrypted_key: Vec<u8>,
    iv: [u8; IV_LEN],
    ciphertext: Vec<u8>,
    tag: [u8; TAG_LEN],
}

impl fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedToken")
            .field("kid", &self.kid)
            .field("account", &self.account)
            .field("provider", &self.provider)
            .field("token_use", &self.token_use)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl FromStr for SealedToken {
    type Err = SealError;

    fn from_str(token: &str) -> Result<Self, SealError> {
        Self::parse(token)
    }
}

impl SealedToken {
    /// Validates the structure of a JWE compact serialization sealed by
    /// [`PublicKeySet::seal`](crate::PublicKeySet::seal) (or any JOSE library
    /// using the same header), without a key.
    ///
    /// Errors: [`SealError::TooLarge`] over [`MAX_SEALED_TOKEN_LEN`];
    /// [`SealError::Malformed`] for a wrong part count, bad base64url, a
    /// header that is not a JSON object or lacks a non-empty `kid`,
    /// `account` or `provider`; [`SealError::UnsupportedAlgorithm`] for an
    /// `alg` other than `RSA-OAEP-256`, an `enc` other than `A256GCM`, or a
    /// `crit` or `zip` member; [`SealError::Truncated`] for an encrypted key,
    /// IV, tag or ciphertext of the wrong length.
    pub fn parse(token: &str) -> Result<Self, SealError> {
        if token.len() > MAX_SEALED_TOKEN_LEN {
            return Err(SealError::TooLarge {
                len: token.len(),
                max: MAX_SEALED_TOKEN_LEN,
            });
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [protected, encrypted_key, iv, ciphertext, tag] = parts[..] else {
            return Err(SealError::Malformed("expected 5 dot-separated parts"));
        };

        let header = decode(protected, "protected header is not base64url")?;
        // A JSON object, not an array (which serde would also map to a struct).
        if header.trim_ascii_start().first() != Some(&b'{') {
            return Err(SealError::Malformed(
                "protected header is not a JSON object",
            ));
        }
        let header: RawHeader = serde_json::from_slice(&header).map_err(|_| {
            SealError::Malformed("protected header is not a JSON object with string members")
        })?;
        if header.alg.as_deref() != Some(ALG) {
            return Err(SealError::UnsupportedAlgorithm("alg must be RSA-OAEP-256"));
        }
        if header.enc.as_deref() != Some(ENC) {
            return Err(SealError::UnsupportedAlgorithm("enc must be A256GCM"));
        }
        if header.crit.is_some() {
            return Err(SealError::UnsupportedAlgorithm("crit header member"));
        }
        if header.zip.is_some() {
            return Err(SealError::UnsupportedAlgorithm("compression (zip)"));
        }
        let kid = non_empty(header.kid, "header has no kid")?;
        if kid.len() > MAX_KEY_ID_LEN
            || !kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SealError::Malformed("kid is not a base64url key id"));
        }
        let account = non_empty(header.account, "header has no account")?;
        let provider = non_empty(header.provider, "header has no provider")?;
        let token_use = match header.token_use.as_deref() {
            None => TokenUse::Refresh,
            Some("access") => TokenUse::Access,
            Some(_) => return Err(SealError::Malformed("unknown token_use")),
        };

        // Lengths are checked on the encoded parts, so a cut-off part is
        // reported as truncated whatever its last characters decode to.
        if encrypted_key.len() != b64_len(ENCRYPTED_KEY_LEN) {
            return Err(SealError::Truncated("encrypted key must be 512 bytes"));
        }
        if iv.len() != b64_len(IV_LEN) {
            return Err(SealError::Truncated("IV must be 12 bytes"));
        }
        if ciphertext.is_empty() {
            return Err(SealError::Truncated("ciphertext is empty"));
        }
        if tag.len() != b64_len(TAG_LEN) {
            return Err(SealError::Truncated("tag must be 16 bytes"));
        }
        let encrypted_key = decode(encrypted_key, "encrypted key is not base64url")?;
        let iv = decode(iv, "IV is not base64url")?;
        let ciphertext = decode(ciphertext, "ciphertext is not base64url")?;
        let tag = decode(tag, "tag is not base64url")?;
        Ok(Self {
            protected: protected.to_owned(),
            kid,
            account,
            provider,
            token_use,
            encrypted_key,
            iv: iv
                .try_into()
                .map_err(|_| SealError::Truncated("IV must be 12 bytes"))?,
            ciphertext,
            tag: tag
                .try_into()
                .map_err(|_| SealError::Truncated("tag must be 16 bytes"))?,
        })
    }

    /// Fails with [`SealError::ContextMismatch`] unless the header names
    /// exactly this account and provider, and holds a refresh token.
    pub fn check_context(&self, account: &str, provider: &str) -> Result<(), SealError> {
        self.check_context_of(TokenUse::Refresh, account, provider)
    }

    /// Fails with [`SealError::ContextMismatch`] unless the header names
    /// exactly this account and provider, and holds a token of `token_use`.
    pub fn check_context_of(
        &self,
        token_use: TokenUse,
        account: &str,
        provider: &str,
    ) -> Result<(), SealError> {
        if self.token_use != token_use {
            return Err(SealError::ContextMismatch { field: "token_use" });
        }
        if self.account != account {
            return Err(SealError::ContextMismatch { field: "account" });
        }
        if self.provider != provider {
            return Err(SealError::ContextMismatch { field: "provider" });
        }
        Ok(())
    }

    /// The id of the key it was sealed under.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The account named in the header.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The provider named in the header.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// What it holds.
    pub fn token_use(&self) -> TokenUse {
        self.token_use
    }

    /// The additional authenticated data: the ASCII of the base64url
    /// protected header.
    pub fn aad(&self) -> &[u8] {
        self.protected.as_bytes()
    }

    /// The RSA-OAEP encrypted content-encryption key (512 bytes).
    pub fn encrypted_key(&self) -> &[u8] {
        &self.encrypted_key
    }

    /// The AES-GCM initialization vector.
    pub fn iv(&self) -> &[u8; IV_LEN] {
        &self.iv
    }

    /// The AES-GCM ciphertext (never empty).
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The AES-GCM authentication tag.
    pub fn tag(&self) -> &[u8; TAG_LEN] {
        &self.tag
    }
}

fn decode(part: &str, what: &'static str) -> Result<Vec<u8>, SealError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| SealError::Malformed(what))
}

fn non_empty(value: Option<String>, what: &'static str) -> Result<String, SealError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(SealError::Malformed(what))
}
