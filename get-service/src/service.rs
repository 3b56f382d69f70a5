//! The `tokenvault.v1.GetService` RPCs. Each call writes one audit line
//! (caller, peer, RPC, account, provider, outcome); the access token goes to
//! the caller only, never to a log line.

use tokenvault_proto::v1::get_service_server::GetService;
use tokenvault_proto::v1::{
    AccountStatus, GetAccessTokenRequest, GetAccessTokenResponse, GetAccountStatusRequest,
    GetAccountStatusResponse,
};
use tokenvault_rpc::audit;
use tokenvault_store::TokenStatus;
use tokenvault_tls::PeerInfo;
use tonic::{Request, Response, Status};

use crate::account::AccountKey;
use crate::broker::Broker;
use crate::error::TokenError;

/// The get-service implementation.
#[derive(Debug, Clone)]
pub struct GetServiceImpl {
    broker: Broker,
}

impl GetServiceImpl {
    /// Serves tokens from `broker`.
    pub fn new(broker: Broker) -> Self {
        Self { broker }
    }

    fn check(&self, account: &str, provider: &str) -> Result<(), TokenError> {
        tokenvault_proto::ids::check_account(account)
            .and_then(|()| tokenvault_proto::ids::check_provider(provider))
            .map_err(|m| TokenError::InvalidArgument(m.into()))?;
        if !self.broker.knows_provider(provider) {
            return Err(TokenError::InvalidArgument(format!(
                "provider: {provider:?} is not a configured provider"
            )));
        }
        Ok(())
    }

    async fn access_token(
        &self,
        req: &GetAccessTokenRequest,
    ) -> Result<GetAccessTokenResponse, TokenError> {
        self.check(&req.account, &req.provider)?;
        let token = self
            .broker
            .access_token(
                AccountKey::new(&req.account, &req.provider),
                req.min_ttl_seconds,
            )
            .await?;
        Ok(GetAccessTokenResponse {
            access_token: token.token.to_string(),
            token_type: token.token_type.clone(),
            expires_at_unix: token.expires_at_unix,
            scopes: token.scopes.clone(),
        })
    }

    async fn account_status(
        &self,
        req: &GetAccountStatusRequest,
    ) -> Result<GetAccountStatusResponse, TokenError> {
        self.check(&req.account, &req.provider)?;
        let record = self
            .broker
            .reader()
            .status(&req.account, &req.provider)
            .await?
            .ok_or(TokenError::UnknownAccount)?;
        let status = match record.status {
            TokenStatus::Active => AccountStatus::Active,
            TokenStatus::ReauthorizationRequired => AccountStatus::ReauthorizationRequired,
            TokenStatus::Disconnected => AccountStatus::Disconnected,
        };
        Ok(GetAccountStatusResponse {
            status: status as i32,
            reason: record.reason,
            updated_at_unix: record.updated_at_unix,
        })
    }
}

#[tonic::async_trait]
impl GetService for GetServiceImpl {
    async fn get_access_token(
        &self,
        request: Request<GetAccessTokenRequest>,
    ) -> Result<Response<GetAccessTokenResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let result = self.access_token(&req).await;
        audit::respond(
            "GetAccessToken",
            peer.as_ref(),
            &req.account,
            &req.provider,
            result,
            TokenError::outcome,
        )
    }

    async fn get_account_status(
        &self,
        request: Request<GetAccountStatusRequest>,
    ) -> Result<Response<GetAccountStatusResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let result = self.account_status(&req).await;
        audit::respond(
            "GetAccountStatus",
            peer.as_ref(),
            &req.account,
            &req.provider,
            result,
            TokenError::outcome,
        )
    }
}
