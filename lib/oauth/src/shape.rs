//! [`ResponseShape`]: where a provider puts the tokens in its token answer,
//! when that is not where RFC 6749 section 5.1 puts them, and the one
//! rewrite that brings such an answer into the standard shape before it is
//! parsed. Used for the refresh grant here and for the code exchange in the
//! web-frontend, so that both read a provider the same way.
//!
//! - Nested answers (Slack puts a user's tokens under `authed_user`): when
//!   the top level has no `access_token`, the token members of the object at
//!   `token_response_path` are copied to the top level; the rest of the
//!   answer stays as it was (the account id may sit next to them).
//! - A refresh-token lifetime under another name than
//!   `refresh_token_expires_in` is copied to that name.
//!
//! Holds a token answer (access and refresh tokens) for the length of one
//! call; the rewritten body is returned in a buffer wiped on drop.

use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The members that make up the tokens of a standard answer.
const TOKEN_MEMBERS: [&str; 6] = [
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "scope",
    "refresh_token_expires_in",
];

/// The standard name of the refresh token's lifetime.
pub const STANDARD_EXPIRY_FIELD: &str = "refresh_token_expires_in";

/// A provider's token-answer shape; the default is RFC 6749's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseShape {
    /// Dot path of the object holding the user's tokens (`authed_user`).
    pub nested_path: Option<String>,
    /// The member with the refresh token's lifetime in seconds, if not
    /// [`STANDARD_EXPIRY_FIELD`].
    pub expiry_field: Option<String>,
}

impl ResponseShape {
    /// Whether answers need no rewrite.
    pub fn is_standard(&self) -> bool {
        self.nested_path.is_none()
            && self
                .expiry_field
                .as_deref()
                .is_none_or(|f| f == STANDARD_EXPIRY_FIELD)
    }

    /// A success answer in the standard shape, or `None` when `body` needs
    /// no change (or is not a JSON object, which the parser then refuses).
    pub fn normalize(&self, body: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if self.is_standard() {
            return None;
        }
        let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        let mut changed = false;
        if let Some(path) = &self.nested_path
            && !answer.contains_key("access_token")
            && let Some(Value::Object(nested)) = lookup(&answer, path).cloned()
        {
            for member in TOKEN_MEMBERS {
                if let Some(value) = nested.get(member)
                    && !answer.contains_key(member)
                {
                    answer.insert(member.to_owned(), value.clone());
                    changed = true;
                }
            }
        }
        if let Some(field) = self
            .expiry_field
            .as_deref()
            .filter(|f| *f != STANDARD_EXPIRY_FIELD)
            && !answer.contains_key(STANDARD_EXPIRY_FIELD)
        {
            let found = lookup(&answer, field).cloned().or_else(|| {
                let path = self.nested_path.as_deref()?;
                lookup(&answer, &format!("{path}.{field}")).cloned()
            });
            if let Some(value) = found {
                answer.insert(STANDARD_EXPIRY_FIELD.to_owned(), value);
                changed = true;
            }
        }
        if !changed {
            return None;
        }
        serde_json::to_vec(&Value::Object(answer))
            .ok()
            .map(Zeroizing::new)
    }
}

/// The value at a dot path (`authed_user.id`) of a JSON object.
pub fn lookup<'a>(object: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = object.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn json(body: &[u8]) -> Value {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn standard_answers_pass_untouched() {
        let shape = ResponseShape::default();
        assert!(shape.normalize(br#"{"access_token":"a"}"#).is_none());
        let shape = ResponseShape {
            nested_path: Some("authed_user".into()),
            expiry_field: None,
        };
        // A top-level access token wins (a refresh answer is flat).
        assert!(
            shape
                .normalize(br#"{"access_token":"a","authed_user":{"access_token":"b"}}"#)
                .is_none()
        );
        assert!(shape.normalize(b"not json").is_none());
    }

    #[test]
    fn nested_tokens_are_lifted() {
        let shape = ResponseShape {
            nested_path: Some("authed_user".into()),
            expiry_field: None,
        };
        let out = shape
            .normalize(
                br#"{"ok":true,"team":{"id":"T1"},"authed_user":{"id":"U1","access_token":"xoxp-1","token_type":"user","refresh_token":"xoxe-1","expires_in":43200,"scope":"chat:write"}}"#,
            )
            .unwrap();
        let v = json(&out);
        assert_eq!(v["access_token"], "xoxp-1");
        assert_eq!(v["refresh_token"], "xoxe-1");
        assert_eq!(v["expires_in"], 43200);
        assert_eq!(v["token_type"], "user");
        assert_eq!(v["authed_user"]["id"], "U1");
    }

    #[test]
    fn expiry_field_is_renamed() {
        let shape = ResponseShape {
            nested_path: None,
            expiry_field: Some("x_refresh_token_expires_in".into()),
        };
        let out = shape
            .normalize(br#"{"access_token":"a","x_refresh_token_expires_in":8726400}"#)
            .unwrap();
        assert_eq!(json(&out)[STANDARD_EXPIRY_FIELD], 8_726_400);
        assert!(
            shape
                .normalize(br#"{"access_token":"a","refresh_token_expires_in":5}"#)
                .is_none()
        );
        let standard = ResponseShape {
            nested_path: None,
            expiry_field: Some(STANDARD_EXPIRY_FIELD.into()),
        };
        assert!(standard.is_standard());
    }

    #[test]
    fn lookup_follows_dots() {
        let v = json(br#"{"a":{"b":{"c":1}},"d":2}"#);
        let map = v.as_object().unwrap();
        assert_eq!(lookup(map, "a.b.c"), Some(&Value::from(1)));
        assert_eq!(lookup(map, "d"), Some(&Value::from(2)));
        assert!(lookup(map, "a.x").is_none() && lookup(map, "d.e").is_none());
    }
}
