//! The `tokenvault.v1.SetService` RPCs: validate, then append to the store.
//!
//! Every input is checked before anything is written, so a rejected request
//! changes nothing. Each call logs the caller, the RPC, the account, the
//! provider and the outcome on the `tokenvault::audit` target; never the token.
//! This service holds a sealed token only for the length of one request and
//! has no key that could open it.

use std::sync::Arc;

use tokenvault_limits::{MAX_SHARED_SCOPES_LEN, MAX_TOKEN_TYPE_LEN};
use tokenvault_proto::v1::set_service_server::SetService;
use tokenvault_proto::v1::{
    AccountStatus, DisconnectAccountRequest, DisconnectAccountResponse, RecordAccountStatusRequest,
    RecordAccountStatusResponse, RecordRevocationRequest, RecordRevocationResponse,
    ResealOutcome as ProtoResealOutcome, ResealRefreshTokenRequest, ResealRefreshTokenResponse,
    RevocationOutcome as ProtoRevocationOutcome, ShareAccessTokenRequest, ShareAccessTokenResponse,
    StoreRefreshTokenRequest, StoreRefreshTokenResponse,
};
use tokenvault_rpc::audit;
use tokenvault_seal::{PublicKeySet, SealedToken, TokenUse};
use tokenvault_store::{
    ResealOutcome, RevocationOutcome, SharedAccessToken, StoreError, TokenFacts, TokenStatus,
    TokenWriter,
};
use tokenvault_tls::PeerInfo;
use tonic::{Request, Response, Status};

use crate::config::Limits;
use crate::error::RpcError;
use crate::validate;

/// The set-service implementation.
#[derive(Debug, Clone)]
pub struct SetServiceImpl {
    store: TokenWriter,
    keys: Arc<PublicKeySet>,
    providers: Arc<Vec<String>>,
    limits: Limits,
}

impl SetServiceImpl {
    /// A service that writes to `store` and accepts tokens sealed with `keys`.
    pub fn new(
        store: TokenWriter,
        keys: PublicKeySet,
        providers: Vec<String>,
        limits: Limits,
    ) -> Self {
        Self {
            store,
            keys: Arc::new(keys),
            providers: Arc::new(providers),
            limits,
        }
    }

    fn check_target(&self, account: &str, provider: &str) -> Result<(), RpcError> {
        validate::account(account)?;
        validate::known_provider(provider, &self.providers)
    }

    async fn store_refresh_token(
        &self,
        req: &StoreRefreshTokenRequest,
    ) -> Result<StoreRefreshTokenResponse, RpcError> {
        self.check_target(&req.account, &req.provider)?;
        let kid = self.check_sealed(&req.account, &req.provider, &req.sealed_token)?;
        let metadata = validate::metadata(&req.metadata_json)?;
        let refresh_token_expires_at = match req.refresh_token_expires_at_unix {
            0 => None,
            at if at > 0 => Some(at),
            _ => {
                return Err(RpcError::InvalidArgument(
                    "refresh_token_expires_at_unix: must not be negative".into(),
                ));
            }
        };
        let import = req.expected_version == Some(0);
        if metadata.is_some() && req.expected_version.is_some() && !import {
            return Err(RpcError::InvalidArgument(
                "metadata_json: a rotation (expected_version) keeps the account's metadata; \
                 send metadata with a connect only"
                    .into(),
            ));
        }
        let facts = TokenFacts {
            metadata: metadata.as_deref(),
            refresh_token_expires_at,
        };
        let outcome = match req.expected_version {
            // Only if nothing was ever stored for the key (an import).
            Some(0) => {
                self.store
                    .store_if_absent_with(
                        &req.account,
                        &req.provider,
                        &req.sealed_token,
                        &kid,
                        facts,
                    )
                    .await?
            }
            None => {
                self.store
                    .store_with(&req.account, &req.provider, &req.sealed_token, &kid, facts)
                    .await?
            }
            Some(expected) => {
                let expected = i64::try_from(expected).map_err(|_| {
                    RpcError::InvalidArgument("expected_version: out of range".into())
                })?;
                self.store
                    .store_if_newest_with(
                        &req.account,
                        &req.provider,
                        &req.sealed_token,
                        &kid,
                        expected,
                        refresh_token_expires_at,
                    )
                    .await?
            }
        };
        Ok(StoreRefreshTokenResponse {
            version: u64::try_from(outcome.version).unwrap_or_default(),
            already_stored: outcome.already_stored,
        })
    }

