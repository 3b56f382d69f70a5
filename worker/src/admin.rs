//! The account-inventory client: `tokenvault.v1.AccountInventory` on
//! get-service, the library behind the `tokenvault-admin` CLI
//! ([`crate::admin_cli`]). It reads account statuses and events, never a
//! token, with an `admin` identity's certificate (get-service allows the
//! inventory to `admin` identities by default, and a worker identity gets
//! `PERMISSION_DENIED`).
//!
//! It shares the worker client's connection code: the same config file
//! shape ([`WorkerConfig`], holding the admin's certificate instead), the
//! same replicas, TLS reloading and retries of calls that no replica
//! answered.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tokenvault_worker::WorkerError> {
//! use tokenvault_proto::v1::ListAccountsRequest;
//! use tokenvault_worker::WorkerConfig;
//! use tokenvault_worker::admin::AdminClient;
//! let admin = AdminClient::new(&WorkerConfig::from_toml_file("admin.toml".as_ref())?)?;
//! let mut pages = admin.pages(ListAccountsRequest::default());
//! while let Some(page) = pages.next().await? {
//!     for account in page {
//!         println!("{} {} {}", account.account, account.provider, account.status);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokenvault_proto::v1::account_inventory_client::AccountInventoryClient;
use tokenvault_proto::v1::{
    AccountEvent, AccountSummary, ListAccountsRequest, ListAccountsResponse,
    WatchAccountEventsRequest,
};
use tonic::Streaming;

use crate::{Connection, DEFAULT_TIMEOUT, WorkerConfig, WorkerError};

/// An inventory client. Cheap to clone; clones share the connections.
#[derive(Debug, Clone)]
pub struct AdminClient {
    connection: Connection,
    timeout: Duration,
}

impl AdminClient {
    /// A client that connects lazily, on the first call, with the identity
    /// in `config` (an `admin` certificate).
    pub fn new(config: &WorkerConfig) -> Result<Self, WorkerError> {
        Ok(Self {
            connection: Connection::new(config)?,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets the time limit of a call (retries on other replicas included);
    /// for a watch, of opening the stream.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// One page of `ListAccounts`.
    pub async fn list_page(
        &self,
        request: &ListAccountsRequest,
    ) -> Result<ListAccountsResponse, WorkerError> {
        Ok(self
            .connection
            .targets
            .call(self.timeout, |channel, timeout| {
                let mut request = tonic::Request::new(request.clone());
                request.set_timeout(timeout);
                async move {
                    AccountInventoryClient::new(channel)
                        .list_accounts(request)
                        .await
                }
            })
            .await?
            .into_inner())
    }

    /// Every page of `request`'s filters, from its `page_token` on.
    pub fn pages(&self, request: ListAccountsRequest) -> Pages<'_> {
        Pages {
            client: self,
            request,
            done: false,
        }
    }

    /// `account` at `provider`, or `None` when get-service lists no such
    /// account (unknown, or hidden from this caller by the account policy).
    pub async fn account(
        &self,
        account: &str,
        provider: &str,
    ) -> Result<Option<AccountSummary>, WorkerError> {
        // Rows come in account order, so the account itself, if listed, is
        // the first one its id prefixes.
        let page = self
            .list_page(&ListAccountsRequest {
                provider: provider.to_owned(),
                account_prefix: account.to_owned(),
                page_size: 1,
                ..ListAccountsRequest::default()
            })
            .await?;
        Ok(page
            .accounts
            .into_iter()
            .find(|a| a.account == account && a.provider == provider))
    }

    /// Opens `WatchAccountEvents`: the events after `request.after_cursor`,
    /// then new ones as they happen, until the stream is dropped or ends.
    pub async fn watch_stream(
        &self,
        request: &WatchAccountEventsRequest,
    ) -> Result<Streaming<AccountEvent>, WorkerError> {
        Ok(self
            .connection
            .targets
            .call(self.timeout, |channel, timeout| {
                // No grpc-timeout: the stream lives as long as the caller
                // wants; only opening it is limited.
                let request = tonic::Request::new(request.clone());
                async move {
                    let mut client = AccountInventoryClient::new(channel);
                    let opened = client.watch_account_events(request);
                    match tokio::time::timeout(timeout, opened).await {
                        Ok(opened) => opened,
                        Err(_) => Err(tonic::Status::deadline_exceeded(
                            "get-service did not open the event stream in time",
                        )),
                    }
                }
            })
            .await?
            .into_inner())
    }

    /// A watch that resumes after the last event it returned when its
    /// stream is cut off (see [`EventWatch::next`]).
    pub fn watch(&self, request: WatchAccountEventsRequest) -> EventWatch<'_> {
        EventWatch {
            client: self,
            request,
            stream: None,
        }
    }
}

/// The pages of one listing ([`AdminClient::pages`]).
#[derive(Debug)]
pub struct Pages<'a> {
    client: &'a AdminClient,
    request: ListAccountsRequest,
    done: bool,
}

