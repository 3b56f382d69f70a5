//! [`CatalogueError`]: why a catalogue file was refused. Every message names
//! the provider and the key, e.g. `providers.box.sources.revocation: ...`.

/// A catalogue file that does not parse or breaks a rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogueError {
    /// Not TOML, or not the file's top-level shape (`version`, `providers`).
    #[error("providers.toml: {0}")]
    Syntax(String),
    /// An unsupported format version.
    #[error("version: expected {expected}, found {found}")]
    Version {
        /// The version this crate reads.
        expected: i64,
        /// The version in the file.
        found: i64,
    },
    /// An entry that does not fit the schema (unknown key, missing key,
    /// wrong type or unknown value); the message names the key.
    #[error("providers.{provider}: {problem}")]
    Schema {
        /// The provider's name.
        provider: String,
        /// What serde reported.
        problem: String,
    },
    /// An entry that fits the schema but breaks a rule.
    #[error("providers.{provider}.{key}: {problem}")]
    Invalid {
        /// The provider's name.
        provider: String,
        /// The offending key, e.g. `sources.revocation` or `token_endpoint`.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// Fewer providers than the catalogue promises.
    #[error("providers: {found} entries, at least {min} required")]
    TooFew {
        /// The minimum.
        min: usize,
        /// The number in the file.
        found: usize,
    },
}

impl CatalogueError {
    /// An [`CatalogueError::Invalid`] for `provider`'s `key`.
    pub(crate) fn invalid(
        provider: &str,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        CatalogueError::Invalid {
            provider: provider.to_owned(),
            key: key.into(),
            problem: problem.into(),
        }
    }
}
