//! A connect or disconnect link's query string, parsed as the handler's
//! `Query` extractor parses it, then verified: a tampered link never passes,
//! and a link signed for what it carries (metadata included) always does,
//! unless its metadata is not the documented shape.
#![no_main]

use axum::extract::Query;
use libfuzzer_sys::fuzz_target;
use tokenvault_web_frontend::link::{LinkAction, LinkParams, LinkSigner};

const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/connect/google?{text}").parse::<http::Uri>() else {
        return;
    };
    let Ok(Query(params)) = Query::<LinkParams>::try_from_uri(&uri) else {
        return;
    };
    let Ok(signer) = LinkSigner::new(b"fuzzing-link-secret-0123456789abcdef", 600) else {
        return;
    };
    for action in [LinkAction::Connect, LinkAction::Disconnect] {
        if let Ok(account) = signer.verify(action, &params, "google", NOW) {
            assert_eq!(Some(account.as_str()), params.account.as_deref());
        }
        let (Some(account), Some(expires)) = (params.account.as_deref(), params.expires) else {
            continue;
        };
        let metadata = params.metadata.as_deref();
        let sig = signer.sign_with_metadata(action, account, Some("google"), expires, metadata);
        let signed = LinkParams {
            provider: Some("google".into()),
            sig: Some(sig),
            ..params.clone()
        };
        let verified = signer.verify_with_metadata(action, &signed, "google", NOW);
        let metadata_ok = metadata.is_none_or(|m| {
            action == LinkAction::Connect
                && tokenvault_proto::metadata::check_metadata(m).is_ok()
        });
        if tokenvault_proto::ids::check_account(account).is_ok()
            && (NOW..=NOW + 600).contains(&expires)
            && metadata_ok
        {
            let (verified_account, verified_metadata) = verified.expect("a link signed for what it carries");
            assert_eq!(verified_account, account, "{params:?}");
            assert_eq!(verified_metadata.is_some(), metadata.is_some());
        } else if !metadata_ok {
            assert!(verified.is_err(), "{params:?}");
        }
        let uri = format!("/?{}", signed.query())
            .parse::<http::Uri>()
            .unwrap_or_default();
        assert_eq!(
            Query::<LinkParams>::try_from_uri(&uri).ok().map(|q| q.0),
            Some(signed)
        );
    }
});
