//! A throwaway PKI per test: a CA, leaf certificates for any role, the
//! token-encryption key pair, and deliberately bad certificates; and the
//! certificate life cycle (renew, revoke, CA rotation) through the same
//! library calls the `pki` CLI makes.

use std::path::PathBuf;

use rcgen::{CertificateParams, DistinguishedName, DnType, SanType};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};
use tokenvault_pki::{
    CrlReport, IssuedCert, LeafSpec, PRIVATE_MODE, PUBLIC_MODE, RenewReport, RenewSelection,
    Revocation, StateDir, write_file,
};
use tokenvault_tls::{Role, SpiffeId, TlsFiles};

/// The trust domain of test PKIs.
pub const TRUST_DOMAIN: &str = "tokenvault.test";

/// A CA and key pair in a temporary state directory.
#[derive(Debug)]
pub struct TestPki {
    dir: TempDir,
    state: StateDir,
    /// The token-encryption key id.
    pub kid: String,
}

impl TestPki {
    /// A new CA and one RSA-4096 token-encryption key pair.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let state = StateDir::new(dir.path().join("state"));
        state.init(TRUST_DOMAIN, 30, false)?;
        let kid = state.keygen(false)?.kid;
        Ok(Self { dir, state, kid })
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// A scratch directory that lives as long as this PKI.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The SPIFFE ID of `role`/`name` in this PKI's trust domain.
    pub fn id(&self, role: Role, name: Option<&str>) -> anyhow::Result<SpiffeId> {
        Ok(SpiffeId::new(TRUST_DOMAIN, role, name)?)
    }

    /// Issues a normal leaf for `role`/`name` and returns its TLS files.
    pub fn issue(&self, role: Role, name: Option<&str>) -> anyhow::Result<TlsFiles> {
        let spec = LeafSpec::new(self.id(role, name)?, 7)?;
        self.state.issue(&spec, true)?;
        Ok(self.files(&StateDir::stem(&spec.id)))
    }

    /// The TLS files of an issued leaf, by file stem, with the PKI's CA
    /// bundle and CRL file (`pki init` writes an empty CRL).
    pub fn files(&self, stem: &str) -> TlsFiles {
        TlsFiles {
            cert: self.state.cert_path(stem),
            key: self.state.key_path(stem),
            ca: self.state.bundle_path(),
            crl: Some(self.state.crl_path()),
        }
    }

    /// The CRL file (`ca/crl.pem`).
    pub fn crl_path(&self) -> PathBuf {
        self.state.crl_path()
    }

    /// `pki renew --within <window> --days <days>`.
    pub fn renew_within(&self, window: Duration, days: u32) -> anyhow::Result<RenewReport> {
        Ok(self
            .state
            .renew(RenewSelection::ExpiringWithin(window), days)?)
    }

    /// `pki renew --all`, 7-day leaves like [`TestPki::issue`].
    pub fn renew_all(&self) -> anyhow::Result<RenewReport> {
        Ok(self.state.renew(RenewSelection::All, 7)?)
    }

    /// `pki revoke <target>` (file stem, SPIFFE ID or serial).
    pub fn revoke(&self, target: &str) -> anyhow::Result<Revocation> {
        Ok(self.state.revoke(target)?)
    }

    /// `pki crl`.
    pub fn write_crl(&self) -> anyhow::Result<CrlReport> {
        Ok(self.state.write_crl()?)
    }

    /// `pki rotate-ca`.
    pub fn rotate_ca(&self) -> anyhow::Result<()> {
        self.state.rotate_ca(30)?;
        Ok(())
    }

    /// `pki rotate-ca --finish`.
    pub fn finish_ca_rotation(&self) -> anyhow::Result<()> {
        Ok(self.state.finish_ca_rotation()?)
    }

    /// A normal leaf for `role`/`name` from the issuing CA, written under the
    /// scratch directory instead of `certs/` (so `renew` and `rotate-ca` do
    /// not see it): a certificate that stays with the CA that issued it.
    pub fn issue_detached(
        &self,
        stem: &str,
        role: Role,
        name: Option<&str>,
    ) -> anyhow::Result<TlsFiles> {
        let spec = LeafSpec::new(self.id(role, name)?, 7)?;
        let issued = self.state.ca()?.issue(&spec)?;
        let dir = self.dir.path().join("detached");
        let (cert, key) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        write_file(&key, issued.key_pem.as_bytes(), PRIVATE_MODE, true)?;
        write_file(&cert, issued.cert_pem.as_bytes(), PUBLIC_MODE, true)?;
        Ok(TlsFiles {
            cert,
            key,
            ca: self.state.bundle_path(),
            crl: Some(self.state.crl_path()),
        })
    }

    /// Writes a leaf made from `issued` under `stem` and returns its files.
    pub fn write_leaf(&self, stem: &str, issued: &IssuedCert) -> anyhow::Result<TlsFiles> {
        write_file(
            &self.state.key_path(stem),
            issued.key_pem.as_bytes(),
            PRIVATE_MODE,
            true,
        )?;
        write_file(
            &self.state.cert_path(stem),
            issued.cert_pem.as_bytes(),
            PUBLIC_MODE,
            true,
        )?;
        Ok(self.files(stem))
    }

    /// A leaf for `role` whose validity ended yesterday.
    pub fn issue_expired(&self, role: Role) -> anyhow::Result<TlsFiles> {
        let mut spec = LeafSpec::new(self.id(role, Some("expired"))?, 1)?;
        let now = OffsetDateTime::now_utc();
        spec.not_before = now - Duration::days(10);
        spec.not_after = now - Duration::days(1);
        let issued = self.state.ca()?.issue(&spec)?;
        self.write_leaf("expired", &issued)
    }

    /// A leaf signed by this CA with the given URI SANs (none, or several).
    pub fn issue_with_uris(&self, stem: &str, uris: &[&str]) -> anyhow::Result<TlsFiles> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, stem);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::DnsName("localhost".try_into()?)];
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into()?));
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(1);
        let issued = self.state.ca()?.issue_params(params)?;
        self.write_leaf(stem, &issued)
    }

    /// The directory of token-encryption public keys.
    pub fn public_keys_dir(&self) -> PathBuf {
        self.state.public_keys_dir()
    }

    /// The directory of token-encryption private keys.
    pub fn private_keys_dir(&self) -> PathBuf {
        self.state.private_keys_dir()
    }
}
