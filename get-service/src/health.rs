//! The checks behind get-service's gRPC health status (run by
//! `tokenvault_runtime::health::HealthMonitor`):
//!
//! - `store`: the database answers on the reader's pool;
//! - `keys`: a random probe sealed with the sealing public key opens with
//!   the private keys held (a file or a PKCS#11 token), so that what
//!   get-service seals it can also open, and the token is reachable.
//!
//! The probe is random bytes, not a token, sealed for an account and
//! provider that no row uses; errors name the failure, never key material.

use std::sync::Arc;

use tokenvault_seal::PublicKeySet;
use tokenvault_store::TokenReader;

use tokenvault_opener::PrivateKeyRing;

/// The account and provider the probe is sealed for (no stored row has
/// them: provider names are configured, and this one is not valid there).
const PROBE_ACCOUNT: &str = "tokenvault-health-check";
const PROBE_PROVIDER: &str = "tokenvault-health-check";

/// Whether the store answers.
pub(crate) async fn store(reader: TokenReader) -> Result<(), String> {
    reader
        .ping()
        .await
        .map_err(|e| format!("the store does not answer: {e}"))
}

/// Whether a probe sealed under the sealing key opens with the keys held.
pub(crate) async fn keys(
    sealer: Arc<PublicKeySet>,
    keys: Arc<PrivateKeyRing>,
) -> Result<(), String> {
    let mut probe = [0u8; 32];
    aws_lc_rs::rand::fill(&mut probe).map_err(|_| "no randomness for the probe".to_owned())?;
    let sealed = sealer
        .seal(PROBE_ACCOUNT, PROBE_PROVIDER, &probe)
        .map_err(|e| format!("cannot seal a probe: {e}"))?;
    let opened = keys
        .open_async(&sealed, PROBE_ACCOUNT, PROBE_PROVIDER)
        .await
        .map_err(|e| {
            format!(
                "a probe sealed under key {} does not open: {e}",
                sealer.sealing_kid()
            )
        })?;
    if opened.as_slice() != probe {
        return Err(format!(
            "a probe sealed under key {} opened to different bytes",
            sealer.sealing_kid()
        ));
    }
    Ok(())
}
