//! Starting set-service: keys and store, then the shared gRPC chassis
//! ([`GrpcServer`]) with set-service's allow-list and its store health
//! check, serving until the shutdown future resolves; beside it, the webhook
//! dispatcher, which the same shutdown future stops.

use std::future::Future;
use tokenvault_runtime::settings::ServiceConfig as _;

use tokenvault_proto::v1::set_service_server::{SERVICE_NAME, SetServiceServer};
use tokenvault_rpc::{AllowList, GrpcServer, GrpcService};
use tokenvault_runtime::settings::Listeners;
use tokenvault_seal::PublicKeySet;
use tokenvault_store::TokenWriter;
use tokio::sync::watch;
use tonic::service::Routes;

use crate::config::{AllowConfig, Config};
use crate::error::{ConfigError, ServeError};
use crate::service::SetServiceImpl;
use crate::webhooks::{self, Dispatcher, WebhookMetrics};

/// set-service's RPCs.
pub const RPCS: [&str; 6] = [
    "StoreRefreshToken",
    "DisconnectAccount",
    "RecordAccountStatus",
    "RecordRevocation",
    "ResealRefreshToken",
    "ShareAccessToken",
];

/// The allow-list for set-service's RPCs.
pub fn allow_list(allow: &AllowConfig) -> AllowList {
    let path = |method: &str| GrpcService::path(SERVICE_NAME, method);
    AllowList::new()
        .allow(&path("StoreRefreshToken"), &allow.store_refresh_token)
        .allow(&path("DisconnectAccount"), &allow.disconnect_account)
        .allow(&path("RecordAccountStatus"), &allow.record_account_status)
        .allow(&path("RecordRevocation"), &allow.record_revocation)
        .allow(&path("ResealRefreshToken"), &allow.reseal_refresh_token)
        .allow(&path("ShareAccessToken"), &allow.share_access_token)
}

/// Runs set-service on `listeners` until `shutdown` resolves.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    // reqwest and rustls use aws-lc-rs, the one crypto provider in the tree.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut server = GrpcServer::new(
        &config.service,
        GrpcService {
            label: "set-service",
            name: SERVICE_NAME,
            rpcs: &RPCS,
            allow: allow_list(&config.allow),
            more: &[],
        },
    )?;
    let keys = PublicKeySet::load_dir(&config.public_keys_dir).map_err(ServeError::Keys)?;
    if keys.kids().is_empty() {
        return Err(ConfigError::Invalid {
            setting: "public_keys_dir",
            reason: format!("no public keys in {}", config.public_keys_dir.display()),
        }
        .into());
    }
    // A webhook secret that does not load stops the start, before the store.
    let endpoints = webhooks::prepare(&config.webhooks)?;
    let names: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
    let webhook_metrics = WebhookMetrics::register(server.registry(), &names);
    let store = TokenWriter::connect(&config.store.url)
        .await
        .map_err(ServeError::Store)?;
    // NOT_SERVING while the store does not answer.
    let probe = store.clone();
    let server = server.check("store", move || {
        let store = probe.clone();
        async move {
            store
                .ping()
                .await
                .map_err(|e| format!("the store does not answer: {e}"))
        }
    });
    let max = config.limits.max_message_bytes;
    let dispatch_store = store.clone();
    let service = SetServiceServer::new(SetServiceImpl::new(
        store,
        keys,
        config.providers.clone(),
        config.limits.clone(),
    ))
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    // The dispatcher runs beside the RPCs, in its own task, and stops when
    // the shutdown future resolves (or when serving ends some other way).
    let (stop, stopped) = watch::channel(false);
    let expiry_watch = tokio::spawn(crate::expiry::watch_expiries(
        dispatch_store.clone(),
        config.expiry.clone(),
        stopped.clone(),
    ));
    let dispatcher = Dispatcher::start(endpoints, dispatch_store, webhook_metrics, stopped);
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let served = server
        .serve(listeners, Routes::new(service), shutdown)
        .await;
    dispatcher.join().await;
    expiry_watch.abort();
    served?;
    Ok(())
}
