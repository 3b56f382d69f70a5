//! The `tokenvault.v1.GetService` RPCs. Each call is checked against the
//! account policy ([`crate::policy`]) and writes one audit line (caller,
//! peer, RPC, account, provider, the policy rule that decided, outcome); the
//! access token goes to the caller only, never to a log line.
//!
//! `GetClientAccessToken` serves the application's own client-credentials
//! tokens: its audit line names the account `(client)`.

use tokenvault_proto::v1::get_service_server::GetService;
use tokenvault_proto::v1::{
    GetAccessTokenRequest, GetAccessTokenResponse, GetAccountStatusRequest,
    GetAccountStatusResponse, GetClientAccessTokenRequest,
};
use tokenvault_rpc::audit;
use tokenvault_tls::PeerInfo;
use tonic::{Request, Response, Status};

use crate::account::AccountKey;
use crate::broker::{Broker, Want};
use crate::error::TokenError;
use crate::policy::Decision;
use crate::policy::watch::PolicyRx;
use crate::scopes::ScopeSet;
use crate::token::AccessToken;

/// The get-service implementation.
#[derive(Debug, Clone)]
pub struct GetServiceImpl {
    broker: Broker,
    policy: PolicyRx,
}

/// What the policy decided of a call (for its audit event), and its result.
type Governed<T> = (Option<Decision>, Result<T, TokenError>);

impl GetServiceImpl {
    /// Serves tokens from `broker` to the callers `policy` allows.
    pub fn new(broker: Broker, policy: PolicyRx) -> Self {
        Self { broker, policy }
    }

    fn check(&self, account: &str, provider: &str) -> Result<AccountKey, TokenError> {
        tokenvault_proto::ids::check_account(account)
            .and_then(|()| tokenvault_proto::ids::check_provider(provider))
            .map_err(|m| TokenError::InvalidArgument(m.into()))?;
        let Some(provider) = self.broker.provider_name(provider) else {
            return Err(TokenError::InvalidArgument(format!(
                "provider: {provider:?} is not a configured provider"
            )));
        };
        Ok(AccountKey::with_provider(account, provider))
    }

    /// The policy's decision on `peer` reading `key`; refused unless it
    /// allows it.
    fn authorize(
        &self,
        peer: Option<&PeerInfo>,
        key: &AccountKey,
    ) -> (Decision, Result<(), TokenError>) {
        let policy = self.policy.borrow().clone();
        let decision = match peer {
            Some(peer) => policy.decide(&peer.id, key),
            None if policy.is_open() => Decision::Open,
            None => Decision::NoRule,
        };
        let result = match &decision {
            Decision::NoRule => Err(TokenError::PermissionDenied(format!(
                "caller {} may not read account {} at {}: no account policy rule allows it",
                caller(peer),
                key.account,
                key.provider
            ))),
            _ => Ok(()),
        };
        (decision, result)
    }

    async fn access_token(
        &self,
        peer: Option<&PeerInfo>,
        req: &GetAccessTokenRequest,
    ) -> Governed<GetAccessTokenResponse> {
        let checked = self.check(&req.account, &req.provider).and_then(|key| {
            let asked = ScopeSet::parse(&req.scopes).map_err(TokenError::InvalidArgument)?;
            Ok((key, asked))
        });
        let (key, asked) = match checked {
            Ok(checked) => checked,
            Err(e) => return (None, Err(e)),
        };
        let (decision, allowed) = self.authorize(peer, &key);
        if let Err(e) = allowed {
            return (Some(decision), Err(e));
        }
        let want = match want(&decision, asked) {
            Ok(want) => want,
            Err(beyond) => {
                return (
                    Some(decision),
                    Err(TokenError::PermissionDenied(format!(
                        "caller {} may not have scopes {beyond} of account {} at {}: beyond \
                         what its account policy rule allows",
                        caller(peer),
                        key.account,
                        key.provider
                    ))),
                );
            }
        };
        let result = self
            .broker
            .scoped_access_token(key, req.min_ttl_seconds, want)
            .await
            .map(|token| answer(&token));
        (Some(decision), result)
    }

    async fn client_access_token(
        &self,
        peer: Option<&PeerInfo>,
        req: &GetClientAccessTokenRequest,
    ) -> Governed<GetAccessTokenResponse> {
        let checked = tokenvault_proto::ids::check_provider(&req.provider)
            .map_err(|m| TokenError::InvalidArgument(m.into()))
            .and_then(|()| {
                let asked = ScopeSet::parse(&req.scopes).map_err(TokenError::InvalidArgument)?;
                match self.broker.provider_name(&req.provider) {
                    Some(name) if self.broker.serves_client_credentials(&name) => Ok((name, asked)),
                    _ => Err(TokenError::InvalidArgument(format!(
                        "provider: {:?} is not a provider configured for the client-credentials \
                         grant (client_credentials = true)",
                        req.provider
                    ))),
                }
            });
        let (provider, asked) = match checked {
            Ok(checked) => checked,
            Err(e) => return (None, Err(e)),
        };
        let policy = self.policy.borrow().clone();
        // No rule file is no rule: client tokens are never open.
        let decision = match peer {
            Some(peer) => policy.decide_client(&peer.id, &provider),
            None => Decision::NoRule,
        };
        if matches!(decision, Decision::NoRule) {
            let denied = TokenError::PermissionDenied(format!(
                "caller {} may not have the client token of {provider}: no account policy rule \
                 with client_token = true allows it",
                caller(peer)
            ));
            return (Some(decision), Err(denied));
        }
        let scopes = match client_scopes(&decision, asked, self.broker.client_scopes(&provider)) {
            Ok(scopes) => scopes,
            Err(beyond) => {
                let denied = TokenError::PermissionDenied(format!(
                    "caller {} may not have scopes {beyond} of the client token of {provider}: \
                     beyond what its account policy rule allows",
                    caller(peer)
                ));
                return (Some(decision), Err(denied));
            }
        };
        let result = self
            .broker
            .client_token(provider, req.min_ttl_seconds, scopes)
            .await
            .map(|token| answer(&token));
        (Some(decision), result)
    }

