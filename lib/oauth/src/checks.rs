//! Checks shared by every service that talks to providers (get-service's
//! refresh client, the web-frontend's sign-in flow): endpoint URLs, scopes,
//! client credentials and time limits, each error naming the setting; and
//! how the client authenticates ([`ClientAuth`]).

use std::net::IpAddr;

use serde::Deserialize;
use tokenvault_runtime::secret::Secret;
use url::{Host, Url};

/// How the client authenticates at the token (and revocation) endpoints; shared by every
/// service that talks to providers.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the URL-encoded client id and secret (RFC 6749 2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

/// Checks one OAuth scope token (RFC 6749 3.3: printable ASCII without
/// spaces, quotes or backslashes).
pub fn check_scope(scope: &str) -> Result<(), String> {
    let ok = !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{scope:?} is not a valid scope (printable ASCII, no spaces, quotes or backslashes)"
        ))
    }
}

/// Parses an endpoint URL and applies the transport rule: https, or http only
/// to a loopback host (127.0.0.0/8, ::1, `localhost`); no credentials in the
/// URL and no fragment. `setting` names the setting in the error.
pub fn check_endpoint(setting: &str, value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("{setting}: not a URL ({e}): {value:?}"))?;
    let Some(host) = url.host() else {
        return Err(format!("{setting}: {value:?} has no host"));
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(format!(
                "{setting}: must use https ({value:?}); plain http is allowed only to a loopback address"
            ));
        }
        other => {
            return Err(format!(
                "{setting}: must be an https URL, not {other}: ({value:?})"
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{setting}: must not contain credentials; use client_id and client_secret"
        ));
    }
    if url.fragment().is_some() {
        return Err(format!(
            "{setting}: must not contain a fragment ({value:?})"
        ));
    }
    Ok(url)
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).to_canonical().is_loopback(),
    }
}

/// Checks a provider's client id (non-empty, no control characters) and
/// secret (non-empty); `setting` names a field, e.g. `providers.google.x`.
pub fn check_client(
    setting: impl Fn(&str) -> String,
    client_id: &str,
    client_secret: &Secret,
) -> Result<(), String> {
    if client_id.is_empty() || client_id.chars().any(char::is_control) {
        return Err(format!(
            "{}: must be non-empty, without control characters",
            setting("client_id")
        ));
    }
    if client_secret.is_empty() {
        return Err(format!("{}: must not be empty", setting("client_secret")));
    }
    Ok(())
}

/// Checks each scope of `scopes` (see [`check_scope`]).
pub fn check_scopes(setting: impl Fn(&str) -> String, scopes: &[String]) -> Result<(), String> {
    for scope in scopes {
        check_scope(scope).map_err(|e| format!("{}: {e}", setting("scopes")))?;
    }
    Ok(())
}

/// Checks an OIDC issuer: an endpoint URL (see [`check_endpoint`]) without
/// a query string.
pub fn check_issuer(setting: &str, issuer: &str) -> Result<Url, String> {
    let url = check_endpoint(setting, issuer)?;
    if url.query().is_some() {
        return Err(format!("{setting}: an issuer has no query string"));
    }
    Ok(url)
}

/// A dot path of JSON member names (`authed_user`, `data.id`).
pub fn check_member_path(setting: &str, path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.len() <= 128
        && path.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{setting}: {path:?} must be JSON member names (A-Z, a-z, 0-9, '_', '-') joined by '.'"
        ))
    }
}

/// Checks a per-call time limit: 1 to `max` seconds.
pub fn check_timeout(setting: &str, secs: u64, max: u64) -> Result<(), String> {
    if secs == 0 || secs > max {
        return Err(format!(
            "{setting}: must be between 1 and {max} seconds, got {secs}"
        ));
    }
    Ok(())
}