    async fn disconnect_account(&self, req: &DisconnectAccountRequest) -> Result<(), RpcError> {
        self.check_target(&req.account, &req.provider)?;
        self.store.disconnect(&req.account, &req.provider).await?;
        Ok(())
    }

    async fn record_account_status(
        &self,
        req: &RecordAccountStatusRequest,
    ) -> Result<(), RpcError> {
        self.check_target(&req.account, &req.provider)?;
        validate::reason(&req.reason)?;
        let status = match AccountStatus::try_from(req.status) {
            Ok(AccountStatus::Active) => TokenStatus::Active,
            Ok(AccountStatus::ReauthorizationRequired) => TokenStatus::ReauthorizationRequired,
            Ok(AccountStatus::Disconnected) => {
                return Err(RpcError::InvalidArgument(
                    "status: use DisconnectAccount to disconnect".into(),
                ));
            }
            _ => {
                return Err(RpcError::InvalidArgument(
                    "status: must be ACTIVE or REAUTHORIZATION_REQUIRED".into(),
                ));
            }
        };
        self.store
            .record_status(&req.account, &req.provider, status, &req.reason)
            .await?;
        Ok(())
    }
}

impl SetServiceImpl {
    async fn record_revocation(&self, req: &RecordRevocationRequest) -> Result<bool, RpcError> {
        self.check_target(&req.account, &req.provider)?;
        let version = i64::try_from(req.token_version)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| RpcError::InvalidArgument("token_version: out of range".into()))?;
        let outcome = match ProtoRevocationOutcome::try_from(req.outcome) {
            Ok(ProtoRevocationOutcome::Revoked) => RevocationOutcome::Revoked,
            Ok(ProtoRevocationOutcome::Unsupported) => RevocationOutcome::Unsupported,
            _ => {
                return Err(RpcError::InvalidArgument(
                    "outcome: must be REVOKED or UNSUPPORTED".into(),
                ));
            }
        };
        Ok(self
            .store
            .record_revocation(&req.account, &req.provider, version, outcome)
            .await?)
    }
}

impl SetServiceImpl {
    /// Checks a sealed refresh token's size, shape, key id and header
    /// against the request; returns its key id.
    fn check_sealed(
        &self,
        account: &str,
        provider: &str,
        sealed_token: &str,
    ) -> Result<String, RpcError> {
        self.check_sealed_as(TokenUse::Refresh, account, provider, sealed_token)
    }

    /// [`check_sealed`](Self::check_sealed) for a token of `token_use`.
    fn check_sealed_as(
        &self,
        token_use: TokenUse,
        account: &str,
        provider: &str,
        sealed_token: &str,
    ) -> Result<String, RpcError> {
        if sealed_token.len() > self.limits.max_sealed_token_bytes {
            return Err(RpcError::TooLarge(format!(
                "sealed_token: {} bytes, the limit is {}",
                sealed_token.len(),
                self.limits.max_sealed_token_bytes
            )));
        }
        let sealed = SealedToken::parse(sealed_token)?;
        if !self.keys.contains(sealed.kid()) {
            return Err(RpcError::InvalidArgument(format!(
                "sealed_token: unknown key id {:?}",
                sealed.kid()
            )));
        }
        sealed.check_context_of(token_use, account, provider)?;
        Ok(sealed.kid().to_owned())
    }

