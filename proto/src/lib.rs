//! The tokenvault gRPC contract, package `tokenvault.v1`.
//!
//! Generated from `proto/tokenvault/v1/tokenvault.proto` at build time by
//! protox and tonic-prost-build; the `.proto` file documents which status code
//! each failure returns ([`codec`] makes an undecodable request one of
//! them). This crate holds no secrets and no logic; messages that
//! carry a token (sealed or not) have a `Debug` that prints its length only.

/// Messages and the `SetService` and `GetService` clients and servers.
#[allow(missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("tokenvault.v1");
}

pub mod codec;
pub mod ids;
pub mod metadata;
mod redact;

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tokenvault_descriptor.bin"));
