//! [`RefreshSettings`]: what get-service takes from a provider-catalogue
//! entry for its `[[providers]]` config (`provider = "slack"`): the token
//! endpoint or issuer, revocation, client authentication, the documented
//! access-token lifetime, the scope separator, the answer's shape, and a
//! keep-alive period inside the provider's idle expiry.
//!
//! Reads only the catalogue's public facts; no secrets.

use tokenvault_catalogue::expand::{Derive, Derived, string};
use tokenvault_catalogue::{ClientAuth, ProviderEntry, ScopeSeparator, TokenResponse};

/// get-service's reading of a catalogue entry.
#[derive(Debug)]
pub struct RefreshSettings;

/// Keep-alive refreshes a grant after this share of the provider's idle
/// expiry: early enough that a provider or tokenvault outage of days does
/// not let the grant die.
pub const KEEP_ALIVE_SHARE_OF_IDLE: f64 = 0.5;

impl Derive for RefreshSettings {
    const ENDPOINT_KEYS: &'static [&'static str] =
        &["issuer", "token_endpoint", "revocation_endpoint"];

    fn derive(_name: &str, entry: &ProviderEntry) -> Result<Derived, String> {
        let mut derived = Derived::default();
        match (&entry.issuer, &entry.token_endpoint) {
            (Some(issuer), _) => {
                derived.endpoints.insert("issuer".into(), string(issuer));
            }
            (None, Some(token)) => {
                derived
                    .endpoints
                    .insert("token_endpoint".into(), string(token));
            }
            (None, None) => return Err("the entry names no token endpoint".into()),
        }
        if let Some(revocation) = &entry.revocation_endpoint {
            derived
                .endpoints
                .insert("revocation_endpoint".into(), string(revocation));
        }
        let settings = &mut derived.settings;
        let client_auth = match entry.client_auth {
            ClientAuth::ClientSecretBasic => "client_secret_basic",
            ClientAuth::ClientSecretPost => "client_secret_post",
        };
        settings.insert("client_auth".into(), string(client_auth));
        if let Some(secs) = entry.access_token_lifetime_secs {
            let secs =
                i64::try_from(secs).map_err(|_| "access_token_lifetime_secs is too large")?;
            settings.insert("default_lifetime_secs".into(), toml::Value::Integer(secs));
        }
        if entry.scope_separator == ScopeSeparator::Comma {
            settings.insert(
                "scope_separator".into(),
                string(entry.scope_separator.as_str()),
            );
        }
        if let Some(field) = &entry.refresh_token_expiry_field {
            settings.insert("refresh_token_expiry_field".into(), string(field));
        }
        if entry.token_response == TokenResponse::Nested
            && let Some(path) = &entry.token_response_path
        {
            settings.insert("token_response_path".into(), string(path));
        }
        if let Some(days) = entry.refresh_token_idle_days {
            settings.insert(
                "keep_alive_days".into(),
                toml::Value::Float(f64::from(days) * KEEP_ALIVE_SHARE_OF_IDLE),
            );
        }
        Ok(derived)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ProviderConfig;
    use tokenvault_catalogue::expand::{expand_entry, sample_reference};

    fn expand(entry: &str) -> Result<ProviderConfig, String> {
        let catalogue = tokenvault_catalogue::catalogue().unwrap();
        let text = format!("{entry}\nclient_id = \"cid\"\nclient_secret = \"secret-1\"\n");
        let config: ProviderConfig = expand_entry::<RefreshSettings>(&catalogue, &text)?
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn every_entry_makes_a_valid_config() {
        let catalogue = tokenvault_catalogue::catalogue().unwrap();
        for (name, entry) in catalogue.iter() {
            let config =
                expand(&sample_reference(name, entry)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(config.name, name);
            assert_eq!(
                config.keep_alive().is_some(),
                entry.refresh_token_idle_days.is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn facts_become_settings_and_the_operator_wins() {
        let slack = expand("provider = \"slack\"").unwrap();
        assert_eq!(slack.scope_separator, ScopeSeparator::Comma);
        assert_eq!(slack.token_response_path.as_deref(), Some("authed_user"));
        assert_eq!(slack.client_auth, crate::ClientAuth::ClientSecretBasic);

        let microsoft = expand(
            "provider = \"microsoft-tenant\"\nplaceholders = { tenant = \"contoso.example\" }",
        )
        .unwrap();
        assert_eq!(
            microsoft.issuer.as_deref(),
            Some("https://login.microsoftonline.com/contoso.example/v2.0")
        );
        assert_eq!(microsoft.keep_alive_days, Some(45.0));

        let local = expand(
            "provider = \"gitlab\"\nname = \"gitlab-local\"\ntoken_endpoint = \"http://127.0.0.1:9/token\"\nkeep_alive_days = 2.0",
        )
        .unwrap();
        assert_eq!(local.name, "gitlab-local");
        assert_eq!(
            local.token_endpoint.as_deref(),
            Some("http://127.0.0.1:9/token")
        );
        assert!(local.issuer.is_none() && local.revocation_endpoint.is_none());
        assert_eq!(local.keep_alive_days, Some(2.0));
    }

    #[test]
    fn bad_references_are_named() {
        for (entry, want) in [
            (
                "provider = \"nope\"",
                "providers[0]: provider = \"nope\" is not in the provider catalogue",
            ),
            (
                "provider = \"microsoft-tenant\"",
                "placeholders.tenant: required",
            ),
            (
                "provider = \"microsoft-tenant\"\nplaceholders = { tenant = \"a/b\" }",
                "placeholders.tenant: \"a/b\" must be",
            ),
            (
                "provider = \"github\"\nplaceholders = { tenant = \"x\" }",
                "placeholders.tenant: this entry has no such placeholder",
            ),
            ("provider = 3", "provider must be a string"),
            (
                "placeholders = { tenant = \"x\" }\ntoken_endpoint = \"https://x.example/t\"\nname = \"x\"",
                "placeholders is only used with provider",
            ),
        ] {
            let err = expand(entry).unwrap_err();
            assert!(err.contains(want), "{entry}: {err}");
        }
    }
}
