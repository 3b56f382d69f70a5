//! Every connection served on its own, so that a change of trust can close
//! one without touching the others: the accept loop hands each verified
//! connection to its own tonic server (the same layers and routes), whose
//! graceful-shutdown signal fires when the whole server stops, or when the
//! connection's client certificate no longer chains to the CA bundle
//! ([`ClientTrust::still_issued`], re-checked at every reload: its CA has
//! left the bundle after a rotation, or it expired). tonic then sends
//! HTTP/2 GOAWAY, lets the calls in flight finish and closes, and the
//! client reconnects with its renewed certificate; no call fails.
//! A revoked certificate is not closed here: every request on its
//! connection is refused with UNAUTHENTICATED by the `AuthzLayer`.

use std::future::Future;
use std::pin::Pin;

use tokenvault_tls::{ClientTrust, MtlsIncoming, MtlsStream, PeerInfo, TLS_TARGET, TrustRx};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tonic::transport::server::Connected;

/// Resolves when one connection should be closed gracefully.
pub(crate) type Leave = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves each connection from `incoming` with `serve_one(connection,
/// leave)` until `shutdown` resolves; then stops accepting, asks every
/// connection to close gracefully and waits until all have.
pub(crate) async fn serve_each<F, Fut>(
    mut incoming: MtlsIncoming,
    trust: TrustRx,
    serve_one: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(MtlsStream, Leave) -> Fut,
    Fut: Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
{
    let (stopping, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = incoming.next() => match accepted {
                Some(Ok(connection)) => {
                    let leave = until_untrusted(connection.connect_info(), trust.clone(), stop.clone());
                    connections.spawn(serve_one(connection, Box::pin(leave)));
                }
                Some(Err(_)) => {}
                None => break,
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => log_end(ended),
        }
    }
    // No new connections from here on.
    drop(incoming);
    stopping.send_replace(true);
    while let Some(ended) = connections.join_next().await {
        log_end(ended);
    }
}

fn log_end(ended: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>) {
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(target: TLS_TARGET, error = %e, "connection ended with an error")
        }
        Err(e) => tracing::warn!(target: TLS_TARGET, error = %e, "connection task failed"),
    }
}

/// Resolves when the server stops, or when `peer`'s certificate is no
/// longer issued by a CA the server trusts (checked now and at every
/// reload of `trust`).
async fn until_untrusted(peer: PeerInfo, mut trust: TrustRx, mut stop: watch::Receiver<bool>) {
    let mut trust_open = true;
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        let current: std::sync::Arc<ClientTrust> = trust.borrow_and_update().clone();
        if let Err(reason) = current.still_issued(&peer.chain) {
            tracing::info!(target: TLS_TARGET, caller = %peer.id, peer = %peer.addr, %reason,
                "closing a connection gracefully: its client certificate is no longer trusted; the client reconnects with a current one");
            return;
        }
        tokio::select! {
            changed = trust.changed(), if trust_open => trust_open = changed.is_ok(),
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}
