//! An endpoint's Standard Webhooks signing secret and the signature itself.
//!
//! The secret file holds `whsec_` and the base64 of 24 to 64 random bytes (what the Standard
//! Webhooks libraries generate and accept). It is read with the runtime's owner-only secret-file
//! reader; the decoded key lives in a buffer wiped on drop, is never logged, and `Debug` prints
//! `<redacted>`. Error messages say what is wrong, never what the file holds.

use std::fmt;
use std::path::Path;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use zeroize::Zeroizing;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The fewest key bytes accepted (the Standard Webhooks minimum).
pub const MIN_KEY_BYTES: usize = 24;
/// The most key bytes accepted.
pub const MAX_KEY_BYTES: usize = 64;
/// The largest secret file read.
const MAX_FILE_BYTES: u64 = 1024;

/// Standard base64, with or without padding (both are in use for these secrets).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The decoded signing key of one endpoint.
#[derive(Clone)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl WebhookSecret {
    /// Reads and decodes the secret file at `path`. The error is the reason, without the path.
    pub fn read(path: &Path) -> Result<Self, String> {
        let bytes = tokenvault_runtime::secret::read_secret_file(path, MAX_FILE_BYTES)?;
        Self::parse(&bytes)
    }

    /// Decodes `whsec_<base64>` (surrounding white space ignored).
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let text = text.trim_ascii();
        let Some(encoded) = text.strip_prefix(SECRET_PREFIX.as_bytes()) else {
            return Err(format!("must start with {SECRET_PREFIX}"));
        };
        // Room for the whole key up front, so that decoding never reallocates (leaving a copy
        // of part of the key in freed memory).
        let capacity = base64::decoded_len_estimate(encoded.len());
        let mut key = Zeroizing::new(Vec::with_capacity(capacity));
        LENIENT
            .decode_vec(encoded, &mut key)
            .map_err(|_| format!("is not {SECRET_PREFIX} followed by base64"))?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(format!(
                "must decode to {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {}",
                key.len()
            ));
        }
        Ok(Self(key))
    }

    /// The `webhook-signature` header value for message `id` sent at `timestamp` (Unix seconds)
    /// with `body`: `v1,` and the base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let mut context = hmac::Context::with_key(&key);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference libraries' test vector; the Python `standardwebhooks`
    /// package gives the same signature (`Webhook(secret).sign(id, datetime(1614265330), body)`).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_reference_vector() {
        let secret = WebhookSecret::parse(SECRET.as_bytes()).unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        // A trailing newline in the file and padded base64 change nothing.
        let padded = WebhookSecret::parse(format!("{SECRET}\n").as_bytes()).unwrap();
        assert_eq!(padded.sign(ID, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        assert_ne!(secret.sign(ID, TIMESTAMP + 1, BODY.as_bytes()), SIGNATURE);
        assert_ne!(
            secret.sign("msg_other", TIMESTAMP, BODY.as_bytes()),
            SIGNATURE
        );
    }

    #[test]
    fn refuses_bad_secrets_without_echoing_them() {
        let short = format!("whsec_{}", STANDARD.encode([7u8; 16]));
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        for (text, why) in [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with whsec_"),
            ("whsec_not*base64*at*all*but*long*enough", "base64"),
            (short.as_str(), "not 16"),
            (long.as_str(), "not 65"),
            ("whsec_", "not 0"),
        ] {
            let e = WebhookSecret::parse(text.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
            assert!(!e.contains("MfKQ9r8") && !e.contains("BwcH"), "{e}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let secret = WebhookSecret::parse(SECRET.as_bytes()).unwrap();
        assert_eq!(format!("{secret:?}"), "<redacted>");
    }

    #[test]
    fn reads_owner_only_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("whsec");
        std::fs::write(&path, SECRET).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(WebhookSecret::read(&path).unwrap_err().contains("0644"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secret = WebhookSecret::read(&path).unwrap();
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
    }
}
