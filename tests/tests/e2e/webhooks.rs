//! Webhooks (issue #17): set-service POSTs every account event to the application's endpoint,
//! signed as the Standard Webhooks specification says, at least once, in cursor order, with
//! retries and backoff. The receiver (`tests/webhooks/receiver.py`) verifies every request with
//! the Python `standardwebhooks` library, the reference verifier nobody here wrote.
//!
//! Each test starts set-service on a fresh store (SQLite and PostgreSQL) with one `[[webhooks]]`
//! entry, changes accounts through set-service's RPCs as web-frontend and get-service would, and
//! reads what the receiver accepted, the delivery rows and the metrics. Every wait is bounded.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_proto::v1::{
    AccountStatus, DisconnectAccountRequest, RecordAccountStatusRequest, StoreRefreshTokenRequest,
};
use tokenvault_seal::PublicKeySet;
use tokenvault_set_service::config::WebhookConfig;
use tokenvault_tests::services::{set_service_config, start_set_service_at};
use tokenvault_tests::webhook_receiver::{Received, ReceiverOptions, WebhookReceiver};
use tokenvault_tests::{
    Backend, RunningService, TestPki, TestStore, assert_not_logged, grpc_channel, init_tracing,
    start_set_service,
};
use tokenvault_tls::Role;
use tokio::time::Instant;
use tonic::transport::Channel;

/// The endpoint's name in every test.
const ENDPOINT: &str = "app";

/// set-service with webhooks on a store, and clients as web-frontend and get-service.
struct Fixture {
    pki: TestPki,
    config: tokenvault_set_service::Config,
    set: RunningService,
    keys: PublicKeySet,
    web: SetServiceClient<Channel>,
    get: SetServiceClient<Channel>,
}

impl Fixture {
    async fn start(store: &TestStore, webhooks: Vec<WebhookConfig>) -> Self {
        init_tracing();
        let pki = TestPki::new().unwrap();
        let mut config = set_service_config(&pki, &store.writer_url).unwrap();
        config.webhooks = webhooks;
        let set = start_set_service(config.clone()).await.unwrap();
        let keys = PublicKeySet::load_dir(&pki.public_keys_dir()).unwrap();
        let (web, get) = (
            client(&pki, &set, Role::WebFrontend),
            client(&pki, &set, Role::GetService),
        );
        Self {
            pki,
            config,
            set,
            keys,
            web,
            get,
        }
    }

    /// Stores a token for `account` as web-frontend's connect flow does; returns the latency.
    async fn connect(&mut self, account: &str, metadata: &str) -> Duration {
        let request = StoreRefreshTokenRequest {
            account: account.into(),
            provider: "oidc".into(),
            sealed_token: self
                .keys
                .seal(account, "oidc", b"refresh-token-for-webhooks")
                .unwrap(),
            metadata_json: metadata.into(),
            ..Default::default()
        };
        let started = Instant::now();
        self.web.store_refresh_token(request).await.unwrap();
        started.elapsed()
    }

    /// Records `status` for `account` as get-service does after the provider's answer.
    async fn record_status(&mut self, account: &str, status: AccountStatus, reason: &str) {
        self.get
            .record_account_status(RecordAccountStatusRequest {
                account: account.into(),
                provider: "oidc".into(),
                status: status.into(),
                reason: reason.into(),
            })
            .await
            .unwrap();
    }

    async fn disconnect(&mut self, account: &str) {
        self.web
            .disconnect_account(DisconnectAccountRequest {
                account: account.into(),
                provider: "oidc".into(),
            })
            .await
            .unwrap();
    }

