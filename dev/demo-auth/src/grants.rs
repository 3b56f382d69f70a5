//! What the endpoints do to the state: consent forms, authorization codes
//! (single use, 60 s), grants with rotating refresh tokens and reuse
//! detection, access tokens, and revocation.
//!
//! Tokens are made here and returned once, inside a [`Secret`]; only their
//! fingerprints are stored. Log lines name users and grant ids, never tokens.

use tokenvault_runtime::secret::Secret;

use crate::store::{AccessToken, Grant, PendingCode, State, Store};
use crate::token::{fingerprint, new_id, new_token, pkce_s256_matches};

/// How long a code may wait to be exchanged.
pub const CODE_TTL_SECS: u64 = 60;
/// How long a consent form stays usable.
pub const CONSENT_TTL_SECS: u64 = 600;
/// Most pending codes or consent forms held at once.
const MAX_PENDING: usize = 10_000;
/// Most rotated refresh-token fingerprints kept per grant.
const MAX_ROTATED: usize = 100;
/// Most live access tokens per grant (the oldest are dropped).
const MAX_ACCESS: usize = 20;

/// Why a grant operation failed; mapped to RFC 6749 errors by the endpoints.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GrantError {
    /// `invalid_grant` with a description.
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// `invalid_scope`.
    #[error("the requested scope exceeds the grant's")]
    InvalidScope,
    /// Too much pending (`temporarily_unavailable`).
    #[error("too many pending authorizations; try again in a minute")]
    Busy,
    /// `server_error`: the random source or the state file failed.
    #[error("{0}")]
    Server(String),
}

impl From<crate::token::RandomError> for GrantError {
    fn from(e: crate::token::RandomError) -> Self {
        Self::Server(e.to_string())
    }
}

