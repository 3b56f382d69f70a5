//! The one end-to-end test binary. Each module covers one area; all of them
//! use the harness in `tokenvault-tests`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod mtls;
mod set_service;
