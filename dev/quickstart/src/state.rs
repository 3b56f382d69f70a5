//! The state directory: made once by the `pki` binary (CA, a certificate for
//! each role, a demo worker certificate, the token-encryption key pair) plus
//! three random secrets, and reused on every later run.
//!
//! Secrets are written with mode 0600 and never printed.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::supervise::Binaries;

/// The SPIFFE trust domain of the quick start's CA.
pub const TRUST_DOMAIN: &str = "tokenvault.local";

/// Paths in the state directory.
#[derive(Debug, Clone)]
pub struct State {
    /// The state directory itself.
    pub dir: PathBuf,
    /// The trust domain recorded by `pki init`.
    pub trust_domain: String,
    /// web-frontend's cookie key (64 random bytes).
    pub cookie_key: PathBuf,
    /// web-frontend's connect-link secret (48 random bytes, hex).
    pub link_secret: PathBuf,
    /// The demo authorization server's client secret (hex).
    pub demo_client_secret: PathBuf,
}

impl State {
    /// `certs/<stem>.pem` and `.key`.
    pub fn cert(&self, stem: &str) -> (PathBuf, PathBuf) {
        let certs = self.dir.join("certs");
        (
            certs.join(format!("{stem}.pem")),
            certs.join(format!("{stem}.key")),
        )
    }

    /// The CA bundle every service trusts.
    pub fn ca_bundle(&self) -> PathBuf {
        self.dir.join("ca").join("bundle.pem")
    }
}

/// Makes whatever is missing from the state directory and returns its paths.
pub fn ensure(bins: &Binaries, dir: &Path) -> anyhow::Result<State> {
    let pki = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new(&bins.pki)
            .arg("--state")
            .arg(dir)
            .args(args)
            .status()
            .with_context(|| format!("cannot run {}", bins.pki.display()))?;
        if !status.success() {
            bail!("pki {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    if !dir.join("pki.toml").exists() {
        println!("Making the state directory {} with pki", dir.display());
        pki(&["init", "--trust-domain", TRUST_DOMAIN])?;
        for role in ["set-service", "get-service", "web-frontend"] {
            pki(&["issue", role])?;
        }
        pki(&["issue", "worker", "--name", "demo"])?;
        pki(&["keygen"])?;
    }
    let trust_domain = read_trust_domain(&dir.join("pki.toml"))?;
    let secrets = dir.join("secrets");
    fs::create_dir_all(&secrets)?;
    let state = State {
        dir: dir.to_path_buf(),
        trust_domain,
        cookie_key: secrets.join("web-cookie.key"),
        link_secret: secrets.join("web-link.secret"),
        demo_client_secret: secrets.join("demo-client.secret"),
    };
    write_secret_once(&state.cookie_key, &random_bytes(64)?)?;
    write_secret_once(&state.link_secret, hex(&random_bytes(48)?).as_bytes())?;
    write_secret_once(
        &state.demo_client_secret,
        hex(&random_bytes(32)?).as_bytes(),
    )?;
    Ok(state)
}

fn read_trust_domain(path: &Path) -> anyhow::Result<String> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)?;
    table
        .get("trust_domain")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .with_context(|| format!("{} has no trust_domain", path.display()))
}

/// Reads a secret file written by [`ensure`].
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.trim().to_owned())
}

fn random_bytes(n: usize) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_secret_once(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
