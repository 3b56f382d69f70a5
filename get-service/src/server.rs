//! Starting get-service: keys, store (read-only), providers, the set-service
//! client, then the shared gRPC chassis ([`GrpcServer`]) with get-service's
//! allow-list and health checks, serving `GetService` and `AccountInventory`
//! until the shutdown future resolves (open inventory streams end as the
//! stop begins).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokenvault_runtime::settings::ServiceConfig as _;

use tokenvault_limits::GET_SERVICE_MAX_MESSAGE_BYTES;
use tokenvault_oauth::{Provider, RefreshMetrics};
use tokenvault_opener::PrivateKeyRing;
use tokenvault_proto::v1::account_inventory_server::{
    AccountInventoryServer, SERVICE_NAME as INVENTORY_SERVICE_NAME,
};
use tokenvault_proto::v1::get_service_server::{GetServiceServer, SERVICE_NAME};
use tokenvault_rpc::{AllowList, GrpcServer, GrpcService};
use tokenvault_runtime::settings::Listeners;
use tokenvault_seal::PublicKeySet;
use tokenvault_set_client::SetClient;
use tokenvault_store::TokenReader;
use tokenvault_store::coordination::{Coordinator, SingleHost};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tonic::service::Routes;

use crate::account::AccountLocks;
use crate::broker::{Broker, CacheMetrics};
use crate::config::{AllowConfig, Config};
use crate::error::ServeError;
use crate::inventory::InventoryService;
use crate::journal::Journal;
use crate::keep_alive::KeepAliveMetrics;
use crate::policy::watch::PolicySource;
use crate::replicas::Replicas;
use crate::revocation::RevocationSweeper;
use crate::rotation::Rotations;
use crate::service::GetServiceImpl;

/// How long one call to set-service may take.
const SET_CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// get-service's `GetService` RPCs.
pub const RPCS: [&str; 3] = ["GetAccessToken", "GetClientAccessToken", "GetAccountStatus"];

/// get-service's `AccountInventory` RPCs, served beside them.
pub const INVENTORY_RPCS: [&str; 2] = ["ListAccounts", "WatchAccountEvents"];

/// The allow-list for get-service's RPCs (both services).
pub fn allow_list(allow: &AllowConfig) -> AllowList {
    let path = |method: &str| GrpcService::path(SERVICE_NAME, method);
    let inventory = |method: &str| GrpcService::path(INVENTORY_SERVICE_NAME, method);
    AllowList::new()
        .allow(&path("GetAccessToken"), &allow.get_access_token)
        .allow(
            &path("GetClientAccessToken"),
            &allow.get_client_access_token,
        )
        .allow(&path("GetAccountStatus"), &allow.get_account_status)
        .allow(&inventory("ListAccounts"), &allow.list_accounts)
        .allow(
            &inventory("WatchAccountEvents"),
            &allow.watch_account_events,
        )
}

