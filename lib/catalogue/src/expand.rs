//! An operator's `provider = "<name>"`: a service's `[[providers]]` entry
//! that names a catalogue entry gets every setting the operator left out
//! from that entry, before the service's config is deserialized. What an
//! entry means to a service (which keys, which values) is the service's own
//! [`Derive`]; this module only fills placeholders and merges, operator
//! first.
//!
//! ```toml
//! [[providers]]
//! provider = "microsoft-tenant"          # the catalogue entry
//! placeholders = { tenant = "contoso.onmicrosoft.com" }
//! client_id = "..."
//! client_secret = "..."
//! # name defaults to the entry's name; any other key overrides the entry
//! ```
//!
//! Holds no secrets of its own; the operator's table passes through (it may
//! carry a client secret) and is never printed.

use std::collections::BTreeMap;

use crate::model::{ProviderEntry, Subject};
use crate::{Catalogue, urls};

/// The key naming the catalogue entry.
pub const PROVIDER_KEY: &str = "provider";
/// The key holding the placeholder values.
pub const PLACEHOLDERS_KEY: &str = "placeholders";

/// What a service derives from an entry: its endpoint settings (taken all or
/// none: an operator who sets any of the service's `endpoint_keys` supplies
/// them all) and its other settings (each taken unless the operator set it).
#[derive(Debug, Default)]
pub struct Derived {
    /// Endpoint settings, e.g. `issuer` or `token_endpoint`.
    pub endpoints: toml::Table,
    /// Every other setting.
    pub settings: toml::Table,
}

/// A service's reading of a catalogue entry (placeholders already filled).
pub trait Derive {
    /// The service's endpoint keys: one of them set by the operator means
    /// the operator chose the endpoints.
    const ENDPOINT_KEYS: &'static [&'static str];

    /// The service's settings for `entry`, or why the service cannot use it.
    fn derive(name: &str, entry: &ProviderEntry) -> Result<Derived, String>;
}

/// Expands every `[[providers]]` table in `config` that has a `provider`
/// key, with the shipped catalogue. The error names the entry.
pub fn expand_providers<D: Derive>(
    catalogue: &Catalogue,
    config: &mut toml::Table,
) -> Result<(), String> {
    let Some(toml::Value::Array(providers)) = config.get_mut("providers") else {
        return Ok(());
    };
    for (index, value) in providers.iter_mut().enumerate() {
        if let toml::Value::Table(table) = value {
            expand_one::<D>(catalogue, table).map_err(|e| format!("providers[{index}]: {e}"))?;
        }
    }
    Ok(())
}

fn expand_one<D: Derive>(catalogue: &Catalogue, table: &mut toml::Table) -> Result<(), String> {
    let Some(named) = table.remove(PROVIDER_KEY) else {
        if table.contains_key(PLACEHOLDERS_KEY) {
            return Err(format!(
                "{PLACEHOLDERS_KEY} is only used with {PROVIDER_KEY} = \"<catalogue entry>\""
            ));
        }
        return Ok(());
    };
    let toml::Value::String(name) = named else {
        return Err(format!("{PROVIDER_KEY} must be a string"));
    };
    let entry = catalogue.get(&name).ok_or_else(|| {
        format!("{PROVIDER_KEY} = {name:?} is not in the provider catalogue (lib/catalogue/providers.toml)")
    })?;
    let values = placeholder_values(table.remove(PLACEHOLDERS_KEY))?;
    let entry = fill(entry, &values).map_err(|e| format!("{PROVIDER_KEY} = {name:?}: {e}"))?;
    let derived =
        D::derive(&name, &entry).map_err(|e| format!("{PROVIDER_KEY} = {name:?}: {e}"))?;
    let operator_endpoints = D::ENDPOINT_KEYS.iter().any(|k| table.contains_key(*k));
    if !operator_endpoints {
        for (key, value) in derived.endpoints {
            table.insert(key, value);
        }
    }
    for (key, value) in derived.settings {
        table.entry(key).or_insert(value);
    }
    table
        .entry("name")
        .or_insert_with(|| toml::Value::String(name.clone()));
    Ok(())
}

