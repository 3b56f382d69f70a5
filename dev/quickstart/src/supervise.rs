//! Starting the services as separate processes, watching them, and stopping
//! them in order on Ctrl-C or SIGTERM.
//!
//! The children share the supervisor's process group, so a Ctrl-C in the
//! terminal reaches all of them at once and each shuts down gracefully; the
//! supervisor then also sends SIGTERM to each (the only signal they get when
//! the supervisor alone is told to stop), newest first, and waits for it
//! (SIGKILL after a grace period). Their output goes to `<state>/logs`.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::configs::{DEMO_CLIENT_ID, DEMO_PROVIDER, Plan};
use crate::state::State;

/// How long a service may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a service may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The tokenvault binaries the quick start runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `pki`.
    pub pki: PathBuf,
    /// `set-service`.
    pub set_service: PathBuf,
    /// `get-service`.
    pub get_service: PathBuf,
    /// `web-frontend`.
    pub web_frontend: PathBuf,
    /// `tokenvault-worker`.
    pub worker: PathBuf,
    /// `demo-authorization-server`.
    pub demo: PathBuf,
}

impl Binaries {
    /// Finds every binary in `dir`, or names the missing one.
    pub fn locate(dir: &Path) -> anyhow::Result<Self> {
        let find = |name: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            if !path.is_file() {
                bail!(
                    "{} is missing: build the release binaries first (scripts/build-release)",
                    path.display()
                );
            }
            Ok(path)
        };
        Ok(Self {
            pki: find("pki")?,
            set_service: find("set-service")?,
            get_service: find("get-service")?,
            web_frontend: find("web-frontend")?,
            worker: find("tokenvault-worker")?,
            demo: find("demo-authorization-server")?,
        })
    }
}

/// Runs the PostgreSQL migrations as the owner role (`set-service migrate`).
pub fn migrate(bins: &Binaries, owner_url: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new(&bins.set_service)
        .arg("migrate")
        .env(tokenvault_set_service::config::ENV_OWNER_URL, owner_url)
        .status()
        .context("cannot run set-service migrate")?;
    if !status.success() {
        bail!("set-service migrate failed ({status})");
    }
    Ok(())
}

struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// Starts everything in `plan`, prints how to use it, and supervises until
/// Ctrl-C, SIGTERM, or a service exiting by itself.
pub async fn run_all(bins: &Binaries, state: &State, plan: &Plan) -> anyhow::Result<()> {
    let logs = state.dir.join("logs");
    fs::create_dir_all(&logs)?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut services: Vec<Service> = Vec::new();
    let started = tokio::select! {
        started = start_in_order(bins, plan, &logs, &mut services) => started.map(|()| true),
        _ = interrupt.recv() => Ok(false),
        _ = terminate.recv() => Ok(false),
    };
    match started {
        Ok(true) => {}
        Ok(false) => {
            println!("\nInterrupted while starting; stopping what started...");
            stop_all(&mut services).await;
            return Ok(());
        }
        Err(e) => {
            stop_all(&mut services).await;
            return Err(e);
        }
    }
    print_instructions(bins, state, plan);
    let mut connects = ConnectWatcher::new(logs.join("set-service.log"));
    let outcome = loop {
        tokio::select! {
            _ = interrupt.recv() => break Ok(()),
            _ = terminate.recv() => break Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some(e) = exited(&mut services) {
                    break Err(e);
                }
                for (account, provider) in connects.new_connects() {
                    println!("\nConnected {account} at {provider}. Fetch an access token for it:\n");
                    println!("   {}\n", worker_command(bins, plan, &account, &provider));
                }
            }
        }
    };
    println!("\nStopping tokenvault...");
    stop_all(&mut services).await;
    println!("Stopped. State kept in {}", state.dir.display());
    outcome
}

async fn start_in_order(
    bins: &Binaries,
    plan: &Plan,
    logs: &Path,
    services: &mut Vec<Service>,
) -> anyhow::Result<()> {
    if let (Some((port, state_file)), Some(secret)) = (&plan.demo, &plan.demo_client_secret) {
        let mut cmd = Command::new(&bins.demo);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--client-id")
            .arg(DEMO_CLIENT_ID)
            .arg("--redirect-uri")
            .arg(format!("{}/callback", plan.public_url))
            .arg("--state-file")
            .arg(state_file)
            .env(tokenvault_demo_auth::ENV_CLIENT_SECRET, secret);
        start(services, "demo-authorization-server", cmd, logs, *port).await?;
    }
    for (name, bin, (config, port)) in [
        ("set-service", &bins.set_service, &plan.set_service),
        ("get-service", &bins.get_service, &plan.get_service),
        ("web-frontend", &bins.web_frontend, &plan.web_frontend),
    ] {
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(config);
        start(services, name, cmd, logs, *port).await?;
    }
    Ok(())
}

