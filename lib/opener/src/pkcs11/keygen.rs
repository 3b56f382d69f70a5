//! Making the token-encryption key inside a PKCS#11 token: an RSA-4096 key
//! pair whose private half is sensitive and not extractable, and its public
//! half written as a `<kid>.pem` SPKI file for the sealers.
//!
//! Holds the PIN while logging in; no private key material ever reaches
//! this process.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use tokenvault_seal::{KEY_BITS, kid_from_spki_der};

use super::module::{
    check_mechanism, describe, find_by_label, find_key, find_slot, login, module,
    public_components, spki_der,
};
use super::{Pkcs11Config, Pkcs11Error};

/// Mode of the public key file written.
const PUBLIC_MODE: u32 = 0o644;
/// The public exponent, 65537.
const PUBLIC_EXPONENT: [u8; 3] = [1, 0, 1];

/// Generates an RSA-4096 key pair labelled `key_label` in the token that
/// `config` names (logging in with its PIN): the private half with
/// `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`, `CKA_DECRYPT` and
/// `CKA_EXTRACTABLE` false, so it never leaves the token. Writes the public
/// half to `<public_keys_dir>/<kid>.pem` (SPKI PEM, mode 0644, never
/// overwriting) and returns the kid. Refuses if a key with this label
/// exists. Blocks (RSA-4096 generation takes seconds).
pub fn generate_key(config: &Pkcs11Config, public_keys_dir: &Path) -> Result<String, Pkcs11Error> {
    config.validate().map_err(Pkcs11Error::Config)?;
    let pin = config.user_pin()?;
    let pkcs11 = module(&config.module)?;
    let slot = find_slot(&pkcs11, config)?;
    let token = config.token_description();
    let call = |what: &str, e: cryptoki::error::Error| {
        Pkcs11Error::Call(format!("{token}: {what}: {}", describe(&e)))
    };
    let session = pkcs11
        .open_rw_session(slot)
        .map_err(|e| call("cannot open a read-write session", e))?;
    login(&session, &pin)?;
    let label = config.key_label.as_bytes().to_vec();
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        if !find_by_label(&session, class, &config.key_label)
            .map_err(|e| call("cannot search the token", e))?
            .is_empty()
        {
            return Err(Pkcs11Error::Key(format!(
                "{token} already holds a key labelled {:?}; choose another key_label",
                config.key_label
            )));
        }
    }
    let public_template = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Encrypt(true),
        Attribute::ModulusBits((KEY_BITS as u64).into()),
        Attribute::PublicExponent(PUBLIC_EXPONENT.to_vec()),
        Attribute::Label(label.clone()),
    ];
    let private_template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Decrypt(true),
        Attribute::Sign(false),
        Attribute::Label(label),
    ];
    let (public, private) = session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &public_template,
            &private_template,
        )
        .map_err(|e| call("cannot generate an RSA-4096 key pair", e))?;
    let (n, e) = public_components(&session, public)
        .map_err(|e| call("cannot read the new public key", e))?;
    let der = spki_der(&n, &e).map_err(Pkcs11Error::Key)?;
    let kid = kid_from_spki_der(&der).map_err(|e| Pkcs11Error::Key(e.to_string()))?;
    // What get-service will check at start-up, checked now.
    let (found, found_kid) = find_key(&session, &config.key_label, &token)?;
    if found != private || found_kid != kid {
        return Err(Pkcs11Error::Key(
            "the new private key does not match its public key".to_owned(),
        ));
    }
    check_mechanism(&session, private)?;
    write_public_pem(&public_keys_dir.join(format!("{kid}.pem")), &der)?;
    Ok(kid)
}

/// `get-service pkcs11-keygen`: [`generate_key`] with the config's
/// `[pkcs11]` section (an error if there is none), writing the public key
/// into `public_keys_dir`, on the blocking thread pool.
pub async fn generate_configured_key(
    pkcs11: Option<&Pkcs11Config>,
    public_keys_dir: &Path,
) -> Result<String, Pkcs11Error> {
    let pkcs11 = pkcs11.cloned().ok_or_else(|| {
        Pkcs11Error::Config(
            "missing from the config; it names the module, token and key".to_owned(),
        )
    })?;
    let dir = public_keys_dir.to_owned();
    tokio::task::spawn_blocking(move || generate_key(&pkcs11, &dir))
        .await
        .map_err(|e| Pkcs11Error::Call(format!("key generation stopped: {e}")))?
}

/// Writes `der` as a `PUBLIC KEY` PEM file, refusing to overwrite.
fn write_public_pem(path: &Path, der: &[u8]) -> Result<(), Pkcs11Error> {
    let fail = |reason: String| Pkcs11Error::PublicKeyFile {
        path: path.to_owned(),
        reason,
    };
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PUBLIC_MODE)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail(e.to_string()))
}
