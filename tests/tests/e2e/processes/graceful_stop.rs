//! A graceful stop loses no log line: get-service buffers its lines off the
//! request path (`tokenvault_runtime::log_buffer`), and a SIGTERM right
//! after a burst of calls still leaves one audit line per call in its log.

use tokenvault_tests::procs::{ProcOptions, ProcSystem};
use tokenvault_tls::Role;

const CALLERS: usize = 8;
const CALLS_PER_CALLER: usize = 250;

/// 2,000 cached calls from 8 concurrent callers, then SIGTERM the moment
/// the last one is answered: the log holds exactly 2,000 successful
/// `GetAccessToken` audit lines for the account (plus the first call's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audit_line_is_written_when_get_service_stops_right_after_a_burst() {
    let mut f = ProcSystem::start(ProcOptions::default()).await.unwrap();
    let account = f.connect_directly("flora").await.unwrap();
    // The first call refreshes; the burst is served from the cache.
    f.token(&account, 0).await.unwrap();
    let worker = f
        .worker_with(&f.issue(Role::Worker, Some("burst")).unwrap())
        .unwrap();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (worker, account) = (worker.clone(), account.clone());
            tokio::spawn(async move {
                for _ in 0..CALLS_PER_CALLER {
                    worker
                        .access_token(&account, "oidc", std::time::Duration::from_secs(1))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let status = f.get.stop().await.unwrap();
    assert!(status.success(), "get-service exited with {status}");

    let logs = f.get.logs();
    let served = logs
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| {
            e["target"] == "tokenvault::audit"
                && e["rpc"] == "GetAccessToken"
                && e["account"] == account.as_str()
                && e["outcome"] == "ok"
        })
        .count();
    assert_eq!(served, CALLERS * CALLS_PER_CALLER + 1);
    // The last line is whole: the stop did not cut the log mid-line.
    assert!(logs.ends_with('\n'));
    f.get.restart().await.unwrap();
    f.stop().await.unwrap();
}
