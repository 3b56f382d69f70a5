//! The `pki` binary as ops run it: files and modes, no overwrite without
//! `--force`, one-line errors with a non-zero exit, a listing, renewal,
//! revocation and CA rotation. It runs the release binary
//! (`tokenvault_tests::procs::binary`), which nextest's setup script
//! `scripts/build-release` builds before the `pki_cli::` tests.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use tokenvault_tests::procs::binary;

fn pki(state: &Path, args: &[&str]) -> Output {
    Command::new(binary("pki").unwrap())
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
        &["issue", "operator"][..],
        &["issue", "worker", "--days", "0"],
        &["issue", "worker", "--name", "a/b"],
        &["issue", "worker", "--ip", "not-an-ip"],
        &["frobnicate"],
        &["init", "--trust-domain", "Bad Domain", "--force"],
        &["renew"],
        &["renew", "--all", "--within", "7d"],
        &["revoke"],
        &["rotate-ca", "--finish", "--days", "10"],
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

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(state: &Path, args: &[&str]) -> String {
    let out = pki(state, args);
    assert!(out.status.success(), "pki {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The facts of the first certificate in a PEM file.
struct Facts {
    serial: String,
    issuer: String,
    subject: String,
    sans: Vec<String>,
}

fn facts(path: &Path) -> Facts {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let pem = std::fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let (_, cert) = X509Certificate::from_der(&pem.contents).unwrap();
    let sans = cert
        .subject_alternative_name()
        .unwrap()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|n| n.to_string())
                .collect()
        })
        .unwrap_or_default();
    Facts {
        serial: cert.raw_serial_as_string().replace(':', ""),
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
        sans,
    }
}

/// Every PEM block of a file, as (label, DER).
fn pem_blocks(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    x509_parser::pem::Pem::iter_from_buffer(&bytes)
        .map(|p| {
            let p = p.unwrap();
            (p.label, p.contents)
        })
        .collect()
}

/// Each CRL in `ca/crl.pem`: (issuer, CRL number, revoked serials).
fn crls(state: &Path) -> Vec<(String, u64, Vec<String>)> {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    pem_blocks(&state.join("ca/crl.pem"))
        .into_iter()
        .map(|(label, der)| {
            assert_eq!(label, "X509 CRL");
            let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
            let number = crl.crl_number().unwrap().to_u64_digits();
            let revoked = crl
                .iter_revoked_certificates()
                .map(|r| r.raw_serial_as_string().replace(':', ""))
                .collect();
            (
                crl.issuer().to_string(),
                number.first().copied().unwrap_or(0),
                revoked,
            )
        })
        .collect()
}

fn init_with(state: &Path, leaves: &[&[&str]]) {
    ok(state, &["init", "--trust-domain", "example.org"]);
    for args in leaves {
        ok(state, args);
    }
}

#[test]
fn renew_reissues_leaves_expiring_within_the_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    init_with(
        &state,
        &[
            &[
                "issue",
                "worker",
                "--name",
                "soon",
                "--days",
                "3",
                "--dns",
                "w.internal",
                "--ip",
                "10.0.0.7",
            ],
            &["issue", "set-service", "--days", "30"],
        ],
    );
    let soon = state.join("certs/worker-soon.pem");
    let before = facts(&soon);
    let key_before = std::fs::read(state.join("certs/worker-soon.key")).unwrap();
    let later_before = facts(&state.join("certs/set-service.pem")).serial;

    let out = ok(&state, &["renew", "--within", "7d", "--days", "20"]);
    let renewed: Vec<&str> = out.lines().filter(|l| l.starts_with("renewed ")).collect();
    assert_eq!(renewed.len(), 1, "{out}");
    let after = facts(&soon);
    assert!(
        renewed[0].starts_with(&format!(
            "renewed spiffe://example.org/worker/soon serial {} expires ",
            after.serial
        )),
        "{out}"
    );
    assert_ne!(after.serial, before.serial);
    assert_eq!(after.sans, before.sans, "same SPIFFE ID and SANs");
    assert!(after.sans.iter().any(|s| s.contains("w.internal")));
    assert_ne!(
        std::fs::read(state.join("certs/worker-soon.key")).unwrap(),
        key_before,
        "a fresh key"
    );
    assert_eq!(mode(&state.join("certs/worker-soon.key")), 0o600);
    // The one that expires later is untouched.
    assert_eq!(
        facts(&state.join("certs/set-service.pem")).serial,
        later_before
    );
    // No temporary files are left behind, and nothing secret is printed.
    let names: Vec<String> = std::fs::read_dir(state.join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    assert!(!out.contains("PRIVATE KEY"));

    // Hours and minutes work too; nothing else is due.
    assert!(ok(&state, &["renew", "--within", "48h"]).contains("nothing to renew"));
    assert!(ok(&state, &["renew", "--within", "90m"]).contains("nothing to renew"));
    for bad in ["7", "7w", "d", "-1d", ""] {
        let out = pki(&state, &["renew", "--within", bad]);
        assert!(!out.status.success(), "{bad:?} accepted");
        assert_eq!(
            stderr(&out).trim_end().lines().count(),
            1,
            "{}",
            stderr(&out)
        );
    }
    // --all renews everything.
    let out = ok(&state, &["renew", "--all"]);
    assert_eq!(out.lines().filter(|l| l.starts_with("renewed ")).count(), 2);
    assert_ne!(
        facts(&state.join("certs/set-service.pem")).serial,
        later_before
    );
}

