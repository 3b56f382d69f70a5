//! The get-service replicas a worker calls: every `host:port` of its
//! `address`, each host resolved to all its addresses (again every
//! [`RESOLVE_EVERY`]), one lazily connecting mTLS channel per address;
//! calls go round-robin and move on to the next replica when one answers
//! UNAVAILABLE or the call is cut off (each replica once per call, and the
//! same replica once more for a call cut off before it was sent, as when a
//! server closes its connection gracefully), within the call's time limit. Holds no secret but the TLS
//! config the channels share.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokenvault_tls::never_sent;
use tokenvault_tls::reload::ClientConfigRx;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::WorkerError;

/// How often host names are resolved again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// One replica: the configured `host:port` it came from (whose host names
/// the server's certificate) and the address it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Replica {
    address: String,
    via: SocketAddr,
}

/// The replicas as last resolved.
#[derive(Debug)]
struct Resolved {
    at: Option<Instant>,
    channels: Vec<(Replica, Channel)>,
}

/// Every replica of get-service a worker knows.
#[derive(Debug)]
pub(crate) struct Targets {
    addresses: Vec<String>,
    tls: ClientConfigRx,
    resolved: tokio::sync::Mutex<Resolved>,
    next: AtomicUsize,
}

impl Targets {
    /// The replicas of `addresses` (`host:port`, comma-separated), dialled
    /// with the TLS config in `tls`. Nothing is resolved or dialled yet.
    pub(crate) fn new(addresses: &str, tls: ClientConfigRx) -> Result<Self, WorkerError> {
        let addresses: Vec<String> = addresses
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect();
        if addresses.is_empty() {
            return Err(WorkerError::Config("address: no host:port given".into()));
        }
        // Checks each address's shape now, not at the first call.
        for address in &addresses {
            tokenvault_tls::channel(address, tls.clone())?;
        }
        Ok(Self {
            addresses,
            tls,
            resolved: tokio::sync::Mutex::new(Resolved {
                at: None,
                channels: Vec::new(),
            }),
            next: AtomicUsize::new(0),
        })
    }

    /// The channels, resolving the names again when they are old. A name
    /// that does not resolve keeps its replicas from the last time.
    async fn channels(&self) -> Result<Vec<Channel>, WorkerError> {
        let mut resolved = self.resolved.lock().await;
        if resolved.at.is_none_or(|at| at.elapsed() >= RESOLVE_EVERY) {
            let mut known: HashMap<Replica, Channel> = resolved.channels.drain(..).collect();
            let mut fresh = Vec::new();
            for address in &self.addresses {
                match tokio::net::lookup_host(address.as_str()).await {
                    Ok(found) => {
                        for via in found {
                            let replica = Replica {
                                address: address.clone(),
                                via,
                            };
                            let channel = match known.remove(&replica) {
                                Some(channel) => channel,
                                None => tokenvault_tls::channel_via(
                                    address,
                                    Some(via),
                                    self.tls.clone(),
                                )?,
                            };
                            fresh.push((replica, channel));
                        }
                    }
                    // A name that no longer resolves keeps its replicas until
                    // it does again; if they are gone, calls say UNAVAILABLE.
                    Err(_) => {
                        let old: Vec<Replica> = known
                            .keys()
                            .filter(|r| r.address == *address)
                            .cloned()
                            .collect();
                        for replica in old {
                            if let Some(channel) = known.remove(&replica) {
                                fresh.push((replica, channel));
                            }
                        }
                    }
                }
            }
            fresh.sort_by(|a, b| (&a.0.address, a.0.via).cmp(&(&b.0.address, b.0.via)));
            fresh.dedup_by(|a, b| a.0 == b.0);
            resolved.channels = fresh;
            resolved.at = Some(Instant::now());
        }
        if resolved.channels.is_empty() {
            return Err(WorkerError::Status(tonic::Status::unavailable(format!(
                "no get-service replica found at {}",
                self.addresses.join(",")
            ))));
        }
        Ok(resolved.channels.iter().map(|(_, c)| c.clone()).collect())
    }

    /// Runs `call` (given a replica's channel, for any of get-service's
    /// services) on one replica after another, starting round-robin,
    /// until one answers other than UNAVAILABLE, every replica was tried
    /// once, or `limit` is spent; `call` gets the time left. When every
    /// replica said UNAVAILABLE, the names are resolved again next time.
    /// (A call cut off by its connection, e.g. refused by a replica that is
    /// stopping, counts as UNAVAILABLE: see [`retry_elsewhere`].)
    pub(crate) async fn call<T, F, Fut>(&self, limit: Duration, call: F) -> Result<T, WorkerError>
    where
        F: Fn(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + limit;
        let channels = self.channels().await?;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        // One more try on the same replica, once per call, when the replica
        // never saw the call (its connection was going away, e.g. the
        // server said GOAWAY): tonic has opened a new connection by then.
        let mut retried_cut_off = false;
        let mut i = 0;
        while i < channels.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let channel = channels[(start + i) % channels.len()].clone();
            match call(channel, left).await {
                Err(status) if never_sent(&status) || retry_elsewhere(&status) => {
                    if never_sent(&status) && !retried_cut_off {
                        retried_cut_off = true;
                    } else {
                        i += 1;
                    }
                    last = Some(status);
                }
                other => return other.map_err(WorkerError::from),
            }
        }
        // Replicas may have moved: resolve again on the next call.
        self.resolved.lock().await.at = None;
        Err(WorkerError::Status(match last {
            Some(status) => unavailable(status),
            None => tonic::Status::deadline_exceeded("no get-service replica answered in time"),
        }))
    }
}

/// The status of a call that no replica answered: UNAVAILABLE, as the
/// `.proto` promises for "safe to retry later", also when the last replica
/// cut the call off (which tonic reports as CANCELLED or UNKNOWN).
fn unavailable(status: tonic::Status) -> tonic::Status {
    if status.code() == tonic::Code::Unavailable {
        return status;
    }
    tonic::Status::unavailable(format!(
        "the call to get-service was cut off ({}: {}); safe to retry",
        status.code(),
        status.message()
    ))
}

/// Whether a failed call may be made again on another replica: the replica
/// said UNAVAILABLE (stopping, or its database or provider is away), or the
/// call was cut off on its way (a stopping replica refused the stream, or
/// the connection broke): tonic reports those as CANCELLED, or as UNKNOWN
/// "transport error". The caller's own cancellation never reaches here (its
/// future is dropped). Every RPC called through here is idempotent (the
/// inventory's are reads; a watch is opened again after its last cursor).
fn retry_elsewhere(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => true,
        tonic::Code::Unknown => status.message() == "transport error",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_cut_off_on_every_replica_is_unavailable() {
        for cut in [
            tonic::Status::cancelled("operation was canceled"),
            tonic::Status::unknown("transport error"),
        ] {
            assert!(retry_elsewhere(&cut));
            let status = unavailable(cut);
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert!(status.message().contains("cut off"), "{status:?}");
        }
        let refused = tonic::Status::unavailable("Connection refused");
        assert_eq!(unavailable(refused).message(), "Connection refused");
        assert!(!retry_elsewhere(&tonic::Status::unknown("something else")));
    }
}