    async fn share_access_token(&self, req: &ShareAccessTokenRequest) -> Result<bool, RpcError> {
        self.check_target(&req.account, &req.provider)?;
        let version = i64::try_from(req.token_version)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| RpcError::InvalidArgument("token_version: out of range".into()))?;
        let kid = self.check_sealed_as(
            TokenUse::Access,
            &req.account,
            &req.provider,
            &req.sealed_access_token,
        )?;
        if req.lifetime_seconds < 0 || req.expires_at_unix <= 0 {
            return Err(RpcError::InvalidArgument(
                "expires_at_unix and lifetime_seconds: out of range".into(),
            ));
        }
        if req.token_type.is_empty()
            || req.token_type.len() > MAX_TOKEN_TYPE_LEN
            || !req.token_type.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(RpcError::InvalidArgument(format!(
                "token_type: 1 to {MAX_TOKEN_TYPE_LEN} printable ASCII characters"
            )));
        }
        if req.scopes.iter().map(|s| s.len() + 1).sum::<usize>() > MAX_SHARED_SCOPES_LEN {
            return Err(RpcError::TooLarge(format!(
                "scopes: longer than {MAX_SHARED_SCOPES_LEN} bytes together"
            )));
        }
        if req
            .scopes
            .iter()
            .any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(RpcError::InvalidArgument(
                "scopes: each a non-empty run of printable ASCII without spaces".into(),
            ));
        }
        let share = SharedAccessToken {
            version,
            sealed_token: req.sealed_access_token.clone(),
            kid,
            expires_at_unix: req.expires_at_unix,
            lifetime_secs: req.lifetime_seconds,
            token_type: req.token_type.clone(),
            scopes: req.scopes.clone(),
        };
        Ok(self
            .store
            .share_access_token(&req.account, &req.provider, &share)
            .await?)
    }

    async fn reseal_refresh_token(
        &self,
        req: &ResealRefreshTokenRequest,
    ) -> Result<ProtoResealOutcome, RpcError> {
        self.check_target(&req.account, &req.provider)?;
        let version = i64::try_from(req.token_version)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| RpcError::InvalidArgument("token_version: out of range".into()))?;
        validate::key_id("previous_kid", &req.previous_kid)?;
        let kid = self.check_sealed(&req.account, &req.provider, &req.sealed_token)?;
        if kid == req.previous_kid {
            return Err(RpcError::InvalidArgument(
                "sealed_token: sealed under previous_kid; a re-seal must change the key".into(),
            ));
        }
        let outcome = self
            .store
            .reseal(
                &req.account,
                &req.provider,
                version,
                &req.previous_kid,
                &req.sealed_token,
                &kid,
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound => RpcError::NotFound(
                    "token_version is not a stored token of this account and provider".into(),
                ),
                other => other.into(),
            })?;
        Ok(match outcome {
            ResealOutcome::Resealed => ProtoResealOutcome::Resealed,
            ResealOutcome::Superseded => ProtoResealOutcome::Superseded,
            ResealOutcome::KeyChanged => ProtoResealOutcome::KeyChanged,
        })
    }
}

#[tonic::async_trait]
impl SetService for SetServiceImpl {
    async fn share_access_token(
        &self,
        request: Request<ShareAccessTokenRequest>,
    ) -> Result<Response<ShareAccessTokenResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let result = SetServiceImpl::share_access_token(self, &req)
            .await
            .map(|shared| ShareAccessTokenResponse { shared });
        audit::respond(
            "ShareAccessToken",
            peer.as_ref(),
            &req.account,
            &req.provider,
            result,
            RpcError::outcome,
        )
    }

    async fn reseal_refresh_token(
        &self,
        request: Request<ResealRefreshTokenRequest>,
    ) -> Result<Response<ResealRefreshTokenResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let result = SetServiceImpl::reseal_refresh_token(self, &req)
            .await
            .map(|outcome| ResealRefreshTokenResponse {
                outcome: outcome as i32,
            });
        audit::respond(
            "ResealRefreshToken",
            peer.as_ref(),
            &req.account,
            &req.provider,
            result,
            RpcError::outcome,
        )
    }

    async fn record_revocation(
        &self,
        request: Request<RecordRevocationRequest>,
    ) -> Result<Response<RecordRevocationResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let result = SetServiceImpl::record_revocation(self, &req)
            .await
            .map(|recorded| RecordRevocationResponse { recorded });
        audit::respond(
            "RecordRevocation",
            peer.as_ref(),
            &req.account,
            &req.provider,
            result,
            RpcError::outcome,
        )
    }

    async fn store_refresh_token(
        &self,
        request: Request<StoreRefreshTokenRequest>,
    ) -> Result<Response<StoreRefreshTokenResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let result = SetServiceImpl::store_refresh_token(self, &req).await;
        audit::respond(
            "StoreRefreshToken",
            peer.as_ref(),
            &req.account,
            &req.provider,
            result,
            RpcError::outcome,
        )
    }

    async fn disconnect_account(
        &self,
        request: Request<DisconnectAccountRequest>,
    ) -> Result<Response<DisconnectAccountResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let result = SetServiceImpl::disconnect_account(self, &req)
            .await
            .map(|()| DisconnectAccountResponse {});
        audit::respond(
            "DisconnectAccount",
            peer.as_ref(),
            &req.account,
            &req.provider,
            result,
            RpcError::outcome,
        )
    }

    async fn record_account_status(
        &self,
        request: Request<RecordAccountStatusRequest>,
    ) -> Result<Response<RecordAccountStatusResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let result = SetServiceImpl::record_account_status(self, &req)
            .await
            .map(|()| RecordAccountStatusResponse {});
        audit::respond(
            "RecordAccountStatus",
            peer.as_ref(),
            &req.account,
            &req.provider,
            result,
            RpcError::outcome,
        )
    }
}