#[test]
fn revoke_by_name_id_or_serial_writes_an_increasing_crl() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    init_with(
        &state,
        &[
            &["issue", "worker", "--name", "a"],
            &["issue", "worker", "--name", "b"],
            &["issue", "worker", "--name", "c"],
        ],
    );
    // `init` writes an empty CRL, so services can name tls.crl from the start.
    let first = crls(&state);
    assert_eq!(first.len(), 1);
    assert!(first[0].2.is_empty());

    let a = facts(&state.join("certs/worker-a.pem")).serial;
    let out = ok(&state, &["revoke", "worker-a"]);
    assert!(
        out.contains(&format!("revoked spiffe://example.org/worker/a serial {a}")),
        "{out}"
    );
    let after_a = crls(&state);
    assert_eq!(after_a[0].2, vec![a.clone()]);
    assert!(after_a[0].1 > first[0].1, "the CRL number increases");

    let b = facts(&state.join("certs/worker-b.pem")).serial;
    ok(&state, &["revoke", "spiffe://example.org/worker/b"]);
    // An old certificate that was replaced since can still be revoked by serial.
    let c_old = facts(&state.join("certs/worker-c.pem")).serial;
    ok(&state, &["issue", "worker", "--name", "c", "--force"]);
    let upper = c_old.to_uppercase();
    ok(&state, &["revoke", &upper]);
    let now = crls(&state);
    let mut revoked = now[0].2.clone();
    revoked.sort();
    let mut expected = vec![a.clone(), b, c_old];
    expected.sort();
    assert_eq!(revoked, expected);
    assert!(now[0].1 > after_a[0].1);

    // Revoked by name, an identity loses its earlier, still valid
    // certificates too (the leaked key may be the one renewed away).
    ok(&state, &["issue", "worker", "--name", "d"]);
    let d_old = facts(&state.join("certs/worker-d.pem")).serial;
    ok(&state, &["issue", "worker", "--name", "d", "--force"]);
    let d_new = facts(&state.join("certs/worker-d.pem")).serial;
    let out = ok(&state, &["revoke", "worker-d"]);
    assert!(out.contains(&format!("serial {d_new}")), "{out}");
    assert!(
        out.contains(&format!("serial {d_old} (an earlier certificate")),
        "{out}"
    );
    let listed = &crls(&state)[0].2;
    assert!(
        listed.contains(&d_old) && listed.contains(&d_new),
        "{listed:?}"
    );

    // Revoking again is harmless; unknown names and serials are refused.
    assert!(ok(&state, &["revoke", "worker-a"]).contains("already revoked"));
    for unknown in [
        "worker-zz",
        "spiffe://example.org/worker/zz",
        "00aabbccdd",
        "../ca/ca",
    ] {
        let out = pki(&state, &["revoke", unknown]);
        assert!(!out.status.success(), "{unknown} accepted");
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("no certificate"), "{err}");
    }
    // `list` marks revoked leaves; `renew` leaves them alone.
    let list = ok(&state, &["list"]);
    let line = list.lines().find(|l| l.contains("worker/a")).unwrap();
    assert!(line.contains("REVOKED"), "{line}");
    let out = pki(&state, &["renew", "--all"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("skipped"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("worker/a "), "{}", stdout(&out));
    assert_eq!(facts(&state.join("certs/worker-a.pem")).serial, a);
    // `pki crl` refreshes the CRL with a new number and the same entries.
    let before = crls(&state);
    ok(&state, &["crl"]);
    let after = crls(&state);
    assert!(after[0].1 > before[0].1);
    assert_eq!(after[0].2, before[0].2);
}

#[test]
fn rotate_ca_trusts_both_until_every_leaf_moved_then_drops_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    init_with(
        &state,
        &[
            &["issue", "set-service"],
            &["issue", "worker", "--name", "a"],
            &["issue", "worker", "--name", "gone"],
        ],
    );
    let old_ca = facts(&state.join("ca/ca.pem")).subject;
    ok(&state, &["revoke", "worker-gone"]);

    ok(&state, &["rotate-ca"]);
    let new_ca = facts(&state.join("ca/ca.pem")).subject;
    assert_ne!(new_ca, old_ca, "the CAs have different names");
    assert_eq!(facts(&state.join("ca/previous/ca.pem")).subject, old_ca);
    assert_eq!(mode(&state.join("ca/previous/ca.key")), 0o600);
    assert_eq!(pem_blocks(&state.join("ca/bundle.pem")).len(), 2);
    let issuers: Vec<String> = crls(&state).into_iter().map(|c| c.0).collect();
    assert_eq!(issuers, vec![new_ca.clone(), old_ca.clone()]);
    let list = ok(&state, &["list"]);
    assert!(list.contains("previous CA, rotating out"), "{list}");
    let line = list.lines().find(|l| l.contains("worker/a")).unwrap();
    assert!(line.contains(" previous "), "{line}");

    // One rotation at a time; and not finished while leaves use the old CA.
    let again = pki(&state, &["rotate-ca"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already under way"),
        "{}",
        stderr(&again)
    );
    let early = pki(&state, &["rotate-ca", "--finish"]);
    assert!(!early.status.success());
    let err = stderr(&early);
    assert!(
        err.contains("set-service") && err.contains("worker-a"),
        "{err}"
    );
    assert!(
        !err.contains("worker-gone"),
        "revoked leaves do not count: {err}"
    );

    let out = ok(&state, &["renew", "--all"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("renewed ")).count(),
        2,
        "{out}"
    );
    for leaf in ["set-service", "worker-a"] {
        assert_eq!(
            facts(&state.join(format!("certs/{leaf}.pem"))).issuer,
            new_ca
        );
    }
    let list = ok(&state, &["list"]);
    let line = list.lines().find(|l| l.contains("worker/a")).unwrap();
    assert!(line.contains(" current "), "{line}");

    ok(&state, &["rotate-ca", "--finish"]);
    let bundle = pem_blocks(&state.join("ca/bundle.pem"));
    assert_eq!(bundle.len(), 1);
    assert_eq!(facts(&state.join("ca/bundle.pem")).subject, new_ca);
    let issuers: Vec<String> = crls(&state).into_iter().map(|c| c.0).collect();
    assert_eq!(issuers, vec![new_ca]);
    assert!(!state.join("ca/previous").exists());
    let none = pki(&state, &["rotate-ca", "--finish"]);
    assert!(!none.status.success());
    assert!(
        stderr(&none).contains("no CA rotation"),
        "{}",
        stderr(&none)
    );
    // A second rotation can start now.
    ok(&state, &["rotate-ca"]);
}

/// Between `renew` replacing a key and its certificate, a service that
/// reloads sees a key that does not match the certificate: both config
/// builders refuse it (so the service keeps its previous config).
#[test]
fn a_new_key_with_the_old_certificate_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    init_with(&state, &[&["issue", "set-service"]]);
    let old_cert = dir.path().join("old.pem");
    std::fs::copy(state.join("certs/set-service.pem"), &old_cert).unwrap();
    ok(&state, &["renew", "--all"]);
    let mixed = tokenvault_tls::TlsFiles {
        cert: old_cert,
        key: state.join("certs/set-service.key"),
        ca: state.join("ca/bundle.pem"),
        crl: Some(state.join("ca/crl.pem")),
    };
    let err = tokenvault_tls::server_config(&mixed, "example.org").unwrap_err();
    assert!(err.to_string().contains("key"), "{err}");
    let err = tokenvault_tls::client_config(
        &mixed,
        "example.org",
        tokenvault_tls::IdentityPattern::Role(tokenvault_tls::Role::GetService),
    )
    .unwrap_err();
    assert!(err.to_string().contains("key"), "{err}");
    // The renewed pair itself loads.
    let renewed = tokenvault_tls::TlsFiles {
        cert: state.join("certs/set-service.pem"),
        ..mixed
    };
    tokenvault_tls::server_config(&renewed, "example.org").unwrap();
}
