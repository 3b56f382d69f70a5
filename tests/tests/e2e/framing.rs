//! Malformed gRPC framing, sent byte for byte over the real mTLS channel
//! (`tokenvault_tests::raw_grpc`): each class gets the status the `.proto`
//! documents, with its one audit event, on both services; nothing is
//! written and nothing reaches the provider.

use tokenvault_tests::grpc_channel;
use tokenvault_tests::logs::captured_audit_events;
use tokenvault_tests::raw_grpc::{frame, raw_call};
use tokenvault_tests::system::{Options, System};
use tokenvault_tls::Role;
use tonic::Code;

/// A well-formed request message: field 1 (`account`) = "oidc:x".
const MESSAGE: &[u8] = &[0x0a, 0x06, b'o', b'i', b'd', b'c', b':', b'x'];

/// Each class of malformed framing, and the status the `.proto` documents.
fn classes() -> Vec<(&'static str, Vec<u8>, Code)> {
    let mut cut_short = frame(0, MESSAGE);
    cut_short.truncate(cut_short.len() - 3);
    let mut oversized = vec![0];
    oversized.extend_from_slice(&(1u32 << 20).to_be_bytes());
    oversized.extend_from_slice(&[0; 64]);
    vec![
        (
            "a body that ends inside a frame header",
            vec![0, 0, 0],
            Code::InvalidArgument,
        ),
        (
            "a frame longer than the body",
            cut_short,
            Code::InvalidArgument,
        ),
        ("no message at all", Vec::new(), Code::InvalidArgument),
        (
            "a compression flag of 2",
            frame(2, MESSAGE),
            Code::InvalidArgument,
        ),
        (
            "a message that is not protobuf",
            frame(0, &[0xff; 4]),
            Code::InvalidArgument,
        ),
        ("a frame over the size limit", oversized, Code::OutOfRange),
        // The gRPC compression spec: "MUST fail with INTERNAL".
        (
            "a set compression flag without grpc-encoding",
            frame(1, MESSAGE),
            Code::Internal,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_framing_gets_its_documented_status_and_changes_nothing() {
    let f = System::start(Options::default()).await.unwrap();
    let before = f.row_counts().await.unwrap();
    let web = f.pki.issue(Role::WebFrontend, None).unwrap();
    let worker = f.pki.issue(Role::Worker, Some("framing")).unwrap();
    let targets = [
        (
            grpc_channel(&f.set.address(), &web, Role::SetService).unwrap(),
            "/tokenvault.v1.SetService/StoreRefreshToken",
            "spiffe://tokenvault.test/web-frontend",
        ),
        (
            grpc_channel(&f.get.address(), &worker, Role::GetService).unwrap(),
            "/tokenvault.v1.GetService/GetAccessToken",
            "spiffe://tokenvault.test/worker/framing",
        ),
    ];
    for (mut channel, path, caller) in targets {
        let rpc = path.rsplit('/').next().unwrap();
        for (what, body, expected) in classes() {
            let seen_before = audited(rpc, caller);
            let (code, message) = raw_call(&mut channel, path, body).await.unwrap();
            eprintln!("{rpc:<18} {what:<46} {code:?}: {message}");
            assert_eq!(code, expected, "{rpc}, {what}: {message}");
            if expected == Code::InvalidArgument {
                assert!(message.contains("not a well-formed"), "{what}: {message}");
            }
            // Its one audit event, with the same outcome.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while audited(rpc, caller) == seen_before && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let events: Vec<_> = captured_audit_events()
                .into_iter()
                .filter(|e| e["rpc"] == rpc && e["caller"] == caller)
                .collect();
            assert_eq!(events.len(), seen_before + 1, "{rpc}, {what}: {events:#?}");
            let label = format!("{expected:?}");
            let outcome = events.last().unwrap()["outcome"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert_eq!(
                outcome.replace('_', ""),
                label.to_ascii_lowercase(),
                "{rpc}, {what}"
            );
        }
    }
    assert_eq!(f.row_counts().await.unwrap(), before, "nothing is written");
    assert_eq!(f.refreshes().await.unwrap(), 0);
    f.stop().await.unwrap();
}

/// How many audit events `caller` has for `rpc` so far.
fn audited(rpc: &str, caller: &str) -> usize {
    captured_audit_events()
        .iter()
        .filter(|e| e["rpc"] == rpc && e["caller"] == caller)
        .count()
}
