//! The threads that run private-key operations for async callers, so that an
//! RSA-4096 decryption (milliseconds of CPU) never runs on a tokio worker,
//! where a burst of them would stall every cached call behind it.
//!
//! - One thread per core the process may use (`available_parallelism`,
//!   which follows CPU affinity and cgroup quotas), started on first use,
//!   stopped when the pool is dropped. Work beyond that queues, so a burst
//!   never takes more than the cores it is given.
//! - Each thread runs at a lower scheduling priority (`nice`
//!   [`NICE_INCREMENT`]): alone, a burst of opens uses every core; when
//!   cached calls want the CPU too, the kernel's fair scheduler gives them
//!   most of it, so they keep their latency while the burst drains.
//!
//! What crosses a thread here is what the job returns (a plaintext in a
//! `Zeroizing` heap buffer, moved, never copied); nothing is logged.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use crate::open::OpenError;

/// How much lower than the rest of the process the pool's threads run
/// (a `nice` increment: the kernel gives a thread at +5 about a third of
/// the CPU share of one at 0 when both want it).
pub const NICE_INCREMENT: i32 = 5;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads for private-key work; see the module docs.
#[derive(Default)]
pub(crate) struct DecryptPool {
    jobs: OnceLock<Sender<Job>>,
}

impl DecryptPool {
    /// How many threads the pool runs.
    pub(crate) fn size() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    /// Runs `work` on a pool thread and returns its result. A job that
    /// panics, or a pool that cannot start a thread, gives
    /// [`OpenError::Internal`].
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T, OpenError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, OpenError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.jobs
            .get_or_init(|| start(Self::size()))
            .send(job)
            .map_err(|_| OpenError::Internal)?;
        rx.await.map_err(|_| OpenError::Internal)?
    }
}

/// Starts `threads` workers sharing one queue; they stop when its sender is
/// dropped.
fn start(threads: usize) -> Sender<Job> {
    let (tx, rx) = channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..threads {
        let rx = Arc::clone(&rx);
        let spawned = std::thread::Builder::new()
            .name(format!("tokenvault-open-{i}"))
            .spawn(move || serve(&rx));
        if let Err(e) = spawned {
            // Fewer threads than cores still serve; none at all leaves every
            // job unanswered, which `run` reports as Internal.
            tracing::error!(error = %e, "cannot start a private-key thread");
        }
    }
    tx
}

/// One worker: lowers its own priority, then runs jobs until the queue
/// closes. A panicking job drops its answer channel (its caller gets
/// `Internal`) and the thread carries on.
fn serve(jobs: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => {
                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

/// `nice` this thread (on Linux a priority belongs to a thread) by
/// [`NICE_INCREMENT`]. Lowering a priority needs no privilege; if the
/// kernel refuses anyway, the thread runs at the normal priority.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), current + NICE_INCREMENT) {
        tracing::warn!(error = %e, "cannot lower a private-key thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[allow(clippy::panic)]
    async fn jobs_run_off_the_calling_thread_and_a_panic_is_internal() {
        let pool = DecryptPool::default();
        let caller = std::thread::current().id();
        let ran_on = pool
            .run(|| Ok(std::thread::current().id()))
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_ne!(ran_on, caller);

        let panicked = pool
            .run(|| -> Result<(), OpenError> { panic!("boom") })
            .await;
        assert!(matches!(panicked, Err(OpenError::Internal)));
        // The pool still serves after a panic.
        let after = pool.run(|| Ok(7)).await;
        assert!(matches!(after, Ok(7)));
    }

    #[tokio::test]
    async fn pool_threads_run_at_a_lower_priority() {
        let pool = DecryptPool::default();
        let ours = rustix::process::getpriority_process(None).unwrap_or(0);
        let theirs = pool
            .run(|| {
                rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                    .map_err(|_| OpenError::Internal)
            })
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(theirs, (ours + NICE_INCREMENT).min(19));
    }
}
