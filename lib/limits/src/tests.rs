//! The relationships between the limits that must hold.

use super::*;

/// The length of `n` bytes in unpadded base64url.
fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

#[test]
fn a_five_kib_token_seals_with_the_longest_ids() {
    // The protected header the seal writes, with every variable member at
    // its longest (see tokenvault-seal's `Header`).
    let header = format!(
        r#"{{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"{}","account":"{}","provider":"{}","token_use":"access"}}"#,
        "k".repeat(MAX_KEY_ID_LEN),
        "a".repeat(MAX_ACCOUNT_LEN),
        "p".repeat(MAX_PROVIDER_LEN),
    );
    let sealed =
        b64_len(header.len()) + 4 + b64_len(512) + b64_len(12) + b64_len(5 * 1024) + b64_len(16);
    assert!(
        sealed <= MAX_SEALED_TOKEN_LEN,
        "{sealed} > {MAX_SEALED_TOKEN_LEN}"
    );
}

/// Asserts that each `(what, wider, narrower)` has `wider >= narrower`.
fn assert_holds(pairs: &[(&str, usize, usize)]) {
    for &(what, wider, narrower) in pairs {
        assert!(wider >= narrower, "{what}: {wider} < {narrower}");
    }
}

#[test]
fn every_valid_id_is_logged_whole() {
    assert_holds(&[
        ("logged id >= account", MAX_LOGGED_ID_LEN, MAX_ACCOUNT_LEN),
        ("logged id >= provider", MAX_LOGGED_ID_LEN, MAX_PROVIDER_LEN),
    ]);
}

#[test]
fn the_store_columns_hold_what_the_code_accepts() {
    use store_columns::*;
    assert_holds(&[
        ("id column >= account", ID_CHARS, MAX_ACCOUNT_LEN),
        ("id column >= provider", ID_CHARS, MAX_PROVIDER_LEN),
        ("id column >= key id", ID_CHARS, MAX_KEY_ID_LEN),
        (
            "sealed token column",
            SEALED_TOKEN_BYTES,
            MAX_SEALED_TOKEN_LEN,
        ),
        ("reason column", REASON_CHARS, MAX_STATUS_REASON_LEN),
        ("token type column", TOKEN_TYPE_CHARS, MAX_TOKEN_TYPE_LEN),
        // The column holds the scopes joined with single spaces: one byte
        // less than the code counts (a separator after each).
        ("scopes column", SCOPES_CHARS, MAX_SHARED_SCOPES_LEN),
    ]);
}

#[test]
fn the_audit_columns_hold_every_logged_id() {
    use audit_columns::*;
    assert_holds(&[
        ("audit account/provider column", ID_CHARS, MAX_LOGGED_ID_LEN),
        // `rule:` and a name: names are the operator's, so the writer cuts;
        // `none` and `open` always fit.
        ("audit policy column", POLICY_CHARS, "rule:x".len()),
    ]);
}

#[test]
fn the_largest_valid_requests_fit_the_message_limits() {
    // Protobuf: a string or repeated-string element costs a one-byte tag, a
    // length varint (at most 2 bytes below 16 KiB) and its bytes; a 64-bit
    // varint at most 11 bytes with its tag.
    let field = |len: usize| 1 + 2 + len;
    let ids = field(MAX_ACCOUNT_LEN) + field(MAX_PROVIDER_LEN);
    // ShareAccessTokenRequest: ids, version, sealed token, two int64s, token
    // type, scopes: an element of n >= 1 bytes counts n + 1 towards the
    // limit and costs at most n + 3 bytes, under twice what it counts.
    let share = ids
        + 11
        + field(MAX_SEALED_TOKEN_LEN)
        + 2 * 11
        + field(MAX_TOKEN_TYPE_LEN)
        + 2 * MAX_SHARED_SCOPES_LEN;
    assert!(share <= SET_SERVICE_MAX_MESSAGE_BYTES, "{share}");
    // ResealRefreshTokenRequest, the other one with a sealed token.
    let reseal = ids + 11 + field(MAX_KEY_ID_LEN) + field(MAX_SEALED_TOKEN_LEN);
    assert!(reseal <= SET_SERVICE_MAX_MESSAGE_BYTES, "{reseal}");
    // GetAccessTokenRequest: ids, min TTL, scopes.
    let get = ids + 6 + MAX_REQUEST_SCOPES * field(MAX_SCOPE_LEN);
    assert!(get <= GET_SERVICE_MAX_MESSAGE_BYTES, "{get}");
}
