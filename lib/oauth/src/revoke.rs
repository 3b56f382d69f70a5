//! [`Provider::revoke`]: RFC 7009 token revocation with
//! `token_type_hint=refresh_token`.
//!
//! Built directly on reqwest rather than through oauth2, whose revocation
//! refuses every non-https URL, including the loopback ones the tests use;
//! client authentication is done as oauth2 does it for the refresh grant
//! (RFC 6749 2.3.1: id and secret URL-encoded, then HTTP Basic, or both in
//! the form body).
//!
//! Holds the plaintext refresh token and the client secret for the length of
//! one call (intermediate strings are wiped; reqwest's copy of the request is
//! not).

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use url::Url;
use url::form_urlencoded::{Serializer, byte_serialize};
use zeroize::Zeroizing;

use crate::classify::{Exchange, check_response, oauth_error};
use crate::client::timed_out;
use crate::config::ClientAuth;
use crate::transport::fetch;
use crate::{Provider, ProviderError};

impl Provider {
    /// Revokes `refresh_token` (RFC 7009, `token_type_hint=refresh_token`),
    /// which at most providers ends the whole grant, within `timeout_secs`.
    /// A token the provider already considers invalid counts as revoked
    /// (RFC 7009 2.2; some providers answer `invalid_token` anyway).
    ///
    /// Errors: `Unsupported` if no revocation endpoint is configured or
    /// discovered, or the provider answers `unsupported_token_type`;
    /// otherwise classified as for [`Provider::refresh`] (`Transient` for a
    /// 503 with `Retry-After`, etc.). Not retried.
    pub async fn revoke(&self, refresh_token: &str) -> Result<(), ProviderError> {
        let mut status = None;
        let mut error_code = None;
        let result = match &self.endpoints.revocation {
            None => Err(ProviderError::Unsupported(format!(
                "provider {} has no revocation endpoint",
                self.name
            ))),
            Some(url) => match self.revocation_request(url, refresh_token) {
                Err(e) => Err(e),
                Ok(request) => {
                    let call = fetch(&self.http, request, &self.name);
                    match tokio::time::timeout(self.timeout, call).await {
                        Err(_) => Err(timed_out(self.timeout)),
                        Ok(Err(e)) => Err(e),
                        Ok(Ok((s, headers, body))) => {
                            status = Some(s.as_u16());
                            let checked = check_response(
                                Exchange::Revoke,
                                s,
                                &headers,
                                &body,
                                SystemTime::now(),
                            );
                            if checked.is_err() {
                                error_code = oauth_error(&body).map(|(code, _)| code);
                            }
                            checked
                        }
                    }
                }
            },
        };
        let result = match result {
            Err(ProviderError::GrantDead { .. }) => Ok(()),
            other => other.map_err(|e| e.scrub(refresh_token)),
        };
        self.trace("revoke", status, error_code.as_deref(), &result);
        result
    }

    fn revocation_request(
        &self,
        url: &Url,
        token: &str,
    ) -> Result<reqwest::Request, ProviderError> {
        let mut form = Serializer::new(String::new());
        form.append_pair("token", token)
            .append_pair("token_type_hint", "refresh_token");
        let mut request = self
            .http
            .post(url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        match self.client_auth {
            ClientAuth::ClientSecretBasic => {
                request = request.header(AUTHORIZATION, self.basic_credentials()?);
            }
            ClientAuth::ClientSecretPost => {
                form.append_pair("client_id", &self.client_id)
                    .append_pair("client_secret", self.client_secret.expose());
            }
        }
        request.body(form.finish()).build().map_err(|e| {
            ProviderError::Misconfigured(format!("cannot build the revocation request: {e}"))
        })
    }

    /// `Basic base64(urlencode(id) ":" urlencode(secret))`, marked sensitive.
    fn basic_credentials(&self) -> Result<HeaderValue, ProviderError> {
        let id: String = byte_serialize(self.client_id.as_bytes()).collect();
        let secret: Zeroizing<String> =
            Zeroizing::new(byte_serialize(self.client_secret.expose().as_bytes()).collect());
        let pair = Zeroizing::new(format!("{id}:{}", secret.as_str()));
        let value = Zeroizing::new(format!("Basic {}", STANDARD.encode(pair.as_bytes())));
        let mut header = HeaderValue::from_str(&value).map_err(|_| {
            ProviderError::Misconfigured("client credentials do not fit an HTTP header".into())
        })?;
        header.set_sensitive(true);
        Ok(header)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ProviderConfig;

    async fn provider(auth: &str) -> Provider {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let config: ProviderConfig = serde_json::from_value(serde_json::json!({
            "name": "idp",
            "token_endpoint": "https://idp.example.com/token",
            "revocation_endpoint": "https://idp.example.com/revoke",
            "client_id": "my client",
            "client_secret": "p:w&x=",
            "client_auth": auth,
        }))
        .unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Provider::new(config, http).await.unwrap()
    }

    fn body(request: &reqwest::Request) -> String {
        let bytes = request.body().and_then(|b| b.as_bytes()).unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn basic_auth_request() {
        let p = provider("client_secret_basic").await;
        let url = p.endpoints().revocation.clone().unwrap();
        let request = p.revocation_request(&url, "rt/+=1").unwrap();
        assert_eq!(request.method(), reqwest::Method::POST);
        assert_eq!(request.url().as_str(), "https://idp.example.com/revoke");
        let auth = request.headers().get(AUTHORIZATION).unwrap();
        assert!(auth.is_sensitive());
        let expected = format!("Basic {}", STANDARD.encode("my+client:p%3Aw%26x%3D"));
        assert_eq!(auth.to_str().unwrap(), expected);
        assert_eq!(
            body(&request),
            "token=rt%2F%2B%3D1&token_type_hint=refresh_token"
        );
        assert!(!format!("{p:?}").contains("p:w&x="));
    }

    #[tokio::test]
    async fn post_auth_request() {
        let p = provider("client_secret_post").await;
        let url = p.endpoints().revocation.clone().unwrap();
        let request = p.revocation_request(&url, "rt").unwrap();
        assert!(request.headers().get(AUTHORIZATION).is_none());
        assert_eq!(
            body(&request),
            "token=rt&token_type_hint=refresh_token&client_id=my+client&client_secret=p%3Aw%26x%3D"
        );
    }
}
