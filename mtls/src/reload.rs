//! Certificate rotation without restarts: a background task that rebuilds a
//! rustls config when its PEM files change and publishes it on the watch
//! channel that [`crate::incoming`] and [`crate::channel`] read at every new
//! connection. In-flight connections keep the config they were made with;
//! new handshakes use the new one.
//!
//! A change is noticed two ways: the files' metadata (size, modification
//! time, inode) is polled every few seconds, and SIGHUP asks for a reload at
//! once. A set of files that fails to load (a half-written key, a
//! certificate that does not match its key, a broken CRL) keeps the old
//! config and logs a clear error; the next change is tried again.
//!
//! This module reads the key file only through the config builder it is
//! given, and never logs file contents.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::TLS_TARGET;
use crate::error::TlsError;
use crate::metrics::CertExpiry;
use crate::pem::TlsFiles;
use crate::revoked::RevokedCerts;

/// How often the files' metadata is checked.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// What identifies one version of a file without reading it.
type Stamp = Option<(u64, SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}

fn stamps(files: &TlsFiles) -> Vec<Stamp> {
    let mut all = vec![stamp(&files.cert), stamp(&files.key), stamp(&files.ca)];
    if let Some(crl) = &files.crl {
        all.push(stamp(crl));
    }
    all
}

/// The reload task; dropping it stops watching.
pub type Reloader = crate::process::AbortOnDrop;

/// Watches `files` and publishes `build(files)` on `tx` whenever they change
/// (or on SIGHUP). `what` names the config in log lines, e.g.
/// `"server"` or `"client to set-service"`.
pub fn watch_files<T, B>(
    what: &'static str,
    files: TlsFiles,
    tx: watch::Sender<Arc<T>>,
    build: B,
) -> Reloader
where
    T: Send + Sync + 'static,
    B: Fn(&TlsFiles) -> Result<Arc<T>, TlsError> + Send + 'static,
{
    crate::process::AbortOnDrop(tokio::spawn(async move {
        let mut hangup = signal(SignalKind::hangup()).ok();
        let mut last = stamps(&files);
        let mut tick = tokio::time::interval(RELOAD_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            let now = stamps(&files);
            if !forced && now == last {
                continue;
            }
            // Files are often replaced one after another: let a write settle.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = stamps(&files);
            match build(&files) {
                Ok(config) => {
                    tx.send_replace(config);
                    tracing::info!(target: TLS_TARGET, config = what, forced, "reloaded TLS certificate, key, CA bundle and CRL");
                }
                Err(e) => {
                    tracing::error!(target: TLS_TARGET, config = what, error = %e, "TLS files changed but do not load; keeping the previous config");
                }
            }
            last = now;
        }
    }))
}

/// What [`crate::incoming`] reads its server config from.
pub type ServerConfigRx = watch::Receiver<Arc<rustls::ServerConfig>>;

/// What [`crate::AuthzLayer`] reads the revoked certificates from.
pub type RevokedRx = watch::Receiver<Arc<RevokedCerts>>;

/// The live halves of a reloading server's TLS: the config for new
/// handshakes and the revoked certificates for requests on open connections.
#[derive(Debug, Clone)]
pub struct ServerWatch {
    /// For [`crate::incoming`].
    pub config: ServerConfigRx,
    /// For [`crate::AuthzLayer::refusing_revoked`].
    pub revoked: RevokedRx,
}

/// A server's TLS config that follows its files: the config loaded now, the
/// receiver [`crate::incoming`] reads, and the [`Reloader`] to keep alive for
/// as long as the server runs.
pub fn reloading_server(
    files: &TlsFiles,
    trust_domain: &str,
) -> Result<(crate::ServerTls, ServerWatch, Reloader), TlsError> {
    reloading_server_reporting(files, trust_domain, &CertExpiry::unregistered())
}

/// [`reloading_server`] that also reports the server's own certificate to
/// `expiry` (and logs its identity and expiry) at start and on every reload.
pub fn reloading_server_reporting(
    files: &TlsFiles,
    trust_domain: &str,
    expiry: &CertExpiry,
) -> Result<(crate::ServerTls, ServerWatch, Reloader), TlsError> {
    let (domain, expiry) = (trust_domain.to_owned(), expiry.clone());
    let build = move |files: &TlsFiles| {
        let tls = crate::server_config(files, &domain)?;
        expiry.observe("server", &tls.identity, tls.not_after_unix);
        Ok::<_, TlsError>(tls)
    };
    let tls = build(files)?;
    let (tx, config) = watch::channel(Arc::clone(&tls.config));
    let (revoked_tx, revoked) = watch::channel(Arc::clone(&tls.revoked));
    let reloader = watch_files("server", files.clone(), tx, move |files| {
        let tls = build(files)?;
        // Published before the config, so no handshake under the new CRL
        // precedes its check on open connections.
        revoked_tx.send_replace(tls.revoked);
        Ok(tls.config)
    });
    Ok((tls, ServerWatch { config, revoked }, reloader))
}

/// A lazily connecting mTLS channel to `address` whose client certificate,
/// CA bundle and CRL follow their files, and the [`Reloader`] to keep alive
/// for as long as the channel is used.
pub fn reloading_channel(
    address: &str,
    files: &TlsFiles,
    trust_domain: &str,
    expected_server: crate::IdentityPattern,
) -> Result<(tonic::transport::Channel, Reloader), TlsError> {
    channel_following(address, files, trust_domain, expected_server, None)
}

/// [`reloading_channel`] that also reports the client certificate to
/// `expiry` (and logs its identity and expiry) at start and on every reload:
/// for a service whose only certificate is its client certificate.
pub fn reloading_channel_reporting(
    address: &str,
    files: &TlsFiles,
    trust_domain: &str,
    expected_server: crate::IdentityPattern,
    expiry: &CertExpiry,
) -> Result<(tonic::transport::Channel, Reloader), TlsError> {
    channel_following(
        address,
        files,
        trust_domain,
        expected_server,
        Some(expiry.clone()),
    )
}

fn channel_following(
    address: &str,
    files: &TlsFiles,
    trust_domain: &str,
    expected_server: crate::IdentityPattern,
    expiry: Option<CertExpiry>,
) -> Result<(tonic::transport::Channel, Reloader), TlsError> {
    let domain = trust_domain.to_owned();
    let build = move |files: &TlsFiles| {
        let config = crate::client_config(files, &domain, expected_server.clone())?;
        if let Some(expiry) = &expiry {
            report_own_certificate(files, expiry)?;
        }
        Ok(config)
    };
    let (tx, rx) = watch::channel(build(files)?);
    let channel = crate::channel(address, rx)?;
    Ok((channel, watch_files("client", files.clone(), tx, build)))
}

/// Reads the leaf of `files.cert` (already checked by the config builder)
/// and reports it.
fn report_own_certificate(files: &TlsFiles, expiry: &CertExpiry) -> Result<(), TlsError> {
    let chain = crate::read_certs("tls.cert", &files.cert)?;
    let leaf = chain.first().ok_or_else(|| TlsError::Empty {
        setting: "tls.cert",
        path: files.cert.clone(),
        what: "certificate",
    })?;
    let identity = |source| TlsError::Identity {
        setting: "tls.cert",
        source,
    };
    let id = crate::SpiffeId::from_certificate_der(leaf).map_err(identity)?;
    let not_after = crate::not_after_unix(leaf).map_err(identity)?;
    expiry.observe("client", &id, not_after);
    Ok(())
}
