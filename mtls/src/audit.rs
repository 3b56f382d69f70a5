//! One audit line per RPC, on the `tokenvault::audit` tracing target: who
//! (SPIFFE ID), where (peer address), what (RPC, account, provider) and the
//! outcome. Every service writes them the same way. Never pass a token here.

use std::fmt::Display;

use crate::server::PeerInfo;

/// The tracing target of audit lines.
pub const AUDIT_TARGET: &str = "tokenvault::audit";

/// The longest account or provider logged; longer (invalid) input is cut.
const MAX_LOGGED_ID: usize = 128;

/// Writes the audit line of one RPC. `outcome` is `Ok(())` or the error's
/// short label and message.
pub fn record(
    rpc: &str,
    peer: Option<&PeerInfo>,
    account: &str,
    provider: &str,
    outcome: Result<(), (&str, &dyn Display)>,
) {
    let caller = peer.map(|p| p.id.to_string()).unwrap_or_default();
    let addr = peer.map(|p| p.addr.to_string()).unwrap_or_default();
    let account: String = account.chars().take(MAX_LOGGED_ID).collect();
    let provider: String = provider.chars().take(MAX_LOGGED_ID).collect();
    match outcome {
        Ok(()) => {
            tracing::info!(target: AUDIT_TARGET, caller, peer = addr, rpc, account, provider, outcome = "ok");
        }
        Err((label, error)) => {
            tracing::warn!(target: AUDIT_TARGET, caller, peer = addr, rpc, account, provider, outcome = label, error = %error);
        }
    }
}

/// Writes the audit line of one RPC and turns its result into the gRPC
/// response; `label` gives an error's short outcome label.
pub fn respond<T, E>(
    rpc: &str,
    peer: Option<&PeerInfo>,
    account: &str,
    provider: &str,
    result: Result<T, E>,
    label: fn(&E) -> &'static str,
) -> Result<tonic::Response<T>, tonic::Status>
where
    E: Display + Into<tonic::Status>,
{
    match result {
        Ok(v) => {
            record(rpc, peer, account, provider, Ok(()));
            Ok(tonic::Response::new(v))
        }
        Err(e) => {
            record(rpc, peer, account, provider, Err((label(&e), &e)));
            Err(e.into())
        }
    }
}
