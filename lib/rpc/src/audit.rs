//! One audit event per RPC, on the `tokenvault::audit` tracing target: who
//! (SPIFFE ID), where (peer address), what (RPC, account, provider) and the
//! outcome; the subscriber adds when. Every service writes them the same way:
//! the handler through [`respond`], or [`crate::AuthzLayer`] for a call it
//! refuses before any handler runs. `tokenvault_runtime::logging` writes them as JSON
//! lines (and optionally to the append-only audit table). Never pass a token
//! here.

use std::fmt::Display;

use tokenvault_limits::MAX_LOGGED_ID_LEN;
use tokenvault_tls::PeerInfo;

pub use tokenvault_runtime::logging::AUDIT_TARGET;

/// The response header that says a call's audit event is written (by its
/// handler through [`respond`], or by [`crate::AuthzLayer`]); the gRPC
/// metrics layer removes it, and writes the event itself for a call without
/// it (one that tonic refused while decoding, or that was cancelled).
pub const AUDITED_HEADER: &str = "x-tokenvault-audited";

/// Writes the audit line of one RPC. `outcome` is `Ok(())` or the error's
/// short label and message.
pub fn record(
    rpc: &str,
    peer: Option<&PeerInfo>,
    account: &str,
    provider: &str,
    outcome: Result<(), (&str, &dyn Display)>,
) {
    record_with_policy(rpc, peer, (account, provider), None, outcome);
}

/// [`record`] for a call an account policy governs: `policy` says what
/// decided it (e.g. `rule:billing`, `none`, `open`).
pub fn record_with_policy(
    rpc: &str,
    peer: Option<&PeerInfo>,
    (account, provider): (&str, &str),
    policy: Option<&str>,
    outcome: Result<(), (&str, &dyn Display)>,
) {
    // Formatted into the line as it is written, never copied first.
    let caller = OrEmpty(peer.map(|p| &p.id));
    let addr = OrEmpty(peer.map(|p| p.addr));
    let (account, provider) = (cut(account), cut(provider));
    match outcome {
        Ok(()) => {
            tracing::info!(target: AUDIT_TARGET, caller = %caller, peer = %addr, rpc, account, provider, policy, outcome = "ok");
        }
        Err((label, error)) => {
            tracing::warn!(target: AUDIT_TARGET, caller = %caller, peer = %addr, rpc, account, provider, policy, outcome = label, error = %error);
        }
    }
}

/// The first [`MAX_LOGGED_ID`] characters of `id`.
fn cut(id: &str) -> &str {
    id.char_indices()
        .nth(MAX_LOGGED_ID_LEN)
        .map_or(id, |(end, _)| &id[..end])
}

/// A value's `Display`, or nothing for `None`.
struct OrEmpty<T>(Option<T>);

impl<T: Display> Display for OrEmpty<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(value) => value.fmt(f),
            None => Ok(()),
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
    respond_with_policy(rpc, peer, (account, provider), None, result, label)
}

/// [`respond`] for a call an account policy governs (see
/// [`record_with_policy`]).
pub fn respond_with_policy<T, E>(
    rpc: &str,
    peer: Option<&PeerInfo>,
    account_provider: (&str, &str),
    policy: Option<&str>,
    result: Result<T, E>,
    label: fn(&E) -> &'static str,
) -> Result<tonic::Response<T>, tonic::Status>
where
    E: Display + Into<tonic::Status>,
{
    match result {
        Ok(v) => {
            record_with_policy(rpc, peer, account_provider, policy, Ok(()));
            let mut response = tonic::Response::new(v);
            mark_audited(response.metadata_mut());
            Ok(response)
        }
        Err(e) => {
            record_with_policy(rpc, peer, account_provider, policy, Err((label(&e), &e)));
            let mut status: tonic::Status = e.into();
            mark_audited(status.metadata_mut());
            Err(status)
        }
    }
}

/// Adds [`AUDITED_HEADER`] to a response's metadata.
pub(crate) fn mark_audited(metadata: &mut tonic::metadata::MetadataMap) {
    metadata.insert(
        AUDITED_HEADER,
        tonic::metadata::MetadataValue::from_static("1"),
    );
}
