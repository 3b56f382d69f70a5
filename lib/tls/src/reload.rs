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
//! At start and on every reload, the identity and expiry of the certificate
//! in use are logged (a warning within a week of expiry) and handed to an
//! optional [`CertObserver`] (the metrics' expiry gauge).
//!
//! This module reads the key file only through the config builder it is
//! given, and never logs file contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use tokio_util::task::AbortOnDropHandle;

use crate::TLS_TARGET;
use crate::error::TlsError;
use crate::identity::SpiffeId;
use crate::pem::TlsFiles;
use crate::trust::TrustRx;

/// How often the files' metadata is checked.
pub const RELOAD_POLL: Duration = Duration::from_secs(2);

/// What identifies one version of a file without reading it.
type Stamp = Option<(u64, SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}

fn paths(files: &TlsFiles) -> Vec<PathBuf> {
    let mut all = vec![files.cert.clone(), files.key.clone(), files.ca.clone()];
    all.extend(files.crl.clone());
    all
}

/// The reload task; dropping it stops watching.
pub type Reloader = AbortOnDropHandle<()>;

/// Told of a service's own certificate at start and on every reload.
pub trait CertObserver: Clone + Send + Sync + 'static {
    /// `what` names the config (`"server"` or `"client"`).
    fn observe(&self, what: &'static str, identity: &SpiffeId, not_after_unix: i64);
}

/// Observes nothing (the certificate is still logged).
impl CertObserver for () {
    fn observe(&self, _: &'static str, _: &SpiffeId, _: i64) {}
}

/// Certificates closer than this to their expiry are logged as a warning.
const EXPIRY_WARNING_SECS: i64 = 7 * 86_400;

/// Logs the certificate in use and tells `observer`.
fn report(
    observer: &impl CertObserver,
    what: &'static str,
    identity: &SpiffeId,
    not_after_unix: i64,
) {
    let left = not_after_unix.saturating_sub(crate::now_unix());
    let not_after = tokenvault_unix_time::rfc3339_or_number(not_after_unix);
    let expires_in_days = left / 86_400;
    if left < EXPIRY_WARNING_SECS {
        tracing::warn!(target: TLS_TARGET, config = what, %identity, %not_after, cert_not_after_unix = not_after_unix, expires_in_days, "certificate in use expires soon; renew it (pki renew)");
    } else {
        tracing::info!(target: TLS_TARGET, config = what, %identity, %not_after, cert_not_after_unix = not_after_unix, expires_in_days, "certificate in use");
    }
    observer.observe(what, identity, not_after_unix);
}

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
    watch_paths(paths(&files), move |forced| match build(&files) {
        Ok(config) => {
            tx.send_replace(config);
            tracing::info!(target: TLS_TARGET, config = what, forced, "reloaded TLS certificate, key, CA bundle and CRL");
        }
        Err(e) => {
            tracing::error!(target: TLS_TARGET, config = what, error = %e, "TLS files changed but do not load; keeping the previous config");
        }
    })
}

/// Calls `changed(forced)` whenever one of `paths` changes (its size,
/// modification time or inode, polled every [`RELOAD_POLL`]; a link is
/// followed), and on SIGHUP (`forced` true). Files are often replaced one
/// after another, so a change is acted on 200 ms after it is seen. For any
/// file a service re-reads while it runs (certificates, policy rules).
pub fn watch_paths<F>(paths: Vec<PathBuf>, mut changed: F) -> Reloader
where
    F: FnMut(bool) + Send + 'static,
{
    let stamps = move || paths.iter().map(|p| stamp(p)).collect::<Vec<_>>();
    AbortOnDropHandle::new(tokio::spawn(async move {
        let mut hangup = signal(SignalKind::hangup()).ok();
        let mut last = stamps();
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
            if !forced && stamps() == last {
                continue;
            }
            // Let a write settle.
            tokio::time::sleep(Duration::from_millis(200)).await;
            last = stamps();
            changed(forced);
        }
    }))
}

/// What [`crate::incoming`] reads its server config from.
pub type ServerConfigRx = watch::Receiver<Arc<rustls::ServerConfig>>;

