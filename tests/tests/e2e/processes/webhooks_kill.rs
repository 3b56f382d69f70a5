//! set-service SIGKILLed in the middle of delivering webhooks to a slow receiver (the release
//! binary, a real process): after the restart every account event reaches the application, in
//! cursor order, each verified by Python's `standardwebhooks`; only the POST that was in flight
//! may arrive twice (at least once, never lost).

use std::time::Duration;

use tokenvault_store::TokenReader;
use tokenvault_tests::procs::{ProcOptions, ProcSystem};
use tokenvault_tests::webhook_receiver::{ReceiverOptions, WebhookReceiver};

const LOGINS: [&str; 6] = ["kai", "lea", "max", "noa", "oli", "pia"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_service_killed_mid_delivery_loses_no_event() {
    // Each delivery takes 300 ms at the receiver: the kill lands while one is in flight.
    let receiver = WebhookReceiver::start(ReceiverOptions {
        delay_ms: 300,
        ..ReceiverOptions::default()
    })
    .await
    .unwrap();
    let webhooks = format!(
        "[[webhooks]]\nname = \"app\"\nurl = \"{url}\"\nsecret_file = \"{secret}\"\n\
         initial_backoff_ms = 50\nmax_backoff_ms = 400\ntimeout_ms = 2000\npoll_ms = 50\n",
        url = receiver.url(),
        secret = receiver.secret_file().display(),
    );
    let mut f = ProcSystem::start(ProcOptions {
        set_webhooks_toml: Some(webhooks),
        ..ProcOptions::default()
    })
    .await
    .unwrap();
    for login in LOGINS {
        f.connect_directly(login).await.unwrap();
    }
    receiver.wait_for(2, Duration::from_secs(15)).await.unwrap();
    f.set.kill().unwrap();
    let before_restart = receiver.received_once().unwrap().len();
    assert!(
        before_restart < LOGINS.len(),
        "all delivered before the kill"
    );
    f.set.restart().await.unwrap();

    f.shared_store().unwrap().settle_events().await;
    let stored = TokenReader::connect(&f.shared_store().unwrap().reader_url)
        .await
        .unwrap()
        .events_after(0, 100)
        .await
        .unwrap();
    assert_eq!(stored.len(), LOGINS.len());
    let received = receiver
        .wait_for(stored.len(), Duration::from_secs(30))
        .await
        .unwrap();
    let ids: Vec<String> = received.iter().map(|r| r.webhook_id.clone()).collect();
    let expected: Vec<String> = stored.iter().map(|e| format!("evt_{}", e.cursor)).collect();
    assert_eq!(ids, expected, "every event once, in cursor order");
    // At least once: at most the one POST in flight at the kill came twice.
    let all = receiver.received().unwrap();
    assert!(all.len() <= stored.len() + 1, "{} deliveries", all.len());
    assert!(receiver.requests().unwrap().iter().all(|r| r.verified));
    f.stop().await.unwrap();
}
