//! Starting get-service: keys, store (read-only), providers, the set-service
//! client, the allow-list, health and reflection; then serving until the
//! shutdown future resolves.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokenvault_mtls::health::HealthMonitor;
use tokenvault_mtls::metrics::{self, CertExpiry, GrpcMetrics};
use tokenvault_mtls::process::AbortOnDrop;
use tokenvault_mtls::reload::{reloading_channel, reloading_server_reporting};
use tokenvault_mtls::{AllowList, AuthzLayer, IdentityPattern, Role, incoming};
use tokenvault_proto::discovery::{self, DISCOVERY_SERVICES};
use tokenvault_proto::v1::get_service_server::{GetServiceServer, SERVICE_NAME};
use tokenvault_seal::PublicKeySet;
use tokenvault_store::TokenReader;
use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::PrivateKeyRing;
use crate::broker::{Broker, CacheMetrics};
use crate::config::{AllowConfig, Config};
use crate::error::ServeError;
use crate::provider::{Provider, RefreshMetrics};
use crate::revocation::RevocationSweeper;
use crate::service::GetServiceImpl;
use crate::writer::{KeyLocks, SetWriter};

/// The largest gRPC message accepted.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// The allow-list for get-service's RPCs; health and reflection are open to
/// every authenticated peer.
pub fn allow_list(allow: &AllowConfig) -> AllowList {
    let path = |method: &str| format!("/{SERVICE_NAME}/{method}");
    AllowList::new()
        .allow(&path("GetAccessToken"), &allow.get_access_token)
        .allow(&path("GetAccountStatus"), &allow.get_account_status)
        .allow_any_peers(&DISCOVERY_SERVICES)
}

/// get-service's RPCs, named in the metrics' `rpc` label (any other path
/// counts as `other`).
pub const RPCS: [&str; 2] = ["GetAccessToken", "GetAccountStatus"];

/// Runs get-service on `listener` until `shutdown` resolves, with the
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
    // reqwest and rustls use aws-lc-rs, the one crypto provider in the tree.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut registry = metrics::new_registry();
    let grpc_metrics = GrpcMetrics::register(&mut registry);
    let expiry = CertExpiry::register(&mut registry);
    let refresh_metrics = RefreshMetrics::register(&mut registry);
    let cache_metrics = CacheMetrics::register(&mut registry);
    let (_tls, tls_watch, _reload_server) =
        reloading_server_reporting(&config.tls, &config.trust_domain, &expiry)?;
    let keys =
        Arc::new(PrivateKeyRing::load(&config.private_keys_dir, config.pkcs11.as_ref()).await?);
    tracing::info!(kids = ?keys.kids(), "loaded token-encryption private keys");
    let sealer = Arc::new(
        PublicKeySet::load(&config.public_keys_dir, config.sealing_kid.as_deref())
            .map_err(ServeError::PublicKeys)?,
    );
    tracing::info!(
        sealing_kid = sealer.sealing_kid(),
        "loaded token-encryption public keys"
    );
    let reader = TokenReader::connect(&config.store.url)
        .await
        .map_err(ServeError::Store)?;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| ServeError::Http(e.to_string()))?;
    let mut providers = HashMap::new();
    for p in &config.providers {
        let provider = Provider::new(p.clone(), http.clone())
            .await
            .map_err(ServeError::Provider)?
            .with_metrics(refresh_metrics.clone());
        providers.insert(p.name.clone(), Arc::new(provider));
    }

    let (set_channel, _reload_client) = reloading_channel(
        &config.set_service.address,
        &config.tls,
        &config.trust_domain,
        IdentityPattern::Role(Role::SetService),
    )?;
    let locks = KeyLocks::default();
    let writer = SetWriter::new(set_channel, Arc::clone(&sealer), locks.clone());
    let sweeper = RevocationSweeper::new(
        reader.clone(),
        Arc::clone(&keys),
        providers.clone(),
        writer.clone(),
        locks.clone(),
        config.revocation.clone(),
    );
    let (probe_reader, probe_keys) = (reader.clone(), Arc::clone(&keys));
    let broker = Broker::new(
        reader,
        keys,
        providers,
        writer,
        locks,
        config.cache.clone(),
        cache_metrics,
    );
    // Stops when dropped, also on an early return.
    let _sweeper = AbortOnDrop(tokio::spawn(sweeper.run()));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<GetServiceServer<GetServiceImpl>>()
        .await;
    // NOT_SERVING while the store does not answer or the keys do not open
    // what get-service seals. Stops when dropped.
    let _health_checks = HealthMonitor::new(health, SERVICE_NAME, config.health.interval())
        .check("store", move || crate::health::store(probe_reader.clone()))
        .check("keys", move || {
            crate::health::keys(Arc::clone(&sealer), Arc::clone(&probe_keys))
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

    tracing::info!(listen = ?listener.local_addr().ok(), "get-service serving");
    Server::builder()
        .layer(grpc_metrics.layer(RPCS.map(|m| format!("{SERVICE_NAME}/{m}"))))
        .layer(AuthzLayer::new(allow_list(&config.allow)).refusing_revoked(tls_watch.revoked))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            GetServiceServer::new(GetServiceImpl::new(broker.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming(listener, tls_watch.config), shutdown)
        .await?;
    let unstored = broker.unstored_rotations();
    if unstored > 0 {
        tracing::error!(
            unstored,
            "stopping with rotated refresh tokens that set-service has not stored; those accounts will need to reconnect"
        );
    }
    tracing::info!("get-service stopped");
    Ok(())
}
