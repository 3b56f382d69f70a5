//! The one way a tokenvault gRPC service is served, so that set-service and
//! get-service share one chassis instead of two copies of it:
//!
//! - mutual TLS that follows its files ([`tokenvault_tls::reload`]), with the
//!   server certificate's expiry as a metric;
//! - in front of every call, the gRPC metrics layer (which also completes the
//!   audit trail, and reserves room for each call's event in the audit
//!   table's queue: [`tokenvault_runtime::audit_gate`]) and the [`AuthzLayer`] with the service's allow-list, which
//!   refuses revoked certificates on open connections;
//! - each connection served on its own ([`crate::connections`]), closed
//!   gracefully when its client certificate's CA leaves the bundle;
//! - the health service, driven by the service's checks, and server
//!   reflection, both open to any authenticated peer; optionally the same
//!   health status on a plaintext listener for orchestrators;
//! - the metrics endpoint on its own listener.
//!
//! - a graceful stop: NOT_SERVING first, `shutdown.drain_secs` for callers
//!   to move away, then no new connections while open calls finish.
//!
//! A service builds a [`GrpcServer`], registers its own metrics and health
//! checks, and hands its tonic service to [`GrpcServer::serve`].

use std::future::Future;

use tokenvault_runtime::audit_gate::{self, AuditGate};
use tokenvault_runtime::health::HealthMonitor;
use tokenvault_runtime::metrics::{self, CertExpiry, Registry};
use tokenvault_runtime::settings::{Listeners, ServiceSettings};
use tokenvault_tls::reload::{Reloader, ServerWatch, reloading_server};
use tokenvault_tls::{TrustRx, incoming};
use tokio_util::task::AbortOnDropHandle;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use tokio_stream::StreamExt;

use crate::authz::{AllowList, AuthzLayer};
use crate::connections::{self, Leave};
use crate::discovery::{self, DISCOVERY_SERVICES};
use crate::grpc_metrics::GrpcMetrics;

/// Why a gRPC service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("tls: {0}")]
    Tls(#[from] tokenvault_tls::TlsError),
    #[error("health_listen: cannot bind {addr}: {source}")]
    HealthListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// What a service tells the chassis about itself.
#[derive(Debug)]
pub struct GrpcService {
    /// How log lines name it, e.g. `set-service` (`set-service serving`).
    pub label: &'static str,
    /// The gRPC service name, e.g. `tokenvault.v1.SetService`.
    pub name: &'static str,
    /// Its RPC methods, named in the metrics' `rpc` label (any other path
    /// counts as `other`).
    pub rpcs: &'static [&'static str],
    /// Who may call which of its RPCs.
    pub allow: AllowList,
    /// Further gRPC services the same server serves, as (name, methods): each
    /// is reported by health and reflection and named in the metrics like the
    /// first. Their allow-list entries are in `allow`.
    pub more: &'static [(&'static str, &'static [&'static str])],
}

impl GrpcService {
    /// The gRPC path of one of its methods, e.g.
    /// `/tokenvault.v1.SetService/StoreRefreshToken`.
    pub fn path(name: &str, method: &str) -> String {
        format!("/{name}/{method}")
    }
}

type CheckFn = Box<dyn FnOnce(HealthMonitor) -> HealthMonitor + Send>;

/// A gRPC server being put together: TLS is loaded and the registry made;
/// add metrics and health checks, then [`serve`](Self::serve).
pub struct GrpcServer {
    settings: ServiceSettings,
    service: GrpcService,
    registry: Registry,
    grpc_metrics: GrpcMetrics,
    tls: ServerWatch,
    _reload: Reloader,
    checks: Vec<CheckFn>,
    /// The gate of the process's audit table, if it writes one.
    audit: Option<AuditGate>,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("service", &self.service.name)
            .field("checks", &self.checks.len())
            .finish_non_exhaustive()
    }
}

impl GrpcServer {
    /// Loads the server's TLS files (following them from now on) and makes
    /// the metrics registry.
    pub fn new(settings: &ServiceSettings, service: GrpcService) -> Result<Self, ServeError> {
        let mut registry = metrics::new_registry();
        let grpc_metrics = GrpcMetrics::register(&mut registry);
        let expiry = CertExpiry::register(&mut registry);
        let (_tls, tls, reload) = reloading_server(&settings.tls, &settings.trust_domain, expiry)?;
        let audit = audit_gate::installed();
        if let Some(gate) = &audit {
            gate.register(&mut registry);
        }
        Ok(Self {
            audit,
            settings: settings.clone(),
            service,
            registry,
            grpc_metrics,
            tls,
            _reload: reload,
            checks: Vec::new(),
        })
    }

