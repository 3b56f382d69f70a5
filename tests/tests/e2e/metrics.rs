//! Metrics and health: each service's `/metrics` endpoint is scraped over
//! HTTP before and after real calls, and the counters and histograms move by
//! exactly what the calls did, with the right labels; the certificate-expiry
//! gauges match the certificates in use. The gRPC health status turns
//! NOT_SERVING while the PostgreSQL database refuses connections and SERVING
//! once it accepts them again, and get-service is NOT_SERVING while its
//! sealing key has no private key to open with.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokenvault_pki::{PUBLIC_MODE, StateDir, write_file};
use tokenvault_proto::v1::StoreRefreshTokenRequest;
use tokenvault_proto::v1::set_service_client::SetServiceClient;
use tokenvault_tests::services::{
    get_service_config, grpc_channel, set_service_config, start_get_service, start_set_service,
};
use tokenvault_tests::system::{Options, System};
use tokenvault_tests::{TestPki, TestStore, captured_logs, init_tracing};
use tokenvault_tls::{Role, TlsFiles};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const GET_TOKEN: &str = "tokenvault.v1.GetService/GetAccessToken";
const STORE_TOKEN: &str = "tokenvault.v1.SetService/StoreRefreshToken";

/// One scrape: every sample line, keyed by series (`name{labels}`).
#[derive(Debug)]
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    async fn of(url: &str) -> Self {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let text = response.text().await.unwrap();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Self(samples)
    }

    /// A series' value; 0 if it is not there yet.
    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    fn has(&self, series: &str) -> bool {
        self.0.contains_key(series)
    }
}

/// How much `series` grew from `before` to `after`.
fn delta(before: &Scrape, after: &Scrape, series: &str) -> f64 {
    after.get(series) - before.get(series)
}

fn grpc(rpc: &str, code: &str) -> String {
    format!("tokenvault_grpc_requests_total{{rpc=\"{rpc}\",code=\"{code}\"}}")
}

fn grpc_latency_count(rpc: &str) -> String {
    format!("tokenvault_grpc_request_duration_seconds_count{{rpc=\"{rpc}\"}}")
}

fn by_provider(name: &str, provider: &str) -> String {
    format!("tokenvault_{name}_total{{provider=\"{provider}\"}}")
}

