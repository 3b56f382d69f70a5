//! Opening sealed tokens with the private key in a PKCS#11 token (kryoptic,
//! built by `scripts/build-kryoptic`) next to the same operation with an
//! in-process aws-lc-rs key: `PrivateKeyRing::open` (parse, context check,
//! RSA-4096 OAEP-SHA256 unwrap, AES-256-GCM), one caller and two concurrent
//! callers, each ring opening a token sealed under its own key (same
//! plaintext, account and provider).
//!
//! Run with `cargo bench -p tokenvault-tests --bench pkcs11_open`. The bench
//! runs itself again with `KRYOPTIC_CONF` naming a fresh token (see
//! `tokenvault_tests::kryoptic`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use tokenvault_opener::PrivateKeyRing;
use tokenvault_opener::pkcs11::generate_key;
use tokenvault_seal::PublicKeySet;
use tokenvault_tests::keys::{Fixture, pair};
use tokenvault_tests::kryoptic::run_with_token;

/// Opens per measurement.
const OPS: usize = 400;
const ACCOUNT: &str = "bench";
const PROVIDER: &str = "oidc";
const PLAINTEXT: &[u8] = b"a-refresh-token-of-typical-length-0123456789abcdef";

/// Opens per second of `sealed` with `ring`, by `callers` threads sharing
/// [`OPS`] opens.
fn opens_per_sec(ring: &Arc<PrivateKeyRing>, sealed: &Arc<String>, callers: usize) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let (ring, sealed) = (Arc::clone(ring), Arc::clone(sealed));
            thread::spawn(move || {
                for _ in 0..OPS / callers {
                    let opened = ring.open(&sealed, ACCOUNT, PROVIDER).unwrap();
                    assert_eq!(opened.as_slice(), PLAINTEXT);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    OPS as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(token) = run_with_token("pkcs11_open bench", &args, None).unwrap() else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // The in-process key: an RSA-4096 key file loaded into aws-lc-rs.
    let files = Fixture::new(&[pair()]).unwrap();
    let file_ring =
        Arc::new(PrivateKeyRing::load_dir(&files.dir.path().join("keys/private")).unwrap());
    let file_sealed = Arc::new(files.keys.seal(ACCOUNT, PROVIDER, PLAINTEXT).unwrap());

    // The token's key: made inside kryoptic, opened through PKCS#11 with
    // get-service's default pool of 4 sessions.
    let hsm = token.config("bench-kek");
    let public_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let kid = generate_key(&hsm, public_dir.path()).unwrap();
    let keygen = started.elapsed();
    let no_files = tempfile::tempdir().unwrap();
    let hsm_ring = Arc::new(
        runtime
            .block_on(PrivateKeyRing::load(no_files.path(), Some(&hsm)))
            .unwrap(),
    );
    let hsm_keys = PublicKeySet::load_dir(public_dir.path()).unwrap();
    let hsm_sealed = Arc::new(hsm_keys.seal(ACCOUNT, PROVIDER, PLAINTEXT).unwrap());

    // Warm up both.
    opens_per_sec(&file_ring, &file_sealed, 2);
    opens_per_sec(&hsm_ring, &hsm_sealed, 2);

    println!(
        "\nPrivateKeyRing::open, RSA-4096 OAEP-SHA256 + A256GCM, {OPS} opens per figure \
         (kryoptic key {kid} made in {:.1} s):",
        keygen.as_secs_f64()
    );
    println!("  callers  in-process (aws-lc-rs)  PKCS#11 (kryoptic)  PKCS#11 / in-process");
    for callers in [1, 2] {
        let file = opens_per_sec(&file_ring, &file_sealed, callers);
        let hsm = opens_per_sec(&hsm_ring, &hsm_sealed, callers);
        println!(
            "  {callers:>7}  {file:>17.0}/s  {hsm:>16.0}/s  {:>20.2}",
            hsm / file
        );
    }
}