fn placeholder_values(value: Option<toml::Value>) -> Result<BTreeMap<String, String>, String> {
    let Some(value) = value else {
        return Ok(BTreeMap::new());
    };
    let toml::Value::Table(table) = value else {
        return Err(format!("{PLACEHOLDERS_KEY} must be a table of strings"));
    };
    table
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k, s)),
            _ => Err(format!("{PLACEHOLDERS_KEY}.{k} must be a string")),
        })
        .collect()
}

/// `entry` with every `{placeholder}` in its URLs replaced by `values`:
/// each declared placeholder needs a value, and no other value is taken. A
/// value is a host name, tenant or path segment: ASCII letters, digits, `.`,
/// `-` and `_`, so it cannot change what else the URL says.
pub fn fill(
    entry: &ProviderEntry,
    values: &BTreeMap<String, String>,
) -> Result<ProviderEntry, String> {
    for name in values.keys() {
        if !entry.placeholders.contains(name) {
            return Err(format!(
                "{PLACEHOLDERS_KEY}.{name}: this entry has no such placeholder (it has {:?})",
                entry.placeholders
            ));
        }
    }
    for name in &entry.placeholders {
        let value = values
            .get(name)
            .ok_or_else(|| format!("{PLACEHOLDERS_KEY}.{name}: required by this entry's URLs"))?;
        let fits = !value.is_empty()
            && value.len() <= 253
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !fits {
            return Err(format!(
                "{PLACEHOLDERS_KEY}.{name}: {value:?} must be 1-253 characters from A-Z, a-z, 0-9, '.', '-', '_'"
            ));
        }
    }
    let put = |text: &str| -> Result<String, String> {
        let mut out = text.to_owned();
        for (name, value) in values {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        urls::check(&out, urls::UrlKind::Endpoint)?;
        Ok(out)
    };
    let put_opt = |text: &Option<String>| text.as_deref().map(put).transpose();
    let mut filled = entry.clone();
    filled.issuer = put_opt(&entry.issuer)?;
    filled.authorization_endpoint = put_opt(&entry.authorization_endpoint)?;
    filled.token_endpoint = put_opt(&entry.token_endpoint)?;
    filled.revocation_endpoint = put_opt(&entry.revocation_endpoint)?;
    filled.device_authorization_endpoint = put_opt(&entry.device_authorization_endpoint)?;
    if let Subject::Userinfo { url, field } = &entry.subject {
        filled.subject = Subject::Userinfo {
            url: put(url)?,
            field: field.clone(),
        };
    }
    filled.placeholders.clear();
    Ok(filled)
}

/// One provider table written as TOML text (the body of a `[[providers]]`
/// entry), expanded by `D`: for tests and tools that build one entry.
pub fn expand_entry<D: Derive>(catalogue: &Catalogue, text: &str) -> Result<toml::Value, String> {
    let mut config: toml::Table =
        toml::from_str(&format!("[[providers]]\n{text}")).map_err(|e| e.to_string())?;
    expand_providers::<D>(catalogue, &mut config)?;
    match config.remove("providers") {
        Some(toml::Value::Array(mut providers)) if providers.len() == 1 => Ok(providers.remove(0)),
        _ => Err("expected exactly one provider".into()),
    }
}

/// `provider = "<name>"` with a sample value for each placeholder, as an
/// operator would write a reference to `entry`.
pub fn sample_reference(name: &str, entry: &ProviderEntry) -> String {
    let values: Vec<String> = entry
        .placeholders
        .iter()
        .map(|p| format!("{p} = \"example-1\""))
        .collect();
    format!(
        "{PROVIDER_KEY} = \"{name}\"\n{PLACEHOLDERS_KEY} = {{ {} }}\n",
        values.join(", ")
    )
}

/// A string value.
pub fn string(value: impl Into<String>) -> toml::Value {
    toml::Value::String(value.into())
}
