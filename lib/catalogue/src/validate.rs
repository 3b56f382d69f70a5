//! The rules an entry must satisfy beyond its types: name syntax, one way of
//! finding the endpoints, https URLs whose placeholders are exactly those
//! declared, a source on the provider's own documentation site for every
//! fact and for nothing else, and classes that agree with the facts.

use std::collections::BTreeSet;

use crate::classes::Class;
use crate::error::CatalogueError;
use crate::facts::SourceKey;
use crate::model::{ProviderEntry, ScopeSeparator, Subject, TokenResponse};
use crate::urls::{self, UrlKind};

/// The longest provider name.
pub const MAX_NAME_LEN: usize = 64;

/// Authorization parameters the client sets itself, which an entry may not.
const RESERVED_PARAMS: [&str; 7] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// Whether `name` matches `[a-z0-9][a-z0-9._-]{0,63}`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME_LEN
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// Checks one entry.
pub(crate) fn entry(name: &str, e: &ProviderEntry) -> Result<(), CatalogueError> {
    let bad = |key: &str, problem: String| CatalogueError::invalid(name, key, problem);
    if !is_valid_name(name) {
        return Err(bad(
            "name",
            format!("`{name}` must match [a-z0-9][a-z0-9._-]{{0,63}}"),
        ));
    }
    if e.display_name.trim().is_empty() {
        return Err(bad("display_name", "must not be empty".into()));
    }
    let (docs, _) = urls::check(&e.docs, UrlKind::Doc).map_err(|p| bad("docs", p))?;
    let docs_site = urls::site(docs.host_str().unwrap_or_default());

    endpoints(e).map_err(|(key, p)| bad(key, p))?;
    placeholders(e).map_err(|(key, p)| bad(key, p))?;
    offline_access(e).map_err(|(key, p)| bad(key, p))?;
    subject(e).map_err(|p| bad("subject", p))?;
    lifetimes(e).map_err(|(key, p)| bad(key, p))?;
    if e.notes.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(bad("notes", "must not be empty when present".into()));
    }
    sources(e, &docs_site).map_err(|(key, p)| bad(&key, p))?;
    classes(e).map_err(|p| bad("classes", p))
}

