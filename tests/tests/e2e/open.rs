//! Opening sealed tokens: round trips, every refusal, key-file checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use tokenvault_opener::{OpenError, PrivateKeyRing};
use tokenvault_pki::{EncryptionKeyPair, PRIVATE_MODE, PUBLIC_MODE, write_file};
use tokenvault_seal::{MAX_SEALED_TOKEN_LEN, SealError};
use tokenvault_tests::keys::{ACCOUNT, Fixture, PLAINTEXT, PROVIDER, pair};

type R = Result<(), Box<dyn Error>>;

fn with_part(token: &str, i: usize, part: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[i] = part;
    parts.join(".")
}

fn with_header(token: &str, edit: impl Fn(String) -> String) -> String {
    let json = String::from_utf8(B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    with_part(token, 0, &B64.encode(edit(json)))
}

/// Flips one bit of byte `at` of decoded part `i`.
fn flip(token: &str, i: usize, at: usize) -> String {
    let mut bytes = B64.decode(token.split('.').nth(i).unwrap()).unwrap();
    bytes[at] ^= 0x01;
    with_part(token, i, &B64.encode(bytes))
}

/// Opens with the expected context, expects an error, checks it leaks nothing.
fn open_err(f: &Fixture, token: &str) -> OpenError {
    let e = f
        .ring
        .open(token, ACCOUNT, PROVIDER)
        .expect_err("must be refused");
    let msg = e.to_string();
    assert!(!msg.contains("SECRET"), "{msg}");
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!msg.contains(part), "message contains token bytes: {msg}");
    }
    e
}

#[test]
fn round_trip() -> R {
    let f = Fixture::new(&[pair()])?;
    assert_eq!(f.ring.kids(), vec![pair().kid.as_str()]);
    assert!(f.ring.contains(&pair().kid));
    let binary: Vec<u8> = (0..=255).collect();
    let max = vec![b'x'; 5000];
    for plaintext in [PLAINTEXT, b"x", &binary, &max] {
        let token = f.keys.seal(ACCOUNT, PROVIDER, plaintext)?;
        let opened = f.ring.open(&token, ACCOUNT, PROVIDER)?;
        assert_eq!(opened.as_slice(), plaintext);
    }
    let unicode = "ålice@exämple.com";
    let token = f.keys.seal(unicode, "any-oidc", PLAINTEXT)?;
    assert_eq!(
        f.ring.open(&token, unicode, "any-oidc")?.as_slice(),
        PLAINTEXT
    );
    Ok(())
}

#[test]
fn rotation_opens_under_old_and_new_keys() -> R {
    let new = EncryptionKeyPair::generate()?;
    let f = Fixture::new(&[pair(), &new])?;
    assert_eq!(f.ring.kids().len(), 2);
    for kid in [&pair().kid, &new.kid] {
        let keys = tokenvault_seal::PublicKeySet::load_dir(&f.dir.path().join("keys/public"))?
            .with_sealing_kid(kid)?;
        let token = keys.seal(ACCOUNT, PROVIDER, PLAINTEXT)?;
        assert_eq!(
            f.ring.open(&token, ACCOUNT, PROVIDER)?.as_slice(),
            PLAINTEXT
        );
    }
    Ok(())
}

#[test]
fn context_is_checked_before_decrypting() -> R {
    let f = Fixture::new(&[pair()])?;
    let token = f.keys.seal(ACCOUNT, PROVIDER, PLAINTEXT)?;
    let e = f
        .ring
        .open(&token, "bob@example.com", PROVIDER)
        .unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::Invalid(SealError::ContextMismatch { field: "account" })
        ),
        "{e}"
    );
    let e = f.ring.open(&token, ACCOUNT, "github").unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::Invalid(SealError::ContextMismatch { field: "provider" })
        ),
        "{e}"
    );

    // The header copied onto another account's row: refused before decrypting.
    let moved = with_header(&token, |h| h.replace(ACCOUNT, "bob@example.com"));
    assert!(matches!(
        open_err(&f, &moved),
        OpenError::Invalid(SealError::ContextMismatch { field: "account" })
    ));
    // Header rewritten to match the row it was copied to: the AAD no longer
    // authenticates.
    let e = f
        .ring
        .open(&moved, "bob@example.com", PROVIDER)
        .unwrap_err();
    assert!(matches!(e, OpenError::DecryptionFailed), "{e}");
    Ok(())
}

