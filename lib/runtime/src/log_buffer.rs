//! Log lines off the request path: callers append each line to a memory
//! buffer (no system call), and one thread writes what has gathered to the
//! output every [`FLUSH_EVERY`], or sooner once [`FLUSH_AT`] bytes wait.
//!
//! Nothing is dropped: if the output is slower than the lines (more than
//! [`BLOCK_AT`] bytes waiting), the caller writes the buffer itself, so
//! logging slows the service rather than losing an audit line. Dropping the
//! [`LogFlusher`] (a graceful stop) writes everything still buffered. A
//! process killed outright loses at most the last [`FLUSH_EVERY`] of lines
//! from this stream; the audit table has its own durability.
//!
//! Holds only what callers log, which never includes a token or a key.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Buffered bytes that wake the writing thread early.
pub const FLUSH_AT: usize = 64 * 1024;
/// Buffered bytes beyond which a caller writes out the buffer itself.
pub const BLOCK_AT: usize = 8 * 1024 * 1024;

type Output = Box<dyn Write + Send>;

struct State {
    pending: Vec<u8>,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Where lines go; locked while writing, so lines never interleave.
    output: Mutex<Output>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes what is pending and writes it out. Write errors are ignored:
    /// there is nowhere left to report them.
    fn write_out(&self) {
        let mut output = self.output.lock().unwrap_or_else(|p| p.into_inner());
        let batch = std::mem::take(&mut self.state().pending);
        if !batch.is_empty() {
            let _ = output.write_all(&batch);
            let _ = output.flush();
        }
    }
}

/// The writer handed to the log layers: cheap to clone, all clones share
/// one buffer. Each `write` call is appended whole (the log layers write a
/// formatted line in one call), so lines never interleave.
#[derive(Clone)]
pub struct BufferedWriter {
    shared: Arc<Shared>,
}

/// Writes the buffered lines when dropped, after stopping the thread.
pub struct LogFlusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A buffered writer over `output` and the flusher that owns its thread.
pub fn buffered(output: Output) -> (BufferedWriter, LogFlusher) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pending: Vec::with_capacity(FLUSH_AT),
            stopping: false,
        }),
        wake: Condvar::new(),
        output: Mutex::new(output),
    });
    let background = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("tokenvault-log".into())
        .spawn(move || flush_loop(&background))
        .ok();
    let writer = BufferedWriter {
        shared: Arc::clone(&shared),
    };
    (writer, LogFlusher { shared, thread })
}

fn flush_loop(shared: &Shared) {
    loop {
        let stopping = {
            let state = shared.state();
            let (state, _) = shared
                .wake
                .wait_timeout_while(state, FLUSH_EVERY, |s| {
                    s.pending.len() < FLUSH_AT && !s.stopping
                })
                .unwrap_or_else(|p| p.into_inner());
            state.stopping
        };
        shared.write_out();
        if stopping {
            return;
        }
    }
}

impl Write for BufferedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (waiting, no_thread) = {
            let mut state = self.shared.state();
            state.pending.extend_from_slice(buf);
            (state.pending.len(), state.stopping)
        };
        if waiting >= BLOCK_AT || no_thread {
            self.shared.write_out();
        } else if waiting >= FLUSH_AT {
            self.shared.wake.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for BufferedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedWriter").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LogFlusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFlusher").finish_non_exhaustive()
    }
}

impl<'w> MakeWriter<'w> for BufferedWriter {
    type Writer = BufferedWriter;
    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for LogFlusher {
    fn drop(&mut self) {
        self.shared.state().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Lines logged while the thread stopped (or if it never started).
        self.shared.write_out();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_by_the_time_the_flusher_is_dropped_in_few_writes() {
        let sink = Sink::default();
        let (writer, flusher) = buffered(Box::new(sink.clone()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        // One write per line, as the log layers do.
                        let _ = w.write_all(format!("thread {t} line {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
        drop(flusher);
        let (bytes, writes) = sink.0.lock().map(|s| s.clone()).unwrap_or_default();
        let text = String::from_utf8(bytes).unwrap_or_default();
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            assert_eq!(text.matches(&format!("thread {t} line 4999\n")).count(), 1);
        }
        assert!(writes < 20_000 / 10, "{writes} writes for 20000 lines");
    }

    #[test]
    fn a_line_reaches_the_output_within_the_flush_interval() {
        let sink = Sink::default();
        let (mut writer, _flusher) = buffered(Box::new(sink.clone()));
        let _ = writeln!(writer, "one line");
        std::thread::sleep(FLUSH_EVERY * 10);
        let written = sink.0.lock().map(|s| s.0.clone()).unwrap_or_default();
        assert_eq!(written, b"one line\n");
    }
}