    async fn account_status(
        &self,
        peer: Option<&PeerInfo>,
        req: &GetAccountStatusRequest,
    ) -> Governed<GetAccountStatusResponse> {
        let key = match self.check(&req.account, &req.provider) {
            Ok(key) => key,
            Err(e) => return (None, Err(e)),
        };
        let (decision, allowed) = self.authorize(peer, &key);
        if let Err(e) = allowed {
            return (Some(decision), Err(e));
        }
        (Some(decision), self.status(&key).await)
    }

    async fn status(&self, key: &AccountKey) -> Result<GetAccountStatusResponse, TokenError> {
        let record = self
            .broker
            .reader()
            .status(&key.account, &key.provider)
            .await?
            .ok_or(TokenError::UnknownAccount)?;
        Ok(GetAccountStatusResponse {
            status: crate::inventory::proto_status(record.status) as i32,
            reason: record.reason,
            updated_at_unix: record.updated_at_unix,
        })
    }
}

/// Which scopes the caller gets: what it asked for, within its rule's
/// ceiling; the error is the scopes beyond the ceiling.
fn want(decision: &Decision, asked: ScopeSet) -> Result<Want, ScopeSet> {
    let ceiling = match decision {
        Decision::Allowed(rule) => rule.ceiling.as_ref(),
        Decision::Open | Decision::NoRule => None,
    };
    match ceiling {
        None if asked.is_empty() => Ok(Want::Grant),
        None => Ok(Want::AtMost(asked)),
        Some(ceiling) if asked.is_empty() => Ok(Want::GrantWithin(ceiling.clone())),
        Some(ceiling) if asked.is_subset(ceiling) => Ok(Want::AtMost(asked)),
        Some(ceiling) => Err(asked.beyond(ceiling)),
    }
}

/// Which scopes to ask a client token with (`None`: the configured ones):
/// what the caller asked for, within its rule's ceiling; asking for nothing
/// under a ceiling gets the configured scopes within it (or the ceiling, if
/// none are configured). The error is the scopes beyond the ceiling.
fn client_scopes(
    decision: &Decision,
    asked: ScopeSet,
    configured: Option<ScopeSet>,
) -> Result<Option<ScopeSet>, ScopeSet> {
    let ceiling = match decision {
        Decision::Allowed(rule) => rule.ceiling.as_ref(),
        Decision::Open | Decision::NoRule => None,
    };
    match ceiling {
        None if asked.is_empty() => Ok(None),
        None => Ok(Some(asked)),
        Some(ceiling) if asked.is_empty() => match configured.filter(|c| !c.is_empty()) {
            Some(configured) if configured.is_subset(ceiling) => Ok(Some(configured)),
            Some(configured) => {
                let within = configured.intersection(ceiling);
                if within.is_empty() {
                    Err(configured.beyond(ceiling))
                } else {
                    Ok(Some(within))
                }
            }
            None => Ok(Some(ceiling.clone())),
        },
        Some(ceiling) if asked.is_subset(ceiling) => Ok(Some(asked)),
        Some(ceiling) => Err(asked.beyond(ceiling)),
    }
}

/// What the caller gets of a token.
fn answer(token: &AccessToken) -> GetAccessTokenResponse {
    GetAccessTokenResponse {
        access_token: token.token.to_string(),
        token_type: token.token_type.to_string(),
        expires_at_unix: token.expires_at_unix,
        scopes: token.scopes.to_vec(),
    }
}

fn caller(peer: Option<&PeerInfo>) -> String {
    peer.map_or_else(|| "(unknown)".to_owned(), |p| p.id.to_string())
}

#[tonic::async_trait]
impl GetService for GetServiceImpl {
    async fn get_access_token(
        &self,
        request: Request<GetAccessTokenRequest>,
    ) -> Result<Response<GetAccessTokenResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let (policy, result) = self.access_token(peer.as_ref(), &req).await;
        audit::respond_with_policy(
            "GetAccessToken",
            peer.as_ref(),
            (&req.account, &req.provider),
            policy.as_ref().map(Decision::label),
            result,
            TokenError::outcome,
        )
    }

    async fn get_client_access_token(
        &self,
        request: Request<GetClientAccessTokenRequest>,
    ) -> Result<Response<GetAccessTokenResponse>, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let req = request.into_inner();
        let (policy, result) = self.client_access_token(peer.as_ref(), &req).await;
        audit::respond_with_policy(
            "GetClientAccessToken",
            peer.as_ref(),
            ("(client)", &req.provider),
            policy.as_ref().map(Decision::label),
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
        let (policy, result) = self.account_status(peer.as_ref(), &req).await;
        audit::respond_with_policy(
            "GetAccountStatus",
            peer.as_ref(),
            (&req.account, &req.provider),
            policy.as_ref().map(Decision::label),
            result,
            TokenError::outcome,
        )
    }
}
