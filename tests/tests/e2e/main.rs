//! The one end-to-end test binary. Each module covers one area; all of them
//! use the harness in `tokenvault-tests`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod account_events;
mod audit;
mod behaviour_classes;
mod browser;
mod client_credentials;
mod crate_boundaries;
mod demo_auth;
mod deploy_files;
mod device_flow;
mod footprint;
mod framing;
mod get_service;
mod grpc_discovery;
mod import;
mod inventory;
mod jose_interop;
mod keep_alive;
mod key_rotation;
mod metrics;
mod mtls;
mod netns;
mod oidc_peer;
mod open;
mod pkcs11;
mod pki_cli;
mod policy;
mod processes;
mod quickstart;
mod replicas;
mod rotation;
mod scopes;
mod seal;
mod set_service;
mod store_behaviour;
mod store_events;
mod store_history;
mod store_postgres;
mod store_sqlite;
mod trust_changes;
mod web_errors;
mod web_frontend;
mod webhooks;
