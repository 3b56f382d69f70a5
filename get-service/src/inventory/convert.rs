//! The store's inventory rows and events as `tokenvault.v1` messages. Never
//! sees a token: the store's inventory reads non-secret columns only.

use tokenvault_proto::v1;
use tokenvault_store::{AccountEvent, AccountSummary, EventKind, TokenStatus};

/// A stored status as the `.proto`'s.
pub(crate) fn status(status: TokenStatus) -> v1::AccountStatus {
    match status {
        TokenStatus::Active => v1::AccountStatus::Active,
        TokenStatus::ReauthorizationRequired => v1::AccountStatus::ReauthorizationRequired,
        TokenStatus::Disconnected => v1::AccountStatus::Disconnected,
    }
}

/// A requested status as the store's; `UNSPECIFIED` is every status.
pub(crate) fn stored_status(status: v1::AccountStatus) -> Option<TokenStatus> {
    match status {
        v1::AccountStatus::Unspecified => None,
        v1::AccountStatus::Active => Some(TokenStatus::Active),
        v1::AccountStatus::ReauthorizationRequired => Some(TokenStatus::ReauthorizationRequired),
        v1::AccountStatus::Disconnected => Some(TokenStatus::Disconnected),
    }
}

/// A stored event kind as the `.proto`'s.
pub(crate) fn kind(kind: EventKind) -> v1::AccountEventKind {
    match kind {
        EventKind::Connected => v1::AccountEventKind::Connected,
        EventKind::Reconnected => v1::AccountEventKind::Reconnected,
        EventKind::ReauthorizationRequired => v1::AccountEventKind::ReauthorizationRequired,
        EventKind::Recovered => v1::AccountEventKind::Recovered,
        EventKind::Disconnected => v1::AccountEventKind::Disconnected,
        EventKind::Revoked => v1::AccountEventKind::Revoked,
        EventKind::Expiring => v1::AccountEventKind::Expiring,
    }
}

/// One inventory row.
pub(crate) fn summary(row: AccountSummary) -> v1::AccountSummary {
    v1::AccountSummary {
        account: row.account,
        provider: row.provider,
        status: status(row.status) as i32,
        reason: row.reason,
        connected_at_unix: row.connected_at_unix,
        updated_at_unix: row.updated_at_unix,
        token_stored_at_unix: row.token_stored_at_unix,
        refresh_token_expires_at_unix: row.refresh_token_expires_at_unix,
        metadata_json: row.metadata.unwrap_or_default(),
        failed_event_deliveries: u32::try_from(row.failed_event_deliveries.max(0))
            .unwrap_or(u32::MAX),
    }
}

/// One event; its id is the Standard Webhooks id, `evt_<cursor>`.
pub(crate) fn event(event: AccountEvent) -> v1::AccountEvent {
    v1::AccountEvent {
        cursor: u64::try_from(event.cursor).unwrap_or(0),
        id: format!("evt_{}", event.cursor),
        kind: kind(event.kind) as i32,
        account: event.account,
        provider: event.provider,
        status: status(event.status) as i32,
        reason: event.reason,
        occurred_at_unix: event.occurred_at_unix,
        metadata_json: event.metadata.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_and_kind_has_its_proto_name() {
        for s in [
            TokenStatus::Active,
            TokenStatus::ReauthorizationRequired,
            TokenStatus::Disconnected,
        ] {
            assert_eq!(stored_status(status(s)), Some(s));
            assert!(
                status(s)
                    .as_str_name()
                    .ends_with(&s.as_str().to_ascii_uppercase())
            );
        }
        assert_eq!(stored_status(v1::AccountStatus::Unspecified), None);
        for k in EventKind::ALL {
            assert!(
                kind(k)
                    .as_str_name()
                    .ends_with(&k.as_str().to_ascii_uppercase()),
                "{k}"
            );
        }
    }

    #[test]
    fn an_event_id_is_its_cursor() {
        let e = event(AccountEvent {
            cursor: 42,
            kind: EventKind::Recovered,
            account: "acme:1".into(),
            provider: "google".into(),
            status: TokenStatus::Active,
            reason: String::new(),
            occurred_at_unix: 1,
            metadata: None,
        });
        assert_eq!((e.cursor, e.id.as_str()), (42, "evt_42"));
        assert_eq!(e.kind, v1::AccountEventKind::Recovered as i32);
    }
}
