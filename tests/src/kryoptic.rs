//! A kryoptic PKCS#11 soft token for the PKCS#11 tests and bench.
//!
//! kryoptic (built by `scripts/build-kryoptic` into `target/kryoptic/`)
//! reads its configuration, and so where its token lives, from the
//! `KRYOPTIC_CONF` environment variable when the module is initialised.
//! Setting an environment variable in a running test is `unsafe` (and this
//! workspace forbids `unsafe`), so a test or bench that needs a token runs
//! itself again as a child process with `KRYOPTIC_CONF` naming a fresh token
//! in a temporary directory ([`run_test_with_token`], [`run_with_token`]);
//! the child initialises the token (SO PIN, user PIN) through `cryptoki`.
//!
//! Holds throwaway PINs and tokens in temporary directories only.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use tokenvault_opener::pkcs11::Pkcs11Config;

/// Set (to anything) to make a missing kryoptic library a failure, not a
/// skip; `.ci/run` sets it.
pub const ENV_REQUIRE_PKCS11: &str = "TOKENVAULT_REQUIRE_PKCS11";
/// Overrides where the kryoptic library is looked for.
pub const ENV_KRYOPTIC_LIB: &str = "TOKENVAULT_KRYOPTIC_LIB";
/// kryoptic's own configuration variable.
const ENV_KRYOPTIC_CONF: &str = "KRYOPTIC_CONF";
/// Set in the child process: what it runs.
const ENV_CHILD: &str = "TOKENVAULT_KRYOPTIC_CHILD";

/// The token's slot in the generated kryoptic configuration.
pub const SLOT: u64 = 1;
/// The token's label.
pub const TOKEN_LABEL: &str = "tokenvault-test";
/// The security officer's PIN.
pub const SO_PIN: &str = "so-pin-for-tests-only";
/// The user PIN (also in [`SoftToken::pin_file`]).
pub const USER_PIN: &str = "user-pin-for-tests-only";

/// The kryoptic module, if the file exists: `$TOKENVAULT_KRYOPTIC_LIB`, or
/// else `target/kryoptic/lib/libkryoptic_pkcs11.so` (where
/// `scripts/build-kryoptic` puts it).
pub fn library() -> Option<PathBuf> {
    let path = match std::env::var_os(ENV_KRYOPTIC_LIB) {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/kryoptic/lib/libkryoptic_pkcs11.so"),
    };
    path.is_file().then_some(path)
}

/// An initialised kryoptic token (slot [`SLOT`], label [`TOKEN_LABEL`],
/// user PIN [`USER_PIN`]) in the directory `KRYOPTIC_CONF` points into.
#[derive(Debug)]
pub struct SoftToken {
    /// The kryoptic module.
    pub library: PathBuf,
    /// The token's directory (its sqlite file and the PIN file).
    pub dir: PathBuf,
    /// The user PIN, mode 0600.
    pub pin_file: PathBuf,
    pkcs11: Pkcs11,
}

impl SoftToken {
    /// A `[pkcs11]` section for the key labelled `key_label` in this token,
    /// found by its label, with the PIN from [`pin_file`](Self::pin_file).
    pub fn config(&self, key_label: &str) -> Pkcs11Config {
        Pkcs11Config {
            module: self.library.clone(),
            slot: None,
            token_label: Some(TOKEN_LABEL.to_owned()),
            key_label: key_label.to_owned(),
            pin_file: Some(self.pin_file.clone()),
            pin: None,
            sessions: 4,
        }
    }

    /// Writes `contents` to a file in the token's directory with `mode`.
    pub fn write_file(&self, name: &str, contents: &str, mode: u32) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        file.write_all(contents.as_bytes())?;
        Ok(path)
    }

    /// Reads, as the user, the private key labelled `label`: its
    /// `CKA_SENSITIVE`, `CKA_EXTRACTABLE`, `CKA_NEVER_EXTRACTABLE`, and
    /// whether the token hands out `CKA_PRIVATE_EXPONENT`.
    pub fn private_key_facts(&self, label: &str) -> anyhow::Result<PrivateKeyFacts> {
        let session = self.pkcs11.open_ro_session(slot()?)?;
        match session.login(UserType::User, Some(&AuthPin::from(USER_PIN))) {
            Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(e.into()),
        }
        let found = session.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
        let [key] = found.as_slice() else {
            bail!("{} private keys labelled {label:?}", found.len());
        };
        let mut facts = PrivateKeyFacts::default();
        for a in session.get_attributes(
            *key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
            ],
        )? {
            match a {
                Attribute::Sensitive(b) => facts.sensitive = b,
                Attribute::Extractable(b) => facts.extractable = b,
                Attribute::NeverExtractable(b) => facts.never_extractable = b,
                _ => {}
            }
        }
        facts.private_exponent_readable = session
            .get_attributes(*key, &[AttributeType::PrivateExponent])
            .is_ok_and(|got| {
                got.iter()
                    .any(|a| matches!(a, Attribute::PrivateExponent(v) if !v.is_empty()))
            });
        Ok(facts)
    }
}

