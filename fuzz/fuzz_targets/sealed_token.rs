//! A sealed token (JWE compact) as set-service and get-service receive it:
//! `SealedToken::parse` and the context check, without any key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenvault_seal::{ENCRYPTED_KEY_LEN, MAX_SEALED_TOKEN_LEN, SealedToken, TokenUse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(token) = SealedToken::parse(text) else {
        return;
    };
    assert!(text.len() <= MAX_SEALED_TOKEN_LEN);
    assert_eq!(token.encrypted_key().len(), ENCRYPTED_KEY_LEN);
    assert!(
        !token.kid().is_empty() && !token.account().is_empty() && !token.ciphertext().is_empty()
    );
    assert!(text.as_bytes().starts_with(token.aad()));
    let (account, provider) = (token.account().to_owned(), token.provider().to_owned());
    assert!(
        token
            .check_context_of(token.token_use(), &account, &provider)
            .is_ok()
    );
    let other = match token.token_use() {
        TokenUse::Refresh => TokenUse::Access,
        TokenUse::Access => TokenUse::Refresh,
    };
    assert!(token.check_context_of(other, &account, &provider).is_err());
});
