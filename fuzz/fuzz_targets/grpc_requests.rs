//! Every request message of both gRPC services, as a server decodes it
//! (the first byte picks the message, the rest is its protobuf encoding),
//! then the checks each service runs on it before any store or provider
//! call: set-service's `validate` and sealed-token checks, get-service's
//! account, provider and scope checks. A decoded message encodes back to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokenvault_get_service::scopes::ScopeSet;
use tokenvault_proto::ids::{check_account, check_provider};
use tokenvault_proto::v1::*;
use tokenvault_seal::{SealedToken, TokenUse};
use tokenvault_set_service::validate;

fn decoded<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<M> {
    let message = M::decode(bytes).ok()?;
    assert_eq!(
        M::decode(message.encode_to_vec().as_slice()).as_ref(),
        Ok(&message)
    );
    Some(message)
}

/// set-service's checks of a target and a sealed token (`check_target`, `check_sealed_as`).
fn set_checks(account: &str, provider: &str, sealed: Option<(&str, TokenUse)>) {
    let _ = validate::account(account)
        .and_then(|()| validate::known_provider(provider, &["google".to_owned()]));
    if let Some((sealed, token_use)) = sealed
        && let Ok(token) = SealedToken::parse(sealed)
        && token.check_context_of(token_use, account, provider).is_ok()
    {
        assert_eq!(
            (token.account(), token.provider(), token.token_use()),
            (account, provider, token_use)
        );
    }
}

/// get-service's checks (`GetServiceImpl::check` and the scopes).
fn get_checks(account: &str, provider: &str, scopes: &[String]) {
    if check_account(account)
        .and_then(|()| check_provider(provider))
        .is_ok()
        && let Ok(set) = ScopeSet::parse(scopes)
    {
        assert!(set.to_vec().len() <= scopes.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => {
            if let Some(r) = decoded::<StoreRefreshTokenRequest>(bytes) {
                set_checks(
                    &r.account,
                    &r.provider,
                    Some((&r.sealed_token, TokenUse::Refresh)),
                )
            }
        }
        1 => {
            if let Some(r) = decoded::<DisconnectAccountRequest>(bytes) {
                set_checks(&r.account, &r.provider, None)
            }
        }
        2 => {
            if let Some(r) = decoded::<RecordAccountStatusRequest>(bytes) {
                set_checks(&r.account, &r.provider, None);
                let _ = validate::reason(&r.reason);
            }
        }
        3 => {
            if let Some(r) = decoded::<RecordRevocationRequest>(bytes) {
                set_checks(&r.account, &r.provider, None)
            }
        }
        4 => {
            if let Some(r) = decoded::<ResealRefreshTokenRequest>(bytes) {
                set_checks(
                    &r.account,
                    &r.provider,
                    Some((&r.sealed_token, TokenUse::Refresh)),
                );
                let _ = validate::key_id("previous_kid", &r.previous_kid);
            }
        }
        5 => {
            if let Some(r) = decoded::<ShareAccessTokenRequest>(bytes) {
                set_checks(
                    &r.account,
                    &r.provider,
                    Some((&r.sealed_access_token, TokenUse::Access)),
                );
            }
        }
        6 => {
            if let Some(r) = decoded::<GetAccessTokenRequest>(bytes) {
                get_checks(&r.account, &r.provider, &r.scopes)
            }
        }
        _ => {
            if let Some(r) = decoded::<GetAccountStatusRequest>(bytes) {
                get_checks(&r.account, &r.provider, &[])
            }
        }
    }
});
