//! Per-RPC allow-lists, enforced by a tower layer in front of every gRPC
//! service.
//!
//! Deny by default: a method with no rule is refused. A refused caller gets
//! `PERMISSION_DENIED` with a message naming its SPIFFE ID and the RPC, and
//! every decision is logged on the `tokenvault::authz` tracing target.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokenvault_tls::TrustRx;
use tokenvault_tls::{IdentityPattern, PeerInfo, SpiffeId, now_unix};
use tower::{Layer, Service};

/// The tracing target of authorization decisions.
pub const AUTHZ_TARGET: &str = "tokenvault::authz";

/// Who may call what. Keys are gRPC paths such as
/// `/tokenvault.v1.SetService/StoreRefreshToken`.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    methods: HashMap<String, Vec<IdentityPattern>>,
    open_services: Vec<String>,
}

impl AllowList {
    /// An allow-list that refuses everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows `patterns` to call the method at gRPC `path`.
    pub fn allow(mut self, path: &str, patterns: &[IdentityPattern]) -> Self {
        self.methods
            .entry(path.to_owned())
            .or_default()
            .extend_from_slice(patterns);
        self
    }

    /// Allows every authenticated peer to call every method of a service,
    /// e.g. `grpc.health.v1.Health`. Use only for services that reveal nothing.
    pub fn allow_any_peer(mut self, service: &str) -> Self {
        self.open_services.push(format!("/{service}/"));
        self
    }

    /// [`AllowList::allow_any_peer`] for each of `services`.
    pub fn allow_any_peers(self, services: &[&str]) -> Self {
        services.iter().fold(self, |a, s| a.allow_any_peer(s))
    }

    /// Whether `id` may call `path`.
    pub fn permits(&self, path: &str, id: &SpiffeId) -> bool {
        if self.open_services.iter().any(|p| path.starts_with(p)) {
            return true;
        }
        self.methods
            .get(path)
            .is_some_and(|ps| ps.iter().any(|p| p.matches(id)))
    }
}

/// The tower layer that enforces an [`AllowList`], and refuses requests whose
/// client certificate has expired or, with
/// [`refusing_revoked`](Self::refusing_revoked), been revoked since the
/// connection was made.
#[derive(Debug, Clone)]
pub struct AuthzLayer {
    allow: Arc<AllowList>,
    revoked: Option<TrustRx>,
}

impl AuthzLayer {
    /// Enforces `allow` on every request.
    pub fn new(allow: AllowList) -> Self {
        Self {
            allow: Arc::new(allow),
            revoked: None,
        }
    }

    /// Also refuses every request on a connection whose client certificate
    /// the CRLs in `revoked` (as reloaded) list.
    pub fn refusing_revoked(mut self, revoked: TrustRx) -> Self {
        self.revoked = Some(revoked);
        self
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz {
            inner,
            allow: self.allow.clone(),
            revoked: self.revoked.clone(),
        }
    }
}

/// The service made by [`AuthzLayer`].
#[derive(Debug, Clone)]
pub struct Authz<S> {
    inner: S,
    allow: Arc<AllowList>,
    revoked: Option<TrustRx>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> Service<http::Request<B>> for Authz<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        let rpc = path.trim_start_matches('/');
        let Some(peer) = req.extensions().get::<PeerInfo>().cloned() else {
            let status =
                tonic::Status::permission_denied(format!("no verified client identity for {rpc}"));
            return deny(rpc, None, "permission_denied", status);
        };
        if now_unix() > peer.not_after_unix {
            let status = tonic::Status::unauthenticated(format!(
                "the client certificate of {} has expired; reconnect with a current one",
                peer.id
            ));
            return deny(rpc, Some(&peer), "unauthenticated", status);
        }
        if self
            .revoked
            .as_ref()
            .is_some_and(|trust| trust.borrow().is_revoked(&peer.cert))
        {
            let status = tonic::Status::unauthenticated(format!(
                "the client certificate of {} has been revoked",
                peer.id
            ));
            return deny(rpc, Some(&peer), "unauthenticated", status);
        }
        if !self.allow.permits(path, &peer.id) {
            let status = tonic::Status::permission_denied(format!(
                "{} is not allowed to call {rpc}: caller not on the allow-list",
                peer.id
            ));
            return deny(rpc, Some(&peer), "permission_denied", status);
        }
        tracing::debug!(target: AUTHZ_TARGET, caller = %peer.id, peer = %peer.addr, rpc, decision = "allow");
        // Take the service that was driven to readiness; leave a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(req))
    }
}

/// Answers a denied call with `status`, writing its one audit event (the
/// handler, which would write it otherwise, never runs).
fn deny<B, E>(
    rpc: &str,
    peer: Option<&PeerInfo>,
    label: &str,
    status: tonic::Status,
) -> BoxFuture<Result<http::Response<B>, E>>
where
    B: Default + Send + 'static,
    E: Send + 'static,
{
    let method = rpc.rsplit('/').next().unwrap_or(rpc);
    crate::audit::record(method, peer, "", "", Err((label, &status.message())));
    let mut status = status;
    crate::audit::mark_audited(status.metadata_mut());
    Box::pin(std::future::ready(Ok(status.into_http())))
}

#[cfg(test)]
mod tests {
    use tokenvault_tls::IdentityError;

    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap_or_else(|e| unreachable!("{s}: {e}"))
    }

    #[test]
    fn deny_by_default_and_match_roles_and_ids() -> Result<(), IdentityError> {
        let allow = AllowList::new()
            .allow("/p.S/A", &["web-frontend".parse()?])
            .allow("/p.S/B", &["spiffe://td/worker/billing".parse()?])
            .allow_any_peer("grpc.health.v1.Health");
        let web = id("spiffe://td/web-frontend");
        let billing = id("spiffe://td/worker/billing");
        let other = id("spiffe://td/worker/other");
        assert!(allow.permits("/p.S/A", &web));
        assert!(!allow.permits("/p.S/A", &billing));
        assert!(allow.permits("/p.S/B", &billing));
        assert!(!allow.permits("/p.S/B", &other));
        assert!(!allow.permits("/p.S/C", &web));
        assert!(allow.permits("/grpc.health.v1.Health/Check", &other));
        Ok(())
    }
}
