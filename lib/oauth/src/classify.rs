//! Error classification: from an HTTP answer (status, headers, body) to a
//! [`ProviderError`], as pure functions testable without a server.
//!
//! Reads response bodies, which for a successful refresh hold tokens: it
//! only looks at their shape, and copies out nothing but sanitized OAuth error
//! codes and descriptions (never from a success body's token fields).
//!
//! Rules, in order (a dead grant is declared only when the provider says so
//! explicitly, in a 4xx or a 200 error body, never on a 5xx):
//! 1. 5xx, 429, 408, 425 → `Transient` (with `Retry-After`), whatever the body.
//! 2. 3xx → `Misconfigured` (redirects are not followed).
//! 3. An OAuth error body (`{"error": ...}`) on a 4xx, or on a 200 as GitHub
//!    sends it (any other status with one → `InvalidResponse`):
//!    - `invalid_grant`, and kin that only mean "this refresh token is no
//!      good": `invalid_token`, `expired_token`, `bad_refresh_token`,
//!      `invalid_refresh_token`, and the OIDC "the user must come back" codes
//!      `interaction_required`, `consent_required`, `login_required`,
//!      `access_denied` → `GrantDead`;
//!    - `temporarily_unavailable`, `server_error`, `slow_down` → `Transient`;
//!    - `invalid_client`, `unauthorized_client`, `unsupported_grant_type`,
//!      `invalid_request`, `incorrect_client_credentials` → `Misconfigured`
//!      (these are the same for every account: declaring grants dead for them
//!      would wrongly ask every user to reconnect);
//!    - `invalid_scope` → `ScopeRefused` (a scope beyond the grant, or a
//!      wrong `scopes` setting; the caller knows which it asked for);
//!    - `unsupported_token_type` → `Unsupported`;
//!    - anything else → `InvalidResponse`.
//! 4. No OAuth error body: 401, 403, 404, 405 → `Misconfigured`; other
//!    statuses → `InvalidResponse`.
//! 5. A 200 refresh answer without a non-empty `access_token` → `InvalidResponse`.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::Visitor;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::ProviderError;
use crate::retry_after::parse_retry_after;

/// Longest error description we keep, in characters.
const MAX_DESCRIPTION_CHARS: usize = 300;
/// Longest error code we keep, in characters.
const MAX_CODE_CHARS: usize = 64;

/// Which call an answer belongs to: what counts as success differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exchange {
    /// The refresh-token grant at the token endpoint: only a 200 with an
    /// `access_token` is a success.
    Refresh,
    /// The client-credentials grant: a success as for `Refresh`.
    ClientCredentials,
    /// RFC 7009 revocation: any 2xx is a success.
    Revoke,
}

impl Exchange {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::ClientCredentials => "client_credentials",
            Self::Revoke => "revoke",
        }
    }
}

/// Whether an answer is a success for `exchange`, and if not, why.
pub(crate) fn check_response(
    exchange: Exchange,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), ProviderError> {
    match exchange {
        Exchange::Revoke if status.is_success() => Ok(()),
        Exchange::Refresh | Exchange::ClientCredentials if status == StatusCode::OK => {
            check_token_body(body)
        }
        _ => Err(classify_failure(status, headers, body, now)),
    }
}

/// A 200 from the token endpoint: has it an access token, or is it an error
/// in disguise? Learns whether `access_token` is a non-empty string without
/// copying it.
fn check_token_body(body: &[u8]) -> Result<(), ProviderError> {
    #[derive(Deserialize)]
    struct Shape {
        #[serde(default)]
        access_token: Option<NonEmptyString>,
        // Not `flatten`: that would buffer (copy) every other field.
        #[serde(default)]
        error: Option<Value>,
        #[serde(default)]
        error_description: Option<Value>,
    }
    let Ok(shape) = serde_json::from_slice::<Shape>(body) else {
        return Err(ProviderError::InvalidResponse(
            "the token endpoint answered 200 with a malformed body".into(),
        ));
    };
    if shape.access_token.is_some_and(|t| t.0) {
        return Ok(());
    }
    let error = ErrorShape {
        error: shape.error,
        error_description: shape.error_description,
    };
    if let Some((code, description)) = error.fields() {
        return Err(classify_oauth_error(
            StatusCode::OK,
            &code,
            description,
            None,
        ));
    }
    Err(ProviderError::InvalidResponse(
        "the token endpoint answered 200 without an access_token".into(),
    ))
}

/// Whether a JSON string is non-empty.
struct NonEmptyString(bool);

impl<'de> Deserialize<'de> for NonEmptyString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Check;
        impl Visitor<'_> for Check {
            type Value = NonEmptyString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NonEmptyString, E> {
                Ok(NonEmptyString(!v.is_empty()))
            }
        }
        deserializer.deserialize_str(Check)
    }
}

/// The error fields of an OAuth answer; everything else is skipped unread.
#[derive(Deserialize)]
struct ErrorShape {
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    error_description: Option<Value>,
}

