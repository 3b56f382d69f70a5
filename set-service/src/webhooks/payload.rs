//! What one account event looks like on the wire: its Standard Webhooks message id
//! (`evt_<cursor>`, the same for every attempt, so a receiver can drop duplicates) and its JSON
//! body. The body carries the event as the store has it (account, provider, status, reason,
//! metadata): non-secret data only, never a token.
//!
//! ```json
//! {"type": "account.reauthorization_required", "timestamp": "2026-01-02T03:04:05Z",
//!  "data": {"cursor": 7, "account": "acct-1", "provider": "google",
//!           "status": "reauthorization_required", "reason": "invalid_grant",
//!           "occurred_at": "2026-01-02T03:04:05Z", "metadata": {"tenant": "acme"}}}
//! ```

use serde::Serialize;
use serde_json::Value;
use tokenvault_store::AccountEvent;

/// The `webhook-id` of the event at `cursor`.
pub fn message_id(cursor: i64) -> String {
    format!("evt_{cursor}")
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    timestamp: &'a str,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    cursor: i64,
    account: &'a str,
    provider: &'a str,
    status: &'static str,
    reason: &'a str,
    occurred_at: &'a str,
    metadata: Option<Value>,
}

/// The JSON body for `event`. `timestamp` is when the event happened (as the Standard Webhooks
/// payload format has it), the same as `data.occurred_at`.
pub fn body(event: &AccountEvent) -> Vec<u8> {
    let occurred_at = rfc3339(event.occurred_at_unix);
    let body = Body {
        kind: format!("account.{}", event.kind.as_str()),
        timestamp: &occurred_at,
        data: Data {
            cursor: event.cursor,
            account: &event.account,
            provider: &event.provider,
            status: event.status.as_str(),
            reason: &event.reason,
            occurred_at: &occurred_at,
            // Stored metadata was checked to be a JSON object when it was stored.
            metadata: event
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
        },
    };
    // Serializing plain strings, numbers and a parsed `Value` cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Unix seconds as RFC 3339 in UTC (`1970-01-01T00:00:00Z` for a time out of range).
fn rfc3339(unix: i64) -> String {
    tokenvault_unix_time::rfc3339(unix).unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokenvault_store::{EventKind, TokenStatus};

    fn event(metadata: Option<&str>) -> AccountEvent {
        AccountEvent {
            cursor: 7,
            kind: EventKind::ReauthorizationRequired,
            account: "acct-1".into(),
            provider: "google".into(),
            status: TokenStatus::ReauthorizationRequired,
            reason: "invalid_grant".into(),
            occurred_at_unix: 1_767_323_045,
            metadata: metadata.map(str::to_owned),
        }
    }

    #[test]
    fn body_shape() {
        let value: Value =
            serde_json::from_slice(&body(&event(Some(r#"{"tenant":"acme","tags":["a"]}"#))))
                .unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "type": "account.reauthorization_required",
                "timestamp": "2026-01-02T03:04:05Z",
                "data": {
                    "cursor": 7, "account": "acct-1", "provider": "google",
                    "status": "reauthorization_required", "reason": "invalid_grant",
                    "occurred_at": "2026-01-02T03:04:05Z",
                    "metadata": {"tenant": "acme", "tags": ["a"]}
                }
            })
        );
        let none: Value = serde_json::from_slice(&body(&event(None))).unwrap();
        assert_eq!(none["data"]["metadata"], Value::Null);
        assert_eq!(message_id(7), "evt_7");
        assert_eq!(rfc3339(i64::MAX), "1970-01-01T00:00:00Z");
    }
}
