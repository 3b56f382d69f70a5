//! [`ConnectSettings`]: what the web-frontend takes from a provider-catalogue
//! entry for its `[[providers]]` config (`provider = "slack"`): the display
//! name, endpoints or issuer, offline-access scopes and parameters, scope
//! separator, client authentication, PKCE, where the account's id is found,
//! and the token response's shape.
//!
//! Reads only the catalogue's public facts; no secrets.

use tokenvault_catalogue::expand::{Derive, Derived, string};
use tokenvault_catalogue::{
    ClientAuth, Pkce, ProviderEntry, ScopeSeparator, Subject, TokenResponse,
};

/// The web-frontend's reading of a catalogue entry.
#[derive(Debug)]
pub struct ConnectSettings;

impl Derive for ConnectSettings {
    const ENDPOINT_KEYS: &'static [&'static str] = &[
        "kind",
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "user_endpoint",
    ];

    fn derive(_name: &str, entry: &ProviderEntry) -> Result<Derived, String> {
        let mut derived = Derived::default();
        let endpoints = &mut derived.endpoints;
        let settings = &mut derived.settings;
        match (
            &entry.issuer,
            &entry.authorization_endpoint,
            &entry.token_endpoint,
        ) {
            (Some(issuer), _, _) => {
                endpoints.insert("kind".into(), string("oidc"));
                endpoints.insert("issuer".into(), string(issuer));
            }
            (None, Some(authorization), Some(token)) => {
                endpoints.insert("kind".into(), string("oauth2"));
                endpoints.insert("authorization_endpoint".into(), string(authorization));
                endpoints.insert("token_endpoint".into(), string(token));
            }
            _ => return Err("the entry names neither an issuer nor both endpoints".into()),
        }
        match &entry.subject {
            Subject::IdToken { claim } => {
                if entry.issuer.is_none() {
                    settings.insert("subject_from".into(), string("id_token"));
                }
                settings.insert("subject_claim".into(), string(claim));
            }
            Subject::Userinfo { url, field } => {
                if entry.issuer.is_some() {
                    return Err("an OpenID entry names the account in its ID token".into());
                }
                endpoints.insert("user_endpoint".into(), string(url));
                settings.insert("subject_from".into(), string("user_api"));
                settings.insert("subject_field".into(), string(field));
            }
            Subject::TokenResponse { field } => {
                settings.insert("subject_from".into(), string("token_response"));
                settings.insert("subject_field".into(), string(field));
            }
            Subject::Redirect { param } => {
                settings.insert("subject_from".into(), string("redirect"));
                settings.insert("subject_field".into(), string(param));
            }
        }
        settings.insert("display_name".into(), string(&entry.display_name));
        settings.insert(
            "scopes".into(),
            toml::Value::Array(entry.scopes.iter().map(string).collect()),
        );
        settings.insert(
            "auth_params".into(),
            toml::Value::Table(
                entry
                    .authorization_params
                    .iter()
                    .map(|(k, v)| (k.clone(), string(v)))
                    .collect(),
            ),
        );
        let client_auth = match entry.client_auth {
            ClientAuth::ClientSecretBasic => "client_secret_basic",
            ClientAuth::ClientSecretPost => "client_secret_post",
        };
        settings.insert("client_auth".into(), string(client_auth));
        settings.insert(
            "pkce".into(),
            toml::Value::Boolean(entry.pkce != Pkce::Unsupported),
        );
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
        Ok(derived)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::provider::{ProviderConfig, ProviderKind, SubjectSource};
    use tokenvault_catalogue::expand::{expand_entry, sample_reference};

    fn expand(entry: &str) -> Result<ProviderConfig, String> {
        let catalogue = tokenvault_catalogue::catalogue().unwrap();
        let text = format!("{entry}\nclient_id = \"cid\"\nclient_secret = \"secret-1\"\n");
        let config: ProviderConfig = expand_entry::<ConnectSettings>(&catalogue, &text)?
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
            assert_eq!(config.display_name(), entry.display_name);
            assert_eq!(config.pkce, entry.pkce != Pkce::Unsupported, "{name}");
        }
    }

    #[test]
    fn each_subject_source() {
        let github = expand("provider = \"github\"").unwrap();
        assert_eq!(github.kind, ProviderKind::Oauth2);
        assert_eq!(github.subject_from, SubjectSource::UserApi);
        let slack = expand("provider = \"slack\"").unwrap();
        assert_eq!(slack.subject_from, SubjectSource::TokenResponse);
        assert_eq!(slack.subject_field, "authed_user.id");
        assert_eq!(slack.scope_separator, ScopeSeparator::Comma);
        let quickbooks = expand("provider = \"quickbooks\"").unwrap();
        assert_eq!(quickbooks.subject_from, SubjectSource::Redirect);
        assert_eq!(quickbooks.subject_field, "realmId");
        let microsoft = expand("provider = \"microsoft\"").unwrap();
        assert_eq!(microsoft.subject_from, SubjectSource::IdToken);
        assert_eq!(microsoft.subject_claim, "oid");
        let google = expand("provider = \"google\"").unwrap();
        assert_eq!(google.kind, ProviderKind::Oidc);
        assert_eq!(
            google.auth_params.get("access_type").map(String::as_str),
            Some("offline")
        );
    }

    #[test]
    fn operator_endpoints_replace_the_catalogue_ones() {
        let local = expand(
            "provider = \"gitlab\"\nkind = \"oauth2\"\nauthorization_endpoint = \"http://127.0.0.1:9/auth\"\ntoken_endpoint = \"http://127.0.0.1:9/token\"\nuser_endpoint = \"http://127.0.0.1:9/me\"\nsubject_field = \"sub\"",
        )
        .unwrap();
        assert_eq!(
            local.user_endpoint.as_deref(),
            Some("http://127.0.0.1:9/me")
        );
        assert_eq!(local.subject_field, "sub");
        assert_eq!(
            local.client_auth,
            crate::provider::ClientAuth::ClientSecretPost
        );
    }
}