/// Runs get-service on `listeners` until `shutdown` resolves.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    // reqwest and rustls use aws-lc-rs, the one crypto provider in the tree.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // A rule file that does not load stops the start, before anything else.
    let (policy, _policy_reload) = PolicySource {
        file: config.policy.file.clone(),
        trust_domain: config.service.trust_domain.clone(),
        providers: config.providers.iter().map(|p| p.name.clone()).collect(),
    }
    .watch()
    .map_err(ServeError::Policy)?;
    let mut server = GrpcServer::new(
        &config.service,
        GrpcService {
            label: "get-service",
            name: SERVICE_NAME,
            rpcs: &RPCS,
            allow: allow_list(&config.allow),
            more: &[(INVENTORY_SERVICE_NAME, &INVENTORY_RPCS)],
        },
    )?;
    let refresh_metrics = RefreshMetrics::register(server.registry());
    let cache_metrics = CacheMetrics::register(server.registry());
    let keep_alive_metrics = KeepAliveMetrics::register(server.registry());
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
    // SQLite is one host, one get-service: a second one is refused here.
    let _single_host = SingleHost::claim(&config.store.url).map_err(ServeError::Store)?;
    let providers = providers(&config, refresh_metrics).await?;
    let set = SetClient::new(
        &config.set_service.address,
        &config.service.tls,
        &config.service.trust_domain,
        SET_CALL_TIMEOUT,
    )?;
    let journal = match &config.rotation.journal_dir {
        Some(dir) => Some(Journal::open(dir)?),
        None => {
            tracing::warn!(
                "no rotation.journal_dir: while set-service cannot be reached, a refresh that \
                 rotates the refresh token answers UNAVAILABLE instead of journaling the token"
            );
            None
        }
    };
    let rotations = Rotations::new(set, Arc::clone(&sealer), journal, AccountLocks::default());
    let replayed = rotations.replay(&keys).await;
    if replayed > 0 {
        tracing::warn!(
            replayed,
            "the rotation journal holds rotated refresh tokens set-service has not stored; storing them now"
        );
    }
    let replicas = Coordinator::connect_lazy(&config.store.url)
        .map_err(ServeError::Store)?
        .map(|coordinator| {
            Replicas::new(
                coordinator,
                reader.clone(),
                Arc::clone(&keys),
                Arc::clone(&sealer),
                rotations.set_client().clone(),
            )
        });
    let sweeper = RevocationSweeper::new(
        reader.clone(),
        Arc::clone(&keys),
        providers.clone(),
        (rotations.clone(), replicas.clone()),
        config.revocation.clone(),
    );
    let (probe_reader, probe_keys) = (reader.clone(), Arc::clone(&keys));
    // Open WatchAccountEvents streams end when the stop begins, so that the
    // graceful stop (which lets calls in flight finish) never waits on them.
    let streams_stop = CancellationToken::new();
    let inventory = InventoryService::new(
        reader.clone(),
        config.providers.iter().map(|p| p.name.clone()),
        policy.clone(),
        config.inventory.poll(),
        streams_stop.clone(),
        server.trust(),
    );
    let broker = Broker::new(
        reader,
        keys,
        providers,
        (rotations.clone(), replicas),
        config.cache.clone(),
        cache_metrics,
    );
    // Stop when dropped, also on an early return.
    let _sweeper = AbortOnDropHandle::new(tokio::spawn(sweeper.run()));
    let keep_alive_stop = streams_stop.clone();
    let _keep_alive = AbortOnDropHandle::new(tokio::spawn(crate::keep_alive::run(
        broker.clone(),
        keep_alive_metrics,
        keep_alive_stop,
    )));
    let _cache_sweeper = AbortOnDropHandle::new(tokio::spawn(
        broker
            .clone()
            .sweep_every(Duration::from_secs(config.cache.sweep_secs.max(1))),
    ));

    // NOT_SERVING while the store does not answer or the keys do not open
    // what get-service seals.
    let server = server
        .check("store", move || crate::health::store(probe_reader.clone()))
        .check("keys", move || {
            crate::health::keys(Arc::clone(&sealer), Arc::clone(&probe_keys))
        });
    let service = GetServiceServer::new(GetServiceImpl::new(broker.clone(), policy))
        .max_decoding_message_size(GET_SERVICE_MAX_MESSAGE_BYTES);
    let inventory = AccountInventoryServer::new(inventory)
        .max_decoding_message_size(GET_SERVICE_MAX_MESSAGE_BYTES);
    let (stopping, stop_began) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        shutdown.await;
        streams_stop.cancel();
        let _ = stopping.send(Instant::now());
    };
    let served = server
        .serve(
            listeners,
            Routes::new(service).add_service(inventory),
            shutdown,
        )
        .await;
    // Calls are answered; within the grace period, let the refreshes in
    // flight finish and store what they rotated.
    let deadline =
        stop_began.await.unwrap_or_else(|_| Instant::now()) + config.service.shutdown.grace();
    let refreshes_done = broker.drain(deadline).await;
    let unstored = rotations.drain(deadline).await;
    match (refreshes_done, unstored, rotations.journaled()) {
        (true, 0, _) => {
            tracing::info!("get-service drained: every rotated refresh token is stored")
        }
        (_, unstored, true) => tracing::error!(
            unstored,
            refreshes_done,
            "get-service stopped before set-service stored every rotated refresh token; they are \
             in the rotation journal (sealed) and are stored at the next start"
        ),
        (_, unstored, false) => tracing::error!(
            unstored,
            refreshes_done,
            "get-service stopped with rotated refresh tokens set-service has not stored and no \
             rotation.journal_dir: those accounts will need to reconnect"
        ),
    }
    served?;
    Ok(())
}

/// The configured providers (OIDC discovery runs here), sharing one HTTP
/// client and `metrics`.
async fn providers(
    config: &Config,
    metrics: RefreshMetrics,
) -> Result<HashMap<String, Arc<Provider>>, ServeError> {
    let http = tokenvault_oauth::http_client().map_err(|e| ServeError::Http(e.to_string()))?;
    let mut providers = HashMap::new();
    for p in &config.providers {
        let provider = Provider::new(p.clone(), http.clone())
            .await
            .map_err(ServeError::Provider)?
            .with_metrics(metrics.clone());
        providers.insert(p.name.clone(), Arc::new(provider));
    }
    Ok(providers)
}
