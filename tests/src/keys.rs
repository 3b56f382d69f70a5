//! Token-encryption key fixtures: one RSA-4096 key pair per test process,
//! written the way `pki keygen` writes it, with the public key set and the
//! private key ring loaded from them.
#![allow(clippy::expect_used)]

use std::error::Error;
use std::path::PathBuf;
use std::sync::OnceLock;

use tempfile::TempDir;
use tokenvault_opener::PrivateKeyRing;
use tokenvault_pki::{EncryptionKeyPair, PRIVATE_MODE, PUBLIC_MODE, write_file};
use tokenvault_seal::PublicKeySet;

pub const ACCOUNT: &str = "alice@example.com";
pub const PROVIDER: &str = "google";
pub const PLAINTEXT: &[u8] = b"1//0refresh-token-SECRET-value";

pub fn pair() -> &'static EncryptionKeyPair {
    static PAIR: OnceLock<EncryptionKeyPair> = OnceLock::new();
    PAIR.get_or_init(|| EncryptionKeyPair::generate().expect("keygen"))
}

/// A state directory holding `pairs` under `keys/{public,private}/<kid>.pem`.
#[derive(Debug)]
pub struct Fixture {
    pub dir: TempDir,
    pub ring: PrivateKeyRing,
    pub keys: PublicKeySet,
}

impl Fixture {
    pub fn new(pairs: &[&EncryptionKeyPair]) -> Result<Self, Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        for p in pairs {
            let name = format!("{}.pem", p.kid);
            write_file(
                &dir.path().join("keys/private").join(&name),
                p.private_pem.as_bytes(),
                PRIVATE_MODE,
                false,
            )?;
            write_file(
                &dir.path().join("keys/public").join(&name),
                p.public_pem.as_bytes(),
                PUBLIC_MODE,
                false,
            )?;
        }
        let ring = PrivateKeyRing::load_dir(&dir.path().join("keys/private"))?;
        let keys = PublicKeySet::load_dir(&dir.path().join("keys/public"))?;
        Ok(Self { dir, ring, keys })
    }

    pub fn private_path(&self, kid: &str) -> PathBuf {
        self.dir
            .path()
            .join("keys/private")
            .join(format!("{kid}.pem"))
    }

    pub fn public_path(&self, kid: &str) -> PathBuf {
        self.dir
            .path()
            .join("keys/public")
            .join(format!("{kid}.pem"))
    }
}
