//! An OIDC discovery document, as get-service takes a provider's endpoints
//! from it: what it accepts names the configured issuer and endpoints that
//! pass the endpoint rules again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenvault_oauth::checks::check_endpoint;
use tokenvault_oauth::fuzzing::discovery_answer;

fuzz_target!(|body: &[u8]| {
    for issuer in ["https://idp.example.com", "http://127.0.0.1:8080/realms/x/"] {
        let Ok(endpoints) = discovery_answer(issuer, body) else {
            continue;
        };
        let found = endpoints
            .issuer
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/'));
        assert_eq!(found, Some(issuer.trim_end_matches('/')));
        for url in [
            Some(&endpoints.token),
            endpoints.revocation.as_ref(),
            endpoints.userinfo.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(check_endpoint("again", url.as_str()).is_ok(), "{url}");
        }
    }
});