type KeyError = (&'static str, String);

fn endpoints(e: &ProviderEntry) -> Result<(), KeyError> {
    match (&e.issuer, &e.authorization_endpoint, &e.token_endpoint) {
        (Some(_), None, None) | (None, Some(_), Some(_)) => Ok(()),
        (Some(_), _, _) => Err((
            "issuer",
            "set either issuer or authorization_endpoint + token_endpoint, not both".into(),
        )),
        (None, None, None) => Err((
            "token_endpoint",
            "missing: set issuer, or authorization_endpoint and token_endpoint".into(),
        )),
        (None, None, Some(_)) => Err((
            "authorization_endpoint",
            "missing: token_endpoint needs it".into(),
        )),
        (None, Some(_), None) => Err((
            "token_endpoint",
            "missing: authorization_endpoint needs it".into(),
        )),
    }
}

/// Every URL the client calls, by key.
fn endpoint_urls(e: &ProviderEntry) -> Vec<(&'static str, &str)> {
    let mut all = vec![
        ("issuer", e.issuer.as_deref()),
        (
            "authorization_endpoint",
            e.authorization_endpoint.as_deref(),
        ),
        ("token_endpoint", e.token_endpoint.as_deref()),
        ("revocation_endpoint", e.revocation_endpoint.as_deref()),
        (
            "device_authorization_endpoint",
            e.device_authorization_endpoint.as_deref(),
        ),
    ];
    if let Subject::Userinfo { url, .. } = &e.subject {
        all.push(("subject", Some(url.as_str())));
    }
    all.into_iter()
        .filter_map(|(key, url)| url.map(|u| (key, u)))
        .collect()
}

fn placeholders(e: &ProviderEntry) -> Result<(), KeyError> {
    let mut declared = BTreeSet::new();
    for name in &e.placeholders {
        if !urls::is_placeholder_name(name) {
            return Err((
                "placeholders",
                format!("`{name}` is not a placeholder name"),
            ));
        }
        if !declared.insert(name.as_str()) {
            return Err(("placeholders", format!("`{name}` is declared twice")));
        }
    }
    let mut used = BTreeSet::new();
    for (key, text) in endpoint_urls(e) {
        let (_, names) = urls::check(text, UrlKind::Endpoint).map_err(|p| (key, p))?;
        for name in names {
            if !declared.contains(name.as_str()) {
                return Err((
                    key,
                    format!("uses `{{{name}}}`, which `placeholders` does not declare"),
                ));
            }
            used.insert(name);
        }
    }
    match declared.iter().find(|name| !used.contains(**name)) {
        Some(name) => Err((
            "placeholders",
            format!("`{name}` is declared but no URL uses it"),
        )),
        None => Ok(()),
    }
}

fn offline_access(e: &ProviderEntry) -> Result<(), KeyError> {
    let separator = e.scope_separator.as_char();
    for scope in &e.scopes {
        if scope.is_empty() || scope.contains(char::is_whitespace) || scope.contains(separator) {
            return Err((
                "scopes",
                format!("`{scope}` is not one scope (empty, or holds a separator)"),
            ));
        }
    }
    if e.scope_separator == ScopeSeparator::Comma && e.scopes.iter().any(|s| s.contains(' ')) {
        return Err(("scopes", "a comma-separated scope holds a space".into()));
    }
    for (key, value) in &e.authorization_params {
        if key.is_empty() || value.is_empty() {
            return Err((
                "authorization_params",
                format!("`{key}` = `{value}`: empty key or value"),
            ));
        }
        if RESERVED_PARAMS.contains(&key.as_str()) {
            return Err((
                "authorization_params",
                format!("`{key}` is set by the client itself"),
            ));
        }
    }
    Ok(())
}

/// Whether `path` is a dot path of non-empty field names.
fn is_dot_path(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('.')
            .all(|part| !part.is_empty() && !part.contains(char::is_whitespace))
}

fn subject(e: &ProviderEntry) -> Result<(), String> {
    match &e.subject {
        Subject::IdToken { claim } => {
            if claim.is_empty() {
                return Err("claim must not be empty".into());
            }
            if !e.scopes.iter().any(|s| s == "openid") {
                return Err("an ID-token subject needs the openid scope".into());
            }
            Ok(())
        }
        // The URL itself is checked with the endpoints.
        Subject::Userinfo { field, .. } | Subject::TokenResponse { field }
            if !is_dot_path(field) =>
        {
            Err(format!("field `{field}` is not a dot path"))
        }
        Subject::Redirect { param } if param.is_empty() => Err("param must not be empty".into()),
        _ => Ok(()),
    }
}

fn lifetimes(e: &ProviderEntry) -> Result<(), KeyError> {
    if e.refresh_token_lifetime_days == Some(0) {
        return Err(("refresh_token_lifetime_days", "must be positive".into()));
    }
    if e.refresh_token_idle_days == Some(0) {
        return Err(("refresh_token_idle_days", "must be positive".into()));
    }
    if e.access_token_lifetime_secs == Some(0) {
        return Err(("access_token_lifetime_secs", "must be positive".into()));
    }
    if let Some((life, idle)) = e
        .refresh_token_lifetime_days
        .zip(e.refresh_token_idle_days)
        .filter(|(life, idle)| idle > life)
    {
        return Err((
            "refresh_token_idle_days",
            format!("{idle} exceeds the lifetime of {life} days"),
        ));
    }
    if let Some(field) = e
        .refresh_token_expiry_field
        .as_deref()
        .filter(|f| !is_dot_path(f))
    {
        return Err((
            "refresh_token_expiry_field",
            format!("`{field}` is not a field name"),
        ));
    }
    match (e.token_response, &e.token_response_path) {
        (TokenResponse::Nested, Some(path)) if is_dot_path(path) => Ok(()),
        (TokenResponse::Nested, _) => Err((
            "token_response_path",
            "a nested token response needs a dot path".into(),
        )),
        (TokenResponse::Standard, Some(_)) => Err((
            "token_response_path",
            "only for token_response = \"nested\"".into(),
        )),
        (TokenResponse::Standard, None) => Ok(()),
    }
}

fn sources(e: &ProviderEntry, docs_site: &str) -> Result<(), (String, String)> {
    let required = SourceKey::required_by(e);
    if let Some(missing) = required.iter().find(|key| !e.sources.contains_key(key)) {
        return Err((
            format!("sources.{missing}"),
            "missing: every fact needs a source".into(),
        ));
    }
    for (key, link) in &e.sources {
        let at = format!("sources.{key}");
        if !required.contains(key) {
            return Err((at, "names no fact present in this entry".into()));
        }
        let (url, _) = urls::check(link, UrlKind::Doc).map_err(|p| (at.clone(), p))?;
        let site = urls::site(url.host_str().unwrap_or_default());
        if site != docs_site {
            return Err((
                at,
                format!("`{link}` is not on the provider's documentation site ({docs_site})"),
            ));
        }
    }
    Ok(())
}

fn classes(e: &ProviderEntry) -> Result<(), String> {
    let mut listed = BTreeSet::new();
    for class in &e.classes {
        if !listed.insert(*class) {
            return Err(format!("`{class}` is listed twice"));
        }
    }
    let implied = Class::implied_set(e);
    if let Some(missing) = implied.difference(&listed).next() {
        return Err(format!(
            "missing `{missing}`: the entry has {}",
            missing.rule()
        ));
    }
    match listed.difference(&implied).next() {
        Some(extra) => Err(format!(
            "`{extra}` contradicts the facts: it needs {}",
            extra.rule()
        )),
        None => Ok(()),
    }
}