    /// Stops set-service (gracefully); returns how long the stop took.
    async fn stop(&mut self) -> Duration {
        let addr = self.set.addr;
        let running = std::mem::replace(&mut self.set, RunningService::stopped(addr));
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(20), running.stop())
            .await
            .expect("set-service did not stop within 20 s")
            .unwrap();
        started.elapsed()
    }

    /// Starts set-service again on its address with the same config.
    async fn restart(&mut self) {
        self.set = start_set_service_at(self.config.clone(), self.set.addr)
            .await
            .unwrap();
    }

    /// set-service's metric `name{labels}` (0 if absent).
    async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = reqwest::get(self.set.metrics_url().unwrap())
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&series))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    /// Waits (up to `within`) until metric `name{labels}` is `want`.
    async fn wait_metric(&self, name: &str, labels: &str, want: f64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.metric(name, labels).await;
            if now == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{{{labels}}} is {now}, not {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A client of `set` with a `role` certificate.
fn client(pki: &TestPki, set: &RunningService, role: Role) -> SetServiceClient<Channel> {
    let files = pki.issue(role, None).unwrap();
    SetServiceClient::new(grpc_channel(&set.address(), &files, Role::SetService).unwrap())
}

/// One row of `account_events`: (cursor, account, kind).
type EventRow = (i64, String, String);
/// One row of `account_event_deliveries`: (event, endpoint, attempt, outcome, detail).
type DeliveryRow = (i64, String, i64, String, String);

/// Every stored event, in cursor order (read as the owner).
async fn stored_events(store: &TestStore) -> Vec<EventRow> {
    const SQL: &str = "SELECT id, account, kind FROM account_events ORDER BY id";
    match store.backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&store.owner_url).await.unwrap();
            sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&store.owner_url)
                .await
                .unwrap();
            sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
        }
    }
}

/// Every delivery row, in the order written.
async fn deliveries(store: &TestStore) -> Vec<DeliveryRow> {
    const SQL: &str = "SELECT event_id, endpoint, CAST(attempt AS bigint), outcome, detail \
                       FROM account_event_deliveries ORDER BY id";
    match store.backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&store.owner_url).await.unwrap();
            sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&store.owner_url)
                .await
                .unwrap();
            sqlx::query_as(SQL).fetch_all(&mut conn).await.unwrap()
        }
    }
}

/// The receiver accepted every stored event once, and (first deliveries) in cursor order, each
/// with the id `evt_<cursor>` and the stored account and kind; every request it saw verified.
fn assert_all_in_order(received: &[Received], stored: &[EventRow], receiver: &WebhookReceiver) {
    let got: Vec<EventRow> = received
        .iter()
        .map(|r| {
            assert_eq!(
                r.webhook_id,
                format!("evt_{}", r.cursor()),
                "{:?}",
                r.payload
            );
            let kind = r.kind().strip_prefix("account.").unwrap().to_owned();
            (r.cursor(), r.account().to_owned(), kind)
        })
        .collect();
    assert_eq!(
        got.len(),
        stored.len(),
        "received {got:?}\nstored {stored:?}"
    );
    assert_eq!(
        got, stored,
        "not every event arrived, or not in cursor order"
    );
    let requests = receiver.requests().unwrap();
    assert!(
        requests.iter().all(|r| r.verified),
        "a request did not verify: {}",
        receiver.log()
    );
}

fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    let index = (latencies.len() * 99).div_ceil(100).saturating_sub(1);
    latencies[index]
}

