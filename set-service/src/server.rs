//! Starting set-service: TLS, store, keys, the allow-list, health and
//! reflection, then serving until the shutdown future resolves.

use std::future::Future;

use tokenvault_mtls::health::HealthMonitor;
use tokenvault_mtls::metrics::{self, CertExpiry, GrpcMetrics};
use tokenvault_mtls::process::AbortOnDrop;
use tokenvault_mtls::reload::reloading_server_reporting;
use tokenvault_mtls::{AllowList, AuthzLayer, incoming};
use tokenvault_proto::discovery::{self, DISCOVERY_SERVICES};
use tokenvault_proto::v1::set_service_server::{SERVICE_NAME, SetServiceServer};
use tokenvault_seal::PublicKeySet;
use tokenvault_store::TokenWriter;
use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::config::{AllowConfig, Config};
use crate::error::{ConfigError, ServeError};
use crate::service::SetServiceImpl;

/// The allow-list for set-service's RPCs; health and reflection are open to
/// every authenticated peer.
pub fn allow_list(allow: &AllowConfig) -> AllowList {
    let path = |method: &str| format!("/{SERVICE_NAME}/{method}");
    AllowList::new()
        .allow(&path("StoreRefreshToken"), &allow.store_refresh_token)
        .allow(&path("DisconnectAccount"), &allow.disconnect_account)
        .allow(&path("RecordAccountStatus"), &allow.record_account_status)
        .allow(&path("RecordRevocation"), &allow.record_revocation)
        .allow(&path("ResealRefreshToken"), &allow.reseal_refresh_token)
        .allow_any_peers(&DISCOVERY_SERVICES)
}

/// set-service's RPCs, named in the metrics' `rpc` label (any other path
/// counts as `other`).
pub const RPCS: [&str; 5] = [
    "StoreRefreshToken",
    "DisconnectAccount",
    "RecordAccountStatus",
    "RecordRevocation",
    "ResealRefreshToken",
];

/// Runs set-service on `listener` until `shutdown` resolves, with the
/// metrics endpoint on `metrics_listen` if that is set.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics_listener = metrics::bind(config.metrics_listen)
        .await
        .map_err(|(addr, source)| ServeError::MetricsListen { addr, source })?;
    run_with_metrics(listener, metrics_listener, config, shutdown).await
}

/// [`run`] with the metrics endpoint on `metrics_listener` (already bound,
/// e.g. to port 0 in tests) instead of `metrics_listen`.
pub async fn run_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    let mut registry = metrics::new_registry();
    let grpc_metrics = GrpcMetrics::register(&mut registry);
    let expiry = CertExpiry::register(&mut registry);
    let (_tls, tls_watch, _reload) =
        reloading_server_reporting(&config.tls, &config.trust_domain, &expiry)?;
    let keys = PublicKeySet::load_dir(&config.public_keys_dir).map_err(ServeError::Keys)?;
    if keys.kids().is_empty() {
        return Err(ConfigError::Invalid {
            setting: "public_keys_dir",
            reason: format!("no public keys in {}", config.public_keys_dir.display()),
        }
        .into());
    }
    let store = TokenWriter::connect(&config.store.url)
        .await
        .map_err(ServeError::Store)?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SetServiceServer<SetServiceImpl>>()
        .await;
    // NOT_SERVING while the store does not answer. Stops when dropped.
    let probe = store.clone();
    let _health_checks = HealthMonitor::new(health, SERVICE_NAME, config.health.interval())
        .check("store", move || {
            let store = probe.clone();
            async move {
                store
                    .ping()
                    .await
                    .map_err(|e| format!("the store does not answer: {e}"))
            }
        })
        .register(&mut registry)
        .start()
        .await;
    let _metrics = metrics_listener.map(|l| metrics::serve(l, registry));
    // Stops when dropped, also on an early return.
    let _plaintext_health = match config.health_listen {
        Some(addr) => Some(AbortOnDrop(
            discovery::spawn_plaintext_health(addr, health_service.clone())
                .await
                .map_err(|source| ServeError::HealthListen { addr, source })?,
        )),
        None => None,
    };
    let reflection_alpha = discovery::reflection(SERVICE_NAME).build_v1alpha()?;
    let reflection = discovery::reflection(SERVICE_NAME).build_v1()?;
    let service = SetServiceImpl::new(store, keys, config.providers.clone(), config.limits.clone());
    let max = config.limits.max_message_bytes;

    let local = listener.local_addr().ok();
    tracing::info!(listen = ?local, "set-service serving");
    Server::builder()
        .layer(grpc_metrics.layer(RPCS.map(|m| format!("{SERVICE_NAME}/{m}"))))
        .layer(AuthzLayer::new(allow_list(&config.allow)).refusing_revoked(tls_watch.revoked))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            SetServiceServer::new(service)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .serve_with_incoming_shutdown(incoming(listener, tls_watch.config), shutdown)
        .await?;
    tracing::info!("set-service stopped");
    Ok(())
}
