//! The signup flow in a real browser: headless Chromium (Debian's `chromium`
//! package, driven by npm `playwright-core` from `tests/browser/signup.mjs`)
//! opens web-frontend's start page, clicks Connect, signs in and consents at
//! the real authorization server, and lands on the success page; a worker
//! then gets an access token for that account from get-service; then the
//! browser clicks Disconnect and the worker is refused.
//!
//! Screenshots of every page are saved under
//! `target/test-artifacts/browser-signup/`.
//!
//! Needs `/usr/bin/chromium` (`apt-get install chromium`) and
//! `(cd tests/browser && npm ci)`; `.ci/run` installs both.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokenvault_tests::system::{Options, System};
use tonic::Code;

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/browser-signup")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_up_and_a_worker_gets_a_token() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run (cd tests/browser && npm ci)"
    );
    let mut f = System::start(Options::default()).await.unwrap();
    let shots = artifacts_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let url = format!("{}/", f.web_url);
    let script = browser_dir().join("signup.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .args([
            "--url",
            &url,
            "--provider",
            "oidc",
            "--login",
            "lena",
            "--then-disconnect",
        ])
        .arg("--screenshots")
        .arg(&shots)
        .arg("--chromium")
        .arg(CHROMIUM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (first, mut stdout) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).map(|_| (line, stdout))
    })
    .await
    .unwrap()
    .unwrap();
    let result: Value = match serde_json::from_str(&first) {
        Ok(v) => v,
        Err(_) => {
            let output = child.wait_with_output().unwrap();
            panic!(
                "the browser flow failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    assert_eq!(result["page"], "connected", "{result}");
    assert_eq!(result["account"], "oidc:lena");
    for name in [
        "01-home",
        "02-provider-sign-in",
        "03-provider-consent",
        "04-result",
    ] {
        let png = shots.join(format!("{name}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "no screenshot at {}",
            png.display()
        );
    }

    f.remember_connected("oidc:lena");
    let access = f.token("oidc:lena", 30).await.unwrap();
    assert_eq!(f.oidc.userinfo(&access).await.unwrap()["sub"], "lena");

    // The Disconnect button on the result page works in a real browser.
    let (second, output) = tokio::task::spawn_blocking(move || {
        writeln!(stdin, "disconnect").unwrap();
        drop(stdin);
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        (line, child.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after: Value = serde_json::from_str(&second).unwrap();
    assert_eq!(after["page"], "disconnected", "{after}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(f.token("oidc:lena", 0).await, Err(Code::NotFound));
    f.stop().await.unwrap();
}
