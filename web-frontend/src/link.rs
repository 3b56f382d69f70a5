//! Connect links signed by the embedding application, so that a stored token
//! is filed under the application's own account id rather than one derived
//! from the provider identity.
//!
//! A link carries `account`, optionally `provider`, `expires` (Unix seconds)
//! and `sig`:
//!
//! ```text
//! sig = base64url_nopad(HMAC-SHA256(secret,
//!         "tokenvault-link-v1\n" + action + "\n" + account + "\n" + provider + "\n" + expires))
//! ```
//!
//! where `action` is `connect` or `disconnect` and `provider` is empty when the
//! link lets the person choose. A connect link may carry the account's
//! `metadata` (a JSON object: a tenant, a display name, tags; see
//! `tokenvault_proto::metadata`), stored with the account and sent in its
//! events; it is then signed too, as version 2:
//!
//! ```text
//! sig = base64url_nopad(HMAC-SHA256(secret,
//!         "tokenvault-link-v2\n" + action + "\n" + account + "\n" + provider + "\n"
//!         + expires + "\n" + metadata))
//! ```
//!
//! with `metadata` exactly as it appears in the link. A link may carry the account's tenant apart
//! (`tenant=acme&account=user-42`); the account id is then `acme:user-42`,
//! and that is what is signed. `docs/CONNECT_LINKS.md` has the whole format
//! and a Python example. This module holds the shared secret (wiped on drop)
//! and no token.

use std::path::Path;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tokenvault_runtime::secret::read_secret_file;
use url::Url;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// The longest link secret file read, in bytes.
const MAX_SECRET_FILE_LEN: u64 = 4096;

/// What a link lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Connect an account under the link's account id.
    Connect,
    /// Disconnect the link's (account, provider).
    Disconnect,
}

impl LinkAction {
    fn as_str(self) -> &'static str {
        match self {
            LinkAction::Connect => "connect",
            LinkAction::Disconnect => "disconnect",
        }
    }
}

/// Why a link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// This frontend has no link secret.
    #[error("signed links are not enabled on this server")]
    NotConfigured,
    /// A parameter is missing or malformed, or the signature does not match.
    #[error("the link is not valid: {0}")]
    Invalid(&'static str),
    /// The link's time is up.
    #[error("the link has expired")]
    Expired,
    /// The link claims a longer life than this server allows.
    #[error("the link is valid for longer than this server allows")]
    TooLongLived,
}

/// A link's parameters as they arrive in a query string or form. A
/// `tenant` parameter is folded into the account id as it arrives
/// (`tenant=acme&account=user-42` is the account `acme:user-42`, signed as
/// such), so that everything after sees one id.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(try_from = "LinkQuery")]
pub struct LinkParams {
    /// The application's account id (with its tenant, if the link named one).
    pub account: Option<String>,
    /// The provider the link is limited to.
    pub provider: Option<String>,
    /// Expiry, Unix seconds.
    pub expires: Option<i64>,
    /// The account's metadata, a JSON object (signed with the link).
    pub metadata: Option<String>,
    /// The signature.
    pub sig: Option<String>,
}

/// A link's parameters as written, `tenant` apart.
#[derive(Debug, Deserialize)]
struct LinkQuery {
    tenant: Option<String>,
    account: Option<String>,
    provider: Option<String>,
    expires: Option<i64>,
    metadata: Option<String>,
    sig: Option<String>,
}

impl TryFrom<LinkQuery> for LinkParams {
    type Error = &'static str;

    fn try_from(q: LinkQuery) -> Result<Self, Self::Error> {
        let account = match (q.tenant, q.account) {
            (Some(tenant), Some(user)) => Some(tenant_account(&tenant, &user)?),
            (Some(_), None) => return Err("a link with a tenant needs an account"),
            (None, account) => account,
        };
        Ok(Self {
            account,
            provider: q.provider,
            expires: q.expires,
            metadata: q.metadata,
            sig: q.sig,
        })
    }
}

