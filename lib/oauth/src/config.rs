//! [`ProviderConfig`]: one provider's entry in get-service's TOML config, and
//! its validation (every message names the setting, e.g.
//! `providers.google.token_endpoint: ...`).
//!
//! Holds the provider's client secret, in a [`Secret`] that is wiped on drop
//! and never printed; no tokens.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

pub use tokenvault_catalogue::ScopeSeparator;
use tokenvault_runtime::secret::Secret;

pub use crate::checks::ClientAuth;
use crate::checks::{
    check_client, check_endpoint, check_issuer, check_member_path, check_scopes, check_timeout,
};
use crate::shape::ResponseShape;

/// One provider, e.g.
///
/// ```toml
/// [[providers]]
/// name = "google"
/// issuer = "https://accounts.google.com"   # or token_endpoint = "https://..."
/// client_id = "..."
/// client_secret = "..."
/// client_auth = "client_secret_post"       # default: client_secret_basic
/// scopes = ["openid", "email"]             # default: none (keep the grant's)
/// narrow_scopes = true                     # default: false
/// client_credentials = true                # default: false
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider's name as stored with each account, e.g. `google`:
    /// 1–64 characters from `a-z 0-9 - _ .`.
    pub name: String,
    /// The token endpoint. Exactly one of `token_endpoint` and `issuer`.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// The OIDC issuer; the endpoints come from
    /// `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The RFC 7009 revocation endpoint; overrides a discovered one.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: Secret,
    /// Client authentication method.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Access-token lifetime assumed when a token response has no
    /// `expires_in`.
    #[serde(default = "default_lifetime_secs")]
    pub default_lifetime_secs: u64,
    /// Time limit for each HTTP call to the provider (discovery, refresh,
    /// revocation).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Scopes to request on refresh; empty keeps the grant's scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Whether this provider honours a narrowed `scope` on the refresh grant
    /// (RFC 6749 section 6: a subset of the grant's scopes, the refresh token
    /// keeping all of them), so that a worker may ask for fewer scopes than
    /// the account granted. Off: such a request is refused.
    #[serde(default)]
    pub narrow_scopes: bool,
    /// Whether this client also gets the application's own access tokens
    /// with the client-credentials grant (RFC 6749 section 4.4), asking for
    /// `scopes` unless the caller names others (`GetClientAccessToken`).
    #[serde(default)]
    pub client_credentials: bool,
    /// Keep-alive: a grant not refreshed for this many days (fractions
    /// allowed) is refreshed in the background, before a provider that
    /// expires idle refresh tokens (Microsoft after 90 days of disuse, Xero
    /// after 60) lets it die. Unset: no keep-alive.
    #[serde(default)]
    pub keep_alive_days: Option<f64>,
    /// How scopes are joined in the `scope` parameter: `" "` (RFC 6749) or
    /// `","` (Slack, Strava).
    #[serde(default)]
    pub scope_separator: ScopeSeparator,
    /// The token-answer member with the refresh token's lifetime in
    /// seconds, when not `refresh_token_expires_in`.
    #[serde(default)]
    pub refresh_token_expiry_field: Option<String>,
    /// Dot path of the object holding the user's tokens in a nested token
    /// answer (Slack: `authed_user`); used when the top level has none.
    #[serde(default)]
    pub token_response_path: Option<String>,
}

fn default_lifetime_secs() -> u64 {
    3600
}

fn default_timeout_secs() -> u64 {
    10
}

const MAX_TIMEOUT_SECS: u64 = 300;
const MAX_LIFETIME_SECS: u64 = 366 * 86_400;
/// Ten years: beyond any provider's idle expiry.
const MAX_KEEP_ALIVE_DAYS: f64 = 3650.0;

/// Where the endpoints come from, once the config is checked.
#[derive(Debug)]
pub(crate) enum EndpointSource {
    /// Configured directly.
    Static { token: Url },
    /// Discovered from this issuer (kept as written, for the issuer check).
    Discover { issuer: String },
}

