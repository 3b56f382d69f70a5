//! The signup flow in a real browser: headless Chromium (Debian's `chromium`
//! package, driven by npm `playwright-core` from `tests/browser/signup.mjs`)
//! opens web-frontend's start page, clicks Connect, signs in and consents at
//! the real authorization server, and lands on the success page; a worker
//! then gets an access token for that account from get-service.
//!
//! Screenshots of every page are saved under
//! `target/test-artifacts/browser-signup/`.
//!
//! Needs `/usr/bin/chromium` (`apt-get install chromium`) and
//! `(cd tests/browser && npm ci)`; `.ci/run` installs both.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tokenvault_tests::system::{Options, System};

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
    let output = tokio::task::spawn_blocking({
        let shots = shots.clone();
        move || {
            Command::new("node")
                .arg(script)
                .args(["--url", &url, "--provider", "oidc", "--login", "lena"])
                .arg("--screenshots")
                .arg(&shots)
                .arg("--chromium")
                .arg(CHROMIUM)
                .output()
        }
    })
    .await
    .unwrap()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser flow failed: {stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["page"], "connected", "{result} {stderr}");
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
    f.stop().await.unwrap();
}