async fn start(
    services: &mut Vec<Service>,
    name: &'static str,
    mut cmd: Command,
    logs: &Path,
    port: u16,
) -> anyhow::Result<()> {
    let log = logs.join(format!("{name}.log"));
    let out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&log)
        .with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    services.push(Service {
        name,
        child,
        log: log.clone(),
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    // Each service logs that it serves once it has bound its port (so a port
    // held by another process is not mistaken for it, and a bare TCP probe
    // does not log a refused TLS handshake).
    let serving_line = match name {
        "demo-authorization-server" => "demo authorization server serving".to_owned(),
        other => format!("{other} serving"),
    };
    loop {
        let up = fs::read(&log)
            .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(&serving_line));
        if up {
            println!("  {name:<26} 127.0.0.1:{port}");
            return Ok(());
        }
        if let Some(e) = exited(services) {
            return Err(e);
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not listen on {addr} within {START_TIMEOUT:?}; see {}",
                services
                    .last()
                    .map(|s| s.log.display().to_string())
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An error naming the first service that has exited, with its log's tail.
fn exited(services: &mut [Service]) -> Option<anyhow::Error> {
    for s in services.iter_mut() {
        if let Ok(Some(status)) = s.child.try_wait() {
            let tail = fs::read_to_string(&s.log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Some(anyhow::anyhow!(
                "{} exited ({status}); last lines of {}:\n{}",
                s.name,
                s.log.display(),
                tail.join("\n")
            ));
        }
    }
    None
}

/// SIGTERM to each service, newest first, then SIGKILL after the grace period.
async fn stop_all(services: &mut Vec<Service>) {
    while let Some(mut s) = services.pop() {
        if let Some(pid) = s
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw)
        {
            let _ = kill_process(pid, Signal::TERM);
        }
        match tokio::time::timeout(STOP_GRACE, s.child.wait()).await {
            Ok(_) => println!("  stopped {}", s.name),
            Err(_) => {
                let _ = s.child.kill().await;
                println!(
                    "  killed {} (it did not stop within {STOP_GRACE:?})",
                    s.name
                );
            }
        }
    }
}

/// `p` relative to the working directory when it is below it.
fn rel(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(|r| r.display().to_string()))
        .unwrap_or_else(|| p.display().to_string())
}

/// The worker command that fetches an access token for `account`.
fn worker_command(bins: &Binaries, plan: &Plan, account: &str, provider: &str) -> String {
    format!(
        "{} --config {} token --account {account} --provider {provider}",
        rel(&bins.worker),
        rel(&plan.worker_config)
    )
}

/// Follows set-service's log for accounts that web-frontend has just stored
/// (its JSON audit lines; never a token).
struct ConnectWatcher {
    path: PathBuf,
    offset: usize,
}

impl ConnectWatcher {
    fn new(path: PathBuf) -> Self {
        let offset = fs::metadata(&path).map_or(0, |m| usize::try_from(m.len()).unwrap_or(0));
        Self { path, offset }
    }

    fn new_connects(&mut self) -> Vec<(String, String)> {
        let Ok(bytes) = fs::read(&self.path) else {
            return Vec::new();
        };
        if bytes.len() < self.offset {
            // The log was replaced (a restart truncates it): read it anew.
            self.offset = 0;
        }
        let text = String::from_utf8_lossy(&bytes[self.offset..]).into_owned();
        let new = text.as_str();
        // Only whole lines; a partly written one is read next time.
        let complete = bytes[self.offset..]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        self.offset += complete;
        let new = &new[..new.rfind('\n').map_or(0, |i| i + 1)];
        new.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                e["target"] == "tokenvault::audit"
                    && e["rpc"] == "StoreRefreshToken"
                    && e["outcome"] == "ok"
                    && e["caller"]
                        .as_str()
                        .is_some_and(|c| c.ends_with("/web-frontend"))
            })
            .filter_map(|e| {
                Some((
                    e["account"].as_str()?.to_owned(),
                    e["provider"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }
}

fn print_instructions(bins: &Binaries, state: &State, plan: &Plan) {
    println!();
    println!(
        "tokenvault is running (logs in {}).",
        rel(&state.dir.join("logs"))
    );
    println!();
    println!("1. Open {}/ and connect an account.", plan.public_url);
    if plan.demo.is_some() {
        println!(
            "   The \"Demo provider\" is a development-only authorization server on this machine:"
        );
        println!("   sign in with any name (alice is filled in) and press Allow.");
    }
    let provider = if plan.demo.is_some() {
        DEMO_PROVIDER.to_owned()
    } else {
        plan.providers.first().cloned().unwrap_or_default()
    };
    let account = if plan.demo.is_some() {
        format!("{DEMO_PROVIDER}:alice")
    } else {
        format!("{provider}:<your subject>")
    };
    println!("2. Fetch an access token for it as a worker (mTLS, certificate worker-demo):");
    println!();
    println!("   {}", worker_command(bins, plan, &account, &provider));
    println!();
    println!(
        "   The account id is shown on the \"Account connected\" page (<provider>:<your user id>);"
    );
    println!("   the exact command for each account you connect is printed here as it happens.");
    println!();
    println!(
        "Ctrl-C stops everything; the next run reuses {}.",
        rel(&state.dir)
    );
}
