//! The query strings of `/callback` (from the provider, via the browser) and
//! `/disconnect`, parsed by the handlers' `Query` extractor. A callback's
//! `Debug` shows its `error` and `iss`, never its code or state.
#![no_main]

use axum::extract::Query;
use libfuzzer_sys::fuzz_target;
use tokenvault_web_frontend::routes::{CallbackParams, DisconnectParams};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/callback?{text}").parse::<http::Uri>() else {
        return;
    };
    let _ = Query::<DisconnectParams>::try_from_uri(&uri);
    let Ok(Query(params)) = Query::<CallbackParams>::try_from_uri(&uri) else {
        return;
    };
    let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(&uri) else {
        return;
    };
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let expected = format!(
        "CallbackParams {{ error: {:?}, iss: {:?}, .. }}",
        get("error"),
        get("iss")
    );
    assert_eq!(format!("{params:?}"), expected);
});