#[test]
fn every_refusal_is_distinct() -> R {
    let f = Fixture::new(&[pair()])?;
    let token = f.keys.seal(ACCOUNT, PROVIDER, PLAINTEXT)?;
    let parts: Vec<&str> = token.split('.').collect();

    let e = open_err(&f, &parts[..4].join("."));
    assert!(
        matches!(e, OpenError::Invalid(SealError::Malformed(_))),
        "not 5 parts: {e}"
    );
    let e = open_err(&f, &with_part(&token, 3, &format!("{}!", &parts[3][1..])));
    assert!(
        matches!(e, OpenError::Invalid(SealError::Malformed(_))),
        "bad base64: {e}"
    );
    let e = open_err(&f, &with_part(&token, 0, &B64.encode("{\"alg\":")));
    assert!(
        matches!(e, OpenError::Invalid(SealError::Malformed(_))),
        "bad header JSON: {e}"
    );
    let e = open_err(
        &f,
        &with_header(&token, |h| h.replace("RSA-OAEP-256", "RSA1_5")),
    );
    assert!(
        matches!(e, OpenError::Invalid(SealError::UnsupportedAlgorithm(_))),
        "wrong alg: {e}"
    );
    let e = open_err(
        &f,
        &with_header(&token, |h| h.replace("A256GCM", "A256CBC-HS512")),
    );
    assert!(
        matches!(e, OpenError::Invalid(SealError::UnsupportedAlgorithm(_))),
        "wrong enc: {e}"
    );
    let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let e = open_err(
        &f,
        &with_header(&token, |h| h.replace(&pair().kid, unknown)),
    );
    assert!(
        matches!(&e, OpenError::Invalid(SealError::UnknownKey(k)) if k == unknown),
        "unknown kid: {e}"
    );
    // A header rewritten to name another account: refused before decrypting.
    let e = open_err(
        &f,
        &with_header(&token, |h| h.replace(ACCOUNT, "mallory@example.com")),
    );
    assert!(
        matches!(e, OpenError::Invalid(SealError::ContextMismatch { .. })),
        "tampered header: {e}"
    );
    // A header changed in a way that still parses and still names this row
    // (an extra member) is caught by AES-GCM, which authenticates the header:
    // cryptographically indistinguishable from tampered ciphertext, so it is
    // DecryptionFailed (see docs/ARCHITECTURE.md).
    let e = open_err(
        &f,
        &with_header(&token, |h| h.replacen('{', "{\"x\":1,", 1)),
    );
    assert!(
        matches!(e, OpenError::DecryptionFailed),
        "header tampered within the context: {e}"
    );
    let e = open_err(&f, &token[..token.len() - 6]);
    assert!(
        matches!(e, OpenError::Invalid(SealError::Truncated(_))),
        "cut tag: {e}"
    );
    let e = open_err(&f, &format!("{}.", parts[..4].join(".")));
    assert!(
        matches!(e, OpenError::Invalid(SealError::Truncated(_))),
        "no tag: {e}"
    );
    let e = open_err(&f, &with_part(&token, 3, ""));
    assert!(
        matches!(e, OpenError::Invalid(SealError::Truncated(_))),
        "no ciphertext: {e}"
    );
    let huge = with_part(&token, 3, &"A".repeat(MAX_SEALED_TOKEN_LEN));
    let e = open_err(&f, &huge);
    assert!(
        matches!(e, OpenError::Invalid(SealError::TooLarge { .. })),
        "oversized: {e}"
    );

    // Tampering with any encrypted part: one error.
    for (what, i, at) in [
        ("ciphertext", 3, 0),
        ("ciphertext end", 3, PLAINTEXT.len() - 1),
        ("encrypted key", 1, 0),
        ("encrypted key middle", 1, 300),
        ("IV", 2, 5),
        ("tag", 4, 15),
    ] {
        let e = open_err(&f, &flip(&token, i, at));
        assert!(matches!(e, OpenError::DecryptionFailed), "{what}: {e}");
    }
    // A valid RSA-OAEP encryption of a key of the wrong length.
    let public = PublicEncryptingKey::from_der(
        &STANDARD.decode(
            pair()
                .public_pem
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )?,
    )?;
    let oaep = OaepPublicEncryptingKey::new(public)?;
    let mut out = vec![0u8; oaep.ciphertext_size()];
    let wrapped = oaep.encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 16], &mut out, None)?;
    let e = open_err(&f, &with_part(&token, 1, &B64.encode(wrapped)));
    assert!(matches!(e, OpenError::DecryptionFailed), "short CEK: {e}");
    Ok(())
}

#[test]
fn key_files_open_to_group_or_others_are_refused() -> R {
    for mode in [0o644, 0o640, 0o604, 0o660] {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(format!("{}.pem", pair().kid));
        write_file(&path, pair().private_pem.as_bytes(), mode, false)?;
        let e = PrivateKeyRing::load_dir(dir.path()).expect_err("mode");
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        assert!(!msg.contains("MII"), "{msg}");
    }
    // 0400 is fine.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join(format!("{}.pem", pair().kid));
    write_file(&path, pair().private_pem.as_bytes(), 0o400, false)?;
    PrivateKeyRing::load_dir(dir.path())?;
    Ok(())
}

#[test]
fn bad_key_files_are_refused_naming_the_file() -> R {
    let rsa2048 = PrivateDecryptingKey::generate(KeySize::Rsa2048)?;
    let der = rsa2048.as_der()?;
    let pem2048 = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der.as_ref())
    );
    let public_pem = pair().public_pem.clone();
    let cases: [(&str, &str, &str); 4] = [
        ("misnamed.pem", pair().private_pem.as_str(), "must be named"),
        ("small.pem", &pem2048, "RSA-2048"),
        ("public.pem", &public_pem, "no -----BEGIN PRIVATE KEY-----"),
        (
            "junk.pem",
            "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
            "base64",
        ),
    ];
    for (name, contents, expect) in cases {
        let dir = tempfile::tempdir()?;
        write_file(
            &dir.path().join(name),
            contents.as_bytes(),
            PRIVATE_MODE,
            false,
        )?;
        let msg = PrivateKeyRing::load_dir(dir.path())
            .expect_err(name)
            .to_string();
        assert!(msg.contains(name) && msg.contains(expect), "{msg}");
        assert!(!msg.contains("MII"), "{msg}");
    }
    let empty = tempfile::tempdir()?;
    write_file(&empty.path().join("notes.txt"), b"x", PUBLIC_MODE, false)?;
    assert!(PrivateKeyRing::load_dir(empty.path()).is_err());
    Ok(())
}

#[test]
fn debug_shows_only_kids_and_ring_is_shareable() -> R {
    fn shareable<T: Send + Sync>(_: &T) {}
    let f = Fixture::new(&[pair()])?;
    shareable(&f.ring);
    let dbg = format!("{:?}", f.ring);
    assert!(dbg.contains(&pair().kid) && !dbg.contains("MII"), "{dbg}");
    assert_eq!(
        fs::metadata(f.private_path(&pair().kid))?
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    Ok(())
}
