//! Unix seconds as RFC 3339 UTC text (`2026-12-03T07:24:09Z`): the one formatter behind
//! certificate-expiry log lines, expiry warnings, webhook payloads, audit rows and the admin
//! CLI's tables. Holds no state and no secrets.
#![forbid(unsafe_code)]

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `unix` as RFC 3339 UTC, or `None` if it is outside what RFC 3339 can show (years 0-9999).
pub fn rfc3339(unix: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// `unix` as RFC 3339 UTC, or the bare number where RFC 3339 cannot show it.
pub fn rfc3339_or_number(unix: i64) -> String {
    rfc3339(unix).unwrap_or_else(|| unix.to_string())
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc().unix_timestamp())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_refuses_out_of_range() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            rfc3339(1_796_282_649).as_deref(),
            Some("2026-12-03T07:24:09Z")
        );
        assert_eq!(rfc3339(i64::MAX), None);
        assert_eq!(rfc3339_or_number(i64::MAX), i64::MAX.to_string());
        assert!(now_rfc3339().starts_with("20"));
    }
}
