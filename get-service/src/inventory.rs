//! `tokenvault.v1.AccountInventory`: the embedding application's read-only
//! view of its accounts. Never sees a token: it reads the store's status,
//! times, metadata and events (non-secret columns), never a sealed token,
//! and links nothing that opens one.
//!
//! - `ListAccounts` ([`list`]): pages in (account, provider) order, with
//!   opaque page tokens ([`page_token`]) and checked filters ([`filter`]).
//! - `WatchAccountEvents` ([`watch`]): the account events as a server
//!   stream, resumable after the last cursor received.
//! - Both show a caller only what the account policy lets it see
//!   ([`visibility`]), and are allowed to `admin` identities by default
//!   (`[allow] list_accounts`, `watch_account_events`).
//!
//! Each call writes one audit event (caller, peer, RPC, the account prefix
//! and provider filters, outcome), whose `policy` says what the caller was
//! shown: `open` (no rules), `unnamed` (no rule names it: everything) or
//! `filtered` (what its rules allow).

mod convert;
mod filter;
mod list;
mod page_token;
mod visibility;
mod watch;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokenvault_proto::v1::account_inventory_server::AccountInventory;
use tokenvault_proto::v1::{ListAccountsRequest, ListAccountsResponse, WatchAccountEventsRequest};
use tokenvault_rpc::audit;
use tokenvault_store::TokenReader;
use tokenvault_tls::{PeerInfo, TrustRx};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub(crate) use convert::status as proto_status;
pub use watch::EventStream;

use crate::error::TokenError;
use crate::policy::watch::PolicyRx;
use visibility::Visibility;

/// The `AccountInventory` implementation.
#[derive(Debug, Clone)]
pub struct InventoryService {
    reader: TokenReader,
    providers: Arc<HashSet<String>>,
    policy: PolicyRx,
    poll: Duration,
    stopping: CancellationToken,
    trust: TrustRx,
}

impl InventoryService {
    /// Lists and watches `reader`'s accounts for the callers `policy` lets
    /// see them; `providers` are the configured names (filters must name
    /// one), `poll` how often open streams look for new events. Open
    /// streams end once `stopping` is cancelled, and a stream whose caller's
    /// certificate `trust` (the server's, as reloaded) revokes ends too.
    pub fn new(
        reader: TokenReader,
        providers: impl IntoIterator<Item = String>,
        policy: PolicyRx,
        poll: Duration,
        stopping: CancellationToken,
        trust: TrustRx,
    ) -> Self {
        Self {
            reader,
            providers: Arc::new(providers.into_iter().collect()),
            policy,
            poll,
            stopping,
            trust,
        }
    }

    fn known(&self) -> impl Fn(&str) -> bool + '_ {
        |p| self.providers.contains(p)
    }

    fn visibility(&self, peer: Option<&PeerInfo>) -> Visibility {
        let policy = self.policy.borrow().clone();
        Visibility::of(&policy, peer.map(|p| &p.id))
    }

    async fn list(
        &self,
        peer: Option<&PeerInfo>,
        req: &ListAccountsRequest,
    ) -> (
        Option<&'static str>,
        Result<ListAccountsResponse, TokenError>,
    ) {
        let query = match filter::list_query(req, self.known()) {
            Ok(query) => query,
            Err(e) => return (None, Err(e)),
        };
        let view = self.visibility(peer);
        (
            Some(view.label()),
            list::page(&self.reader, &query, &view).await,
        )
    }

    fn watch(
        &self,
        peer: Option<PeerInfo>,
        req: &WatchAccountEventsRequest,
    ) -> (Option<&'static str>, Result<EventStream, TokenError>) {
        let query = match filter::watch_query(req, self.known()) {
            Ok(query) => query,
            Err(e) => return (None, Err(e)),
        };
        let label = self.visibility(peer.as_ref()).label();
        let stream = watch::Watch {
            reader: self.reader.clone(),
            policy: self.policy.clone(),
            caller: peer,
            query,
            poll: self.poll,
            trust: self.trust.clone(),
        }
        .start(&self.stopping);
        (Some(label), Ok(stream))
    }
}

#[tonic::async_trait]
impl AccountInventory for InventoryService {
    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Result<Response<ListAccountsResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let (policy, result) = self.list(peer.as_ref(), &req).await;
        audit::respond_with_policy(
            "ListAccounts",
            peer.as_ref(),
            (&req.account_prefix, &req.provider),
            policy,
            result,
            TokenError::outcome,
        )
    }

    type WatchAccountEventsStream = EventStream;

    async fn watch_account_events(
        &self,
        request: Request<WatchAccountEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let (policy, result) = self.watch(peer.clone(), &req);
        audit::respond_with_policy(
            "WatchAccountEvents",
            peer.as_ref(),
            (&req.account_prefix, &req.provider),
            policy,
            result,
            TokenError::outcome,
        )
    }
}