/// The account id of `user` in `tenant`: `<tenant>:<user>`, the convention
/// get-service's account policy matches with `<tenant>:*`. The tenant is 1-64
/// characters of `A-Z a-z 0-9 . _ @ -` (no `:`, so the id says where it
/// ends).
pub fn tenant_account(tenant: &str, user: &str) -> Result<String, &'static str> {
    let tenant_ok = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if !tenant_ok {
        return Err("tenant: use 1-64 characters of A-Z, a-z, 0-9, '.', '_', '@', '-'");
    }
    let account = format!("{tenant}:{user}");
    tokenvault_proto::ids::check_account(&account)?;
    Ok(account)
}

impl LinkParams {
    /// Whether any link parameter is present.
    pub fn is_present(&self) -> bool {
        self.account.is_some()
            || self.expires.is_some()
            || self.sig.is_some()
            || self.metadata.is_some()
    }

    /// The query string that carries these parameters on.
    pub fn query(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        if let Some(a) = &self.account {
            out.append_pair("account", a);
        }
        if let Some(p) = &self.provider {
            out.append_pair("provider", p);
        }
        if let Some(e) = self.expires {
            out.append_pair("expires", &e.to_string());
        }
        if let Some(m) = &self.metadata {
            out.append_pair("metadata", m);
        }
        if let Some(s) = &self.sig {
            out.append_pair("sig", s);
        }
        out.finish()
    }
}

/// Signs and checks links with the shared secret.
pub struct LinkSigner {
    key: hmac::Key,
    max_lifetime_secs: i64,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner")
            .field("key", &"<redacted>")
            .field("max_lifetime_secs", &self.max_lifetime_secs)
            .finish()
    }
}