    /// The client trust as it is reloaded (CA bundle, CRLs, every revocation
    /// since the start), for a service whose long-lived streams must end when
    /// their caller is revoked.
    pub fn trust(&self) -> TrustRx {
        self.tls.trust.clone()
    }

    /// The registry, for the service's own metrics.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Adds a health check: while `check` fails (returns `Err(reason)`), the
    /// health status is NOT_SERVING.
    pub fn check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push(Box::new(move |monitor: HealthMonitor| {
            monitor.check(name, check)
        }));
        self
    }

    /// Serves `routes` (the service, with its own message limits) on
    /// `listeners` until `shutdown` resolves.
    pub async fn serve(
        mut self,
        listeners: Listeners,
        routes: Routes,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let name = self.service.name;
        let more = self.service.more;
        let names: Vec<&'static str> = std::iter::once(name)
            .chain(more.iter().map(|(n, _)| *n))
            .collect();
        let (health, health_service) = tonic_health::server::health_reporter();
        for service in &names {
            health
                .set_service_status(*service, ServingStatus::Serving)
                .await;
        }
        let monitor = HealthMonitor::new(health.clone(), name, self.settings.health.interval());
        let monitor = self.checks.drain(..).fold(monitor, |m, add| add(m));
        // Stops when dropped, also on an early return.
        let health_checks = monitor.register(&mut self.registry).start().await;
        let _metrics = listeners
            .metrics
            .map(|l| metrics::serve(l, std::mem::take(&mut self.registry)));
        let _plaintext_health = match self.settings.health_listen {
            Some(addr) => Some(AbortOnDropHandle::new(
                discovery::spawn_plaintext_health(addr, health_service.clone())
                    .await
                    .map_err(|source| ServeError::HealthListen { addr, source })?,
            )),
            None => None,
        };
        let reflection_alpha = discovery::reflection(&names).build_v1alpha()?;
        let reflection = discovery::reflection(&names).build_v1()?;
        let allow = std::mem::take(&mut self.service.allow).allow_any_peers(&DISCOVERY_SERVICES);
        let rpcs: Vec<String> = std::iter::once((name, self.service.rpcs))
            .chain(more.iter().copied())
            .flat_map(|(service, methods)| methods.iter().map(move |m| format!("{service}/{m}")))
            .collect();

        // The drain: on the signal, turn NOT_SERVING (the checks stop, so
        // that nothing turns it back), give load balancers and probes
        // `shutdown.drain_secs` to move callers away, then stop taking
        // connections and let open calls finish (tonic sends GOAWAY).
        let (label, drain) = (self.service.label, self.settings.shutdown.drain());
        let shutdown = async move {
            shutdown.await;
            drop(health_checks);
            for service in std::iter::once("").chain(names.iter().copied()) {
                health
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
            tracing::info!(
                drain_secs = drain.as_secs(),
                "{label} stopping: health NOT_SERVING"
            );
            tokio::time::sleep(drain).await;
        };

        tracing::info!(listen = ?listeners.main.local_addr().ok(), "{} serving", self.service.label);
        let metrics = self.grpc_metrics.layer(rpcs, self.audit.clone());
        let authz = AuthzLayer::new(allow).refusing_revoked(self.tls.trust.clone());
        let routes = routes
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha);
        // Each connection has its own tonic server, so that one can be
        // closed gracefully when its certificate's CA leaves the bundle.
        let serve_one = move |connection, leave: Leave| {
            let one = tokio_stream::once(Ok::<_, std::io::Error>(connection))
                .chain(tokio_stream::pending());
            Server::builder()
                .layer(metrics.clone())
                .layer(authz.clone())
                .add_routes(routes.clone())
                .serve_with_incoming_shutdown(one, leave)
        };
        connections::serve_each(
            incoming(listeners.main, self.tls.config.clone()),
            self.tls.trust.clone(),
            serve_one,
            shutdown,
        )
        .await;
        tracing::info!("{} stopped", self.service.label);
        Ok(())
    }
}
