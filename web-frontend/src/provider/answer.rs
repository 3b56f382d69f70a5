//! The token endpoint's answer to a code exchange, as a plain OAuth 2.0
//! provider gives it: [`ShapedHttp`] brings a nested answer into the
//! standard shape before oauth2 parses it (`tokenvault_oauth::shape`, the
//! same rule get-service applies to refreshes) and, where the provider
//! names the account in the answer, reads the account's id from it on the
//! way ([`subject_in_answer`]); [`json_subject`] reads an id out of any
//! JSON answer (user API, token answer, ID token payload).
//!
//! Holds a token answer for the length of one call; keeps only the
//! account's id from it. Errors never quote the answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use base64::Engine as _;
use oauth2::{AsyncHttpClient, HttpClientError, HttpRequest, HttpResponse};
use serde_json::{Map, Value};
use tokenvault_oauth::shape::{ResponseShape, STANDARD_EXPIRY_FIELD, lookup};

use super::error::ProviderError;

/// The largest JSON answer read for an account id.
pub(super) const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Where, in the token answer, the account's id is.
#[derive(Clone, Debug)]
pub(super) enum AnswerSubject {
    /// Not in the answer (user API, redirect).
    Elsewhere,
    /// A dot path of the answer (`authed_user.id`).
    Field(String),
    /// A claim of the answer's `id_token`, whose `aud` must be `client_id`.
    IdTokenClaim { claim: String, client_id: String },
}

/// reqwest under oauth2, with the answer's shape fixed, and the account's
/// id and the refresh token's lifetime taken from it.
pub(super) struct ShapedHttp<'a> {
    pub http: &'a reqwest::Client,
    pub shape: &'a ResponseShape,
    pub subject: &'a AnswerSubject,
    /// The account's id, once a success answer went by.
    pub found: Mutex<Option<Result<String, ProviderError>>>,
    /// The refresh token's lifetime in seconds, if the answer said.
    pub refresh_token_expires_in: Mutex<Option<u64>>,
}

impl<'a> ShapedHttp<'a> {
    pub fn new(
        http: &'a reqwest::Client,
        shape: &'a ResponseShape,
        subject: &'a AnswerSubject,
    ) -> Self {
        Self {
            http,
            shape,
            subject,
            found: Mutex::new(None),
            refresh_token_expires_in: Mutex::new(None),
        }
    }

    /// The refresh token's lifetime the answer gave, in seconds.
    pub fn refresh_token_expires_in(&self) -> Option<u64> {
        self.refresh_token_expires_in.lock().ok().and_then(|g| *g)
    }
}

impl<'c> AsyncHttpClient<'c> for ShapedHttp<'_> {
    type Error = HttpClientError<reqwest::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let mut response = self.http.call(request).await?;
            if response.status().is_success() {
                if let Some(normalized) = self.shape.normalize(response.body()) {
                    *response.body_mut() = normalized.to_vec();
                }
                if let Ok(mut slot) = self.refresh_token_expires_in.lock() {
                    *slot = refresh_token_lifetime(response.body());
                }
                if !matches!(self.subject, AnswerSubject::Elsewhere) {
                    let found = subject_in_answer(response.body(), self.subject);
                    if let Ok(mut slot) = self.found.lock() {
                        *slot = Some(found);
                    }
                }
            }
            Ok(response)
        })
    }
}

/// The standard `refresh_token_expires_in` of a (normalized) token answer:
/// whole seconds, more than zero; anything else is no answer.
fn refresh_token_lifetime(body: &[u8]) -> Option<u64> {
    let answer = object(body, "token response").ok()?;
    match answer.get(STANDARD_EXPIRY_FIELD)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|secs| *secs > 0)
}

