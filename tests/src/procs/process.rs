//! One service binary run as a child process on a fixed port.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;

use super::tail;

/// How long a service may take to accept TCP connections after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`ServiceProcess::stop`] waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How many log lines an error message quotes.
const LOG_TAIL: usize = 40;

/// What to run: a binary, its config file's text, the port it listens on.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// A short name for messages and file names, e.g. `set-service`.
    pub name: String,
    /// The binary.
    pub binary: PathBuf,
    /// The TOML config, written to `<dir>/<name>.toml` and passed as
    /// `--config <file>`; `None` passes no `--config`.
    pub config: Option<String>,
    /// Arguments after `--config <file>`.
    pub args: Vec<OsString>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The port it listens on (127.0.0.1), the same across restarts.
    pub port: u16,
}

impl ServiceSpec {
    /// A spec for `binary` with config text `config` listening on `port`;
    /// logs at `info,tokenvault=debug`.
    pub fn new(name: &str, binary: PathBuf, config: String, port: u16) -> Self {
        Self {
            name: name.to_owned(),
            binary,
            config: Some(config),
            args: Vec::new(),
            env: vec![(
                tokenvault_runtime::logging::ENV_LOG.to_owned(),
                "info,tokenvault=debug".to_owned(),
            )],
            port,
        }
    }
}

/// A service binary running as a child process, its stdout and stderr
/// appended to a log file. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    spec: ServiceSpec,
    dir: TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl ServiceProcess {
    /// Writes the config, starts the binary and waits until its port
    /// accepts TCP connections.
    pub async fn start(spec: ServiceSpec) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a service directory")?;
        let config_path = dir.path().join(format!("{}.toml", spec.name));
        if let Some(config) = &spec.config {
            std::fs::write(&config_path, config)
                .with_context(|| format!("writing {}", config_path.display()))?;
        }
        let log_path = dir.path().join(format!("{}.log", spec.name));
        let mut process = Self {
            spec,
            dir,
            config_path,
            log_path,
            child: None,
            starts: 0,
        };
        process.start_and_wait().await?;
        Ok(process)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.spec.port
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.spec.port)
    }

    /// `localhost:<port>` (for clients that check the DNS name).
    pub fn localhost_address(&self) -> String {
        format!("localhost:{}", self.spec.port)
    }

    /// The config file it was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Its directory (config and log), removed when dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log file (stdout and stderr of every run, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything it logged so far, over all its runs.
    pub fn logs(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// [`logs`](Self::logs) once lines it logged before this call have
    /// reached the file: services write their log in batches every
    /// `tokenvault_runtime::log_buffer::FLUSH_EVERY`.
    pub async fn logs_settled(&self) -> String {
        tokio::time::sleep(tokenvault_runtime::log_buffer::FLUSH_EVERY * 4).await;
        self.logs()
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The process id of the running child.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the child is running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Kills it with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child
                .wait()
                .with_context(|| format!("reaping {}", self.spec.name))?;
        }
        Ok(())
    }

    /// Sends SIGTERM and waits for it to exit (SIGKILL after 15 s, which is
    /// an error). Returns its exit status.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{} is not running", self.spec.name);
        };
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| anyhow!("bad pid {}", child.id()))?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .with_context(|| format!("sending SIGTERM to {}", self.spec.name))?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed it. Its log:\n{}",
                    self.spec.name,
                    tail(&self.logs(), LOG_TAIL)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it if it runs, then starts it again on the same port with the
    /// same config, and waits until it accepts connections.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.start_and_wait().await
    }

    /// Waits (up to `timeout`) until its log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logs().contains(needle) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not log {needle:?} within {timeout:?}; its log:\n{}",
                    self.spec.name,
                    tail(&self.logs(), LOG_TAIL)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let mut log = append(&self.log_path)?;
        writeln!(
            log,
            "==== tokenvault-tests: start #{} of {} on port {} ====",
            self.starts, self.spec.name, self.spec.port
        )?;
        let mut command = Command::new(&self.spec.binary);
        if self.spec.config.is_some() {
            command.arg("--config").arg(&self.config_path);
        }
        command
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.spec.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts the child and waits until its port accepts TCP connections;
    /// starts it again if the port was still held by the previous run.
    async fn start_and_wait(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.spec.port));
        loop {
            let log_before = self.logs().len();
            self.spawn()?;
            loop {
                let exited = match self.child.as_mut().map(Child::try_wait) {
                    Some(Ok(None)) => None,
                    Some(Ok(Some(status))) => Some(status.to_string()),
                    Some(Err(e)) => Some(e.to_string()),
                    None => Some("gone".to_owned()),
                };
                if let Some(status) = exited {
                    self.child = None;
                    let log = self.logs();
                    let this_run = log.get(log_before..).unwrap_or_default();
                    if this_run.contains("cannot bind") && Instant::now() < deadline {
                        // The previous run's port is not released yet.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                    bail!(
                        "{} exited ({status}) before it accepted connections on {addr}; its log:\n{}",
                        self.spec.name,
                        tail(this_run, LOG_TAIL)
                    );
                }
                let connected = tokio::task::spawn_blocking(move || {
                    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
                })
                .await?;
                if connected {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    self.kill()?;
                    bail!(
                        "{} did not accept connections on {addr} within {READY_TIMEOUT:?}; its log:\n{}",
                        self.spec.name,
                        tail(&self.logs(), LOG_TAIL)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Opens `path` for appending (creating it).
pub(crate) fn append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}