impl Pages<'_> {
    /// The next page's accounts; `None` after the last page.
    pub async fn next(&mut self) -> Result<Option<Vec<AccountSummary>>, WorkerError> {
        if self.done {
            return Ok(None);
        }
        let page = self.client.list_page(&self.request).await?;
        self.done = page.next_page_token.is_empty();
        self.request.page_token = page.next_page_token;
        Ok(Some(page.accounts))
    }

    /// The token of the next page (empty after the last).
    pub fn page_token(&self) -> &str {
        &self.request.page_token
    }
}

/// Account events, resumable ([`AdminClient::watch`]).
#[derive(Debug)]
pub struct EventWatch<'a> {
    client: &'a AdminClient,
    request: WatchAccountEventsRequest,
    stream: Option<Streaming<AccountEvent>>,
}

impl EventWatch<'_> {
    /// The cursor of the last event returned (or the one started after).
    pub fn cursor(&self) -> u64 {
        self.request.after_cursor
    }

    /// The next event. An error for which [`resumable`] is true (get-service
    /// stopping, unreachable, the connection cut) leaves the watch usable:
    /// the next call opens a new stream after [`EventWatch::cursor`], so
    /// nothing is missed and nothing repeated.
    pub async fn next(&mut self) -> Result<AccountEvent, WorkerError> {
        loop {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => self
                    .stream
                    .insert(self.client.watch_stream(&self.request).await?),
            };
            match stream.message().await {
                Ok(Some(event)) => {
                    self.request.after_cursor = event.cursor;
                    return Ok(event);
                }
                // Ended without a status (not something get-service does):
                // open it again.
                Ok(None) => self.stream = None,
                Err(status) => {
                    self.stream = None;
                    return Err(status.into());
                }
            }
        }
    }
}

/// Whether a watch may carry on after `error` by opening a new stream after
/// its cursor: get-service was stopping or unreachable, or the stream was
/// cut off on its way.
pub fn resumable(error: &WorkerError) -> bool {
    matches!(
        error.code(),
        Some(
            tonic::Code::Unavailable
                | tonic::Code::Cancelled
                | tonic::Code::Unknown
                | tonic::Code::DeadlineExceeded
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_errors_a_watch_resumes_after() {
        let status = |code| WorkerError::Status(tonic::Status::new(code, "x"));
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::Cancelled,
            tonic::Code::Unknown,
        ] {
            assert!(resumable(&status(code)), "{code:?}");
        }
        for code in [
            tonic::Code::PermissionDenied,
            tonic::Code::InvalidArgument,
            tonic::Code::Unauthenticated,
            tonic::Code::Internal,
        ] {
            assert!(!resumable(&status(code)), "{code:?}");
        }
        assert!(!resumable(&WorkerError::Config("x".into())));
    }
}