/// The live halves of a reloading server's TLS: the config for new
/// handshakes and the trust that open connections are re-checked against.
#[derive(Debug, Clone)]
pub struct ServerWatch {
    /// For [`crate::incoming`].
    pub config: ServerConfigRx,
    /// For open connections: the authorization layer (`tokenvault-rpc`'s
    /// `AuthzLayer`) refuses revoked certificates, the server closes
    /// connections whose certificate's CA has left the bundle.
    pub trust: TrustRx,
}

/// A server's TLS config that follows its files: the config loaded now, the
/// receivers [`crate::incoming`] and the authorization layer read, and the
/// [`Reloader`] to keep alive for as long as the server runs. The server's
/// own certificate is logged and handed to `observer` at start and on every
/// reload.
pub fn reloading_server(
    files: &TlsFiles,
    trust_domain: &str,
    observer: impl CertObserver,
) -> Result<(crate::ServerTls, ServerWatch, Reloader), TlsError> {
    let domain = trust_domain.to_owned();
    let build = move |files: &TlsFiles| {
        let tls = crate::server_config(files, &domain)?;
        report(&observer, "server", &tls.identity, tls.not_after_unix);
        Ok::<_, TlsError>(tls)
    };
    let tls = build(files)?;
    let (tx, config) = watch::channel(Arc::clone(&tls.config));
    let (trust_tx, trust) = watch::channel(Arc::clone(&tls.trust));
    let reloader = watch_files("server", files.clone(), tx, move |files| {
        let tls = build(files)?;
        // Published before the config, so no handshake under the new CRL
        // precedes its check on open connections. Revocations stick.
        let trust = tls.trust.keeping_revocations_of(&trust_tx.borrow());
        trust_tx.send_replace(Arc::new(trust));
        Ok(tls.config)
    });
    Ok((tls, ServerWatch { config, trust }, reloader))
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
    channel_following(address, files, trust_domain, expected_server, None::<()>)
}

/// [`reloading_channel`] that also logs the client certificate and hands it
/// to `observer` at start and on every reload: for a service whose only
/// certificate is its client certificate.
pub fn reloading_channel_reporting(
    address: &str,
    files: &TlsFiles,
    trust_domain: &str,
    expected_server: crate::IdentityPattern,
    observer: impl CertObserver,
) -> Result<(tonic::transport::Channel, Reloader), TlsError> {
    channel_following(
        address,
        files,
        trust_domain,
        expected_server,
        Some(observer),
    )
}

fn channel_following(
    address: &str,
    files: &TlsFiles,
    trust_domain: &str,
    expected_server: crate::IdentityPattern,
    observer: Option<impl CertObserver>,
) -> Result<(tonic::transport::Channel, Reloader), TlsError> {
    let (config, reloader) = client_following(files, trust_domain, expected_server, observer)?;
    Ok((crate::channel(address, config)?, reloader))
}

/// What every channel of a client reads its TLS config from.
pub type ClientConfigRx = watch::Receiver<Arc<rustls::ClientConfig>>;

/// A client TLS config that follows its files, for a client that dials
/// several servers ([`crate::channel_via`]), and the [`Reloader`] to keep
/// alive as long as it is used.
pub fn reloading_client(
    files: &TlsFiles,
    trust_domain: &str,
    expected_server: crate::IdentityPattern,
) -> Result<(ClientConfigRx, Reloader), TlsError> {
    client_following(files, trust_domain, expected_server, None::<()>)
}

fn client_following(
    files: &TlsFiles,
    trust_domain: &str,
    expected_server: crate::IdentityPattern,
    observer: Option<impl CertObserver>,
) -> Result<(ClientConfigRx, Reloader), TlsError> {
    let domain = trust_domain.to_owned();
    let build = move |files: &TlsFiles| {
        let config = crate::client_config(files, &domain, expected_server.clone())?;
        if let Some(observer) = &observer {
            report_own_certificate(files, observer)?;
        }
        Ok(config)
    };
    let (tx, rx) = watch::channel(build(files)?);
    Ok((rx, watch_files("client", files.clone(), tx, build)))
}

/// Reads the leaf of `files.cert` (already checked by the config builder)
/// and reports it.
fn report_own_certificate(files: &TlsFiles, observer: &impl CertObserver) -> Result<(), TlsError> {
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
    report(observer, "client", &id, not_after);
    Ok(())
}
