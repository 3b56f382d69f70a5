//! The provider catalogue: for each OAuth 2.0 provider that back-end workers
//! commonly need, its endpoints (or OIDC issuer), how to ask for offline
//! access, scope separator, client authentication, PKCE, where the account's
//! stable id is found, whether refresh tokens rotate, known lifetimes and
//! idle expiry, revocation, token-response quirks, the behaviour classes
//! those facts imply, and a link to the provider's own documentation for
//! every fact.
//!
//! The data is `providers.toml`, compiled in with `include_str!` and checked
//! by [`catalogue`] (and by this crate's tests) against the schema in the
//! file's header: no unknown key, a source for every fact and nothing else,
//! https URLs with exactly the placeholders declared, classes that agree with
//! the facts. One file serves every service, so they cannot drift apart.
//!
//! This crate holds no secrets: no client ids, client secrets or tokens.
//!
//! - [`expand`]: an operator's `provider = "<name>"` entry filled in from
//!   the catalogue, for each service's own reading of an entry.
//! - [`model`]: the entry types; [`classes`]: behaviour classes; [`facts`]:
//!   which facts need a source; [`validate`]: the rules; [`CatalogueError`].

#![forbid(unsafe_code)]

pub mod classes;
mod error;
pub mod expand;
pub mod facts;
pub mod model;
mod urls;
pub mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use classes::Class;
pub use error::CatalogueError;
pub use facts::SourceKey;
pub use model::{
    ClientAuth, ExpiresIn, Pkce, ProviderEntry, ScopeSeparator, Subject, TokenResponse,
};

/// The shipped catalogue file.
pub const PROVIDERS_TOML: &str = include_str!("../providers.toml");

/// The format version this crate reads.
pub const VERSION: i64 = 1;

/// The fewest providers a catalogue file may hold.
pub const MIN_PROVIDERS: usize = 40;

/// The shipped catalogue, parsed and checked.
pub fn catalogue() -> Result<Catalogue, CatalogueError> {
    Catalogue::parse(PROVIDERS_TOML)
}

/// A parsed and checked catalogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalogue {
    providers: BTreeMap<String, ProviderEntry>,
}

/// The file's top level; each entry is read on its own so that an error
/// names its provider.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: i64,
    providers: BTreeMap<String, toml::Value>,
}

impl Catalogue {
    /// Parses and checks a catalogue file (the shipped one, or another in
    /// tests). Refuses the whole file at its first error.
    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let file: File = toml::from_str(text).map_err(|e| CatalogueError::Syntax(e.to_string()))?;
        if file.version != VERSION {
            return Err(CatalogueError::Version {
                expected: VERSION,
                found: file.version,
            });
        }
        let mut providers = BTreeMap::new();
        for (name, value) in file.providers {
            let entry: ProviderEntry =
                value
                    .try_into::<ProviderEntry>()
                    .map_err(|e: toml::de::Error| CatalogueError::Schema {
                        provider: name.clone(),
                        problem: e.to_string().trim_end().to_owned(),
                    })?;
            validate::entry(&name, &entry)?;
            providers.insert(name, entry);
        }
        if providers.len() < MIN_PROVIDERS {
            return Err(CatalogueError::TooFew {
                min: MIN_PROVIDERS,
                found: providers.len(),
            });
        }
        Ok(Catalogue { providers })
    }

    /// The entry named `name`, e.g. `slack`.
    pub fn get(&self, name: &str) -> Option<&ProviderEntry> {
        self.providers.get(name)
    }

    /// Every entry, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ProviderEntry)> {
        self.providers
            .iter()
            .map(|(name, entry)| (name.as_str(), entry))
    }

    /// The entries in `class`, by name.
    pub fn in_class(&self, class: Class) -> impl Iterator<Item = (&str, &ProviderEntry)> {
        self.iter()
            .filter(move |(_, entry)| entry.classes.contains(&class))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Whether there are no entries (never, for a checked catalogue).
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}
