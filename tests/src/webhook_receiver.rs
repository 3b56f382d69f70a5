//! The application's webhook receiver for end-to-end tests: `tests/webhooks/receiver.py`, an
//! HTTP server that verifies every request with the Python `standardwebhooks` library (the
//! Standard Webhooks reference verifier, which nobody here wrote), run as a child process on
//! 127.0.0.1. It can be stopped (a down endpoint: connections refused) and started again on the
//! same port, told to answer 500 to its first requests or always for some accounts, and to
//! answer slowly. What it accepted and every request it saw are JSON lines in files read here.
//!
//! Holds a throwaway signing secret (`whsec_...`, mode 0600) in a temporary directory.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use serde_json::Value;
use tokenvault_set_service::config::WebhookConfig;

use crate::services::write_secret_file;

/// How long the receiver may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How the receiver answers.
#[derive(Debug, Clone, Default)]
pub struct ReceiverOptions {
    /// Answer 500 to this many verified requests first.
    pub fail_first: u32,
    /// Always answer 500 to events of these accounts.
    pub fail_accounts: Vec<String>,
    /// Wait this long before answering each verified request.
    pub delay_ms: u64,
}

/// One event the receiver verified and accepted (2xx).
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`, `evt_<cursor>`.
    pub webhook_id: String,
    /// `webhook-timestamp`, Unix seconds.
    pub webhook_timestamp: i64,
    /// The verified JSON body.
    pub payload: Value,
}

impl Received {
    /// `type`, e.g. `account.connected`.
    pub fn kind(&self) -> &str {
        self.payload["type"].as_str().unwrap_or_default()
    }

    /// `data.account`.
    pub fn account(&self) -> &str {
        self.payload["data"]["account"].as_str().unwrap_or_default()
    }

    /// `data.cursor`.
    pub fn cursor(&self) -> i64 {
        self.payload["data"]["cursor"].as_i64().unwrap_or_default()
    }
}

/// One request the receiver saw, whatever it answered.
#[derive(Debug, Clone)]
pub struct RequestSeen {
    /// `webhook-id`, if sent.
    pub webhook_id: Option<String>,
    /// Whether `standardwebhooks` verified it.
    pub verified: bool,
    /// What the receiver answered.
    pub status: u16,
}

/// A running (or stopped) receiver; killed when dropped.
#[derive(Debug)]
pub struct WebhookReceiver {
    dir: tempfile::TempDir,
    secret_file: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl WebhookReceiver {
    /// Makes a new secret and starts the receiver on a free port.
    pub async fn start(options: ReceiverOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let secret_file = dir.path().join("webhook.whsec");
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        write_secret_file(&secret_file, secret.as_bytes())?;
        let mut receiver = Self {
            dir,
            secret_file,
            port: 0,
            child: None,
        };
        receiver.spawn(&options).await?;
        Ok(receiver)
    }

    /// The secret file (`whsec_...`) set-service signs with.
    pub fn secret_file(&self) -> &Path {
        &self.secret_file
    }

    /// Its port; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>/tokenvault`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/tokenvault", self.port)
    }

    /// A `[[webhooks]]` entry named `name` for this receiver, paced for tests: 50 ms doubling
    /// to 400 ms between attempts, 2 s per POST, a poll every 50 ms.
    pub fn endpoint(&self, name: &str) -> WebhookConfig {
        WebhookConfig {
            initial_backoff_ms: 50,
            max_backoff_ms: 400,
            timeout_ms: 2000,
            poll_ms: 50,
            ..WebhookConfig::new(name, &self.url(), self.secret_file.clone())
        }
    }

    /// Kills the receiver: its port refuses connections until [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the receiver again on its port, answering as `options` say.
    pub async fn restart(&mut self, options: ReceiverOptions) -> anyhow::Result<()> {
        self.stop();
        let mut last = None;
        for _ in 0..20 {
            match self.spawn(&options).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| anyhow!("the receiver did not restart")))
    }

    /// Every event accepted so far, in the order received (duplicates included).
    pub fn received(&self) -> anyhow::Result<Vec<Received>> {
        read_lines(&self.dir.path().join("events.jsonl"))?
            .into_iter()
            .map(|v| {
                Ok(Received {
                    webhook_id: v["webhook_id"]
                        .as_str()
                        .ok_or_else(|| anyhow!("no webhook_id in {v}"))?
                        .to_owned(),
                    webhook_timestamp: v["webhook_timestamp"]
                        .as_str()
                        .and_then(|t| t.parse().ok())
                        .ok_or_else(|| anyhow!("no webhook_timestamp in {v}"))?,
                    payload: v["payload"].clone(),
                })
            })
            .collect()
    }

    /// Every accepted event once (the first delivery of each `webhook-id`), in the order
    /// received.
    pub fn received_once(&self) -> anyhow::Result<Vec<Received>> {
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .received()?
            .into_iter()
            .filter(|r| seen.insert(r.webhook_id.clone()))
            .collect())
    }

    /// Every request seen so far.
    pub fn requests(&self) -> anyhow::Result<Vec<RequestSeen>> {
        read_lines(&self.dir.path().join("requests.jsonl"))?
            .into_iter()
            .map(|v| {
                Ok(RequestSeen {
                    webhook_id: v["webhook_id"].as_str().map(str::to_owned),
                    verified: v["verified"].as_bool().unwrap_or(false),
                    status: v["status"]
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok())
                        .ok_or_else(|| anyhow!("no status in {v}"))?,
                })
            })
            .collect()
    }

    /// Waits (up to `within`) until `count` distinct events were accepted; returns them once
    /// each, in the order received.
    pub async fn wait_for(&self, count: usize, within: Duration) -> anyhow::Result<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let once = self.received_once()?;
            if once.len() >= count {
                return Ok(once);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the receiver accepted {} distinct events within {within:?}, not {count}",
                    once.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The receiver's log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("receiver.log")).unwrap_or_default()
    }

    /// Starts the child on `self.port` (0: any) and waits for its ready line.
    async fn spawn(&mut self, options: &ReceiverOptions) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("receiver.log"))?;
        let mut command = Command::new(python());
        command
            .arg(script())
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--secret-file")
            .arg(&self.secret_file)
            .arg("--events")
            .arg(self.dir.path().join("events.jsonl"))
            .arg("--requests")
            .arg(self.dir.path().join("requests.jsonl"))
            .arg("--fail-first")
            .arg(options.fail_first.to_string())
            .arg("--delay-ms")
            .arg(options.delay_ms.to_string());
        for account in &options.fail_accounts {
            command.arg("--fail-account").arg(account);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("start tests/webhooks/receiver.py (python3 with standardwebhooks)")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let ready = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(READY_TIMEOUT, ready).await {
            Ok(Ok(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the receiver did not start ({other:?}): {}", self.log());
            }
        };
        let port = serde_json::from_str::<Value>(line.trim())
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the receiver printed {line:?}: {}", self.log());
        };
        self.port = port;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The JSON lines of `path` (none if it does not exist yet). A line still being written is
/// left for the next read.
fn read_lines(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| {
            serde_json::from_str(line.trim())
                .with_context(|| format!("{}: {line:?}", path.display()))
        })
        .collect()
}

/// `PYTHON`, or `python3`.
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// `tests/webhooks/receiver.py`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks/receiver.py")
}
