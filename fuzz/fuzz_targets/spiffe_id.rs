//! SPIFFE IDs and allow-list patterns as written in configs and carried in
//! certificates: parse, then print and parse again to the same identity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenvault_tls::{IdentityPattern, MAX_SPIFFE_ID_LEN, SpiffeId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<SpiffeId>() {
        let printed = id.to_string();
        assert!(printed.len() <= MAX_SPIFFE_ID_LEN);
        assert_eq!(printed.parse::<SpiffeId>().ok(), Some(id.clone()));
        assert!(IdentityPattern::Exact(id.clone()).matches(&id));
        assert!(IdentityPattern::Role(id.role()).matches(&id));
    }
    if let Ok(pattern) = text.parse::<IdentityPattern>() {
        assert_eq!(
            matches!(pattern, IdentityPattern::Exact(_)),
            text.starts_with("spiffe://")
        );
    }
});
