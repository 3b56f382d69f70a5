//! The client half: a rustls `ClientConfig` that presents this service's
//! certificate and checks that the server is who the caller expects, and a
//! tonic `Channel` that dials through it.
//!
//! Like the server, the connector reads its config from a watch channel at
//! every new connection, so a renewed client certificate is used without a
//! restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::client::WebPkiServerVerifier;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::TlsError;
use crate::identity::IdentityPattern;
use crate::pem::TlsFiles;
use crate::provider;
use crate::verify::SpiffeServerVerifier;

/// How long dialling and the TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a call on a [`channel`] failed without the server ever
/// processing it, so that it is safe to make again, once, whatever the RPC
/// (the channel reconnects for it). That is when the connection it was
/// meant for was going away: the server said GOAWAY (as when it closes a
/// connection gracefully after a trust change), and the call's stream was
/// refused by it (h2: a remote GOAWAY with NO_ERROR, which promises that
/// such streams were not processed), or the request was still queued in
/// hyper when the connection closed (hyper: canceled).
pub fn never_sent(status: &tonic::Status) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        if e.downcast_ref::<h2::Error>().is_some_and(|e| {
            e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR)
        }) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Builds a TLS 1.3-only client config from PEM files. The server must chain
/// to `files.ca`, match the address's name, and carry a SPIFFE ID in
/// `trust_domain` that `expected_server` matches.
pub fn client_config(
    files: &TlsFiles,
    trust_domain: &str,
    expected_server: IdentityPattern,
) -> Result<Arc<ClientConfig>, TlsError> {
    let loaded = files.load()?;
    let provider = provider();
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(loaded.roots), provider.clone())
            .with_crls(loaded.crls)
            .allow_unknown_revocation_status()
            .only_check_end_entity_revocation()
            .build()?;
    let verifier = Arc::new(SpiffeServerVerifier {
        inner: webpki,
        trust_domain: trust_domain.to_owned(),
        expected: expected_server,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(loaded.chain, loaded.key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A lazily connecting gRPC channel to `address` (`host:port`) over mutual
/// TLS. `host` is also the name checked against the server's certificate.
/// The first call dials; a lost connection is re-dialled by later calls.
pub fn channel(
    address: &str,
    tls: watch::Receiver<Arc<ClientConfig>>,
) -> Result<Channel, TlsError> {
    channel_via(address, None, tls)
}

/// [`channel`] that dials `via` (one of the addresses `address`'s host
/// resolves to) instead of resolving the host itself; the server's
/// certificate is still checked against `address`'s host.
pub fn channel_via(
    address: &str,
    via: Option<SocketAddr>,
    tls: watch::Receiver<Arc<ClientConfig>>,
) -> Result<Channel, TlsError> {
    let bad = || TlsError::BadAddress(address.to_owned());
    let named: Uri = format!("http://{address}").parse().map_err(|_| bad())?;
    let host = named.host().ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(host.to_owned()).map_err(|_| bad())?;
    let uri = match via {
        Some(addr) => format!("http://{addr}").parse().map_err(|_| bad())?,
        None => named,
    };
    let endpoint = Endpoint::from(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let connector = tower::service_fn(move |uri: Uri| {
        let config = tls.borrow().clone();
        let server_name = server_name.clone();
        async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio::time::timeout(
                CONNECT_TIMEOUT,
                TlsConnector::from(config).connect(server_name, tcp),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}
