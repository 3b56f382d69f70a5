//! Reading requests: form bodies and query strings (each parameter at most
//! once, empty values treated as absent, RFC 6749 3.1 and 3.2), and client
//! authentication (`client_secret_basic` or `client_secret_post`, never
//! both, RFC 6749 2.3.1).
//!
//! The client secret is compared through digests and never logged.

use std::collections::HashMap;

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use url::form_urlencoded;

use crate::Config;
use crate::token::secrets_match;

/// Request parameters by name. `Debug` shows the names only: a form may
/// carry a client secret, a code or a token.
#[derive(Default)]
pub(crate) struct Params(HashMap<String, String>);

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text. A repeated parameter
    /// is an error naming it.
    pub(crate) fn parse(text: &[u8]) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (name, value) in form_urlencoded::parse(text) {
            if value.is_empty() {
                continue;
            }
            if map.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(format!("parameter {name:?} is repeated"));
            }
        }
        Ok(Self(map))
    }

    /// A form body; the content type must be a form.
    pub(crate) fn form(headers: &HeaderMap, body: &[u8]) -> Result<Self, String> {
        let is_form = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err("the body must be application/x-www-form-urlencoded".into());
        }
        Self::parse(body)
    }

    /// A parameter, if present and non-empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A required parameter.
    pub(crate) fn require(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("missing parameter {name:?}"))
    }
}

/// Why client authentication failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientAuthError {
    /// Malformed (`invalid_request`), e.g. two methods at once.
    Malformed(&'static str),
    /// No credentials or wrong ones (`invalid_client`, 401).
    Failed,
}

/// Authenticates the client; returns its id.
pub(crate) fn authenticate(
    config: &Config,
    headers: &HeaderMap,
    params: &Params,
) -> Result<String, ClientAuthError> {
    let basic = match headers.get(AUTHORIZATION) {
        None => None,
        Some(value) => Some(
            basic_credentials(value.to_str().map_err(|_| ClientAuthError::Failed)?)
                .ok_or(ClientAuthError::Failed)?,
        ),
    };
    let (id, secret) = match basic {
        Some((id, secret)) => {
            if params.get("client_secret").is_some() {
                return Err(ClientAuthError::Malformed(
                    "use one client authentication method, not both",
                ));
            }
            if params.get("client_id").is_some_and(|form_id| form_id != id) {
                return Err(ClientAuthError::Malformed(
                    "client_id in the body differs from the Authorization header",
                ));
            }
            (id, secret)
        }
        None => match (params.get("client_id"), params.get("client_secret")) {
            (Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
            _ => return Err(ClientAuthError::Failed),
        },
    };
    let id_ok = id == config.client_id;
    let secret_ok = secrets_match(&secret, config.client_secret.expose());
    if id_ok && secret_ok {
        Ok(id)
    } else {
        Err(ClientAuthError::Failed)
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` → (id, secret).
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

/// Decodes one `application/x-www-form-urlencoded` value (`+` is a space,
/// `%XX` a byte; anything else is taken as it is).
fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.extend(u8::try_from(h * 16 + l).ok());
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:s%2Bcret%3A1+x"));
        let (id, secret) = basic_credentials(&header).unwrap();
        assert_eq!(id, "my client");
        assert_eq!(secret, "s+cret:1 x");
        assert!(basic_credentials("Bearer abc").is_none());
        assert!(basic_credentials("Basic !!!").is_none());
    }

    #[test]
    fn params_refuse_repeats_and_skip_empty() {
        let p = Params::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y"));
        assert!(Params::parse(b"a=1&a=2").unwrap_err().contains("\"a\""));
        let printed = format!("{:?}", Params::parse(b"client_secret=hunter2").unwrap());
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
