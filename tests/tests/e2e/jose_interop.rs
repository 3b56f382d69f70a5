//! Interoperability with an independent JOSE implementation: Python jwcrypto
//! (`pip install jwcrypto==1.6.1`) opens our tokens and seals tokens we open.
//! Fails, rather than skips, when jwcrypto is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use tokenvault_opener::OpenError;
use tokenvault_seal::{SealError, SealedToken};
use tokenvault_tests::keys::{ACCOUNT, Fixture, PLAINTEXT, PROVIDER, pair};

type R = Result<(), Box<dyn Error>>;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/jwe_interop.py");
const INSTALL: &str = "pip install jwcrypto==1.6.1";

/// The Python interpreter: `$PYTHON`, or `python3`.
fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn require_jwcrypto() -> R {
    let py = python();
    let out = Command::new(&py)
        .args(["-c", "import jwcrypto"])
        .output()
        .map_err(|e| format!("cannot run {py} ({e}); install Python 3 and `{INSTALL}`"))?;
    if !out.status.success() {
        return Err(format!(
            "the jwcrypto interop test needs Python jwcrypto: run `{INSTALL}` ({py}: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// Runs the script with `args`, feeding `stdin`; returns its stdout.
fn script(args: &[&str], stdin: &[u8]) -> Result<Vec<u8>, Box<dyn Error>> {
    require_jwcrypto()?;
    let mut child = Command::new(python())
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(stdin)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "jwe_interop.py {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(out.stdout)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn jwcrypto_opens_our_tokens() -> R {
    let f = Fixture::new(&[pair()])?;
    let key = f.private_path(&pair().kid);
    for (account, plaintext) in [
        (ACCOUNT, PLAINTEXT),
        ("ålice@exämple.com", b"\x00\xffbinary"),
    ] {
        let token = f.keys.seal(account, PROVIDER, plaintext)?;
        let opened = script(&["open", path(&key), account, PROVIDER], token.as_bytes())?;
        assert_eq!(opened, plaintext);
    }
    // jwcrypto's check of our header is real: another account fails there.
    let token = f.keys.seal(ACCOUNT, PROVIDER, PLAINTEXT)?;
    assert!(script(&["open", path(&key), "bob", PROVIDER], token.as_bytes()).is_err());
    Ok(())
}

#[test]
fn we_open_jwcrypto_tokens() -> R {
    let f = Fixture::new(&[pair()])?;
    let key = f.public_path(&pair().kid);
    for (account, plaintext) in [
        (ACCOUNT, PLAINTEXT),
        ("ålice@exämple.com", b"\x00\xffbinary"),
    ] {
        let token =
            String::from_utf8(script(&["seal", path(&key), account, PROVIDER], plaintext)?)?;
        let token = token.trim();
        let parsed = SealedToken::parse(token)?;
        assert_eq!(
            (parsed.kid(), parsed.account(), parsed.provider()),
            (pair().kid.as_str(), account, PROVIDER)
        );
        assert_eq!(f.ring.open(token, account, PROVIDER)?.as_slice(), plaintext);
        let e = f.ring.open(token, "bob", PROVIDER).unwrap_err();
        assert!(
            matches!(e, OpenError::Invalid(SealError::ContextMismatch { .. })),
            "{e}"
        );
    }
    Ok(())
}
