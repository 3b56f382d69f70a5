//! The tokenvault token store: append-only storage of **sealed** (JWE) refresh tokens, keyed by
//! (account, provider), on PostgreSQL or an embedded SQLite file.
//!
//! This crate holds sealed tokens only; never a plaintext token. It never logs a sealed token or puts
//! one in an error message, and [`Latest`]'s `Debug` output redacts it.
//!
//! Roles follow the split-role design:
//! - [`migrate`] runs the schema migrations as the owner (`tokenvault_owner` on PostgreSQL);
//! - [`TokenWriter`] (set-service) appends token versions, tombstones and status records; on
//!   PostgreSQL it connects as `tokenvault_writer`, which can INSERT but never read a sealed token;
//! - [`TokenReader`] (get-service) reads the newest version and the status; on PostgreSQL it connects
//!   as `tokenvault_reader` (SELECT only), on SQLite it opens the file read-only;
//! - [`StoreAdmin`] is a small owner handle for row counts and a catch-up prune job;
//! - [`audit_table`] optionally copies audit events into the append-only `audit_events` table.
//!
//! A `sqlite://path` URL selects SQLite, a `postgres://` (or `postgresql://`) URL selects PostgreSQL.
//!
//! Versions are the rows' ids: they only grow, so the newest row (largest id) of an
//! (account, provider) wins. Inserts of one (account, provider) are serialised in the database (a
//! per-key transaction lock on PostgreSQL, the file lock on SQLite), so a key's ids follow commit
//! order even under concurrent stores. Storing a token implies status `active` and a tombstone implies
//! `disconnected`: the database's AFTER INSERT trigger appends that status row in the same statement,
//! so the status table alone answers "what is the status" (newest status row wins).
//! The same trigger prunes: a new token clears the sealed token of every superseded version (the
//! row and its `token_hash` stay, so a late retry of an old token is recognised as already stored
//! and never becomes the newest version again). A tombstone does not: get-service still needs the
//! disconnected account's last token once, to revoke it at the provider
//! ([`TokenReader::pending_revocations`]); recording that
//! ([`TokenWriter::record_revocation`]) clears it.
//!
//! Every change of an account's state appends an account event in the same transaction
//! ([`events`]); get-service lists accounts and reads events by cursor
//! ([`TokenReader::list_accounts`], [`TokenReader::events_after`]), set-service's webhook
//! dispatcher records each delivery attempt ([`TokenWriter::record_delivery`]).
//!
//! get-service replicas coordinate through [`coordination`] (PostgreSQL advisory locks in their
//! own key space) and share access tokens, sealed, through [`TokenWriter::share_access_token`]
//! and [`TokenReader::shared_access_token`].
//!
//! Key rotation: [`TokenWriter::reseal`] replaces a stored token's sealed form (and key id) in
//! place, through an owner trigger on the append-only `token_reseals` table, keeping its version,
//! token hash and status; [`TokenReader::sealed_not_under`] and
//! [`TokenReader::sealed_counts_by_kid`] find what still needs an old key.

#![forbid(unsafe_code)]

mod admin;
pub mod audit_table;
mod config;
pub mod coordination;
mod db;
mod deliveries;
mod error;
pub mod events;
mod expiry;
mod inventory;
mod reader;
#[cfg(test)]
mod schema_limits;
mod types;
mod writer;

pub use admin::{RowCounts, StoreAdmin, migrate};
pub use config::StoreConfig;
pub use deliveries::{DeliveryOutcome, DispatchLock, EndpointPosition};
pub use error::StoreError;
pub use events::{AccountEvent, EventKind};
pub use inventory::{AccountFilter, AccountSummary};
pub use reader::TokenReader;
pub use types::{
    DisconnectOutcome, Latest, MAX_ACCOUNT_LEN, MAX_KEY_ID_LEN, MAX_METADATA_LEN, MAX_PROVIDER_LEN,
    MAX_SEALED_TOKEN_LEN, MAX_SHARED_SCOPES_LEN, MAX_STATUS_REASON_LEN, MAX_TOKEN_TYPE_LEN,
    PendingRevocation, ResealOutcome, RevocationOutcome, SealedRow, SharedAccessToken,
    StatusRecord, StoreOutcome, TokenFacts, TokenStatus, UnknownStatus,
};
pub use writer::TokenWriter;

/// Result type of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
