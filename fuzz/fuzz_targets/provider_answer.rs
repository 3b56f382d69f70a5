//! A provider's answer to a refresh grant and to a revocation: the first
//! line is `<status>[ <Retry-After>]`, the rest the body. Checks the rules
//! of `lib/oauth/src/classify.rs` and that provider texts come out sanitized,
//! with a nested answer shape (`lib/oauth/src/shape.rs`) on the way.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use tokenvault_oauth::ProviderError;
use tokenvault_oauth::fuzzing::{refresh_answer, revocation_answer};
use tokenvault_oauth::shape::ResponseShape;

fn check(e: &ProviderError, status: u16) {
    assert!(!e.to_string().chars().any(char::is_control), "{e}");
    assert!(e.retry_after().unwrap_or_default() <= Duration::from_secs(86_400));
    match status {
        500..=599 | 429 | 408 | 425 => assert!(e.is_transient(), "{status}: {e:?}"),
        300..=399 => assert!(matches!(e, ProviderError::Misconfigured(_)), "{e:?}"),
        _ => assert!(!e.is_grant_dead() || status == 200 || (400..500).contains(&status)),
    }
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = data.split_at(data.iter().position(|&b| b == b'\n').unwrap_or(data.len()));
    let body = body.get(1..).unwrap_or_default();
    let (status, retry_after) = match head.iter().position(|&b| b == b' ') {
        Some(i) => (&head[..i], Some(&head[i + 1..])),
        None => (head, None),
    };
    let Some(status) = std::str::from_utf8(status)
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
    else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let asked = ["openid".to_owned()];
    let shape = ResponseShape {
        nested_path: Some("authed_user".into()),
        expiry_field: Some("x_refresh_token_expires_in".into()),
    };
    match refresh_answer(status, retry_after, body, "rt-sent-0123456789", &asked, &shape, now) {
        Some(Ok(r)) => {
            assert_eq!(status, 200);
            assert!(!r.access_token.is_empty() && !r.scopes.is_empty());
            assert!(r.expires_at_unix >= 1_800_000_000);
            assert!(
                r.refresh_token
                    .is_none_or(|t| t.expose() != "rt-sent-0123456789")
            );
        }
        Some(Err(e)) => check(&e, status),
        None => {}
    }
    match revocation_answer(status, retry_after, body, now) {
        Some(Ok(())) => assert!((200..300).contains(&status)),
        Some(Err(e)) => check(&e, status),
        None => {}
    }
});
