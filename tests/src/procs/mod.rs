//! Running tokenvault's real release binaries as separate processes, for the
//! end-to-end suite that crosses process boundaries.
//!
//! - [`binary`] finds a release binary (`<target>/release/<name>`, built by
//!   `scripts/build-release`, which nextest runs as a setup script before
//!   the `processes::` tests).
//! - [`ServiceProcess`] runs one service binary with a config file it
//!   writes, logs to a file, on a fixed port that survives
//!   [`ServiceProcess::kill`] (SIGKILL), [`ServiceProcess::stop`] (SIGTERM)
//!   and [`ServiceProcess::restart`]; it is killed when dropped.
//! - [`PgCluster`] is a private PostgreSQL cluster (its own `initdb`, port
//!   and socket directory, fsync on) that a test may crash and restart
//!   without disturbing the shared server on 5432.
//! - [`ProcSystem`] starts the whole system: PostgreSQL (private or a fresh
//!   database on the shared server), the real authorization server, and
//!   set-service, get-service and web-frontend as processes; it connects
//!   accounts through the web flow, runs the Python and Rust workers, and
//!   reads the store.
//!
//! Every wait here has a time limit, and every child process is killed when
//! its owner is dropped, also when a test panics.

mod audit;
mod command;
mod postgres;
mod process;
mod system;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub use audit::{AuditTable, AuditTableRow};
pub use command::{CommandOutput, run_with_timeout};
pub use postgres::{PgCluster, StoreUrls};
pub use process::{ServiceProcess, ServiceSpec};
pub use system::{
    Database, ProcOptions, ProcSystem, PythonReply, UNDECODABLE, python_raw_call, python_stubs,
    python_worker_script,
};

/// The workspace root (the parent of the `tests` crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// The cargo target directory: `CARGO_TARGET_DIR` (relative to the
/// workspace root if relative), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The release binary `name` (`set-service`, `get-service`, `web-frontend`,
/// `tokenvault-worker`, `pki`, ...), or an error telling how to build it.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = target_dir().join("release").join(name);
    if !path.is_file() {
        bail!(
            "release binary {} is missing: run scripts/build-release (nextest runs it as a setup \
             script before the processes:: tests)",
            path.display()
        );
    }
    Ok(path)
}

/// A port on 127.0.0.1 that was free a moment ago (bound to port 0, then
/// released), for a service that must keep its port across restarts.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `n` distinct free ports (all held until every one is chosen).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("binding 127.0.0.1:0")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A TOML basic string holding `s` (quoted and escaped).
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML basic string holding `path`.
pub fn toml_path(path: &Path) -> String {
    toml_string(&path.display().to_string())
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
