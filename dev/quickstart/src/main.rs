//! `tokenvault-quickstart`: runs the whole of tokenvault on this machine, as
//! separate processes, for trying it out (`scripts/quickstart` builds and
//! runs it). See [`tokenvault_quickstart`] for what it does.
#![forbid(unsafe_code)]

use clap::Parser;
use tokenvault_quickstart::{Options, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Options::parse()).await
}
