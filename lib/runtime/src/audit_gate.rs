//! Room for audit events in the audit table's queue, and what a service does
//! when there is none: the `[audit] on_overflow` setting.
//!
//! The queue has [`AuditGate::capacity`] slots. A row holds its [`Slot`]
//! until it is written to the table (or given up), so the queue never grows
//! past its capacity.
//!
//! - `block` (the default when a table is configured): before a call is
//!   served, the gRPC chassis reserves a slot for its event
//!   ([`AuditGate::admit`]), waiting at most `overflow_wait_ms`; a call
//!   that gets none is refused with UNAVAILABLE and never served. The event
//!   the call then writes uses its reserved slot ([`Reserved`]), so nothing
//!   that is served goes unaudited.
//! - `drop`: calls never wait; an event that finds the queue full is left
//!   out of the table (it is still in the JSON audit log), counted in
//!   `tokenvault_audit_events_dropped_total` and logged.
//!
//! Events only: this module holds no event content, let alone a token.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Registry, registered};

/// What happens to an event that finds the audit table's queue full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Callers wait for room, then get UNAVAILABLE: nothing unaudited is
    /// served.
    #[default]
    Block,
    /// The event is left out of the table, counted and logged.
    Drop,
}

impl Overflow {
    /// The setting's value, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Drop => "drop",
        }
    }
}

/// Room for one row in the audit table's queue, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// The slot reserved for the audit event of the call being served, shared
/// between the task that serves it and the code that writes its event (a
/// `Mutex`, not a cell: it crosses `.await` points on a multi-threaded
/// runtime).
pub type Reserved = Arc<Mutex<Option<Slot>>>;

tokio::task_local! {
    static RESERVED: Reserved;
}

/// The audit table's queue slots, its overflow policy and its loss
/// counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditGate {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    slots: Arc<Semaphore>,
    capacity: usize,
    overflow: Overflow,
    wait: Duration,
    /// Events left out of the table, for the metric.
    dropped: Counter,
    /// Events left out since the writer last logged them.
    unlogged: AtomicU64,
    /// Calls refused for want of room (`block`).
    refused: Counter,
}

impl AuditGate {
    /// A queue of `capacity` slots (at least one) with `overflow`; `block`
    /// waits at most `wait` for a slot.
    pub fn new(capacity: usize, overflow: Overflow, wait: Duration) -> Self {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(capacity)),
                capacity,
                overflow,
                wait,
                dropped: Counter::default(),
                unlogged: AtomicU64::new(0),
                refused: Counter::default(),
            }),
        }
    }

    /// How many rows the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.inner.overflow
    }

    /// Registers the loss counters in a service's registry.
    pub fn register(&self, registry: &mut Registry) {
        registered(
            registry,
            "audit_events_dropped",
            "Audit events left out of the audit table (queue full under on_overflow = \"drop\", or not writable); each is still in the JSON audit log",
            self.inner.dropped.clone(),
        );
        registered(
            registry,
            "audit_refused_calls",
            "Calls refused with UNAVAILABLE because the audit table's queue had no room (on_overflow = \"block\")",
            self.inner.refused.clone(),
        );
    }

    /// Before a call is served. With `block`, waits for a slot and returns
    /// it, or [`Full`] if none came within `overflow_wait_ms` (refuse the
    /// call); with `drop`, returns `Ok(None)` at once.
    pub async fn admit(&self) -> Result<Option<Reserved>, Full> {
        if self.inner.overflow == Overflow::Drop {
            return Ok(None);
        }
        let reserve = |permit| Ok(Some(Arc::new(Mutex::new(Some(Slot { _permit: permit })))));
        // Room at once is the common case: no timer for it.
        if let Ok(permit) = Arc::clone(&self.inner.slots).try_acquire_owned() {
            return reserve(permit);
        }
        let acquire = Arc::clone(&self.inner.slots).acquire_owned();
        match tokio::time::timeout(self.inner.wait, acquire).await {
            Ok(Ok(permit)) => reserve(permit),
            _ => {
                self.inner.refused.inc();
                Err(Full)
            }
        }
    }

    /// For the sink writing an event: the slot reserved for the current
    /// call, if there is one, or else a free one; `None` if the queue is
    /// full (count the loss with [`dropped`](Self::dropped)).
    pub fn take_slot(&self) -> Option<Slot> {
        let reserved = RESERVED
            .try_with(|cell| cell.lock().ok().and_then(|mut slot| slot.take()))
            .ok()
            .flatten();
        reserved.or_else(|| {
            Arc::clone(&self.inner.slots)
                .try_acquire_owned()
                .ok()
                .map(|permit| Slot { _permit: permit })
        })
    }

    /// Counts `n` events left out of the table.
    pub fn dropped(&self, n: u64) {
        self.inner.dropped.inc_by(n);
        self.inner.unlogged.fetch_add(n, Ordering::Relaxed);
    }

    /// Events left out since the last call (for one aggregated log line).
    pub fn take_unlogged(&self) -> u64 {
        self.inner.unlogged.swap(0, Ordering::Relaxed)
    }

    /// Events left out of the table so far.
    pub fn dropped_total(&self) -> u64 {
        self.inner.dropped.get()
    }
}

/// No room in the audit table's queue within `overflow_wait_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Runs `fut` (serving one call) with `reserved` as the slot of the audit
/// event it writes.
pub async fn with_reserved<F: Future>(reserved: Reserved, fut: F) -> F::Output {
    RESERVED.scope(reserved, fut).await
}

/// Runs `f` (writing one call's audit event) with `reserved` as its slot.
pub fn with_reserved_sync<R>(reserved: Reserved, f: impl FnOnce() -> R) -> R {
    RESERVED.sync_scope(reserved, f)
}

/// The gate of the audit table this process writes, if it has one: set by
/// the table's installer, read by the gRPC chassis when it starts serving.
static INSTALLED: RwLock<Option<AuditGate>> = RwLock::new(None);

/// Makes `gate` the process's audit gate (replacing any earlier one).
pub fn install(gate: AuditGate) {
    if let Ok(mut slot) = INSTALLED.write() {
        *slot = Some(gate);
    }
}

/// The process's audit gate, if an audit table is installed.
pub fn installed() -> Option<AuditGate> {
    INSTALLED.read().ok().and_then(|gate| gate.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn block_reserves_a_slot_per_call_and_refuses_when_none_is_free() {
        let gate = AuditGate::new(2, Overflow::Block, Duration::from_millis(20));
        let first = gate.admit().await.unwrap().unwrap();
        let second = gate.admit().await.unwrap().unwrap();
        assert_eq!(gate.admit().await.unwrap_err(), Full);
        // The event of the first call uses the first call's slot.
        let slot = with_reserved_sync(Arc::clone(&first), || gate.take_slot());
        assert!(slot.is_some());
        assert!(first.lock().unwrap().is_none());
        // A row written frees its slot; the second call's unused slot is
        // freed when the call ends.
        drop(slot);
        drop(second);
        assert!(gate.admit().await.unwrap().is_some());
        assert_eq!(gate.inner.refused.get(), 1);
    }

    #[tokio::test]
    async fn drop_never_waits_and_counts_what_finds_no_room() {
        let gate = AuditGate::new(1, Overflow::Drop, Duration::from_secs(60));
        assert!(gate.admit().await.unwrap().is_none());
        let held = gate.take_slot();
        assert!(held.is_some());
        assert!(gate.take_slot().is_none());
        gate.dropped(1);
        assert_eq!(gate.dropped_total(), 1);
        assert_eq!(gate.take_unlogged(), 1);
        assert_eq!(gate.take_unlogged(), 0);
    }
}
