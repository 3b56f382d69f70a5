//! Random tokens, their SHA-256 fingerprints, PKCE S256 and the small
//! syntax checks shared by the endpoints.
//!
//! Tokens are 256 random bits from aws-lc-rs, base64url without padding.
//! Only [`fingerprint`]s of tokens are kept (in memory and in the state
//! file); a token itself exists only in the response that hands it out.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokenvault_runtime::secret::Secret;

/// Random bytes in every token (256 bits).
pub(crate) const TOKEN_BYTES: usize = 32;

/// The random source failed (should never happen on a working OS).
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub(crate) struct RandomError;

/// A new random token: 256 bits, base64url without padding.
pub(crate) fn new_token() -> Result<Secret, RandomError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RandomError)?;
    let token = Secret::new(URL_SAFE_NO_PAD.encode(bytes));
    bytes.fill(0);
    Ok(token)
}

/// A new random identifier that is not a secret (grant ids).
pub(crate) fn new_id() -> Result<String, RandomError> {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RandomError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The SHA-256 fingerprint of a token, base64url: what is stored instead of
/// the token.
pub(crate) fn fingerprint(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes()))
}

/// Compares two secrets through their SHA-256 digests, so that the time
/// taken says nothing useful about the expected value.
pub(crate) fn secrets_match(given: &str, expected: &str) -> bool {
    digest(&SHA256, given.as_bytes()).as_ref() == digest(&SHA256, expected.as_bytes()).as_ref()
}

/// RFC 7636 `unreserved` characters, 43 to 128 of them: the syntax of a
/// code verifier and of a code challenge.
pub(crate) fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Whether `verifier` matches an S256 `challenge` (RFC 7636 4.6).
pub(crate) fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    is_pkce_value(verifier)
        && URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes())) == challenge
}

/// An RFC 6749 3.3 scope: space-separated tokens of printable ASCII without
/// `"` or `\`. Returns the normalised list (duplicates dropped, order kept).
pub(crate) fn parse_scope(scope: &str) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        let ok = token.len() <= 128
            && token
                .bytes()
                .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
        if !ok {
            return None;
        }
        if !out.iter().any(|t| t == token) {
            out.push(token.to_owned());
        }
    }
    (out.len() <= 32).then_some(out)
}

/// A demo user name: `[a-z0-9._-]{1,32}`.
pub(crate) fn is_username(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_url_safe() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a.expose(), b.expose());
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(format!("{a:?}"), "<redacted>");
        assert_ne!(fingerprint(a.expose()), a.expose());
    }

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_s256_matches(verifier, challenge));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXz",
            challenge
        ));
        assert!(!pkce_s256_matches("short", challenge));
    }

    #[test]
    fn syntax_checks() {
        assert!(is_username("alice"));
        assert!(is_username("a.b_c-1"));
        for bad in ["", "Alice", "a b", "a/b", "é", &"a".repeat(33)] {
            assert!(!is_username(bad), "{bad}");
        }
        assert_eq!(
            parse_scope("profile  email profile").unwrap(),
            vec!["profile".to_owned(), "email".to_owned()]
        );
        assert_eq!(parse_scope("").unwrap(), Vec::<String>::new());
        assert!(parse_scope("a\"b").is_none());
        assert!(secrets_match("s3cret", "s3cret"));
        assert!(!secrets_match("s3cret", "s3cre"));
    }
}
