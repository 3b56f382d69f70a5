//! The server half: a rustls `ServerConfig` that requires a client certificate
//! with one SPIFFE ID, and an accept loop that hands tonic verified
//! connections tagged with the caller's identity.
//!
//! The accept loop reads its config from a watch channel of
//! `Arc<ServerConfig>` at every handshake, so new certificates take effect for
//! new connections while existing ones finish on the old config.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::error::TlsError;
use crate::identity::SpiffeId;
use crate::pem::TlsFiles;
use crate::revoked::{CertRef, RevokedCerts};
use crate::trust::{CertChain, ClientTrust};
use crate::verify::{SpiffeClientVerifier, peer_identity};
use crate::{TLS_TARGET, provider};

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many TLS handshakes may be in progress at once; further connections
/// wait in the accept queue.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 512;

/// A server config together with facts about this server's own certificate.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The rustls config to hand the accept loop.
    pub config: Arc<ServerConfig>,
    /// This server's own SPIFFE ID.
    pub identity: SpiffeId,
    /// When this server's own certificate expires, in seconds since the epoch.
    pub not_after_unix: i64,
    /// What the server trusts of its clients: for re-checking open
    /// connections ([`crate::trust`]).
    pub trust: Arc<ClientTrust>,
}

/// Builds a TLS 1.3-only server config from PEM files. Clients must present a
/// certificate that chains to `files.ca`, is not revoked, and carries exactly
/// one SPIFFE ID in `trust_domain`.
pub fn server_config(files: &TlsFiles, trust_domain: &str) -> Result<ServerTls, TlsError> {
    let loaded = files.load()?;
    let leaf = loaded.chain.first().ok_or_else(|| TlsError::Empty {
        setting: "tls.cert",
        path: files.cert.clone(),
        what: "certificate",
    })?;
    let identity = peer_identity(leaf, trust_domain).map_err(|source| TlsError::Identity {
        setting: "tls.cert",
        source,
    })?;
    let not_after_unix = crate::not_after_unix(leaf).map_err(|source| TlsError::Identity {
        setting: "tls.cert",
        source,
    })?;
    let revoked = RevokedCerts::from_crls(&loaded.crls).ok_or_else(|| TlsError::BadPem {
        setting: "tls.crl",
        path: files.crl.clone().unwrap_or_default(),
        what: "certificate revocation list",
    })?;
    let provider = provider();
    let webpki =
        WebPkiClientVerifier::builder_with_provider(Arc::new(loaded.roots), provider.clone())
            .with_crls(loaded.crls)
            .allow_unknown_revocation_status()
            .only_check_end_entity_revocation()
            .build()?;
    let verifier: Arc<dyn ClientCertVerifier> = Arc::new(SpiffeClientVerifier {
        inner: webpki,
        trust_domain: trust_domain.to_owned(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::clone(&verifier))
        .with_single_cert(loaded.chain, loaded.key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        identity,
        not_after_unix,
        trust: Arc::new(ClientTrust::new(verifier, revoked)),
    })
}

/// The verified caller of one connection, available to every request on it
/// through `request.extensions().get::<PeerInfo>()`: the connection's
/// [`Peer`], shared, so that a request's layers and handler copy a pointer
/// rather than the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo(Arc<Peer>);

impl std::ops::Deref for PeerInfo {
    type Target = Peer;

    fn deref(&self) -> &Peer {
        &self.0
    }
}

impl From<Peer> for PeerInfo {
    fn from(peer: Peer) -> Self {
        Self(Arc::new(peer))
    }
}

/// What the server verified of one connection's client.
#[derive(Debug, PartialEq, Eq)]
pub struct Peer {
    /// The SPIFFE ID from the client certificate.
    pub id: SpiffeId,
    /// The client's address.
    pub addr: SocketAddr,
    /// When the client certificate expires, in seconds since the Unix epoch.
    /// A connection may outlive its certificate; requests after this are refused.
    pub not_after_unix: i64,
    /// The client certificate's issuer and serial: requests on a connection
    /// whose certificate a reloaded CRL revokes are refused.
    pub cert: CertRef,
    /// The chain the client presented, re-checked at every reload
    /// ([`ClientTrust::still_issued`]).
    pub chain: CertChain,
}

/// A TLS connection whose client certificate has been verified.
#[derive(Debug)]
pub struct MtlsStream {
    inner: TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl Connected for MtlsStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for MtlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MtlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The stream of verified connections that `tonic::transport::Server::
/// serve_with_incoming_shutdown` consumes.
pub type MtlsIncoming = ReceiverStream<Result<MtlsStream, io::Error>>;

/// Accepts TCP connections on `listener` and completes each TLS handshake in
/// its own task, using whatever config `tls` holds at that moment. Failed
/// handshakes are logged with the peer address and reason, and dropped.
///
/// The accept loop stops when the returned stream is dropped.
pub fn incoming(listener: TcpListener, tls: watch::Receiver<Arc<ServerConfig>>) -> MtlsIncoming {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(accept_loop(listener, tls, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    tls: watch::Receiver<Arc<ServerConfig>>,
    tx: mpsc::Sender<Result<MtlsStream, io::Error>>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = tx.closed() => return,
            permit = handshakes.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(target: TLS_TARGET, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.borrow().clone());
        let tx = tx.clone();
        tokio::spawn(async move {
            let outcome = handshake(acceptor, tcp, addr).await;
            drop(permit);
            match outcome {
                Ok(stream) => {
                    let _ = tx.send(Ok(stream)).await;
                }
                Err(reason) => {
                    tracing::warn!(target: TLS_TARGET, peer = %addr, %reason, "TLS handshake refused");
                }
            }
        });
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
) -> Result<MtlsStream, String> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    // The verifier has already required exactly one SPIFFE ID; read it back.
    let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
    let leaf = certs
        .first()
        .ok_or_else(|| "no client certificate".to_owned())?;
    let id = SpiffeId::from_certificate_der(leaf).map_err(|e| e.to_string())?;
    let not_after_unix = crate::not_after_unix(leaf).map_err(|e| e.to_string())?;
    let cert = CertRef::of_certificate(leaf).map_err(|e| e.to_string())?;
    let chain = CertChain::new(certs);
    Ok(MtlsStream {
        inner: stream,
        peer: PeerInfo::from(Peer {
            id,
            addr,
            not_after_unix,
            cert,
            chain,
        }),
    })
}
