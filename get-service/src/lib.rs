//! tokenvault `get-service`: trades stored refresh tokens for short-lived
//! access tokens for workers (`GetService`, mutual TLS, `worker` identities
//! only). It is the only service that links `tokenvault-opener`, the crate
//! that can open a sealed token.
//!
//! - [`policy`] decides which caller may read which accounts, at most with
//!   which scopes; [`broker`] caches access tokens (by scope set), runs one
//!   refresh per account at a time, refreshes ahead of expiry, narrows
//!   scopes, and handles dead grants.
//! - [`rotation`] makes the providers' rotated refresh tokens durable before
//!   any worker gets the access token that came with them: stored through
//!   set-service, or sealed in the local [`journal`] while it is away.
//! - [`replicas`] lets several get-service processes share one PostgreSQL
//!   store: one provider refresh per account at a time across all of them,
//!   and access tokens shared (sealed) between them.
//! - [`revocation`] revokes disconnected accounts' grants at their
//!   providers (RFC 7009) and has set-service delete the sealed token.
//! - [`reseal`] and [`retire`] are key rotation's `get-service reseal` and
//!   `get-service retire-key` commands.
//! - [`inventory`] serves `AccountInventory` beside `GetService`: the
//!   accounts' statuses and events, never a token, to `admin` identities
//!   by default, within the account policy.
//! - [`run`] serves it all on the shared gRPC chassis; `main.rs` also
//!   disables core dumps.
//!
//! Talking to providers is `tokenvault-oauth`'s job; opening sealed tokens is
//! `tokenvault-opener`'s. This crate holds plaintext refresh tokens during
//! one refresh (and rotated ones until they are stored) and cached access
//! tokens, all in [`Zeroizing`](zeroize::Zeroizing) buffers.
#![forbid(unsafe_code)]

pub mod account;
pub mod broker;
pub mod config;
pub mod error;
mod hardening;
mod health;
pub mod inventory;
pub mod journal;
pub mod keep_alive;
pub mod policy;
pub mod replicas;
pub mod reseal;
pub mod retire;
pub mod revocation;
pub mod rotation;
pub mod scopes;
mod server;
mod service;
pub mod token;

pub use account::AccountKey;
pub use config::Config;
pub use error::{ConfigError, ServeError, TokenError};
pub use hardening::disable_core_dumps;
pub use server::{INVENTORY_RPCS, RPCS, allow_list, run};

/// The global allocator get-service's binary runs with (and its benchmarks
/// measure): mimalloc. A cache of many small long-lived entries, filled
/// between each refresh's transient buffers, fragments glibc's per-thread
/// arenas: 100k cached accounts kept 2.4x their live heap resident there,
/// 1.2x on mimalloc (`get_service_memory` bench).
pub type Allocator = mimalloc::MiMalloc;

/// The [`Allocator`] itself, for a `#[global_allocator]` static.
pub const ALLOCATOR: Allocator = mimalloc::MiMalloc;
