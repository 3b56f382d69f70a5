//! Sealing: building a JWE (`RSA-OAEP-256` + `A256GCM`) under the sealing
//! public key.
//!
//! Holds the plaintext being sealed and a fresh content-encryption key only
//! for the duration of one call, both in buffers wiped on drop.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand;
use aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::{
    ALG, CEK_LEN, ENC, ENCRYPTED_KEY_LEN, IV_LEN, MAX_SEALED_TOKEN_LEN, PublicKeySet, SealError,
    TAG_LEN, TokenUse,
};

/// The protected header, serialized in this field order.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    enc: &'a str,
    kid: &'a str,
    account: &'a str,
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_use: Option<&'a str>,
}

/// The length of `n` bytes in unpadded base64url.
pub(crate) const fn b64_len(n: usize) -> usize {
    (4 * n).div_ceil(3)
}

impl PublicKeySet {
    /// Seals `plaintext` (a refresh token) for `account` at `provider` under
    /// the [sealing key](Self::sealing_kid), returning a JWE compact
    /// serialization whose protected header names the key, account and
    /// provider.
    ///
    /// Fails with [`SealError::InvalidInput`] if an argument is empty and
    /// with [`SealError::TooLarge`] if the result would exceed
    /// [`MAX_SEALED_TOKEN_LEN`].
    pub fn seal(
        &self,
        account: &str,
        provider: &str,
        plaintext: &[u8],
    ) -> Result<String, SealError> {
        self.seal_as(TokenUse::Refresh, account, provider, plaintext)
    }

    /// [`seal`](Self::seal) for a token of `token_use` (an access token's
    /// header says `"token_use":"access"`).
    pub fn seal_as(
        &self,
        token_use: TokenUse,
        account: &str,
        provider: &str,
        plaintext: &[u8],
    ) -> Result<String, SealError> {
        if account.is_empty() {
            return Err(SealError::InvalidInput("account is empty"));
        }
        if provider.is_empty() {
            return Err(SealError::InvalidInput("provider is empty"));
        }
        if plaintext.is_empty() {
            return Err(SealError::InvalidInput("plaintext is empty"));
        }
        let (kid, key) = self.sealing_key()?;
        let header = serde_json::to_vec(&Header {
            alg: ALG,
            enc: ENC,
            kid,
            account,
            provider,
            token_use: token_use.header_value(),
        })
        .map_err(|_| SealError::InvalidInput("cannot encode the header"))?;
        let header = URL_SAFE_NO_PAD.encode(header);
        let len = header.len()
            + 4
            + b64_len(ENCRYPTED_KEY_LEN)
            + b64_len(IV_LEN)
            + b64_len(plaintext.len())
            + b64_len(TAG_LEN);
        if len > MAX_SEALED_TOKEN_LEN {
            return Err(SealError::TooLarge {
                len,
                max: MAX_SEALED_TOKEN_LEN,
            });
        }

        let mut cek = Zeroizing::new([0u8; CEK_LEN]);
        rand::fill(cek.as_mut()).map_err(|_| SealError::Crypto)?;
        let mut iv = [0u8; IV_LEN];
        rand::fill(&mut iv).map_err(|_| SealError::Crypto)?;

        let mut encrypted_key = vec![0u8; key.ciphertext_size()];
        let encrypted_key = key
            .encrypt(
                &OAEP_SHA256_MGF1SHA256,
                cek.as_ref(),
                &mut encrypted_key,
                None,
            )
            .map_err(|_| SealError::Crypto)?;
        if encrypted_key.len() != ENCRYPTED_KEY_LEN {
            return Err(SealError::Crypto);
        }

        let aes = UnboundKey::new(&AES_256_GCM, cek.as_ref()).map_err(|_| SealError::Crypto)?;
        let mut buf = Zeroizing::new(plaintext.to_vec());
        let tag = LessSafeKey::new(aes)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(header.as_bytes()),
                buf.as_mut_slice(),
            )
            .map_err(|_| SealError::Crypto)?;

        Ok(format!(
            "{header}.{}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(encrypted_key),
            URL_SAFE_NO_PAD.encode(iv),
            URL_SAFE_NO_PAD.encode(buf.as_slice()),
            URL_SAFE_NO_PAD.encode(tag.as_ref()),
        ))
    }
}
