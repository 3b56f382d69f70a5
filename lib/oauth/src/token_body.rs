//! [`TokenBody`]: the token endpoint's success answer (RFC 6749 5.1) as
//! oauth2 parses it, leniently: `expires_in` as a number or a numeric string
//! (older Azure AD), `scope` as a string or an array, `token_type` defaulting
//! to `Bearer`.
//!
//! Holds an access token and possibly a refresh token, in oauth2's types
//! (redacted `Debug`), for the length of one call; the caller moves them out
//! into wiped buffers.

use std::time::Duration;

use oauth2::{AccessToken, RefreshToken, Scope, TokenResponse, TokenType};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A token type name as the provider spelled it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenTypeName(pub String);

impl TokenType for TokenTypeName {}

fn bearer() -> TokenTypeName {
    TokenTypeName("Bearer".to_owned())
}

/// A token endpoint success answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TokenBody {
    access_token: AccessToken,
    #[serde(default = "bearer")]
    pub token_type: TokenTypeName,
    #[serde(default, deserialize_with = "expires_in")]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<RefreshToken>,
    #[serde(default, rename = "scope", deserialize_with = "scope")]
    pub scopes: Option<Vec<Scope>>,
    /// How long the refresh token lives (GitHub Apps, Google apps in
    /// testing, ...). Never fails the parse: a body that carries a rotated
    /// refresh token must not be lost over an odd expiry.
    #[serde(default, deserialize_with = "lenient_seconds")]
    pub refresh_token_expires_in: Option<u64>,
}

impl TokenBody {
    /// Moves the access token out (no copy), leaving an empty one.
    pub fn take_access_token(&mut self) -> String {
        std::mem::replace(&mut self.access_token, AccessToken::new(String::new())).into_secret()
    }
}

impl TokenResponse for TokenBody {
    type TokenType = TokenTypeName;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &TokenTypeName {
        &self.token_type
    }

    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }

    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    fn scopes(&self) -> Option<&Vec<Scope>> {
        self.scopes.as_ref()
    }
}

fn expires_in<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let bad = || D::Error::custom("expires_in is not a number of seconds");
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .filter(|secs| *secs > 0))
}

fn scope<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Scope>>, D::Error> {
    let scopes = match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s
            .split_whitespace()
            .map(|s| Scope::new(s.to_owned()))
            .collect(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(Scope::new(s)),
                _ => Err(D::Error::custom("scope is not a list of strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(D::Error::custom("scope is not a string")),
    };
    Ok(Some(scopes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TokenBody, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn standard_answer() {
        let mut b = parse(
            r#"{"access_token":"at-1","token_type":"bearer","expires_in":3600,"refresh_token":"rt-2","scope":"openid  email","id_token":"x"}"#,
        )
        .unwrap();
        assert_eq!(b.token_type.0, "bearer");
        assert_eq!(b.expires_in, Some(3600));
        assert_eq!(b.refresh_token.as_ref().unwrap().secret(), "rt-2");
        let scopes: Vec<String> = b
            .scopes
            .clone()
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(scopes, ["openid", "email"]);
        assert_eq!(b.take_access_token(), "at-1");
        assert_eq!(b.access_token().secret(), "");
        assert!(!format!("{b:?}").contains("rt-2"));
    }

    #[test]
    fn lenient_fields() {
        let b = parse(r#"{"access_token":"a","expires_in":"3599","scope":["a","b"]}"#).unwrap();
        assert_eq!(b.token_type.0, "Bearer");
        assert_eq!(b.expires_in, Some(3599));
        assert_eq!(b.scopes.unwrap().len(), 2);
        let b =
            parse(r#"{"access_token":"a","expires_in":59.9,"scope":null,"refresh_token":null}"#)
                .unwrap();
        assert_eq!(b.expires_in, Some(59));
        assert!(b.scopes.is_none() && b.refresh_token.is_none());
        for bad in [
            r#"{"access_token":"a","expires_in":-1}"#,
            r#"{"access_token":"a","expires_in":"soon"}"#,
            r#"{"access_token":"a","scope":3}"#,
            r#"{"token_type":"Bearer"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refresh_token_expiry_never_fails_the_answer() {
        let b = parse(
            r#"{"access_token":"a","refresh_token":"r","refresh_token_expires_in":15897600}"#,
        )
        .unwrap();
        assert_eq!(b.refresh_token_expires_in, Some(15_897_600));
        let b = parse(r#"{"access_token":"a","refresh_token_expires_in":"604799"}"#).unwrap();
        assert_eq!(b.refresh_token_expires_in, Some(604_799));
        for odd in [r#""soon""#, "-5", "0", "1.5", "null", "{}"] {
            let b = parse(&format!(
                r#"{{"access_token":"a","refresh_token":"r","refresh_token_expires_in":{odd}}}"#
            ))
            .unwrap();
            assert_eq!(b.refresh_token_expires_in, None, "{odd}");
            assert_eq!(b.refresh_token.unwrap().secret(), "r");
        }
    }
}
