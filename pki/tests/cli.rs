//! The `pki` binary as ops run it: files and modes, no overwrite without
//! `--force`, one-line errors with a non-zero exit, and a listing. This is the
//! pki crate's only integration test file, because only here does Cargo hand
//! a test the path of the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn pki(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pki"))
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn init_issue_keygen_list() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(
        pki(&state, &["init", "--trust-domain", "example.org"])
            .status
            .success()
    );
    let out = pki(
        &state,
        &[
            "issue",
            "worker",
            "--name",
            "billing",
            "--dns",
            "w.internal",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pki(&state, &["keygen"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let kid = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("generated RSA-4096 key "))
        .unwrap()
        .to_owned();

    assert_eq!(mode(&state.join("ca/ca.key")), 0o600);
    assert_eq!(mode(&state.join("certs/worker-billing.key")), 0o600);
    assert_eq!(mode(&state.join(format!("keys/private/{kid}.pem"))), 0o600);
    assert_eq!(mode(&state.join("keys/private")), 0o700);
    assert_eq!(mode(&state.join("certs/worker-billing.pem")), 0o644);

    let list = pki(&state, &["list"]);
    assert!(list.status.success());
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        list.contains("spiffe://example.org/worker/billing"),
        "{list}"
    );
    assert!(list.contains(&kid), "{list}");
    assert!(list.contains("RSA-4096"), "{list}");
    // No key material is ever printed.
    for out in [list.as_str(), stdout.as_str()] {
        assert!(!out.contains("PRIVATE KEY"), "{out}");
    }
}

#[test]
fn never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(pki(&state, &["init"]).status.success());
    let ca_key = std::fs::read(state.join("ca/ca.key")).unwrap();
    let again = pki(&state, &["init"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read(state.join("ca/ca.key")).unwrap(), ca_key);

    assert!(pki(&state, &["issue", "web-frontend"]).status.success());
    let cert = std::fs::read(state.join("certs/web-frontend.pem")).unwrap();
    assert!(!pki(&state, &["issue", "web-frontend"]).status.success());
    assert_eq!(
        std::fs::read(state.join("certs/web-frontend.pem")).unwrap(),
        cert
    );
    assert!(
        pki(&state, &["issue", "web-frontend", "--force"])
            .status
            .success()
    );
    assert_ne!(
        std::fs::read(state.join("certs/web-frontend.pem")).unwrap(),
        cert
    );
}

#[test]
fn bad_arguments_give_one_line_and_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(pki(&state, &["init"]).status.success());
    for args in [
        &["issue", "admin"][..],
        &["issue", "worker", "--days", "0"],
        &["issue", "worker", "--name", "a/b"],
        &["issue", "worker", "--ip", "not-an-ip"],
        &["frobnicate"],
        &["init", "--trust-domain", "Bad Domain", "--force"],
    ] {
        let out = pki(&state, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    // A command before init names the fix.
    let empty = dir.path().join("empty");
    let out = pki(&empty, &["issue", "worker"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("pki init"), "{}", stderr(&out));
}
