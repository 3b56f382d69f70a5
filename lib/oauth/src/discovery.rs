//! OIDC discovery (OpenID Connect Discovery 1.0 section 4): fetches
//! `<issuer>/.well-known/openid-configuration`, checks that it names the
//! configured issuer, and takes the endpoints from it under the same https
//! rule as configured endpoints.
//!
//! Holds no token and no secret: the discovery request is an unauthenticated
//! GET.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue};
use serde::Deserialize;
use url::Url;

use crate::checks::{ClientAuth, check_endpoint};
use crate::classify::classify_failure;
use crate::transport::fetch;
use crate::{ProviderError, TRACE_TARGET};

/// A provider's endpoints, configured or discovered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The OIDC issuer, if the endpoints were discovered.
    pub issuer: Option<Url>,
    /// Token endpoint (refresh grant).
    pub token: Url,
    /// RFC 7009 revocation endpoint, if known.
    pub revocation: Option<Url>,
    /// OIDC userinfo endpoint, if discovered.
    pub userinfo: Option<Url>,
    /// RFC 7662 introspection endpoint, if discovered.
    pub introspection: Option<Url>,
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    token_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
    grant_types_supported: Option<Vec<String>>,
}

/// The discovery URL for `issuer`.
pub(crate) fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Runs discovery for provider `name` within `timeout`.
pub(crate) async fn discover(
    http: &reqwest::Client,
    name: &str,
    issuer: &str,
    auth: ClientAuth,
    timeout: Duration,
) -> Result<Endpoints, ProviderError> {
    let url = discovery_url(issuer);
    let misconfigured = |what: String| {
        ProviderError::Misconfigured(format!(
            "providers.{name}.issuer: discovery at {url}: {what}"
        ))
    };
    let request = http
        .get(&url)
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .build()
        .map_err(|e| misconfigured(e.to_string()))?;
    let (status, headers, body) = tokio::time::timeout(timeout, fetch(http, request, name))
        .await
        .map_err(|_| ProviderError::Transient {
            reason: format!("discovery at {url} timed out after {} s", timeout.as_secs()),
            retry_after: None,
        })??;
    if status != StatusCode::OK {
        return Err(
            match classify_failure(status, &headers, &body, std::time::SystemTime::now()) {
                ProviderError::Transient {
                    reason,
                    retry_after,
                } => ProviderError::Transient {
                    reason: format!("discovery at {url}: {reason}"),
                    retry_after,
                },
                _ => misconfigured(format!("HTTP {status}")),
            },
        );
    }
    endpoints_from_body(name, issuer, auth, &body)
}

/// The endpoints a discovery answer's `body` gives provider `name`
/// configured with `issuer`, checked as [`discover`] checks them (also run
/// by the `discovery` fuzz target, through [`crate::fuzzing`]).
pub(crate) fn endpoints_from_body(
    name: &str,
    issuer: &str,
    auth: ClientAuth,
    body: &[u8],
) -> Result<Endpoints, ProviderError> {
    let doc: Document = serde_json::from_slice(body).map_err(|e| {
        ProviderError::Misconfigured(format!(
            "providers.{name}.issuer: discovery at {}: not a discovery document (line {}, column {})",
            discovery_url(issuer),
            e.line(),
            e.column()
        ))
    })?;
    endpoints(name, issuer, auth, doc)
}

fn endpoints(
    name: &str,
    issuer: &str,
    auth: ClientAuth,
    doc: Document,
) -> Result<Endpoints, ProviderError> {
    let setting = |field: &str| format!("providers.{name}.issuer (discovered {field})");
    if doc.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(ProviderError::Misconfigured(format!(
            "providers.{name}.issuer: the discovery document names issuer {:?}, not {issuer:?}",
            doc.issuer
        )));
    }
    let check = |field: &str, value: Option<String>| {
        value
            .map(|v| check_endpoint(&setting(field), &v))
            .transpose()
            .map_err(ProviderError::Misconfigured)
    };
    let token = check("token_endpoint", doc.token_endpoint)?.ok_or_else(|| {
        ProviderError::Misconfigured(format!(
            "providers.{name}.issuer: the discovery document has no token_endpoint"
        ))
    })?;
    let endpoints = Endpoints {
        issuer: Some(
            check_endpoint(&setting("issuer"), &doc.issuer)
                .map_err(ProviderError::Misconfigured)?,
        ),
        token,
        revocation: check("revocation_endpoint", doc.revocation_endpoint)?,
        userinfo: check("userinfo_endpoint", doc.userinfo_endpoint)?,
        introspection: check("introspection_endpoint", doc.introspection_endpoint)?,
    };
    let method = match auth {
        ClientAuth::ClientSecretBasic => "client_secret_basic",
        ClientAuth::ClientSecretPost => "client_secret_post",
    };
    if let Some(methods) = &doc.token_endpoint_auth_methods_supported
        && !methods.iter().any(|m| m == method)
    {
        tracing::warn!(target: TRACE_TARGET, provider = name, client_auth = method,
                "the provider's discovery document does not list this client_auth method");
    }
    if let Some(grants) = &doc.grant_types_supported
        && !grants.iter().any(|g| g == "refresh_token")
    {
        tracing::warn!(target: TRACE_TARGET, provider = name,
                "the provider's discovery document does not list the refresh_token grant");
    }
    Ok(endpoints)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Document {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn discovery_url_has_one_slash() {
        assert_eq!(
            discovery_url("https://idp.example.com/realms/x/"),
            "https://idp.example.com/realms/x/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("http://127.0.0.1:3000"),
            "http://127.0.0.1:3000/.well-known/openid-configuration"
        );
    }

    #[test]
    fn endpoints_from_document() {
        let d = doc(
            r#"{"issuer":"https://idp.example.com","token_endpoint":"https://idp.example.com/token",
            "revocation_endpoint":"https://idp.example.com/token/revocation","userinfo_endpoint":"https://idp.example.com/me"}"#,
        );
        let e = endpoints(
            "idp",
            "https://idp.example.com/",
            ClientAuth::ClientSecretBasic,
            d,
        )
        .unwrap();
        assert_eq!(e.token.as_str(), "https://idp.example.com/token");
        assert_eq!(
            e.revocation.unwrap().as_str(),
            "https://idp.example.com/token/revocation"
        );
        assert!(e.introspection.is_none());
    }

    #[test]
    fn bad_documents() {
        let wrong_issuer = doc(
            r#"{"issuer":"https://evil.example.com","token_endpoint":"https://evil.example.com/t"}"#,
        );
        let err = endpoints(
            "idp",
            "https://idp.example.com",
            ClientAuth::ClientSecretBasic,
            wrong_issuer,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("providers.idp.issuer: the discovery document names issuer"),
            "{err}"
        );
        let http_token = doc(
            r#"{"issuer":"https://idp.example.com","token_endpoint":"http://idp.example.com/t"}"#,
        );
        let err = endpoints(
            "idp",
            "https://idp.example.com",
            ClientAuth::ClientSecretBasic,
            http_token,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("providers.idp.issuer (discovered token_endpoint): must use https"),
            "{err}"
        );
        let no_token = doc(r#"{"issuer":"https://idp.example.com"}"#);
        assert!(
            endpoints(
                "idp",
                "https://idp.example.com",
                ClientAuth::ClientSecretBasic,
                no_token
            )
            .is_err()
        );
    }
}