fn http(route: &str, status: u16) -> String {
    format!("tokenvault_http_requests_total{{route=\"{route}\",status=\"{status}\"}}")
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The certificate gauges match `files`' leaf: the same notAfter (within the
/// seconds between two issues of the same role's certificate in a test), and
/// the seconds left are that notAfter minus now, within the 7-day validity.
fn assert_cert_gauges(scrape: &Scrape, files: &TlsFiles, what: &str) {
    let chain = tokenvault_tls::read_certs("tls.cert", &files.cert).unwrap();
    let file_not_after = tokenvault_tls::not_after_unix(&chain[0]).unwrap() as f64;
    let not_after = scrape.get("tokenvault_tls_cert_not_after_timestamp_seconds");
    let left = scrape.get("tokenvault_tls_cert_expiry_seconds");
    assert!(
        (not_after - file_not_after).abs() <= 120.0,
        "{what}: gauge notAfter {not_after}, certificate {file_not_after}"
    );
    assert!(
        (left - (not_after - now_unix())).abs() <= 5.0,
        "{what}: {left} s left, notAfter {not_after}"
    );
    assert!(
        left > 6.0 * 86_400.0 && left <= 7.0 * 86_400.0 + 60.0,
        "{what}: {left} s left is not within a fresh 7-day certificate's validity"
    );
}

fn role_files(pki: &TestPki, role: Role) -> TlsFiles {
    pki.files(&StateDir::stem(&pki.id(role, None).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_histograms_move_with_calls() {
    let mut f = System::start(Options::default()).await.unwrap();
    let set_url = f.set.metrics_url().unwrap();
    let get_url = f.get.metrics_url().unwrap();
    let web_url = f.web.metrics_url().unwrap();
    let (set0, get0, web0) = (
        Scrape::of(&set_url).await,
        Scrape::of(&get_url).await,
        Scrape::of(&web_url).await,
    );

    // set-service: one StoreRefreshToken as web-frontend (OK), one as a
    // worker (PERMISSION_DENIED).
    let tokens = f.connect("metrics-alice").await.unwrap();
    let worker = f.pki.issue(Role::Worker, Some("metrics")).unwrap();
    let mut as_worker =
        SetServiceClient::new(grpc_channel(&f.set.address(), &worker, Role::SetService).unwrap());
    let denied = as_worker
        .store_refresh_token(StoreRefreshTokenRequest {
            account: "metrics-alice".into(),
            provider: "oidc".into(),
            sealed_token: f
                .keys
                .seal("metrics-alice", "oidc", b"not-a-token")
                .unwrap(),
            expected_version: None,
            metadata_json: String::new(),
            refresh_token_expires_at_unix: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // get-service: a refresh, then a cache hit; then an unknown account.
    let first = f.token("metrics-alice", 30).await.unwrap();
    assert_eq!(f.token("metrics-alice", 30).await.unwrap(), first);
    assert_eq!(f.token("metrics-nobody", 0).await, Err(Code::NotFound));
    // The provider rotated the refresh token: get-service stores it through
    // set-service (one more StoreRefreshToken, as get-service).
    f.stored_token_other_than(
        "metrics-alice",
        &tokens.refresh_token,
        Duration::from_secs(5),
    )
    .await
    .unwrap();

    // web-frontend: a route, a route with a parameter, and no route.
    let http_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut web_statuses = Vec::new();
    for path in ["/healthz", "/connect/no-such-provider", "/no/such/page"] {
        let response = http_client
            .get(format!("{}{path}", f.web_url))
            .send()
            .await
            .unwrap();
        web_statuses.push(response.status().as_u16());
    }
    assert_eq!(web_statuses[0], 200);
    assert_eq!(web_statuses[2], 404);

    let (set1, get1, web1) = (
        Scrape::of(&set_url).await,
        Scrape::of(&get_url).await,
        Scrape::of(&web_url).await,
    );

    // set-service.
    assert_eq!(
        delta(&set0, &set1, &grpc(STORE_TOKEN, "OK")),
        2.0,
        "{set1:?}"
    );
    assert_eq!(
        delta(&set0, &set1, &grpc(STORE_TOKEN, "PERMISSION_DENIED")),
        1.0
    );
    assert_eq!(delta(&set0, &set1, &grpc_latency_count(STORE_TOKEN)), 3.0);
    // get-service: three calls, two OK and one NOT_FOUND, all timed.
    assert_eq!(delta(&get0, &get1, &grpc(GET_TOKEN, "OK")), 2.0, "{get1:?}");
    assert_eq!(delta(&get0, &get1, &grpc(GET_TOKEN, "NOT_FOUND")), 1.0);
    assert_eq!(delta(&get0, &get1, &grpc_latency_count(GET_TOKEN)), 3.0);
    let latency_sum =
        format!("tokenvault_grpc_request_duration_seconds_sum{{rpc=\"{GET_TOKEN}\"}}");
    assert!(delta(&get0, &get1, &latency_sum) > 0.0);
    let slowest_bucket = format!(
        "tokenvault_grpc_request_duration_seconds_bucket{{le=\"+Inf\",rpc=\"{GET_TOKEN}\"}}"
    );
    assert_eq!(delta(&get0, &get1, &slowest_bucket), 3.0, "{get1:?}");
    // One hit; two misses (the refresh, and the unknown account); one
    // refresh at the provider, which did not fail.
    assert_eq!(
        delta(
            &get0,
            &get1,
            &by_provider("access_token_cache_hits", "oidc")
        ),
        1.0
    );
    assert_eq!(
        delta(
            &get0,
            &get1,
            &by_provider("access_token_cache_misses", "oidc")
        ),
        2.0
    );
    assert_eq!(
        delta(&get0, &get1, &by_provider("provider_refreshes", "oidc")),
        1.0
    );
    assert_eq!(f.refreshes().await.unwrap(), 1);
    assert!(
        !get1
            .0
            .keys()
            .any(|k| k.starts_with("tokenvault_provider_refresh_failures_total")),
        "{get1:?}"
    );
    assert_eq!(get1.get("tokenvault_health_check_ok{check=\"store\"}"), 1.0);
    assert_eq!(get1.get("tokenvault_health_check_ok{check=\"keys\"}"), 1.0);
    // web-frontend, by route template.
    assert_eq!(delta(&web0, &web1, &http("/healthz", 200)), 1.0, "{web1:?}");
    assert_eq!(
        delta(&web0, &web1, &http("/connect/{provider}", web_statuses[1])),
        1.0,
        "{web1:?}"
    );
    assert_eq!(delta(&web0, &web1, &http("unmatched", 404)), 1.0);
    assert!(
        !web1
            .0
            .keys()
            .any(|k| k.contains("no-such-provider") || k.contains("/no/such")),
        "a request path became a label: {web1:?}"
    );
    // No account name or identity in any label.
    for scrape in [&set1, &get1, &web1] {
        assert!(
            !scrape
                .0
                .keys()
                .any(|k| k.contains("metrics-alice") || k.contains("spiffe://")),
            "{scrape:?}"
        );
    }

    // Each service's own certificate.
    assert_cert_gauges(&set1, &role_files(&f.pki, Role::SetService), "set-service");
    assert_cert_gauges(&get1, &role_files(&f.pki, Role::GetService), "get-service");
    assert_cert_gauges(
        &web1,
        &role_files(&f.pki, Role::WebFrontend),
        "web-frontend",
    );
    let logs = captured_logs();
    for role in ["set-service", "get-service", "web-frontend"] {
        assert!(
            logs.lines().any(|l| l.contains("certificate in use")
                && l.contains(&format!("spiffe://tokenvault.test/{role}"))
                && l.contains("not_after=")),
            "no start line with {role}'s certificate"
        );
    }

    // The endpoint serves GET /metrics only.
    let post = http_client.post(&get_url).send().await.unwrap();
    assert_eq!(post.status(), 405);
    let other = get_url.replace("/metrics", "/other");
    assert_eq!(http_client.get(&other).send().await.unwrap().status(), 404);
    f.stop().await.unwrap();
}

/// A health client over mutual TLS as a worker (health is open to any peer).
fn health_client(
    pki: &TestPki,
    address: &str,
    role: Role,
) -> HealthClient<tonic::transport::Channel> {
    let worker = pki.issue(Role::Worker, Some("health")).unwrap();
    HealthClient::new(grpc_channel(address, &worker, role).unwrap())
}

async fn status(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> ServingStatus {
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap();
    response.into_inner().status()
}

/// Waits (up to 15 s) until `service` (and the whole server, `""`) report
/// `want`; returns how long that took.
async fn wait_for(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
    want: ServingStatus,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = (status(client, service).await, status(client, "").await);
        if now == (want, want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{service} stayed {now:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A provider entry that is never called (the health tests ask for no token).
fn idle_provider() -> tokenvault_oauth::ProviderConfig {
    toml::from_str(
        "name = \"oidc\"\ntoken_endpoint = \"http://127.0.0.1:9/token\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    )
    .unwrap()
}

async fn admin_exec(sql: &str) {
    let mut admin = tokenvault_tests::store::pg_admin().await;
    sqlx::query(sql).execute(&mut admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_the_database_refuses_connections() {
    init_tracing();
    let pki = TestPki::new().unwrap();
    let store = TestStore::postgres().await;
    let database = store.writer_url.rsplit('/').next().unwrap().to_owned();
    let mut set_config = set_service_config(&pki, &store.writer_url).unwrap();
    set_config.service.health.check_interval_ms = 200;
    let set = start_set_service(set_config).await.unwrap();
    let mut get_config = get_service_config(
        &pki,
        &store.reader_url,
        &set.address(),
        vec![idle_provider()],
    )
    .unwrap();
    get_config.service.health.check_interval_ms = 200;
    let get = start_get_service(get_config).await.unwrap();
    let mut set_health = health_client(&pki, &set.address(), Role::SetService);
    let mut get_health = health_client(&pki, &get.address(), Role::GetService);
    wait_for(
        &mut set_health,
        "tokenvault.v1.SetService",
        ServingStatus::Serving,
    )
    .await;
    wait_for(
        &mut get_health,
        "tokenvault.v1.GetService",
        ServingStatus::Serving,
    )
    .await;

    // The database stops accepting connections, and the ones open are cut.
    admin_exec(&format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS false"
    ))
    .await;
    admin_exec(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    ))
    .await;
    let took = wait_for(
        &mut set_health,
        "tokenvault.v1.SetService",
        ServingStatus::NotServing,
    )
    .await;
    wait_for(
        &mut get_health,
        "tokenvault.v1.GetService",
        ServingStatus::NotServing,
    )
    .await;
    tracing::info!(?took, "NOT_SERVING after the database refused connections");
    let store_check = "tokenvault_health_check_ok{check=\"store\"}";
    let set_scrape = Scrape::of(&set.metrics_url().unwrap()).await;
    let get_scrape = Scrape::of(&get.metrics_url().unwrap()).await;
    assert_eq!(set_scrape.get(store_check), 0.0);
    assert!(set_scrape.has(store_check));
    assert_eq!(get_scrape.get(store_check), 0.0);
    assert_eq!(
        get_scrape.get("tokenvault_health_check_ok{check=\"keys\"}"),
        1.0
    );

    // It accepts connections again: both recover without a restart.
    admin_exec(&format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS true"
    ))
    .await;
    let took = wait_for(
        &mut set_health,
        "tokenvault.v1.SetService",
        ServingStatus::Serving,
    )
    .await;
    wait_for(
        &mut get_health,
        "tokenvault.v1.GetService",
        ServingStatus::Serving,
    )
    .await;
    tracing::info!(
        ?took,
        "SERVING again after the database accepted connections"
    );
    assert_eq!(
        Scrape::of(&set.metrics_url().unwrap())
            .await
            .get(store_check),
        1.0
    );

    let logs = captured_logs();
    assert!(
        logs.contains("health check failed"),
        "no warning on the failure"
    );
    assert!(
        logs.contains("health check passes again"),
        "no warning on the recovery"
    );
    assert!(logs.contains("gRPC health status changed"));
    get.stop().await.unwrap();
    set.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_service_is_not_serving_when_its_sealing_key_cannot_be_opened() {
    init_tracing();
    let pki = TestPki::new().unwrap();
    let store = TestStore::sqlite().await;
    // The writer creates the file the read-only reader opens.
    tokenvault_store::TokenWriter::connect(&store.writer_url)
        .await
        .unwrap();
    // Ops installed a new public key and made it the sealing key, but not
    // its private key: what get-service would seal it could never open.
    let public = pki.scratch().join("public-keys-without-private");
    let own = format!("{}.pem", pki.kid);
    std::fs::create_dir_all(&public).unwrap();
    std::fs::copy(pki.public_keys_dir().join(&own), public.join(&own)).unwrap();
    let orphan = tokenvault_tests::keys::pair();
    write_file(
        &public.join(format!("{}.pem", orphan.kid)),
        orphan.public_pem.as_bytes(),
        PUBLIC_MODE,
        false,
    )
    .unwrap();
    let mut config = get_service_config(
        &pki,
        &store.reader_url,
        "127.0.0.1:9",
        vec![idle_provider()],
    )
    .unwrap();
    config.public_keys_dir = public;
    config.sealing_kid = Some(orphan.kid.clone());
    config.service.health.check_interval_ms = 200;
    let get = start_get_service(config).await.unwrap();
    let mut health = health_client(&pki, &get.address(), Role::GetService);
    wait_for(
        &mut health,
        "tokenvault.v1.GetService",
        ServingStatus::NotServing,
    )
    .await;
    let scrape = Scrape::of(&get.metrics_url().unwrap()).await;
    assert_eq!(
        scrape.get("tokenvault_health_check_ok{check=\"keys\"}"),
        0.0
    );
    assert_eq!(
        scrape.get("tokenvault_health_check_ok{check=\"store\"}"),
        1.0
    );
    assert!(
        captured_logs().contains(&format!("a probe sealed under key {}", orphan.kid)),
        "the warning does not name the key"
    );
    get.stop().await.unwrap();
}
