//! Talking to a PKCS#11 module: loading and initialising it once per
//! process, choosing the configured token, logging in, and finding the
//! token-encryption key by label and checking it.
//!
//! Holds the loaded modules for the life of the process (a module is
//! initialised once and never finalised, so several users in one process
//! share it). The PIN passes through [`login`] only; nothing here logs it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::PublicKeyComponents;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use tokenvault_seal::{ENCRYPTED_KEY_LEN, kid_from_spki_der};

use super::{Pkcs11Config, Pkcs11Error};

/// Every module loaded in this process, by path.
static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());

/// The one mechanism the key is used with: RSA-OAEP with SHA-256,
/// MGF1-SHA-256 and an empty label, i.e. JWE's `RSA-OAEP-256`.
pub(super) fn oaep_sha256() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    ))
}

/// A failed call, for messages: `C_Login returned PinIncorrect`.
pub(super) fn describe(e: &Error) -> String {
    match e {
        Error::Pkcs11(rv, function) => format!("C_{function:?} returned {rv:?}"),
        other => other.to_string(),
    }
}

/// The module at `path`, loaded and initialised once per process.
pub(super) fn module(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    let mut modules = MODULES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, loaded)) = modules.iter().find(|(p, _)| p == path) {
        return Ok(loaded.clone());
    }
    let fail = |reason: String| Pkcs11Error::Module {
        path: path.to_owned(),
        reason,
    };
    let pkcs11 = Pkcs11::new(path).map_err(|e| fail(format!("cannot load it: {e}")))?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Initialised by someone else in this process: share it.
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(format!("cannot initialise it: {}", describe(&e)))),
    }
    modules.push((path.to_owned(), pkcs11.clone()));
    Ok(pkcs11)
}

/// The slot of the one token that `slot` and `token_label` describe.
pub(super) fn find_slot(pkcs11: &Pkcs11, config: &Pkcs11Config) -> Result<Slot, Pkcs11Error> {
    let wanted = config.token_description();
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(|e| Pkcs11Error::Token(format!("cannot list slots: {}", describe(&e))))?;
    let mut present = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let info = pkcs11.get_token_info(slot).map_err(|e| {
            Pkcs11Error::Token(format!(
                "slot {}: cannot read the token: {}",
                slot.id(),
                describe(&e)
            ))
        })?;
        let label = info.label().trim_end().to_owned();
        let slot_ok = config.slot.is_none_or(|id| id == slot.id());
        let label_ok = config.token_label.as_deref().is_none_or(|l| l == label);
        if slot_ok && label_ok {
            matching.push((slot, info));
        }
        present.push(format!("slot {} {label:?}", slot.id()));
    }
    match matching.as_slice() {
        [(slot, info)] if !info.token_initialized() || !info.user_pin_initialized() => {
            Err(Pkcs11Error::Token(format!(
                "{wanted} (slot {}) has no user PIN set up; initialise the token and its user PIN first",
                slot.id()
            )))
        }
        [(slot, _)] => Ok(*slot),
        [] => Err(Pkcs11Error::Token(format!(
            "{wanted} is not in this module; tokens present: {}",
            if present.is_empty() {
                "none".to_owned()
            } else {
                present.join(", ")
            }
        ))),
        several => Err(Pkcs11Error::Token(format!(
            "{} tokens match {wanted}; set slot to choose one",
            several.len()
        ))),
    }
}

/// Logs the user in on `session` (and so on every session of this process
/// with the token). Already logged in is fine.
pub(super) fn login(session: &Session, pin: &str) -> Result<(), Pkcs11Error> {
    let pin = AuthPin::from(pin);
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(Error::Pkcs11(RvError::PinIncorrect, _)) => Err(Pkcs11Error::Pin(
            "the token refused the PIN (CKR_PIN_INCORRECT); check pin_file".to_owned(),
        )),
        Err(Error::Pkcs11(RvError::PinLocked, _)) => Err(Pkcs11Error::Pin(
            "the user PIN is locked (CKR_PIN_LOCKED); the token's security officer must reset it"
                .to_owned(),
        )),
        Err(e) => Err(Pkcs11Error::Pin(format!("login failed: {}", describe(&e)))),
    }
}