impl ErrorShape {
    /// `(error, error_description)`, sanitized, if `error` is a string.
    fn fields(&self) -> Option<(String, Option<String>)> {
        let code: String = self
            .error
            .as_ref()?
            .as_str()?
            .chars()
            .filter(|c| matches!(c, ' '..='~') && !matches!(c, '"' | '\\'))
            .take(MAX_CODE_CHARS)
            .collect();
        let code = code.trim().to_owned();
        if code.is_empty() {
            return None;
        }
        let description = self
            .error_description
            .as_ref()
            .and_then(Value::as_str)
            .map(|d| sanitize_text(d, MAX_DESCRIPTION_CHARS))
            .filter(|d| !d.is_empty());
        Some((code, description))
    }
}

/// A non-success answer.
pub(crate) fn classify_failure(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> ProviderError {
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now));
    let oauth = oauth_error(body);
    let code_note = oauth
        .as_ref()
        .map(|(code, _)| format!(" ({code})"))
        .unwrap_or_default();
    let transient = |reason: String| ProviderError::Transient {
        reason,
        retry_after,
    };
    match status.as_u16() {
        500..=599 => return transient(format!("HTTP {status}{code_note}")),
        429 => return transient(format!("rate limited: HTTP {status}{code_note}")),
        408 | 425 => return transient(format!("HTTP {status}{code_note}")),
        300..=399 => {
            return ProviderError::Misconfigured(format!(
                "the endpoint answered with a redirect (HTTP {status}); redirects are not followed, configure the final URL"
            ));
        }
        _ => {}
    }
    match (status.as_u16(), oauth) {
        // Only a 4xx carries an OAuth error (a 200's is read from the
        // success body): a 201 or a 1xx saying `invalid_grant` kills nothing.
        (400..=499, Some((code, description))) => {
            classify_oauth_error(status, &code, description, retry_after)
        }
        (401, None) => ProviderError::Misconfigured(format!(
            "client authentication failed (HTTP {status}): check client_id, client_secret and client_auth"
        )),
        (403..=405, None) => ProviderError::Misconfigured(format!(
            "HTTP {status} without an OAuth error: check the endpoint URL and the client's permissions"
        )),
        (_, None) => {
            ProviderError::InvalidResponse(format!("HTTP {status} without an OAuth error"))
        }
        (_, Some(_)) => ProviderError::InvalidResponse(format!(
            "HTTP {status}{code_note}: an OAuth error needs a 4xx status"
        )),
    }
}

/// An OAuth error code (with its sanitized description) to an error.
pub(crate) fn classify_oauth_error(
    status: StatusCode,
    code: &str,
    description: Option<String>,
    retry_after: Option<Duration>,
) -> ProviderError {
    let detail = description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    let misconfigured = |hint: &str| {
        ProviderError::Misconfigured(format!(
            "the provider answered {code} (HTTP {}){detail}; {hint}",
            status.as_u16()
        ))
    };
    match code.to_ascii_lowercase().as_str() {
        "invalid_grant"
        | "invalid_token"
        | "expired_token"
        | "bad_refresh_token"
        | "invalid_refresh_token"
        | "interaction_required"
        | "consent_required"
        | "login_required"
        | "access_denied" => ProviderError::GrantDead {
            error: code.to_owned(),
            description,
        },
        "temporarily_unavailable" | "server_error" | "slow_down" => ProviderError::Transient {
            reason: format!("{code} (HTTP {}){detail}", status.as_u16()),
            retry_after,
        },
        "invalid_client" | "incorrect_client_credentials" => {
            misconfigured("check client_id, client_secret and client_auth")
        }
        "unauthorized_client" | "unsupported_grant_type" => {
            misconfigured("the client may not use the refresh_token grant")
        }
        "invalid_scope" => ProviderError::ScopeRefused(format!(
            "the provider answered invalid_scope (HTTP {}){detail}",
            status.as_u16()
        )),
        "invalid_request" => misconfigured("the provider refused the request as malformed"),
        "unsupported_token_type" => ProviderError::Unsupported(format!(
            "the provider does not revoke this token type ({code}){detail}"
        )),
        _ => ProviderError::InvalidResponse(format!(
            "unrecognized OAuth error {code} (HTTP {}){detail}",
            status.as_u16()
        )),
    }
}

/// `(error, error_description)` from an OAuth error body, sanitized.
pub(crate) fn oauth_error(body: &[u8]) -> Option<(String, Option<String>)> {
    serde_json::from_slice::<ErrorShape>(body).ok()?.fields()
}