impl LinkSigner {
    /// A signer for `secret` (at least [`MIN_SECRET_LEN`] bytes).
    pub fn new(secret: &[u8], max_lifetime_secs: u64) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the link secret must be at least {MIN_SECRET_LEN} bytes"
            ));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            max_lifetime_secs: i64::try_from(max_lifetime_secs).unwrap_or(i64::MAX),
        })
    }

    /// Reads the secret from `path` (an owner-only file of at most 4 KiB);
    /// surrounding whitespace is ignored.
    pub fn from_file(path: &Path, max_lifetime_secs: u64) -> Result<Self, String> {
        let bytes = read_secret_file(path, MAX_SECRET_FILE_LEN)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::new(bytes.trim_ascii(), max_lifetime_secs)
    }

    fn message(
        action: LinkAction,
        account: &str,
        provider: &str,
        expires: i64,
        metadata: Option<&str>,
    ) -> String {
        match metadata {
            None => format!(
                "tokenvault-link-v1\n{}\n{account}\n{provider}\n{expires}",
                action.as_str()
            ),
            Some(metadata) => format!(
                "tokenvault-link-v2\n{}\n{account}\n{provider}\n{expires}\n{metadata}",
                action.as_str()
            ),
        }
    }

    /// The signature of a link.
    pub fn sign(
        &self,
        action: LinkAction,
        account: &str,
        provider: Option<&str>,
        expires: i64,
    ) -> String {
        self.sign_with_metadata(action, account, provider, expires, None)
    }

    /// The signature of a link that carries metadata.
    pub fn sign_with_metadata(
        &self,
        action: LinkAction,
        account: &str,
        provider: Option<&str>,
        expires: i64,
        metadata: Option<&str>,
    ) -> String {
        let message = Self::message(action, account, provider.unwrap_or(""), expires, metadata);
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, message.as_bytes()).as_ref())
    }

    /// A whole link: `<public_url>/connect[/<provider>]` or `/disconnect`,
    /// carrying `metadata` (a connect link's, in the compact form
    /// `tokenvault_proto::metadata::check_metadata` returns) if given.
    pub fn url(
        &self,
        public_url: &Url,
        action: LinkAction,
        account: &str,
        provider: Option<&str>,
        expires: i64,
        metadata: Option<&str>,
    ) -> Result<Url, url::ParseError> {
        let params = LinkParams {
            account: Some(account.to_owned()),
            provider: provider.map(str::to_owned),
            expires: Some(expires),
            metadata: metadata.map(str::to_owned),
            sig: Some(self.sign_with_metadata(action, account, provider, expires, metadata)),
        };
        let path = match (action, provider) {
            (LinkAction::Connect, Some(p)) => format!("connect/{p}"),
            (LinkAction::Connect, None) => String::new(),
            (LinkAction::Disconnect, _) => "disconnect".to_owned(),
        };
        let mut url = public_url.join(&path)?;
        url.set_query(Some(&params.query()));
        Ok(url)
    }

    /// Checks a link for `action`, used with `provider`, at `now`; returns the
    /// account id it carries. The signature is compared in constant time.
    pub fn verify(
        &self,
        action: LinkAction,
        params: &LinkParams,
        provider: &str,
        now: i64,
    ) -> Result<String, LinkError> {
        self.verify_with_metadata(action, params, provider, now)
            .map(|(account, _)| account)
    }

    /// [`Self::verify`], also returning the link's metadata (signed with it,
    /// checked as `tokenvault_proto::metadata` says, in compact form). Only a
    /// connect link may carry metadata.
    pub fn verify_with_metadata(
        &self,
        action: LinkAction,
        params: &LinkParams,
        provider: &str,
        now: i64,
    ) -> Result<(String, Option<String>), LinkError> {
        let account = params
            .account
            .as_deref()
            .ok_or(LinkError::Invalid("no account"))?;
        let expires = params.expires.ok_or(LinkError::Invalid("no expiry"))?;
        let sig = params
            .sig
            .as_deref()
            .ok_or(LinkError::Invalid("no signature"))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| LinkError::Invalid("the signature is not base64url"))?;
        let signed_provider = params.provider.as_deref().unwrap_or("");
        if !signed_provider.is_empty() && signed_provider != provider {
            return Err(LinkError::Invalid("it is for another provider"));
        }
        if action == LinkAction::Disconnect && signed_provider.is_empty() {
            return Err(LinkError::Invalid("a disconnect link names its provider"));
        }
        let metadata = params.metadata.as_deref();
        if action == LinkAction::Disconnect && metadata.is_some() {
            return Err(LinkError::Invalid("a disconnect link carries no metadata"));
        }
        let message = Self::message(action, account, signed_provider, expires, metadata);
        hmac::verify(&self.key, message.as_bytes(), &sig)
            .map_err(|_| LinkError::Invalid("the signature does not match"))?;
        if expires < now {
            return Err(LinkError::Expired);
        }
        if expires - now > self.max_lifetime_secs {
            return Err(LinkError::TooLongLived);
        }
        tokenvault_proto::ids::check_account(account)
            .map_err(|_| LinkError::Invalid("the account id has unsupported characters"))?;
        let metadata = metadata
            .map(tokenvault_proto::metadata::check_metadata)
            .transpose()
            .map_err(|_| {
                LinkError::Invalid(
                    "the metadata is not a small JSON object of strings (see CONNECT_LINKS.md)",
                )
            })?;
        Ok((account.to_owned(), metadata))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn params(
        signer: &LinkSigner,
        account: &str,
        provider: Option<&str>,
        expires: i64,
    ) -> LinkParams {
        LinkParams {
            account: Some(account.into()),
            provider: provider.map(Into::into),
            expires: Some(expires),
            metadata: None,
            sig: Some(signer.sign(LinkAction::Connect, account, provider, expires)),
        }
    }

    #[test]
    fn signs_and_verifies() {
        let s = LinkSigner::new(SECRET, 600).unwrap();
        let p = params(&s, "user-42", Some("google"), 1_000);
        assert_eq!(
            s.verify(LinkAction::Connect, &p, "google", 900).unwrap(),
            "user-42"
        );
        let any = params(&s, "user-42", None, 1_000);
        assert_eq!(
            s.verify(LinkAction::Connect, &any, "github", 900).unwrap(),
            "user-42"
        );
    }

    #[test]
    fn metadata_is_signed_with_the_link() {
        let s = LinkSigner::new(SECRET, 600).unwrap();
        let public = Url::parse("https://tv.example/").unwrap();
        let meta = r#"{"display_name":"Ada","tags":["beta"]}"#;
        let url = s
            .url(
                &public,
                LinkAction::Connect,
                "acme:ada",
                Some("google"),
                1_000,
                Some(meta),
            )
            .unwrap();
        let query = url.query().unwrap();
        let p: LinkParams = serde_urlencoded::from_str(query).unwrap();
        assert_eq!(
            s.verify_with_metadata(LinkAction::Connect, &p, "google", 900)
                .unwrap(),
            ("acme:ada".to_owned(), Some(meta.to_owned()))
        );
        // Changed metadata, or metadata dropped, breaks the signature.
        let mut changed = p.clone();
        changed.metadata = Some(r#"{"display_name":"Eve","tags":["beta"]}"#.into());
        let mut dropped = p.clone();
        dropped.metadata = None;
        for bad in [&changed, &dropped] {
            assert!(matches!(
                s.verify_with_metadata(LinkAction::Connect, bad, "google", 900),
                Err(LinkError::Invalid(_))
            ));
        }
        // Signed but not the documented shape.
        let nested = r#"{"a":{"b":"c"}}"#;
        let mut bad_shape = p.clone();
        bad_shape.metadata = Some(nested.into());
        bad_shape.sig = Some(s.sign_with_metadata(
            LinkAction::Connect,
            "acme:ada",
            Some("google"),
            1_000,
            Some(nested),
        ));
        assert!(matches!(
            s.verify_with_metadata(LinkAction::Connect, &bad_shape, "google", 900),
            Err(LinkError::Invalid(_))
        ));
    }

    #[test]
    fn refuses_tampering_expiry_and_misuse() {
        let s = LinkSigner::new(SECRET, 600).unwrap();
        let p = params(&s, "user-42", Some("google"), 1_000);
        let mut other = p.clone();
        other.account = Some("user-43".into());
        assert!(matches!(
            s.verify(LinkAction::Connect, &other, "google", 900),
            Err(LinkError::Invalid(_))
        ));
        assert!(matches!(
            s.verify(LinkAction::Connect, &p, "github", 900),
            Err(LinkError::Invalid(_))
        ));
        assert!(matches!(
            s.verify(LinkAction::Disconnect, &p, "google", 900),
            Err(LinkError::Invalid(_))
        ));
        assert_eq!(
            s.verify(LinkAction::Connect, &p, "google", 1_001),
            Err(LinkError::Expired)
        );
        assert_eq!(
            s.verify(LinkAction::Connect, &p, "google", 100),
            Err(LinkError::TooLongLived)
        );
        let wrong_key = LinkSigner::new(b"fedcba9876543210fedcba9876543210", 600).unwrap();
        assert!(matches!(
            wrong_key.verify(LinkAction::Connect, &p, "google", 900),
            Err(LinkError::Invalid(_))
        ));
        assert!(LinkSigner::new(b"short", 600).is_err());
    }

    #[test]
    fn a_tenant_is_part_of_the_signed_account_id() {
        let s = LinkSigner::new(SECRET, 600).unwrap();
        let sig = s.sign(LinkAction::Connect, "acme:user-42", Some("google"), 1_000);
        let query = format!("tenant=acme&account=user-42&provider=google&expires=1000&sig={sig}");
        let p: LinkParams = serde_urlencoded::from_str(&query).unwrap();
        assert_eq!(p.account.as_deref(), Some("acme:user-42"));
        assert_eq!(
            s.verify(LinkAction::Connect, &p, "google", 900).unwrap(),
            "acme:user-42"
        );
        // Carried on, the parameters name the whole id.
        assert!(
            p.query().starts_with("account=acme%3Auser-42&"),
            "{}",
            p.query()
        );
        // Another tenant is another account: the signature does not match.
        let other: LinkParams =
            serde_urlencoded::from_str(&query.replace("tenant=acme", "tenant=globex")).unwrap();
        assert!(
            s.verify(LinkAction::Connect, &other, "google", 900)
                .is_err()
        );
        for bad in ["tenant=a:b&account=x", "tenant=&account=x", "tenant=acme"] {
            assert!(
                serde_urlencoded::from_str::<LinkParams>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn known_answer() {
        // The same value as docs/CONNECT_LINKS.md's Python example.
        let s = LinkSigner::new(SECRET, 600).unwrap();
        let message = "tokenvault-link-v1\nconnect\nuser-42\ngoogle\n1700000000";
        let expected = URL_SAFE_NO_PAD.encode(
            hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, SECRET),
                message.as_bytes(),
            )
            .as_ref(),
        );
        assert_eq!(
            s.sign(
                LinkAction::Connect,
                "user-42",
                Some("google"),
                1_700_000_000
            ),
            expected
        );
    }
}