/// The private key labelled `label` (one RSA-4096 decryption key, sensitive,
/// not extractable)
/// and its key id, computed from its public modulus and exponent. A public
/// key object with the same label, if there is one, must match it.
pub(super) fn find_key(
    session: &Session,
    label: &str,
    token: &str,
) -> Result<(ObjectHandle, String), Pkcs11Error> {
    let key_err = |what: String| Pkcs11Error::Key(format!("{what} (label {label:?}, {token})"));
    let call_err = |e: Error| key_err(describe(&e));
    let private = find_by_label(session, ObjectClass::PRIVATE_KEY, label).map_err(call_err)?;
    let handle = match private.as_slice() {
        [one] => *one,
        [] => {
            return Err(key_err(
                "no private key with this label; check key_label, or create the key with `get-service pkcs11-keygen`".to_owned(),
            ));
        }
        several => {
            return Err(key_err(format!(
                "{} private keys have this label; labels must be unique",
                several.len()
            )));
        }
    };
    let facts = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::Decrypt,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
            ],
        )
        .map_err(call_err)?;
    let mut rsa = false;
    let (mut decrypt, mut sensitive, mut extractable) = (false, false, true);
    let (mut n, mut e) = (Vec::new(), Vec::new());
    for fact in facts {
        match fact {
            Attribute::KeyType(t) => rsa = t == KeyType::RSA,
            Attribute::Decrypt(b) => decrypt = b,
            Attribute::Sensitive(b) => sensitive = b,
            Attribute::Extractable(b) => extractable = b,
            Attribute::Modulus(v) => n = v,
            Attribute::PublicExponent(v) => e = v,
            _ => {}
        }
    }
    let (n, e) = (strip_zeros(&n), strip_zeros(&e));
    if !rsa {
        return Err(key_err("not an RSA key".to_owned()));
    }
    if n.len() != ENCRYPTED_KEY_LEN {
        return Err(key_err(format!(
            "an RSA key of {} bits; token-encryption keys must be RSA-{}",
            n.len() * 8,
            ENCRYPTED_KEY_LEN * 8
        )));
    }
    if !decrypt {
        return Err(key_err(
            "CKA_DECRYPT is false: the key may not decrypt".to_owned(),
        ));
    }
    if !sensitive {
        return Err(key_err(
            "CKA_SENSITIVE is false: the token would reveal the private key; make a sensitive key"
                .to_owned(),
        ));
    }
    if extractable {
        return Err(key_err(
            "CKA_EXTRACTABLE is true: the token could export the private key (wrapped); make a \
             key that is not extractable (get-service pkcs11-keygen does)"
                .to_owned(),
        ));
    }
    check_public_twin(session, label, n, e).map_err(key_err)?;
    let kid = kid_from_components(n, e).map_err(key_err)?;
    Ok((handle, kid))
}

/// Refuses a mechanism the module cannot do with this key (SoftHSM 2.6
/// refuses OAEP with SHA-256 in `C_DecryptInit`), by decrypting a block of
/// zeros: `C_DecryptInit` must succeed; `C_Decrypt` failing is expected.
pub(super) fn check_mechanism(session: &Session, key: ObjectHandle) -> Result<(), Pkcs11Error> {
    match session.decrypt(&oaep_sha256(), key, &[0u8; ENCRYPTED_KEY_LEN]) {
        Err(e @ Error::Pkcs11(_, cryptoki::context::Function::DecryptInit)) => {
            Err(Pkcs11Error::Key(format!(
                "the token cannot decrypt with CKM_RSA_PKCS_OAEP, SHA-256 and MGF1-SHA-256 ({})",
                describe(&e)
            )))
        }
        _ => Ok(()),
    }
}

/// Handles of the objects of `class` labelled `label`.
pub(super) fn find_by_label(
    session: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<Vec<ObjectHandle>, Error> {
    session.find_objects(&[
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
}

/// A public key object with this label, if any, must hold the same `n` and `e`.
fn check_public_twin(session: &Session, label: &str, n: &[u8], e: &[u8]) -> Result<(), String> {
    let public =
        find_by_label(session, ObjectClass::PUBLIC_KEY, label).map_err(|e| describe(&e))?;
    for handle in public {
        let (pn, pe) = public_components(session, handle).map_err(|e| describe(&e))?;
        if pn != n || pe != e {
            return Err("the public key with this label does not match the private key".to_owned());
        }
    }
    Ok(())
}

/// A public key object's modulus and exponent, without leading zeros.
pub(super) fn public_components(
    session: &Session,
    handle: ObjectHandle,
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let (mut n, mut e) = (Vec::new(), Vec::new());
    for fact in session.get_attributes(
        handle,
        &[AttributeType::Modulus, AttributeType::PublicExponent],
    )? {
        match fact {
            Attribute::Modulus(v) => n = strip_zeros(&v).to_vec(),
            Attribute::PublicExponent(v) => e = strip_zeros(&v).to_vec(),
            _ => {}
        }
    }
    Ok((n, e))
}

/// The DER `SubjectPublicKeyInfo` of the RSA public key (`n`, `e`).
pub(super) fn spki_der(n: &[u8], e: &[u8]) -> Result<Vec<u8>, String> {
    PublicKeyComponents { n, e }
        .as_der()
        .map(|der| der.as_ref().to_vec())
        .map_err(|_| "its public modulus and exponent do not form an RSA public key".to_owned())
}

/// The key id (RFC 7638 thumbprint, as `tokenvault-seal` computes it) of the
/// RSA public key (`n`, `e`).
pub(super) fn kid_from_components(n: &[u8], e: &[u8]) -> Result<String, String> {
    kid_from_spki_der(&spki_der(n, e)?).map_err(|e| e.to_string())
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}