/// What the token says about a private key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PrivateKeyFacts {
    pub sensitive: bool,
    pub extractable: bool,
    pub never_extractable: bool,
    pub private_exponent_readable: bool,
}

fn slot() -> anyhow::Result<Slot> {
    Ok(Slot::try_from(SLOT)?)
}

/// For a test named `test` (its libtest path, e.g. `pkcs11::some_test`):
/// in the child process, the fresh token; in the test process, runs the
/// test again as that child and returns `None` once it passed — or, when
/// the kryoptic library is missing, skips with a message (`None`) unless
/// [`ENV_REQUIRE_PKCS11`] is set (an error).
pub fn run_test_with_token(test: &str) -> anyhow::Result<Option<SoftToken>> {
    let args = [test, "--exact", "--nocapture", "--test-threads=1"];
    run_with_token(test, &args, Some("test result: ok. 1 passed"))
}

/// Like [`run_test_with_token`] for any binary (a bench): in the child
/// (recognised by `marker`), the token; otherwise runs this executable again
/// with `args` and `KRYOPTIC_CONF` set, checks that it succeeded (and that
/// its output contains `expect_stdout`), and returns `None`.
pub fn run_with_token(
    marker: &str,
    args: &[&str],
    expect_stdout: Option<&str>,
) -> anyhow::Result<Option<SoftToken>> {
    let library = match library() {
        Some(library) => library,
        None if std::env::var_os(ENV_REQUIRE_PKCS11).is_some() => bail!(
            "the kryoptic PKCS#11 library is missing and {ENV_REQUIRE_PKCS11} is set: run scripts/build-kryoptic"
        ),
        None => {
            eprintln!(
                "SKIPPED {marker}: no kryoptic PKCS#11 library (run scripts/build-kryoptic, or set {ENV_KRYOPTIC_LIB})"
            );
            return Ok(None);
        }
    };
    if std::env::var(ENV_CHILD).as_deref() == Ok(marker) {
        let conf = std::env::var_os(ENV_KRYOPTIC_CONF).context("KRYOPTIC_CONF is not set")?;
        let dir = Path::new(&conf)
            .parent()
            .context("KRYOPTIC_CONF has no directory")?
            .to_owned();
        return init_token(library, dir).map(Some);
    }
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("kryoptic.conf");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = {SLOT}\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            dir.path().join("token.sql").display()
        ),
    )?;
    let output = Command::new(std::env::current_exe()?)
        .args(args)
        .env(ENV_KRYOPTIC_CONF, &conf)
        .env(ENV_CHILD, marker)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run the child process")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // print! so that the test harness captures the child's output with the
    // test's own.
    #[allow(clippy::print_stdout)]
    {
        print!("{stdout}");
    }
    if !output.status.success() {
        bail!("{marker} failed in its child process ({})", output.status);
    }
    if let Some(expected) = expect_stdout
        && !stdout.contains(expected)
    {
        bail!("{marker}: the child process did not report {expected:?}");
    }
    Ok(None)
}

/// Initialises the token in `dir`: label, SO PIN, user PIN; writes the PIN
/// file.
fn init_token(library: PathBuf, dir: PathBuf) -> anyhow::Result<SoftToken> {
    let pkcs11 = Pkcs11::new(&library)?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(e.into()),
    }
    let so = AuthPin::from(SO_PIN);
    pkcs11.init_token(slot()?, &so, TOKEN_LABEL)?;
    {
        let session = pkcs11.open_rw_session(slot()?)?;
        session.login(UserType::So, Some(&so))?;
        session.init_pin(&AuthPin::from(USER_PIN))?;
        session.logout()?;
    }
    let token = SoftToken {
        library,
        pin_file: dir.join("user.pin"),
        dir,
        pkcs11,
    };
    token.write_file("user.pin", &format!("{USER_PIN}\n"), 0o600)?;
    Ok(token)
}
