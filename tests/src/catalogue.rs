//! Providers from the provider catalogue (`lib/catalogue/providers.toml`),
//! configured as an operator would (`provider = "<entry>"` plus client
//! credentials) and pointed at the test authorization server: the endpoints
//! and the scope vocabulary are the test server's, every other fact (client
//! authentication, scope separator, PKCE, where the account id is, the
//! answer's shape, lifetimes, keep-alive) is the catalogue entry's. Both
//! configs go through the services' own expansion of `provider = ...`.

use anyhow::Context as _;
use tokenvault_catalogue::expand::{Derive, expand_entry};
use tokenvault_catalogue::{ClientAuth, ProviderEntry, Subject};
use tokenvault_oauth::{ProviderConfig, RefreshSettings};
use tokenvault_web_frontend::provider::ConnectSettings;

use crate::oidc::{CLIENT_ID, CLIENT_SECRET, OidcServer, POST_CLIENT_ID, POST_CLIENT_SECRET};

/// The catalogue entry `name`.
pub fn entry(name: &str) -> anyhow::Result<ProviderEntry> {
    tokenvault_catalogue::catalogue()?
        .get(name)
        .cloned()
        .with_context(|| format!("no catalogue entry {name}"))
}

/// The test server's client whose authentication method is the entry's.
fn credentials(entry: &ProviderEntry, timeout_secs: u64) -> String {
    let (id, secret) = match entry.client_auth {
        ClientAuth::ClientSecretBasic => (CLIENT_ID, CLIENT_SECRET),
        ClientAuth::ClientSecretPost => (POST_CLIENT_ID, POST_CLIENT_SECRET),
    };
    format!("client_id = \"{id}\"\nclient_secret = \"{secret}\"\ntimeout_secs = {timeout_secs}\n")
}

/// One `[[providers]]` table, expanded by `D` and deserialized.
fn expanded<D: Derive, T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    let value = expand_entry::<D>(&tokenvault_catalogue::catalogue()?, text)
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(value.try_into()?)
}

/// web-frontend's entry for catalogue provider `name` at `oidc`.
pub fn web_provider(
    oidc: &OidcServer,
    name: &str,
) -> anyhow::Result<tokenvault_web_frontend::provider::ProviderConfig> {
    let entry = entry(name)?;
    let endpoints = if entry.issuer.is_some() {
        format!("issuer = \"{}\"\n", oidc.issuer())
    } else {
        let user = match entry.subject {
            // The test server's user API names the account `sub`.
            Subject::Userinfo { .. } => format!(
                "user_endpoint = \"{}\"\nsubject_field = \"sub\"\n",
                oidc.userinfo_endpoint()
            ),
            _ => String::new(),
        };
        format!(
            "kind = \"oauth2\"\nauthorization_endpoint = \"{}\"\ntoken_endpoint = \"{}\"\n{user}",
            oidc.authorization_endpoint(),
            oidc.token_endpoint()
        )
    };
    let config =
        expanded::<ConnectSettings, tokenvault_web_frontend::provider::ProviderConfig>(&format!(
            "provider = \"{name}\"\n{endpoints}{}\
             scopes = [\"openid\", \"offline_access\"]\n\
             auth_params = {{ prompt = \"consent\" }}\n",
            credentials(&entry, 3)
        ))?;
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    Ok(config)
}

/// get-service's entry for catalogue provider `name` at `oidc`.
pub fn get_provider(
    oidc: &OidcServer,
    name: &str,
    timeout_secs: u64,
) -> anyhow::Result<ProviderConfig> {
    let entry = entry(name)?;
    let endpoints = if entry.issuer.is_some() {
        format!("issuer = \"{}\"\n", oidc.issuer())
    } else if entry.revocation_endpoint.is_some() {
        format!(
            "token_endpoint = \"{}\"\nrevocation_endpoint = \"{}\"\n",
            oidc.token_endpoint(),
            oidc.revocation_endpoint()
        )
    } else {
        format!("token_endpoint = \"{}\"\n", oidc.token_endpoint())
    };
    let config: ProviderConfig = expanded::<RefreshSettings, _>(&format!(
        "provider = \"{name}\"\n{endpoints}{}",
        credentials(&entry, timeout_secs)
    ))?;
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    Ok(config)
}