/// (a) Connect, reauthorization required (recorded as get-service would), recovered through a
/// reconnect, and disconnect: each arrives verified, in order, with its type, status, reason
/// and metadata; each delivery is one `delivered` row and counted.
async fn events_arrive_verified_in_order(store: &TestStore) {
    let receiver = WebhookReceiver::start(ReceiverOptions::default())
        .await
        .unwrap();
    let mut f = Fixture::start(store, vec![receiver.endpoint(ENDPOINT)]).await;
    let metadata = json!({"tenant": "acme", "tags": ["vip", "eu"]});
    f.connect("wh-alice", &metadata.to_string()).await;
    f.connect("wh-bob", "").await;
    f.record_status(
        "wh-alice",
        AccountStatus::ReauthorizationRequired,
        "invalid_grant",
    )
    .await;
    f.connect("wh-alice", "").await;
    f.disconnect("wh-bob").await;

    let received = receiver.wait_for(5, Duration::from_secs(30)).await.unwrap();
    let expected = [
        ("wh-alice", "account.connected", "active", ""),
        ("wh-bob", "account.connected", "active", ""),
        (
            "wh-alice",
            "account.reauthorization_required",
            "reauthorization_required",
            "invalid_grant",
        ),
        ("wh-alice", "account.recovered", "active", ""),
        ("wh-bob", "account.disconnected", "disconnected", ""),
    ];
    assert_eq!(received.len(), expected.len());
    let now = time::OffsetDateTime::now_utc();
    let date = |t: time::OffsetDateTime| {
        let (y, m, d) = (t.year(), u8::from(t.month()), t.day());
        format!("{y:04}-{m:02}-{d:02}")
    };
    let (today, yesterday) = (date(now), date(now - time::Duration::days(1)));
    let now = now.unix_timestamp();
    for (r, (account, kind, status, reason)) in received.iter().zip(expected) {
        let data = &r.payload["data"];
        assert_eq!((r.account(), r.kind()), (account, kind), "{}", r.payload);
        assert_eq!(data["status"], status, "{}", r.payload);
        if !reason.is_empty() {
            assert_eq!(data["reason"], reason, "{}", r.payload);
        }
        assert_eq!(data["provider"], "oidc");
        // The account's metadata, as stored with its connect, rides along with each event.
        let want_metadata = if account == "wh-alice" {
            metadata.clone()
        } else {
            Value::Null
        };
        assert_eq!(data["metadata"], want_metadata, "{}", r.payload);
        // RFC 3339 in UTC, e.g. 2026-01-02T03:04:05Z, of today (or just before midnight).
        let occurred_at = data["occurred_at"].as_str().unwrap();
        let shape: String = occurred_at
            .chars()
            .map(|c| if c.is_ascii_digit() { 'd' } else { c })
            .collect();
        assert_eq!(shape, "dddd-dd-ddTdd:dd:ddZ", "{}", r.payload);
        assert!(
            [today.as_str(), yesterday.as_str()].contains(&&occurred_at[..10]),
            "{}",
            r.payload
        );
        assert_eq!(r.payload["timestamp"], data["occurred_at"]);
        assert!((now - r.webhook_timestamp).abs() < 120);
    }
    assert_all_in_order(&received, &stored_events(store).await, &receiver);

    let rows = deliveries(store).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    for (row, r) in rows.iter().zip(&received) {
        assert_eq!(
            row,
            &(
                r.cursor(),
                ENDPOINT.to_owned(),
                1,
                "delivered".to_owned(),
                "HTTP 204".to_owned()
            )
        );
    }
    let labels = format!("endpoint=\"{ENDPOINT}\",outcome=\"delivered\"");
    f.wait_metric(
        "tokenvault_webhook_deliveries_total",
        &labels,
        5.0,
        Duration::from_secs(5),
    )
    .await;
    f.wait_metric(
        "tokenvault_webhook_pending_events",
        &format!("endpoint=\"{ENDPOINT}\""),
        0.0,
        Duration::from_secs(5),
    )
    .await;
    let secret = std::fs::read_to_string(receiver.secret_file()).unwrap();
    assert_not_logged(secret.trim(), "the webhook secret");
    assert_not_logged(
        secret.trim().trim_start_matches("whsec_"),
        "the webhook key",
    );
    f.stop().await;
}

