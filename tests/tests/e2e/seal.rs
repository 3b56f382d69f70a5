//! Sealing and structural validation, without any private-key code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::fs::File;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use tokenvault_pki::{EncryptionKeyPair, PUBLIC_MODE, write_file};
use tokenvault_seal::{MAX_SEALED_TOKEN_LEN, PublicKeySet, SealError, SealedToken, thumbprint};

type R = Result<(), Box<dyn Error>>;

const ACCOUNT: &str = "alice@example.com";
const PROVIDER: &str = "google";
const PLAINTEXT: &[u8] = b"1//0refresh-token-SECRET-value";

fn pair() -> &'static EncryptionKeyPair {
    static PAIR: OnceLock<EncryptionKeyPair> = OnceLock::new();
    PAIR.get_or_init(|| EncryptionKeyPair::generate().expect("keygen"))
}

fn second_pair() -> &'static EncryptionKeyPair {
    static PAIR: OnceLock<EncryptionKeyPair> = OnceLock::new();
    PAIR.get_or_init(|| EncryptionKeyPair::generate().expect("keygen"))
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn sealed() -> Result<(String, PublicKeySet), SealError> {
    let keys = PublicKeySet::from_pems([&pair().public_pem])?;
    Ok((keys.seal(ACCOUNT, PROVIDER, PLAINTEXT)?, keys))
}

/// Replaces part `i` of a token.
fn with_part(token: &str, i: usize, part: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[i] = part;
    parts.join(".")
}

/// Re-encodes the protected header after editing its JSON.
fn with_header(token: &str, edit: impl Fn(String) -> String) -> String {
    let json = String::from_utf8(B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    with_part(token, 0, &B64.encode(edit(json)))
}

/// Parses, expects an error, and checks that its message leaks nothing.
fn parse_err(token: &str) -> SealError {
    let e = SealedToken::parse(token).expect_err("must be refused");
    assert_no_leak(&e.to_string(), token);
    e
}

fn assert_no_leak(msg: &str, token: &str) {
    assert!(
        !msg.contains(std::str::from_utf8(PLAINTEXT).unwrap()),
        "{msg}"
    );
    for part in token.split('.').filter(|p| p.len() > 8) {
        assert!(!msg.contains(part), "message contains token bytes: {msg}");
    }
}

#[test]
fn pki_names_keys_by_the_seal_thumbprint() -> R {
    let public = RsaPublicKey::from_public_key_pem(&pair().public_pem)?;
    assert_eq!(thumbprint(&public), pair().kid);
    let der = rsa::pkcs8::EncodePublicKey::to_public_key_der(&public)?;
    assert_eq!(
        tokenvault_seal::kid_from_spki_der(der.as_bytes())?,
        pair().kid
    );
    Ok(())
}

#[test]
fn seal_produces_the_documented_format() -> R {
    let (token, keys) = sealed()?;
    assert_eq!(keys.sealing_kid(), pair().kid);
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 5);
    let header = String::from_utf8(B64.decode(parts[0])?)?;
    assert_eq!(
        header,
        format!(
            r#"{{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"{}","account":"{ACCOUNT}","provider":"{PROVIDER}"}}"#,
            pair().kid
        )
    );
    assert_eq!(B64.decode(parts[1])?.len(), 512);
    assert_eq!(B64.decode(parts[2])?.len(), 12);
    assert_eq!(B64.decode(parts[3])?.len(), PLAINTEXT.len());
    assert_eq!(B64.decode(parts[4])?.len(), 16);
    assert!(!token.contains("SECRET"));

    let parsed = SealedToken::parse(&token)?;
    assert_eq!(parsed.kid(), pair().kid);
    assert_eq!(parsed.account(), ACCOUNT);
    assert_eq!(parsed.provider(), PROVIDER);
    assert_eq!(parsed.aad(), parts[0].as_bytes());
    parsed.check_context(ACCOUNT, PROVIDER)?;
    let dbg = format!("{parsed:?}");
    assert_no_leak(&dbg, &token);

    // Fresh CEK and IV every time.
    let again = keys.seal(ACCOUNT, PROVIDER, PLAINTEXT)?;
    assert_ne!(token, again);
    Ok(())
}

#[test]
fn check_context_names_the_field() -> R {
    let (token, _) = sealed()?;
    let parsed = SealedToken::parse(&token)?;
    assert!(matches!(
        parsed.check_context("mallory@example.com", PROVIDER),
        Err(SealError::ContextMismatch { field: "account" })
    ));
    assert!(matches!(
        parsed.check_context(ACCOUNT, "github"),
        Err(SealError::ContextMismatch { field: "provider" })
    ));
    Ok(())
}

