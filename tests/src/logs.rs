//! Log capture: every test's tracing output goes both to the test's own
//! output and to an in-memory buffer, so a test can assert that no token
//! appears in any log line.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

fn buffer() -> &'static Mutex<Vec<u8>> {
    static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUFFER.get_or_init(|| Mutex::new(Vec::new()))
}

/// Everything logged in this process so far.
pub fn captured_logs() -> String {
    let guard = buffer().lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&guard).into_owned()
}

/// Panics if `needle` appears in any captured log line.
pub fn assert_not_logged(needle: &str, what: &str) {
    assert!(!needle.is_empty(), "empty needle for {what}");
    assert!(
        !captured_logs().contains(needle),
        "{what} appeared in the logs"
    );
}

struct Tee;

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        buffer()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        // print! so that the test harness captures it with the test's output.
        #[allow(clippy::print_stdout)]
        {
            print!("{}", String::from_utf8_lossy(buf));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once per process, at debug level for
/// tokenvault and info for everything else.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,tokenvault=debug"))
        .with_ansi(false)
        .with_writer(|| Tee)
        .try_init();
}
