//! Certificate verifiers that add SPIFFE identity checks on top of rustls's
//! WebPKI chain, expiry and revocation checks.
//!
//! A peer certificate is accepted only if it chains to the configured CA
//! bundle, is within its validity period, is not on the CRL, and carries
//! exactly one SPIFFE ID in this deployment's trust domain.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::IdentityError;
use crate::identity::{IdentityPattern, SpiffeId};

/// Turns an identity problem into the rustls error that fails the handshake.
fn rejected(e: IdentityError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Extracts the peer's SPIFFE ID and checks its trust domain.
pub(crate) fn peer_identity(
    der: &CertificateDer<'_>,
    trust_domain: &str,
) -> Result<SpiffeId, IdentityError> {
    let id = SpiffeId::from_certificate_der(der)?;
    if id.trust_domain() != trust_domain {
        return Err(IdentityError::ForeignTrustDomain {
            id: id.to_string(),
            expected: trust_domain.to_owned(),
        });
    }
    Ok(id)
}

/// The handshake-signature checks both verifiers leave to the webpki
/// verifier they wrap (`self.inner`).
macro_rules! signature_checks_of_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// Server side: requires a client certificate with one SPIFFE ID.
#[derive(Debug)]
pub(crate) struct SpiffeClientVerifier {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) trust_domain: String,
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        peer_identity(end_entity, &self.trust_domain).map_err(rejected)?;
        Ok(ClientCertVerified::assertion())
    }

    signature_checks_of_inner!();
}

/// Client side: checks the server's chain and name, then that its SPIFFE ID
/// matches what this client expects to be talking to.
#[derive(Debug)]
pub(crate) struct SpiffeServerVerifier {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) trust_domain: String,
    pub(crate) expected: IdentityPattern,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let id = peer_identity(end_entity, &self.trust_domain).map_err(rejected)?;
        if !self.expected.matches(&id) {
            return Err(rejected(IdentityError::UnexpectedPeer {
                actual: id.to_string(),
                expected: self.expected.to_string(),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    signature_checks_of_inner!();
}