/// Tokens handed out by an exchange or a refresh. `Debug` shows no token.
pub(crate) struct Issued {
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub expires_in: u64,
    pub scope: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A new consent-form token bound to `request_digest`.
pub(crate) async fn new_consent(
    store: &Store,
    request_digest: String,
) -> Result<Secret, GrantError> {
    store
        .update(|s, now| {
            if s.ephemeral.consents.len() >= MAX_PENDING {
                return Err(GrantError::Busy);
            }
            let token = new_token()?;
            s.ephemeral.consents.insert(
                fingerprint(token.expose()),
                (request_digest, now + CONSENT_TTL_SECS),
            );
            Ok(token)
        })
        .await
}

/// Uses up a consent-form token; whether it was live and bound to
/// `request_digest`.
pub(crate) async fn take_consent(store: &Store, token: &str, request_digest: &str) -> bool {
    let key = fingerprint(token);
    store
        .update(|s, _| {
            Ok(matches!(s.ephemeral.consents.remove(&key), Some((d, _)) if d == request_digest))
        })
        .await
        .unwrap_or(false)
}

/// A new authorization code for `pending` (its `expires_at` is set here).
pub(crate) async fn new_code(
    store: &Store,
    mut pending: PendingCode,
) -> Result<Secret, GrantError> {
    store
        .update(|s, now| {
            if s.ephemeral.codes.len() >= MAX_PENDING {
                return Err(GrantError::Busy);
            }
            let code = new_token()?;
            pending.expires_at = now + CODE_TTL_SECS;
            s.ephemeral
                .codes
                .insert(fingerprint(code.expose()), pending);
            Ok(code)
        })
        .await
}

/// The authorization-code grant: checks and uses up `code`, then creates a
/// grant.
pub(crate) async fn exchange_code(
    store: &Store,
    client_id: &str,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: &str,
    ttl: u64,
) -> Result<Issued, GrantError> {
    let key = fingerprint(code);
    store
        .update(|s, now| {
            let Some(pending) = s.ephemeral.codes.remove(&key) else {
                if let Some((grant_id, _)) = s.ephemeral.used_codes.remove(&key) {
                    if let Some(g) = s.persisted.grants.remove(&grant_id) {
                        tracing::warn!(grant = %grant_id, user = %g.username, "authorization code replayed: grant revoked");
                    }
                    return Err(GrantError::InvalidGrant("the code was already used"));
                }
                return Err(GrantError::InvalidGrant("unknown or expired code"));
            };
            if pending.client_id != client_id {
                return Err(GrantError::InvalidGrant("the code was issued to another client"));
            }
            if pending.redirect_uri.as_deref().is_some_and(|r| redirect_uri != Some(r)) {
                return Err(GrantError::InvalidGrant(
                    "redirect_uri does not match the authorization request",
                ));
            }
            if !pkce_s256_matches(verifier, &pending.code_challenge) {
                return Err(GrantError::InvalidGrant("code_verifier does not match the code_challenge"));
            }
            let grant_id = new_id()?;
            let (refresh, access, expires_at) = (new_token()?, new_token()?, now + ttl);
            s.persisted.grants.insert(
                grant_id.clone(),
                Grant {
                    client_id: pending.client_id,
                    username: pending.username.clone(),
                    scope: pending.scope.clone(),
                    created_at: now,
                    refresh: fingerprint(refresh.expose()),
                    rotated: Vec::new(),
                    access: vec![AccessToken {
                        hash: fingerprint(access.expose()),
                        expires_at,
                        scope: pending.scope.clone(),
                    }],
                },
            );
            s.ephemeral
                .used_codes
                .insert(key, (grant_id.clone(), now + CODE_TTL_SECS));
            tracing::info!(grant = %grant_id, user = %pending.username, "code exchanged: grant created");
            Ok(Issued {
                access_token: access,
                refresh_token: refresh,
                expires_in: ttl,
                scope: pending.scope,
            })
        })
        .await
}

/// Finds the grant whose current or rotated refresh token has `hash`:
/// (grant id, whether it is the current one).
fn find_refresh(s: &State, hash: &str) -> Option<(String, bool)> {
    s.persisted.grants.iter().find_map(|(id, g)| {
        if g.refresh == hash {
            Some((id.clone(), true))
        } else if g.rotated.iter().any(|r| r == hash) {
            Some((id.clone(), false))
        } else {
            None
        }
    })
}

/// The refresh-token grant: rotates the refresh token and issues an access
/// token. A rotated (already used) refresh token revokes the whole grant.
pub(crate) async fn refresh(
    store: &Store,
    client_id: &str,
    refresh_token: &str,
    scope: Option<Vec<String>>,
    ttl: u64,
) -> Result<Issued, GrantError> {
    let hash = fingerprint(refresh_token);
    store
        .update(|s, now| {
            let Some((id, current)) = find_refresh(s, &hash) else {
                return Err(GrantError::InvalidGrant("unknown or revoked refresh token"));
            };
            let Some(grant) = s.persisted.grants.get_mut(&id) else {
                return Err(GrantError::InvalidGrant("unknown or revoked refresh token"));
            };
            if grant.client_id != client_id {
                return Err(GrantError::InvalidGrant("the refresh token was issued to another client"));
            }
            if !current {
                let user = grant.username.clone();
                s.persisted.grants.remove(&id);
                tracing::warn!(grant = %id, %user, "a rotated refresh token was used again: grant revoked");
                return Err(GrantError::InvalidGrant(
                    "refresh token already used; the grant is revoked (reuse detection)",
                ));
            }
            let scope = match scope {
                None => grant.scope.clone(),
                Some(asked) => {
                    let granted: Vec<&str> = grant.scope.split(' ').collect();
                    if !asked.iter().all(|a| granted.contains(&a.as_str())) {
                        return Err(GrantError::InvalidScope);
                    }
                    asked.join(" ")
                }
            };
            let (new_refresh, access) = (new_token()?, new_token()?);
            let old = std::mem::replace(&mut grant.refresh, fingerprint(new_refresh.expose()));
            grant.rotated.push(old);
            if grant.rotated.len() > MAX_ROTATED {
                grant.rotated.remove(0);
            }
            grant.access.push(AccessToken {
                hash: fingerprint(access.expose()),
                expires_at: now + ttl,
                scope: scope.clone(),
            });
            if grant.access.len() > MAX_ACCESS {
                grant.access.remove(0);
            }
            tracing::info!(grant = %id, user = %grant.username, "refresh token rotated");
            Ok(Issued {
                access_token: access,
                refresh_token: new_refresh,
                expires_in: ttl,
                scope,
            })
        })
        .await
}

/// The user an access token belongs to, if it is live.
pub(crate) async fn user_of(store: &Store, access_token: &str) -> Option<String> {
    let hash = fingerprint(access_token);
    store
        .update(|s, _| {
            Ok(s.persisted
                .grants
                .values()
                .find(|g| g.access.iter().any(|a| a.hash == hash))
                .map(|g| g.username.clone()))
        })
        .await
        .ok()
        .flatten()
}

/// What [`revoke`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Revoked {
    /// A refresh token (current or rotated): the whole grant is gone.
    Grant,
    /// One access token.
    AccessToken,
    /// Nothing known (RFC 7009: still a success).
    Unknown,
    /// The token belongs to another client: nothing done.
    OtherClient,
}

/// RFC 7009: revokes a refresh token's whole grant, or one access token.
pub(crate) async fn revoke(
    store: &Store,
    client_id: &str,
    token: &str,
) -> Result<Revoked, GrantError> {
    let hash = fingerprint(token);
    store
        .update(|s, _| {
            if let Some((id, _)) = find_refresh(s, &hash) {
                let Some(grant) = s.persisted.grants.get(&id) else {
                    return Ok(Revoked::Unknown);
                };
                if grant.client_id != client_id {
                    return Ok(Revoked::OtherClient);
                }
                tracing::info!(grant = %id, user = %grant.username, "grant revoked");
                s.persisted.grants.remove(&id);
                return Ok(Revoked::Grant);
            }
            for (id, grant) in &mut s.persisted.grants {
                if let Some(i) = grant.access.iter().position(|a| a.hash == hash) {
                    if grant.client_id != client_id {
                        return Ok(Revoked::OtherClient);
                    }
                    grant.access.remove(i);
                    tracing::info!(grant = %id, user = %grant.username, "access token revoked");
                    return Ok(Revoked::AccessToken);
                }
            }
            Ok(Revoked::Unknown)
        })
        .await
}