/// Drops control characters, collapses whitespace, and cuts to `max` chars.
pub(crate) fn sanitize_text(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, word) in text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > max {
        out = out.chars().take(max).collect();
        out.push('…');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// 1994-11-06 08:49:37 UTC.
    const RFC_EXAMPLE: u64 = 784_111_777;

    fn classify(status: u16, retry_after: Option<&str>, body: &str) -> ProviderError {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        let status = StatusCode::from_u16(status).unwrap();
        check_response(
            Exchange::Refresh,
            status,
            &headers,
            body.as_bytes(),
            at(RFC_EXAMPLE),
        )
        .unwrap_err()
    }

    #[test]
    fn server_errors_are_transient() {
        let e = classify(503, Some("7"), "<html>down</html>");
        assert_eq!(
            e,
            ProviderError::Transient {
                reason: "HTTP 503 Service Unavailable".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        // Even an invalid_grant on a 5xx does not kill the grant.
        let e = classify(500, None, r#"{"error":"invalid_grant"}"#);
        assert!(e.is_transient(), "{e:?}");
        let e = classify(429, Some("Sun, 06 Nov 1994 08:50:37 GMT"), "");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(60)));
        assert!(classify(408, None, "").is_transient());
        let e = classify(400, Some("3"), r#"{"error":"temporarily_unavailable"}"#);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert!(classify(400, None, r#"{"error":"server_error"}"#).is_transient());
    }

    #[test]
    fn dead_grants() {
        let e = classify(
            400,
            None,
            r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
        );
        assert_eq!(
            e,
            ProviderError::GrantDead {
                error: "invalid_grant".into(),
                description: Some("grant request is invalid".into()),
            }
        );
        for code in ["invalid_token", "interaction_required", "consent_required"] {
            let e = classify(401, None, &format!(r#"{{"error":"{code}"}}"#));
            assert!(e.is_grant_dead(), "{code}: {e:?}");
        }
        // GitHub: HTTP 200 with an error body.
        let e = classify(
            200,
            None,
            r#"{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired."}"#,
        );
        assert!(e.is_grant_dead(), "{e:?}");
    }

    #[test]
    fn misconfiguration() {
        for code in [
            "invalid_client",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_request",
        ] {
            let e = classify(400, None, &format!(r#"{{"error":"{code}"}}"#));
            assert!(
                matches!(e, ProviderError::Misconfigured(_)),
                "{code}: {e:?}"
            );
            assert!(e.to_string().contains(code));
        }
        for status in [401, 403, 404, 405, 302] {
            let e = classify(status, None, "");
            assert!(
                matches!(e, ProviderError::Misconfigured(_)),
                "{status}: {e:?}"
            );
        }
        let e = classify(400, None, r#"{"error":"unsupported_token_type"}"#);
        assert!(matches!(e, ProviderError::Unsupported(_)), "{e:?}");
        let e = classify(
            400,
            None,
            r#"{"error":"invalid_scope","error_description":"refresh token missing requested scope"}"#,
        );
        assert!(matches!(e, ProviderError::ScopeRefused(_)), "{e:?}");
        assert!(e.to_string().contains("missing requested scope"), "{e}");
    }

    #[test]
    fn invalid_responses() {
        for (status, body) in [
            (400, "plain text"),
            (400, r#"{"error":"weird_thing"}"#),
            (400, r#"{"error":42}"#),
            (200, r#"{"token_type":"Bearer"}"#),
            (200, r#"{"access_token":"","token_type":"Bearer"}"#),
            (200, "not json"),
            (204, ""),
        ] {
            let e = classify(status, None, body);
            assert!(
                matches!(e, ProviderError::InvalidResponse(_)),
                "{status} {body}: {e:?}"
            );
        }
        let ok = check_response(
            Exchange::Refresh,
            StatusCode::OK,
            &HeaderMap::new(),
            br#"{"access_token":"at","token_type":"Bearer"}"#,
            at(0),
        );
        assert_eq!(ok, Ok(()));
        let revoked = check_response(
            Exchange::Revoke,
            StatusCode::NO_CONTENT,
            &HeaderMap::new(),
            b"",
            at(0),
        );
        assert_eq!(revoked, Ok(()));
    }

    /// Found by the `provider_answer` fuzz target: a 201 (or any status
    /// but a 4xx and 200) with an OAuth error body declared the grant dead.
    #[test]
    fn oauth_errors_count_only_on_4xx_and_200() {
        let body = r#"{"error": "bad_refresh_token", "error_description": "The refresh token passed is incorrect or expired.", "error_uri": "https://docs.github.com"}"#;
        for status in [201, 202, 101, 600, 999] {
            let e = classify(status, None, body);
            assert!(
                matches!(e, ProviderError::InvalidResponse(_)),
                "{status}: {e:?}"
            );
        }
        assert!(classify(200, None, body).is_grant_dead());
        assert!(classify(400, None, body).is_grant_dead());
    }

    #[test]
    fn provider_texts_are_sanitized() {
        let long = "x".repeat(1000);
        let body = format!(
            r#"{{"error":"invalid_grant\u0007\"","error_description":"line1\nline2\u0000 {long}"}}"#
        );
        let ProviderError::GrantDead { error, description } = classify(400, None, &body) else {
            panic!("not dead");
        };
        assert_eq!(error, "invalid_grant");
        let description = description.unwrap();
        assert!(description.starts_with("line1 line2 xxx"), "{description}");
        assert!(description.chars().count() <= MAX_DESCRIPTION_CHARS + 1);
        assert!(!description.chars().any(char::is_control));
    }
}
