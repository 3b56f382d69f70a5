//! Starting get-service: keys, store (read-only), providers, the set-service
//! client, the allow-list, health and reflection; then serving until the
//! shutdown future resolves.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokenvault_mtls::process::AbortOnDrop;
use tokenvault_mtls::reload::{reloading_channel, reloading_server};
use tokenvault_mtls::{AllowList, AuthzLayer, IdentityPattern, Role, incoming};
use tokenvault_proto::discovery::{self, DISCOVERY_SERVICES};
use tokenvault_proto::v1::get_service_server::{GetServiceServer, SERVICE_NAME};
use tokenvault_seal::PublicKeySet;
use tokenvault_store::TokenReader;
use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::PrivateKeyRing;
use crate::broker::Broker;
use crate::config::{AllowConfig, Config};
use crate::error::ServeError;
use crate::provider::Provider;
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

/// Runs get-service on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    // reqwest and rustls use aws-lc-rs, the one crypto provider in the tree.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (tls, tls_rx, _reload_server) = reloading_server(&config.tls, &config.trust_domain)?;
    tracing::info!(identity = %tls.identity, cert_not_after_unix = tls.not_after_unix, "loaded TLS certificate");
    let keys = Arc::new(PrivateKeyRing::load_dir(&config.private_keys_dir)?);
    tracing::info!(kids = ?keys.kids(), "loaded token-encryption private keys");
    let sealer =
        Arc::new(PublicKeySet::load_dir(&config.public_keys_dir).map_err(ServeError::PublicKeys)?);
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
            .map_err(ServeError::Provider)?;
        providers.insert(p.name.clone(), Arc::new(provider));
    }

    let (set_channel, _reload_client) = reloading_channel(
        &config.set_service.address,
        &config.tls,
        &config.trust_domain,
        IdentityPattern::Role(Role::SetService),
    )?;
    let locks = KeyLocks::default();
    let writer = SetWriter::new(set_channel, sealer, locks.clone());
    let sweeper = RevocationSweeper::new(
        reader.clone(),
        Arc::clone(&keys),
        providers.clone(),
        writer.clone(),
        locks.clone(),
        config.revocation.clone(),
    );
    let broker = Broker::new(reader, keys, providers, writer, locks, config.cache.clone());
    // Stops when dropped, also on an early return.
    let _sweeper = AbortOnDrop(tokio::spawn(sweeper.run()));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<GetServiceServer<GetServiceImpl>>()
        .await;
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
        .layer(AuthzLayer::new(allow_list(&config.allow)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            GetServiceServer::new(GetServiceImpl::new(broker.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming(listener, tls_rx), shutdown)
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
