//! Ordinary gRPC tools can discover the API: a Python grpcio client (a real
//! client in another language, `tests/requirements.txt`) finds the services by
//! reflection, checks health, and calls an RPC built from the reflected
//! descriptors, over mutual TLS with certificates from `pki`.

use std::process::Command;

use tokenvault_tests::services::{set_service_config, sqlite_url};
use tokenvault_tests::{TestPki, init_tracing, start_set_service};
use tokenvault_tls::Role;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/grpc_discover.py");

/// Runs the Python client on a blocking thread, so that the in-process server
/// keeps running on the test's runtime.
async fn discover(address: &str, files: &tokenvault_tls::TlsFiles) -> serde_json::Value {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut command = Command::new(&python);
    command
        .arg(SCRIPT)
        .arg(address)
        .arg(&files.ca)
        .arg(&files.cert)
        .arg(&files.key);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "grpc_discover.py failed (pip install -r tests/requirements.txt?): {stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpc_client_discovers_and_calls_over_mtls() {
    init_tracing();
    let pki = TestPki::new().unwrap();
    let config = set_service_config(&pki, &sqlite_url(&pki.scratch())).unwrap();
    let server = start_set_service(config).await.unwrap();
    // grpcio checks the server name against "localhost" via the address.
    let address = format!("localhost:{}", server.addr.port());

    let worker = pki.issue(Role::Worker, Some("python")).unwrap();
    let seen = discover(&address, &worker).await;
    assert_eq!(seen["health"], "SERVING", "{seen}");
    let services = seen["services"].as_array().unwrap();
    for expected in [
        "tokenvault.v1.SetService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} not listed: {seen}"
        );
    }
    assert!(
        !services.iter().any(|s| s == "tokenvault.v1.GetService"),
        "set-service advertises a service it does not serve: {seen}"
    );
    assert_eq!(
        seen["methods"],
        serde_json::json!([
            "DisconnectAccount",
            "RecordAccountStatus",
            "RecordRevocation",
            "ResealRefreshToken",
            "ShareAccessToken",
            "StoreRefreshToken"
        ])
    );
    // A worker may discover, but not store.
    assert_eq!(seen["store_code"], "PERMISSION_DENIED", "{seen}");
    assert!(
        seen["store_details"]
            .as_str()
            .unwrap()
            .contains("spiffe://tokenvault.test/worker/python"),
        "{seen}"
    );

    // web-frontend is allowed: its malformed token gets INVALID_ARGUMENT.
    let web = pki.issue(Role::WebFrontend, None).unwrap();
    let seen = discover(&address, &web).await;
    assert_eq!(seen["store_code"], "INVALID_ARGUMENT", "{seen}");
    server.stop().await.unwrap();
}