/// (b) A receiver that is down for 30 s and then answers 500 twice: every event arrives
/// afterwards, in order, each verified; StoreRefreshToken's latency meanwhile stays that of a
/// baseline taken with the receiver up.
async fn a_down_receiver_slows_no_rpc(store: &TestStore) {
    const ACCOUNTS: usize = 5;
    const PACE: Duration = Duration::from_millis(50);
    const BASELINE_CALLS: usize = 100;
    const OUTAGE: Duration = Duration::from_secs(30);
    let mut receiver = WebhookReceiver::start(ReceiverOptions::default())
        .await
        .unwrap();
    // Attempts enough to outlast the outage at one a second.
    let endpoint = WebhookConfig {
        max_backoff_ms: 1000,
        max_attempts: 1000,
        ..receiver.endpoint(ENDPOINT)
    };
    let mut f = Fixture::start(store, vec![endpoint]).await;
    let account = |i: usize| format!("wh-down-{}", i % ACCOUNTS);
    // Warm up the connections, then the baseline with the receiver up.
    for i in 0..ACCOUNTS {
        f.connect(&account(i), "").await;
    }
    let mut baseline = Vec::new();
    for i in 0..BASELINE_CALLS {
        baseline.push(f.connect(&account(i), "").await);
        tokio::time::sleep(PACE).await;
    }
    let before = ACCOUNTS + BASELINE_CALLS;
    receiver
        .wait_for(before, Duration::from_secs(30))
        .await
        .unwrap();

    receiver.stop();
    let mut outage = Vec::new();
    let outage_end = Instant::now() + OUTAGE;
    let mut i = 0;
    while Instant::now() < outage_end {
        outage.push(f.connect(&account(i), "").await);
        i += 1;
        tokio::time::sleep(PACE).await;
    }
    // Nothing got through meanwhile; the dispatcher kept trying.
    assert_eq!(receiver.received_once().unwrap().len(), before);
    let stored = stored_events(store).await;
    assert_eq!(stored.len(), before + outage.len());
    receiver
        .restart(ReceiverOptions {
            fail_first: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let received = receiver
        .wait_for(stored.len(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_all_in_order(&received, &stored, &receiver);
    let answered_500 = receiver
        .requests()
        .unwrap()
        .iter()
        .filter(|r| r.status == 500)
        .count();
    assert_eq!(answered_500, 2);

    // The first event of the outage: refused connections, then 500 twice, then delivered.
    let first = stored[before].0;
    let rows: Vec<DeliveryRow> = deliveries(store)
        .await
        .into_iter()
        .filter(|row| row.0 == first)
        .collect();
    let (last, failures) = rows.split_last().unwrap();
    assert_eq!(
        (last.3.as_str(), last.4.as_str()),
        ("delivered", "HTTP 204"),
        "{rows:?}"
    );
    assert!(failures.iter().all(|row| row.3 == "retrying"), "{rows:?}");
    assert!(
        failures.iter().any(|row| row.4.starts_with("connect")),
        "{rows:?}"
    );
    let tail: Vec<&str> = failures
        .iter()
        .rev()
        .take(2)
        .map(|r| r.4.as_str())
        .collect();
    assert_eq!(tail, ["HTTP 500", "HTTP 500"], "{rows:?}");
    assert!(rows.iter().zip(1..).all(|(row, n)| row.2 == n), "{rows:?}");

    let (base, down) = (p99(&mut baseline), p99(&mut outage));
    eprintln!(
        "{:?}: StoreRefreshToken p99 {base:?} with the receiver up ({} calls), \
         {down:?} while it was down ({} calls)",
        store.backend,
        baseline.len(),
        outage.len()
    );
    assert!(
        down < base * 3 + Duration::from_millis(50),
        "p99 {down:?} while the receiver was down, {base:?} before"
    );
    f.stop().await;
}

/// (c) set-service stopped and started again while it delivers to a slow endpoint: the stop
/// does not hang, nothing is lost, and only the POST in flight may arrive twice.
async fn a_restart_mid_delivery_loses_nothing(store: &TestStore) {
    let receiver = WebhookReceiver::start(ReceiverOptions {
        delay_ms: 300,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut f = Fixture::start(store, vec![receiver.endpoint(ENDPOINT)]).await;
    for i in 0..10 {
        f.connect(&format!("wh-restart-{i}"), "").await;
    }
    receiver.wait_for(3, Duration::from_secs(30)).await.unwrap();
    let took = f.stop().await;
    assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    let delivered_at_stop = receiver.received_once().unwrap().len();
    assert!(delivered_at_stop < 10, "all delivered before the stop");
    f.restart().await;
    for i in 10..15 {
        f.connect(&format!("wh-restart-{i}"), "").await;
    }
    let stored = stored_events(store).await;
    assert_eq!(stored.len(), 15);
    let received = receiver
        .wait_for(15, Duration::from_secs(60))
        .await
        .unwrap();
    assert_all_in_order(&received, &stored, &receiver);
    let all = receiver.received().unwrap();
    assert!(
        all.len() - received.len() <= 1,
        "more than the event in flight arrived twice: {:?}",
        all.iter().map(|r| &r.webhook_id).collect::<Vec<_>>()
    );
    f.stop().await;
}

/// (d) An endpoint that keeps failing for one event: after `max_attempts` that event is
/// recorded `failed` and counted, and the events after it still go out.
async fn a_failing_event_is_given_up_and_the_rest_go_out(store: &TestStore) {
    let receiver = WebhookReceiver::start(ReceiverOptions {
        fail_accounts: vec!["wh-poison".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let endpoint = WebhookConfig {
        max_attempts: 3,
        ..receiver.endpoint(ENDPOINT)
    };
    let mut f = Fixture::start(store, vec![endpoint]).await;
    f.connect("wh-poison", "").await;
    f.connect("wh-after-1", "").await;
    f.connect("wh-after-2", "").await;
    let received = receiver.wait_for(2, Duration::from_secs(30)).await.unwrap();
    let accounts: Vec<&str> = received.iter().map(Received::account).collect();
    assert_eq!(accounts, ["wh-after-1", "wh-after-2"]);

    let stored = stored_events(store).await;
    let poison = stored[0].0;
    let rows: Vec<(i64, String, String)> = deliveries(store)
        .await
        .into_iter()
        .filter(|row| row.0 == poison)
        .map(|row| (row.2, row.3, row.4))
        .collect();
    let http_500 = "HTTP 500".to_owned();
    assert_eq!(
        rows,
        [
            (1, "retrying".to_owned(), http_500.clone()),
            (2, "retrying".to_owned(), http_500.clone()),
            (3, "failed".to_owned(), http_500),
        ]
    );
    let requests = receiver.requests().unwrap();
    let poison_id = format!("evt_{poison}");
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.webhook_id.as_deref() == Some(poison_id.as_str()))
            .count(),
        3
    );
    let endpoint = format!("endpoint=\"{ENDPOINT}\"");
    let within = Duration::from_secs(5);
    f.wait_metric(
        "tokenvault_webhook_events_failed_total",
        &endpoint,
        1.0,
        within,
    )
    .await;
    for (outcome, count) in [("failed", 1.0), ("retrying", 2.0), ("delivered", 2.0)] {
        f.wait_metric(
            "tokenvault_webhook_deliveries_total",
            &format!("{endpoint},outcome=\"{outcome}\""),
            count,
            within,
        )
        .await;
    }
    f.stop().await;
}

/// Two set-service replicas on one PostgreSQL store: only the one holding the dispatch lock
/// sends (every event exactly once); when it stops, the other takes over.
#[tokio::test]
async fn one_replica_dispatches_and_another_takes_over() {
    let store = TestStore::new(Backend::Postgres).await;
    let receiver = WebhookReceiver::start(ReceiverOptions::default())
        .await
        .unwrap();
    let mut f = Fixture::start(&store, vec![receiver.endpoint(ENDPOINT)]).await;
    let second = start_set_service(f.config.clone()).await.unwrap();
    for i in 0..10 {
        f.connect(&format!("wh-replica-{i}"), "").await;
    }
    receiver
        .wait_for(10, Duration::from_secs(30))
        .await
        .unwrap();
    // Time for a second sender, if there were one, to send again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.received().unwrap().len(),
        10,
        "an event arrived twice"
    );

    f.stop().await;
    f.web = client(&f.pki, &second, Role::WebFrontend);
    f.set = second;
    for i in 10..15 {
        f.connect(&format!("wh-replica-{i}"), "").await;
    }
    // The standby tries the lock every 5 s.
    let received = receiver
        .wait_for(15, Duration::from_secs(30))
        .await
        .unwrap();
    assert_all_in_order(&received, &stored_events(&store).await, &receiver);
    assert_eq!(
        receiver.received().unwrap().len(),
        15,
        "an event arrived twice"
    );
    f.stop().await;
}

tokenvault_tests::on_both_backends!(
    events_arrive_verified_in_order,
    a_down_receiver_slows_no_rpc,
    a_restart_mid_delivery_loses_nothing,
    a_failing_event_is_given_up_and_the_rest_go_out,
);
