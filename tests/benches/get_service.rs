//! Benchmarks of get-service, each against a baseline measured in the same run.
//!
//! - Hot path: cached `GetAccessToken` over mutual TLS with 1, 16 and 64
//!   concurrent callers (one connection each), against a bare tonic service
//!   on the same mTLS stack that returns a fixed 200-byte token.
//! - Cold path: opening sealed tokens (`PrivateKeyRing::open`: parse, context
//!   check, RSA-OAEP-256 unwrap, AES-256-GCM) against raw RSA-4096 OAEP-SHA256
//!   decryptions with aws-lc-rs, one core.
//!
//! Run with `cargo bench -p tokenvault-tests --bench get_service`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod hot_path;

use std::time::{Duration, Instant};

use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
};
use base64::Engine;
use hot_path::{clients, drive};
use tokenvault_opener::PrivateKeyRing;
use tokenvault_tests::system::{Options, System};

const LEVELS: [usize; 3] = [1, 16, 64];
const CALLS_PER_LEVEL: usize = 20_000;
const COLD_OPS: usize = 600;

async fn hot_path(system: &mut System) {
    // The baseline server, on the same mTLS accept loop, without get-service.
    let bare_address = hot_path::bare_server(system).await;
    system.connect("bench").await.unwrap();
    system.token("bench", 0).await.unwrap();
    let get_address = system.get.address();
    println!(
        "Hot path: cached GetAccessToken over mTLS vs a bare tonic mTLS service (fixed 200-byte token)"
    );
    println!("{CALLS_PER_LEVEL} calls per level, one connection per caller\n");
    println!(
        "{:>7} | {:>9} {:>8} {:>8} | {:>9} {:>8} {:>8} | {:>5}",
        "callers", "get rps", "p50 ms", "p99 ms", "bare rps", "p50 ms", "p99 ms", "ratio"
    );
    for n in LEVELS {
        let get_clients = clients(system, &get_address, "bench", n);
        let bare_clients = clients(system, &bare_address, "bench", n);
        // Warm every connection.
        for c in get_clients.iter().chain(&bare_clients) {
            c.access_token("bench", "oidc", Duration::from_secs(1))
                .await
                .unwrap();
        }
        let get = drive(&get_clients, CALLS_PER_LEVEL, "bench", &[]).await;
        let bare = drive(&bare_clients, CALLS_PER_LEVEL, "bench", &[]).await;
        println!(
            "{n:>7} | {} | {} | {:>5.2}",
            get.columns(),
            bare.columns(),
            get.rps / bare.rps
        );
    }
    println!(
        "refreshes at the authorization server during the run: {}",
        system.refreshes().await.unwrap()
    );
}

fn cold_path(system: &System) {
    let ring = PrivateKeyRing::load_dir(&system.pki.private_keys_dir()).unwrap();
    let sealed = system
        .keys
        .seal(
            "bench",
            "oidc",
            b"a-refresh-token-of-typical-length-0123456789abcdef",
        )
        .unwrap();

    // The same key, raw, for the baseline.
    let pem = std::fs::read_to_string(
        system
            .pki
            .private_keys_dir()
            .join(format!("{}.pem", system.pki.kid)),
    )
    .unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let private = PrivateDecryptingKey::from_pkcs8(&der).unwrap();
    let public = OaepPublicEncryptingKey::new(private.public_key()).unwrap();
    let mut ciphertext = vec![0u8; public.ciphertext_size()];
    let ciphertext = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 32], &mut ciphertext, None)
        .unwrap()
        .to_vec();
    let oaep = OaepPrivateDecryptingKey::new(private).unwrap();
    let mut out = vec![0u8; oaep.min_output_size()];

    let start = Instant::now();
    for _ in 0..COLD_OPS {
        let _ = oaep
            .decrypt(&OAEP_SHA256_MGF1SHA256, &ciphertext, &mut out, None)
            .unwrap();
    }
    let raw = COLD_OPS as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..COLD_OPS {
        let _ = ring.open(&sealed, "bench", "oidc").unwrap();
    }
    let opens = COLD_OPS as f64 / start.elapsed().as_secs_f64();
    println!("\nCold path, one core, {COLD_OPS} operations each:");
    println!("  raw RSA-4096 OAEP-SHA256 decrypt (aws-lc-rs): {raw:>7.0}/s");
    println!(
        "  PrivateKeyRing::open (JWE, RSA-OAEP-256 + A256GCM): {opens:>7.0}/s  ratio {:.2}",
        opens / raw
    );
}

#[tokio::main]
async fn main() {
    let mut system = System::start(Options::default()).await.unwrap();
    cold_path(&system);
    hot_path(&mut system).await;
    system.stop().await.unwrap();
}
