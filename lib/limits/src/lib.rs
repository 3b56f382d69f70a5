//! Every size and length limit on data that crosses a crate boundary: what
//! the gRPC contract accepts, what the seal produces and parses, what the
//! store writes, what an audit event keeps. Each limit is defined here once
//! and every crate uses it from here (some re-export it where their public
//! API always named it), so a value cannot differ between the crate that
//! checks it and the crate that relies on it. Configuration may only lower a
//! limit defined here, never raise it (the services refuse such a config).
//!
//! This crate may hold `pub const`s and the reasons for their values, and
//! nothing else: no dependencies, no code, no secrets. Lengths are in bytes
//! unless a name says otherwise; the identifiers they bound are ASCII, so for
//! them bytes and characters are the same.
//!
//! Two groups:
//! - the limits the code enforces ([`MAX_ACCOUNT_LEN`] ... [`GET_SERVICE_MAX_MESSAGE_BYTES`]);
//! - the widths of the database columns ([`store_columns`], [`audit_columns`]), which the
//!   SQL migrations check as a backstop. Each is at least the code's limit for what the
//!   column holds (the tests below say which), so the code refuses first and with a clear
//!   message; a column is never the limit a caller meets.

#![forbid(unsafe_code)]

pub mod audit_columns;
pub mod store_columns;

/// The longest account id, as the `.proto` documents it (1-128 characters of
/// `A-Z a-z 0-9 . _ : @ -`). Account ids are the application's own ids
/// (`<tenant>:<user>` by convention); 128 holds a tenant, a separator and a
/// UUID or e-mail address with room to spare.
pub const MAX_ACCOUNT_LEN: usize = 128;

/// The longest provider name (1-64 characters of `a-z 0-9 - _`): names from
/// the operator's provider catalogue, such as `google` or `acme-okta`.
pub const MAX_PROVIDER_LEN: usize = 64;

/// The longest key id of a token-encryption key, in a JWE header, a request
/// or a store row. tokenvault's key ids are RFC 7638 SHA-256 thumbprints,
/// base64url: 43 characters; 128 leaves room for an operator-chosen prefix
/// and nothing more.
pub const MAX_KEY_ID_LEN: usize = 128;

/// The longest sealed token (JWE compact serialization), refresh or access.
/// Besides the token (base64url: 4/3 of its size), a sealed token holds a
/// protected header (at most about 460 bytes, with the longest account,
/// provider and key id), a 683-byte RSA-4096 wrapped key, the IV, the tag and
/// four dots: 8 KiB leaves room for a plaintext token of 5 KiB (the tests
/// check it), more than any provider's refresh token and the large JWT access
/// tokens of Entra ID or Okta. The seal refuses to produce anything longer,
/// so nothing longer is valid anywhere.
pub const MAX_SEALED_TOKEN_LEN: usize = 8192;

/// The longest status reason (`RecordAccountStatusRequest.reason`, a status
/// row's reason): a short, token-free reason such as `invalid_grant` with a
/// provider's description cut short. The `.proto` documents 256 bytes.
pub const MAX_STATUS_REASON_LEN: usize = 256;

/// The longest account metadata (`StoreRefreshTokenRequest.metadata_json`,
/// from a signed connect link): a JSON object of a tenant, a display name and
/// a few tags. It rides in a connect link's URL, so it stays well inside what
/// browsers and proxies pass (a few KiB); the `.proto` documents 2 KiB.
pub const MAX_METADATA_LEN: usize = 2048;

/// The longest token type of a shared access token (`Bearer`, `DPoP`, ...).
pub const MAX_TOKEN_TYPE_LEN: usize = 64;

/// The longest scope list of a shared access token, counting each scope and
/// one separator after it: the scopes a provider granted, which a worker's
/// request does not bound (a Google grant of many APIs runs to a few
/// hundred bytes; 4 KiB is many times that).
pub const MAX_SHARED_SCOPES_LEN: usize = 4096;

/// The most scopes one `GetAccessToken` request or account-policy rule may
/// name, as the `.proto` documents it.
pub const MAX_REQUEST_SCOPES: usize = 32;

/// The longest single scope a `GetAccessToken` request or account-policy
/// rule may name, as the `.proto` documents it (URL-style Google scopes are
/// under 80 characters).
pub const MAX_SCOPE_LEN: usize = 128;

/// The longest SPIFFE ID accepted: the SPIFFE specification's limit on the
/// URI. tokenvault's own are `spiffe://<trust-domain>/<role>[/<name>]`, far
/// shorter; longer ones in a certificate are refused, not cut.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// The longest account or provider written into an audit event; a longer
/// (and so invalid) one is cut to this many characters, so a caller cannot
/// make audit lines arbitrarily long. Every valid account and provider is
/// kept whole (see the tests).
pub const MAX_LOGGED_ID_LEN: usize = 128;

/// The largest gRPC message set-service accepts or sends. Its largest valid
/// request is a `ShareAccessTokenRequest` (a sealed token, a full scope list,
/// the ids): under 13 KiB. `limits.max_message_bytes` may lower this, never
/// raise it.
pub const SET_SERVICE_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The largest gRPC request get-service accepts. Its largest valid request is
/// a `GetAccessTokenRequest` with [`MAX_REQUEST_SCOPES`] scopes of
/// [`MAX_SCOPE_LEN`]: under 5 KiB.
pub const GET_SERVICE_MAX_MESSAGE_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests;