/// A checked config.
#[derive(Debug)]
pub(crate) struct Checked {
    pub source: EndpointSource,
    pub revocation: Option<Url>,
    pub timeout: Duration,
    pub default_lifetime: Duration,
}

impl ProviderConfig {
    /// Checks everything that can be checked without the network. The error
    /// names the setting, e.g. `providers.google.token_endpoint: must use
    /// https ...`.
    pub fn validate(&self) -> Result<(), String> {
        self.check().map(|_| ())
    }

    /// The per-call time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Where the provider puts the tokens in its answers.
    pub fn response_shape(&self) -> ResponseShape {
        ResponseShape {
            nested_path: self.token_response_path.clone(),
            expiry_field: self.refresh_token_expiry_field.clone(),
        }
    }

    /// How long a grant may go unrefreshed before keep-alive refreshes it.
    pub fn keep_alive(&self) -> Option<Duration> {
        self.keep_alive_days
            .filter(|d| *d > 0.0 && *d <= MAX_KEEP_ALIVE_DAYS)
            .map(|d| Duration::from_secs_f64(d * 86_400.0))
    }

    pub(crate) fn check(&self) -> Result<Checked, String> {
        check_name(&self.name)?;
        let setting = |field: &str| format!("providers.{}.{field}", self.name);
        let source = match (&self.token_endpoint, &self.issuer) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "providers.{}: set either token_endpoint or issuer, not both",
                    self.name
                ));
            }
            (None, None) => {
                return Err(format!(
                    "providers.{}: set token_endpoint, or issuer for OIDC discovery",
                    self.name
                ));
            }
            (Some(token), None) => EndpointSource::Static {
                token: check_endpoint(&setting("token_endpoint"), token)?,
            },
            (None, Some(issuer)) => {
                check_issuer(&setting("issuer"), issuer)?;
                EndpointSource::Discover {
                    issuer: issuer.clone(),
                }
            }
        };
        let revocation = self
            .revocation_endpoint
            .as_deref()
            .map(|r| check_endpoint(&setting("revocation_endpoint"), r))
            .transpose()?;
        check_client(setting, &self.client_id, &self.client_secret)?;
        if self.default_lifetime_secs == 0 || self.default_lifetime_secs > MAX_LIFETIME_SECS {
            return Err(format!(
                "{}: must be between 1 and {MAX_LIFETIME_SECS} seconds, got {}",
                setting("default_lifetime_secs"),
                self.default_lifetime_secs
            ));
        }
        check_timeout(
            &setting("timeout_secs"),
            self.timeout_secs,
            MAX_TIMEOUT_SECS,
        )?;
        check_scopes(setting, &self.scopes)?;
        if let Some(days) = self.keep_alive_days
            && !(days > 0.0 && days <= MAX_KEEP_ALIVE_DAYS)
        {
            return Err(format!(
                "{}: must be more than 0 and at most {MAX_KEEP_ALIVE_DAYS} days, got {days}",
                setting("keep_alive_days")
            ));
        }
        for (field, value) in [
            (
                "refresh_token_expiry_field",
                &self.refresh_token_expiry_field,
            ),
            ("token_response_path", &self.token_response_path),
        ] {
            if let Some(value) = value {
                check_member_path(&setting(field), value)?;
            }
        }
        Ok(Checked {
            source,
            revocation,
            timeout: self.timeout(),
            default_lifetime: Duration::from_secs(self.default_lifetime_secs),
        })
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "providers.name: {name:?} must be 1-64 characters from a-z, 0-9, '-', '_', '.'"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<ProviderConfig, String> {
        let text = format!(
            "name = \"google\"\nclient_id = \"cid\"\nclient_secret = \"s3cr3t-value\"\n{extra}"
        );
        toml_like(&text)
    }

    /// A tiny `key = value` reader (strings, integers, string arrays) so the
    /// tests need no TOML crate.
    fn toml_like(text: &str) -> Result<ProviderConfig, String> {
        let mut map = serde_json::Map::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once(" = ").expect("key = value");
            let v: serde_json::Value = serde_json::from_str(v).expect("json value");
            map.insert(k.trim().to_owned(), v);
        }
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_debug() {
        let c = config("token_endpoint = \"https://oauth2.example.com/token\"").unwrap();
        assert_eq!(c.client_auth, ClientAuth::ClientSecretBasic);
        assert_eq!(c.default_lifetime_secs, 3600);
        assert_eq!(c.timeout_secs, 10);
        assert!(c.scopes.is_empty());
        assert!(c.validate().is_ok());
        let printed = format!("{c:?}");
        assert!(!printed.contains("s3cr3t-value"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            config("token_endpoint = \"https://x.example/t\"\ntoken_url = \"x\"").unwrap_err();
        assert!(err.contains("token_url"), "{err}");
        let c = config(
            "issuer = \"https://accounts.example.com\"\nclient_auth = \"client_secret_post\"\nscopes = [\"openid\", \"email\"]",
        )
        .unwrap();
        assert_eq!(c.client_auth, ClientAuth::ClientSecretPost);
        assert!(
            config("token_endpoint = \"https://x.example/t\"\nclient_auth = \"private_key_jwt\"")
                .is_err()
        );
    }

    #[test]
    fn https_rule() {
        for ok in [
            "https://oauth2.example.com/token",
            "http://127.0.0.1:8080/token",
            "http://127.9.9.9/token",
            "http://[::1]:3000/token",
            "http://localhost:3000/token",
            "http://LOCALHOST/token",
        ] {
            assert!(check_endpoint("s", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://oauth2.example.com/token",
            "http://10.0.0.1/token",
            "http://localhost.example.com/token",
            "ftp://127.0.0.1/token",
            "https://user:pw@example.com/token",
            "https://example.com/token#frag",
            "not a url",
        ] {
            assert!(check_endpoint("s", bad).is_err(), "{bad}");
        }
        let err = config("token_endpoint = \"http://oauth2.example.com/token\"")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.starts_with("providers.google.token_endpoint: must use https"),
            "{err}"
        );
        let err = config("issuer = \"http://idp.example.com\"")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.starts_with("providers.google.issuer: "), "{err}");
        let err = config("token_endpoint = \"https://x.example/t\"\nrevocation_endpoint = \"http://x.example/r\"")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            err.starts_with("providers.google.revocation_endpoint: "),
            "{err}"
        );
    }

    #[test]
    fn settings_are_named() {
        let cases = [
            ("", "providers.google: set token_endpoint, or issuer"),
            (
                "token_endpoint = \"https://x.example/t\"\nissuer = \"https://x.example\"",
                "providers.google: set either",
            ),
            (
                "token_endpoint = \"https://x.example/t\"\ntimeout_secs = 0",
                "providers.google.timeout_secs: ",
            ),
            (
                "token_endpoint = \"https://x.example/t\"\ndefault_lifetime_secs = 0",
                "providers.google.default_lifetime_secs: ",
            ),
            (
                "token_endpoint = \"https://x.example/t\"\nscopes = [\"a b\"]",
                "providers.google.scopes: ",
            ),
        ];
        for (extra, want) in cases {
            let err = config(extra).unwrap().validate().unwrap_err();
            assert!(err.starts_with(want), "{extra:?}: {err}");
        }
        let mut c = config("token_endpoint = \"https://x.example/t\"").unwrap();
        c.client_secret = Secret::default();
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("providers.google.client_secret: ")
        );
        c.client_secret = Secret::new("x".into());
        c.client_id = String::new();
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("providers.google.client_id: ")
        );
        c.client_id = "cid".into();
        c.name = "Google Accounts".into();
        assert!(c.validate().unwrap_err().starts_with("providers.name: "));
    }
}
