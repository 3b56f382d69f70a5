//! `WatchAccountEvents`: account events as a server stream, in cursor order.
//! Never sees a token: events carry account ids, statuses, reasons and
//! metadata, nothing secret.
//!
//! A task per stream reads the store's events after the request's cursor
//! (as many batches as there are), then looks again every
//! `inventory.poll_ms`, and sends those the request's filters and the
//! caller's [`Visibility`] admit (the policy in force at each read). Events
//! become visible in cursor order, so resuming after the last cursor
//! received misses nothing and repeats nothing.
//!
//! The stream ends:
//! - when the caller goes away (the stream is dropped, and its task with it);
//! - with `UNAVAILABLE` when get-service begins to stop, so that a graceful
//!   stop never waits for open streams (resume from the last cursor, on
//!   another replica or after the restart);
//! - with `UNAUTHENTICATED` once the caller's certificate has expired, or a
//!   reloaded CRL revokes it (checked before each read);
//! - with `INTERNAL` when the store answers with something other than an
//!   outage.
//!
//! A store outage does not end it: the task keeps trying, backing off up to
//! [`MAX_BACKOFF`], and carries on from its cursor when the store answers;
//! the caller just sees no events meanwhile (and get-service's health is
//! NOT_SERVING).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokenvault_proto::v1::AccountEvent;
use tokenvault_store::TokenReader;
use tokenvault_tls::{PeerInfo, TrustRx, now_unix};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::AbortOnDropHandle;
use tonic::Status;

use super::convert;
use super::filter::WatchQuery;
use super::visibility::Visibility;
use crate::error::TokenError;
use crate::policy::watch::PolicyRx;

/// Events read from the store at once.
const BATCH: u32 = 500;
/// Events sent ahead of a slow caller.
const BUFFERED: usize = 256;
/// The longest wait between tries while the store is out.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One open stream's work.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) reader: TokenReader,
    pub(crate) policy: PolicyRx,
    pub(crate) caller: Option<PeerInfo>,
    pub(crate) query: WatchQuery,
    pub(crate) poll: Duration,
    /// The server's client trust, as reloaded: a revoked caller's stream ends.
    pub(crate) trust: TrustRx,
}

impl Watch {
    /// Starts the stream; it ends with `UNAVAILABLE` once `stopping` fires.
    pub(crate) fn start(self, stopping: &CancellationToken) -> EventStream {
        let (tx, rx) = mpsc::channel(BUFFERED);
        EventStream {
            rx,
            stopping: Box::pin(stopping.clone().cancelled_owned()),
            ended: false,
            _task: AbortOnDropHandle::new(tokio::spawn(self.run(tx))),
        }
    }

    async fn run(self, tx: mpsc::Sender<Result<AccountEvent, Status>>) {
        let mut cursor = self.query.after;
        let mut failures: u32 = 0;
        loop {
            if let Some(peer) = &self.caller
                && now_unix() > peer.not_after_unix
            {
                let status = Status::unauthenticated(format!(
                    "the client certificate of {} has expired; reconnect with a current one and \
                     resume after cursor {cursor}",
                    peer.id
                ));
                let _ = tx.send(Err(status)).await;
                return;
            }
            if let Some(peer) = &self.caller
                && self.trust.borrow().is_revoked(&peer.cert)
            {
                let status = Status::unauthenticated(format!(
                    "the client certificate of {} has been revoked",
                    peer.id
                ));
                let _ = tx.send(Err(status)).await;
                return;
            }
            let wait = match self.reader.events_after(cursor, BATCH).await {
                Ok(events) => {
                    if failures > 0 {
                        tracing::info!(cursor, "WatchAccountEvents: the store answers again");
                        failures = 0;
                    }
                    let more = events.len() == BATCH as usize;
                    let policy = self.policy.borrow().clone();
                    let view = Visibility::of(&policy, self.caller.as_ref().map(|p| &p.id));
                    for event in events {
                        cursor = event.cursor;
                        if self.query.admits(&event.account, &event.provider)
                            && view.shows(&event.account, &event.provider)
                            && tx.send(Ok(convert::event(event))).await.is_err()
                        {
                            return; // The caller went away.
                        }
                    }
                    if more {
                        continue;
                    }
                    self.poll
                }
                Err(e) if e.is_retryable() => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(error = %e, cursor, "WatchAccountEvents: the store cannot be read; the stream stays open and tries again");
                    }
                    backoff(self.poll, failures)
                }
                Err(e) => {
                    let e = TokenError::from(e);
                    tracing::error!(error = %e, cursor, "WatchAccountEvents: reading events failed; ending the stream");
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = tx.closed() => return,
            }
        }
    }
}

/// The wait after the `failures`th failed read in a row: `poll` doubled
/// each time, at most [`MAX_BACKOFF`] (and never shorter than `poll`).
fn backoff(poll: Duration, failures: u32) -> Duration {
    let doubled = poll.saturating_mul(1 << failures.min(16));
    doubled.min(MAX_BACKOFF).max(poll)
}

/// The stream handed to tonic. Dropping it (the caller went away) stops
/// its task.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Result<AccountEvent, Status>>,
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    ended: bool,
    _task: AbortOnDropHandle<()>,
}

impl Stream for EventStream {
    type Item = Result<AccountEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.stopping.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(Status::unavailable(
                "get-service is stopping; watch again after the last cursor received",
            ))));
        }
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let poll = Duration::from_millis(500);
        assert_eq!(backoff(poll, 1), Duration::from_secs(1));
        assert_eq!(backoff(poll, 2), Duration::from_secs(2));
        assert_eq!(backoff(poll, 5), MAX_BACKOFF);
        assert_eq!(backoff(poll, u32::MAX), MAX_BACKOFF);
        let slow = Duration::from_secs(60);
        assert_eq!(backoff(slow, 3), slow);
    }
}
