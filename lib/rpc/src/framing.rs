//! The status of a request whose gRPC framing is malformed, as the `.proto`
//! documents: tonic answers these before any handler runs, with INTERNAL,
//! which the `.proto` keeps for integrity failures of stored tokens. The
//! gRPC metrics layer passes every answer tonic gives before a handler
//! through [`as_documented`]:
//!
//! - a body that ends inside a frame ("Unexpected EOF"), a unary call with
//!   no message, or a frame with a compression flag other than 0 or 1:
//!   INVALID_ARGUMENT;
//! - a frame whose compression flag is set while the call names no
//!   `grpc-encoding` stays INTERNAL: the gRPC compression spec requires it
//!   ("MUST fail with INTERNAL"), and the `.proto` says so.
//!
//! Holds nothing: it rewrites two response headers.

use http::HeaderValue;

/// tonic's messages for malformed request framing, and what the caller is
/// told instead.
const REQUEST_FRAMING: [(&str, &str); 3] = [
    (
        "Unexpected EOF decoding stream.",
        "the request is not a well-formed gRPC message: the body ends inside a frame",
    ),
    (
        "Missing request message.",
        "the request is not a well-formed gRPC message: the body holds no message",
    ),
    (
        "protocol error: received message with invalid compression flag",
        "the request is not a well-formed gRPC message: a frame's compression flag is neither 0 nor 1",
    ),
];

/// Rewrites a trailers-only answer's `grpc-status` and `grpc-message` when
/// tonic refused the request's framing (see the module docs).
pub(crate) fn as_documented(headers: &mut http::HeaderMap) {
    if headers.get("grpc-status").map(HeaderValue::as_bytes) != Some(b"13") {
        return;
    }
    let Some(message) = headers.get("grpc-message").and_then(|m| m.to_str().ok()) else {
        return;
    };
    let message = percent_decoded_spaces(message);
    let Some((_, documented)) = REQUEST_FRAMING
        .iter()
        .find(|(tonic, _)| message.starts_with(tonic))
    else {
        return;
    };
    headers.insert("grpc-status", HeaderValue::from_static("3"));
    headers.insert("grpc-message", HeaderValue::from_static(documented));
}

/// `message` with gRPC's percent-encoded spaces (`%20`) decoded; the
/// messages matched here hold no other escaped character.
fn percent_decoded_spaces(message: &str) -> String {
    message.replace("%20", " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: &'static str, message: &'static str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static(code));
        headers.insert("grpc-message", HeaderValue::from_static(message));
        headers
    }

    #[test]
    fn framing_errors_become_invalid_argument_except_the_one_the_spec_fixes() {
        for tonic in [
            "Unexpected EOF decoding stream.",
            "Missing%20request%20message.",
            "protocol error: received message with invalid compression flag: 2 (valid flags are 0 and 1), while sending request",
        ] {
            let mut headers = answer("13", tonic);
            as_documented(&mut headers);
            assert_eq!(headers["grpc-status"], "3", "{tonic}");
            let text = headers["grpc-message"].to_str().unwrap_or_default();
            assert!(text.contains("not a well-formed gRPC message"), "{text}");
        }
        for kept in [
            answer(
                "13",
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ),
            answer("13", "a stored token failed integrity checks"),
            answer("3", "Unexpected EOF decoding stream."),
        ] {
            let mut headers = kept.clone();
            as_documented(&mut headers);
            assert_eq!(headers, kept);
        }
    }
}
