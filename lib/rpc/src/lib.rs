//! What every tokenvault gRPC server runs in front of and around its
//! handlers:
//!
//! - [`authz`]: who may call which RPC ([`AllowList`], enforced by
//!   [`AuthzLayer`]), refusing expired and revoked certificates;
//! - [`audit`]: exactly one audit event per call;
//! - [`grpc_metrics`]: requests by RPC and status, and their latency;
//! - [`discovery`]: health and reflection for ordinary gRPC tools;
//! - [`serve`]: the one serve function, [`GrpcServer`], that puts these
//!   together with mutual TLS, health checks and the metrics endpoint,
//!   serving each connection on its own (`connections`) so that a trust
//!   change can close one gracefully.
//!
//! This crate sees callers' identities and request paths, never a token.
#![forbid(unsafe_code)]

pub mod audit;
pub mod authz;
mod connections;
pub mod discovery;
mod framing;
pub mod grpc_metrics;
pub mod serve;

pub use authz::{AUTHZ_TARGET, AllowList, Authz, AuthzLayer};
pub use serve::{GrpcServer, GrpcService, ServeError};