/// The account's id in a token answer `body`.
pub(super) fn subject_in_answer(
    body: &[u8],
    subject: &AnswerSubject,
) -> Result<String, ProviderError> {
    match subject {
        AnswerSubject::Elsewhere => Err(ProviderError::Identity(
            "the token response does not name the account".into(),
        )),
        AnswerSubject::Field(path) => json_subject(body, path, "token response"),
        AnswerSubject::IdTokenClaim { claim, client_id } => {
            let answer = object(body, "token response")?;
            let Some(Value::String(id_token)) = answer.get("id_token") else {
                return Err(ProviderError::Identity(
                    "the token response has no ID token".into(),
                ));
            };
            id_token_claim(id_token, claim, client_id)
        }
    }
}

/// `claim` of an ID token that came straight from the token endpoint over
/// TLS (OpenID Connect Core 3.1.3.7: TLS server validation stands in for the
/// signature there), after checking that it was issued to `client_id`.
pub(super) fn id_token_claim(
    id_token: &str,
    claim: &str,
    client_id: &str,
) -> Result<String, ProviderError> {
    let bad = || ProviderError::Identity("the ID token is not a JWT".into());
    let payload = id_token.split('.').nth(1).ok_or_else(bad)?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad())?;
    let claims = object(&payload, "ID token")?;
    let issued_to_us = match claims.get("aud") {
        Some(Value::String(aud)) => aud == client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !issued_to_us {
        return Err(ProviderError::Identity(
            "the ID token was issued to another client".into(),
        ));
    }
    json_subject(&payload, claim, "ID token")
}

fn object(body: &[u8], what: &str) -> Result<Map<String, Value>, ProviderError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(ProviderError::Identity(format!("{what} too large")));
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ProviderError::Identity(format!(
            "{what} is not a JSON object"
        ))),
    }
}

/// The account named by the JSON answer `body` at the dot path `field`: a
/// non-empty string or a number. `what` names the answer in errors.
pub fn json_subject(body: &[u8], field: &str, what: &str) -> Result<String, ProviderError> {
    let answer = object(body, what)?;
    match lookup(&answer, field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(ProviderError::Identity(format!(
            "{what} has no {field:?} field"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            b64.encode(r#"{"alg":"RS256"}"#),
            b64.encode(payload)
        )
    }

    #[test]
    fn fields_and_claims() {
        let body = br#"{"access_token":"a","authed_user":{"id":"U1"},"athlete":{"id":42}}"#;
        let field = |p: &str| subject_in_answer(body, &AnswerSubject::Field(p.into()));
        assert_eq!(field("authed_user.id").unwrap(), "U1");
        assert_eq!(field("athlete.id").unwrap(), "42");
        assert!(field("team.id").is_err());
        let claim = |token: String, client: &str| {
            let body = serde_json::json!({ "access_token": "a", "id_token": token }).to_string();
            subject_in_answer(
                body.as_bytes(),
                &AnswerSubject::IdTokenClaim {
                    claim: "oid".into(),
                    client_id: client.into(),
                },
            )
        };
        let token = jwt(r#"{"aud":"cid","oid":"0000-1","sub":"pairwise"}"#);
        assert_eq!(claim(token.clone(), "cid").unwrap(), "0000-1");
        assert!(claim(token, "other").is_err());
        assert!(claim(jwt(r#"{"aud":["x","cid"],"sub":"s"}"#), "cid").is_err());
        assert!(claim("not-a-jwt".into(), "cid").is_err());
    }

    #[test]
    fn refresh_token_lifetimes() {
        assert_eq!(
            refresh_token_lifetime(br#"{"refresh_token_expires_in":5184000}"#),
            Some(5_184_000)
        );
        assert_eq!(
            refresh_token_lifetime(br#"{"refresh_token_expires_in":"60"}"#),
            Some(60)
        );
        for odd in [
            r#"{"refresh_token_expires_in":0}"#,
            r#"{"refresh_token_expires_in":-1}"#,
            "{}",
            "[]",
        ] {
            assert_eq!(refresh_token_lifetime(odd.as_bytes()), None, "{odd}");
        }
    }

    #[test]
    fn errors_do_not_quote_the_answer() {
        let err = json_subject(br#"{"access_token":"secret-at"}"#, "id", "token response")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret-at"), "{err}");
    }
}