#[test]
fn structural_errors_are_distinct() -> R {
    let (token, _) = sealed()?;
    let parts: Vec<&str> = token.split('.').collect();

    // Part count.
    for bad in [
        parts[..4].join("."),
        format!("{token}.x"),
        String::new(),
        "garbage".into(),
    ] {
        assert!(matches!(parse_err(&bad), SealError::Malformed(_)), "{bad}");
    }
    // Base64url.
    let bad_ct = format!("{}*", &parts[3][..parts[3].len() - 1]);
    assert!(matches!(
        parse_err(&with_part(&token, 3, &bad_ct)),
        SealError::Malformed(_)
    ));
    let padded_iv = format!("{}==", &parts[2][..14]);
    assert!(matches!(
        parse_err(&with_part(&token, 2, &padded_iv)),
        SealError::Malformed(_)
    ));
    assert!(matches!(
        parse_err(&with_part(&token, 0, "e30=")),
        SealError::Malformed(_)
    ));
    // Header JSON.
    for json in [
        "{not json",
        r#"["RSA-OAEP-256","A256GCM","k","a","p"]"#,
        "null",
        r#"{"alg":1}"#,
    ] {
        let bad = with_part(&token, 0, &B64.encode(json));
        assert!(matches!(parse_err(&bad), SealError::Malformed(_)), "{json}");
    }
    let dup = with_header(&token, |h| h.replacen("{", r#"{"alg":"RSA-OAEP-256","#, 1));
    assert!(matches!(parse_err(&dup), SealError::Malformed(_)));
    // Algorithms and extensions.
    let alg = with_header(&token, |h| h.replace("RSA-OAEP-256", "RSA-OAEP"));
    assert!(matches!(
        parse_err(&alg),
        SealError::UnsupportedAlgorithm(_)
    ));
    let alg = with_header(&token, |h| h.replace(r#""alg":"RSA-OAEP-256","#, ""));
    assert!(matches!(
        parse_err(&alg),
        SealError::UnsupportedAlgorithm(_)
    ));
    let enc = with_header(&token, |h| h.replace("A256GCM", "A128GCM"));
    assert!(matches!(
        parse_err(&enc),
        SealError::UnsupportedAlgorithm(_)
    ));
    let crit = with_header(&token, |h| h.replace("}", r#","crit":["exp"],"exp":1}"#));
    assert!(matches!(
        parse_err(&crit),
        SealError::UnsupportedAlgorithm(_)
    ));
    let zip = with_header(&token, |h| h.replace("}", r#","zip":"DEF"}"#));
    assert!(matches!(
        parse_err(&zip),
        SealError::UnsupportedAlgorithm(_)
    ));
    // Header fields.
    let no_account = with_header(&token, |h| h.replace(ACCOUNT, ""));
    assert!(matches!(parse_err(&no_account), SealError::Malformed(_)));
    let bad_kid = with_header(&token, |h| h.replace(&pair().kid, "a/b"));
    assert!(matches!(parse_err(&bad_kid), SealError::Malformed(_)));
    // Truncation.
    let cut_tag = &token[..token.len() - 5];
    assert!(matches!(parse_err(cut_tag), SealError::Truncated(_)));
    let no_tag = format!("{}.", parts[..4].join("."));
    assert!(matches!(parse_err(&no_tag), SealError::Truncated(_)));
    let no_ct = with_part(&token, 3, "");
    assert!(matches!(parse_err(&no_ct), SealError::Truncated(_)));
    let short_key = with_part(&token, 1, &parts[1][..600]);
    assert!(matches!(parse_err(&short_key), SealError::Truncated(_)));
    let long_iv = with_part(&token, 2, &B64.encode([0u8; 16]));
    assert!(matches!(parse_err(&long_iv), SealError::Truncated(_)));
    // Size.
    let huge = with_part(&token, 3, &"A".repeat(MAX_SEALED_TOKEN_LEN));
    let e = parse_err(&huge);
    assert!(
        matches!(e, SealError::TooLarge { len, max } if len == huge.len() && max == MAX_SEALED_TOKEN_LEN)
    );
    Ok(())
}

#[test]
fn unknown_header_members_and_any_order_are_accepted() -> R {
    let (token, _) = sealed()?;
    let reordered = with_header(&token, |h| {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&h).unwrap();
        let mut s = String::from(r#"{"x-extra":{"a":[1,2]},"#);
        for k in ["provider", "account", "kid", "enc", "alg"] {
            s.push_str(&format!("{}:{},", serde_json::json!(k), v[k]));
        }
        s.pop();
        s.push('}');
        s
    });
    let parsed = SealedToken::parse(&reordered)?;
    parsed.check_context(ACCOUNT, PROVIDER)?;
    Ok(())
}

#[test]
fn seal_refuses_bad_input() -> R {
    let keys = PublicKeySet::from_pems([&pair().public_pem])?;
    assert!(matches!(
        keys.seal("", PROVIDER, PLAINTEXT),
        Err(SealError::InvalidInput(_))
    ));
    assert!(matches!(
        keys.seal(ACCOUNT, "", PLAINTEXT),
        Err(SealError::InvalidInput(_))
    ));
    assert!(matches!(
        keys.seal(ACCOUNT, PROVIDER, b""),
        Err(SealError::InvalidInput(_))
    ));
    let big = vec![b'x'; MAX_SEALED_TOKEN_LEN];
    assert!(matches!(
        keys.seal(ACCOUNT, PROVIDER, &big),
        Err(SealError::TooLarge { .. })
    ));
    // The largest plaintext that fits yields a token of at most the limit.
    let mut n = MAX_SEALED_TOKEN_LEN;
    let token = loop {
        n -= 1;
        if let Ok(t) = keys.seal(ACCOUNT, PROVIDER, &big[..n]) {
            break t;
        }
    };
    assert!(token.len() <= MAX_SEALED_TOKEN_LEN && token.len() > MAX_SEALED_TOKEN_LEN - 4);
    SealedToken::parse(&token)?;
    Ok(())
}

#[test]
fn load_dir_picks_newest_and_explicit_sealing_key() -> R {
    let dir = tempfile::tempdir()?;
    let (a, b) = (pair(), second_pair());
    for p in [a, b] {
        write_file(
            &dir.path().join(format!("{}.pem", p.kid)),
            p.public_pem.as_bytes(),
            PUBLIC_MODE,
            false,
        )?;
    }
    std::fs::write(dir.path().join("README.txt"), "not a key")?;
    std::fs::write(dir.path().join(".hidden.pem"), "not a key")?;
    std::fs::create_dir(dir.path().join("sub.pem"))?;
    let now = SystemTime::now();
    let set_mtime = |kid: &str, t: SystemTime| -> std::io::Result<()> {
        File::options()
            .write(true)
            .open(dir.path().join(format!("{kid}.pem")))?
            .set_modified(t)
    };
    set_mtime(&a.kid, now - Duration::from_secs(3600))?;
    set_mtime(&b.kid, now)?;
    let keys = PublicKeySet::load_dir(dir.path())?;
    assert_eq!(keys.sealing_kid(), b.kid);
    let mut kids = vec![a.kid.as_str(), b.kid.as_str()];
    kids.sort_unstable();
    assert_eq!(keys.kids(), kids);
    assert!(keys.contains(&a.kid) && !keys.contains("nope"));

    set_mtime(&a.kid, now + Duration::from_secs(60))?;
    assert_eq!(PublicKeySet::load_dir(dir.path())?.sealing_kid(), a.kid);
    // Same mtime: the greatest kid.
    set_mtime(&a.kid, now)?;
    let greatest = if a.kid > b.kid { &a.kid } else { &b.kid };
    assert_eq!(PublicKeySet::load_dir(dir.path())?.sealing_kid(), greatest);

    let keys = keys.with_sealing_kid(&a.kid)?;
    assert_eq!(keys.sealing_kid(), a.kid);
    let token = keys.seal(ACCOUNT, PROVIDER, PLAINTEXT)?;
    assert_eq!(SealedToken::parse(&token)?.kid(), a.kid);
    assert!(matches!(keys.with_sealing_kid("nope"), Err(SealError::UnknownKey(k)) if k == "nope"));
    Ok(())
}

#[test]
fn load_dir_refuses_bad_keys_naming_the_file() -> R {
    let rsa2048 = PrivateDecryptingKey::generate(KeySize::Rsa2048)?;
    let rsa2048 = pem("PUBLIC KEY", rsa2048.public_key().as_der()?.as_ref());
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)?;
    let ec = pem("PUBLIC KEY", ec.public_key().as_der()?.as_ref());
    let cases: [(&str, &str, &str); 4] = [
        ("small.pem", &rsa2048, "RSA-2048"),
        ("ec.pem", &ec, "not an RSA public key"),
        ("private.pem", pair().private_pem.as_str(), "private key"),
        ("junk.pem", "hello", "not an RSA public key"),
    ];
    for (name, contents, expect) in cases {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join(format!("{}.pem", pair().kid)),
            &pair().public_pem,
        )?;
        std::fs::write(dir.path().join(name), contents)?;
        let e = PublicKeySet::load_dir(dir.path()).expect_err(name);
        let msg = e.to_string();
        assert!(matches!(e, SealError::KeyLoad { .. }), "{msg}");
        assert!(msg.contains(name) && msg.contains(expect), "{msg}");
        assert!(!msg.contains("MII"), "{msg}");
    }
    let empty = tempfile::tempdir()?;
    assert!(matches!(
        PublicKeySet::load_dir(empty.path()),
        Err(SealError::KeyLoad { .. })
    ));
    assert!(matches!(
        PublicKeySet::load_dir(&empty.path().join("missing")),
        Err(SealError::KeyLoad { .. })
    ));
    // The same key twice.
    let dup = tempfile::tempdir()?;
    std::fs::write(dup.path().join("a.pem"), &pair().public_pem)?;
    std::fs::write(dup.path().join("b.pem"), &pair().public_pem)?;
    assert!(matches!(
        PublicKeySet::load_dir(dup.path()),
        Err(SealError::KeyLoad { .. })
    ));
    Ok(())
}

#[test]
fn debug_shows_only_kids() -> R {
    let keys = PublicKeySet::from_pems([&pair().public_pem])?;
    let dbg = format!("{keys:?}");
    assert!(dbg.contains(&pair().kid) && !dbg.contains("MII"), "{dbg}");
    Ok(())
}
