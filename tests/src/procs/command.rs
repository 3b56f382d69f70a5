//! Running a short-lived command with a time limit.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl CommandOutput {
    /// Its output, or an error quoting it when it did not exit 0.
    pub fn success(self, what: &str) -> anyhow::Result<Self> {
        if !self.status.success() {
            bail!(
                "{what} failed ({}):\n{}\n{}",
                self.status,
                self.stdout.trim_end(),
                self.stderr.trim_end()
            );
        }
        Ok(self)
    }
}

/// Runs `command` (stdin closed, stdout and stderr captured) and waits at
/// most `timeout` for it, killing it then. Blocks: call from
/// `spawn_blocking` in async code, or use [`run_async`].
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> anyhow::Result<CommandOutput> {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {shown}"))?;
    let collect = |stream: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        if let Some(mut stream) = stream {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = stream.read_to_end(&mut bytes);
                let _ = tx.send(bytes);
            });
        }
        rx
    };
    let stdout = collect(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = collect(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{shown} did not finish within {timeout:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A grandchild that kept the pipes open (a daemon) must not block us.
    let read = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(Duration::from_secs(2))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    Ok(CommandOutput {
        status,
        stdout: read(stdout),
        stderr: read(stderr),
    })
}

/// [`run_with_timeout`] on a blocking thread.
pub(crate) async fn run_async(
    command: Command,
    timeout: Duration,
) -> anyhow::Result<CommandOutput> {
    tokio::task::spawn_blocking(move || run_with_timeout(command, timeout)).await?
}
