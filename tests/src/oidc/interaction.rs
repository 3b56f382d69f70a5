//! Playing the person at the authorization server, over plain HTTP as a
//! browser would: follow the authorization request, sign in on
//! devInteractions' login form, then allow (consent form) or cancel, and stop
//! at the first redirect that leaves the server (the redirect URI).
//! Every response is kept, so tests can check that none carries a token.

use std::fmt;

use anyhow::{Context, anyhow, bail};
use url::Url;

use super::{OidcServer, http_client};

/// What the person does at the authorization server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Sign in and allow access.
    Allow,
    /// Cancel at the login page (oidc-provider answers `access_denied`).
    Deny,
}

/// One HTTP response seen during a flow. `Debug` shows only the request
/// line and status (bodies may be long).
#[derive(Clone)]
pub struct Seen {
    /// The URL requested.
    pub url: String,
    /// The status.
    pub status: u16,
    /// Every header, as text.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl fmt::Debug for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.url, self.status)
    }
}

impl Seen {
    /// Reads a whole response.
    pub async fn read(url: &Url, response: reqwest::Response) -> anyhow::Result<Self> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.text().await?;
        Ok(Self {
            url: url.to_string(),
            status,
            headers,
            body,
        })
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `needle` appears in any header or the body.
    pub fn contains(&self, needle: &str) -> bool {
        self.body.contains(needle)
            || self
                .headers
                .iter()
                .any(|(k, v)| k.contains(needle) || v.contains(needle))
            || self.url.contains(needle)
    }
}

impl OidcServer {
    /// Follows `authorization_url` in a fresh browser session as `account`
    /// and returns the redirect that leaves the server (not followed) with
    /// every response seen on the way.
    pub async fn authorize(
        &self,
        authorization_url: &str,
        account: &str,
        decision: Decision,
    ) -> anyhow::Result<(Url, Vec<Seen>)> {
        let browser = http_client(true)?;
        let mut seen = Vec::new();
        let mut current = Url::parse(authorization_url)?;
        let mut response = browser.get(current.clone()).send().await?;
        for _ in 0..12 {
            let page = Seen::read(&current, response).await?;
            let status = page.status;
            seen.push(page.clone());
            if (300..400).contains(&status) {
                let location = page
                    .header("location")
                    .ok_or_else(|| anyhow!("redirect without Location from {}", current.path()))?;
                let next = current.join(location)?;
                if !next.as_str().starts_with(self.issuer()) {
                    return Ok((next, seen));
                }
                current = next;
                response = browser.get(current.clone()).send().await?;
            } else if (200..300).contains(&status) {
                let html = page.body;
                let (action, prompt) = interaction_form(&html)
                    .with_context(|| format!("unexpected page at {}", current.path()))?;
                if decision == Decision::Deny {
                    let abort = abort_href(&html)
                        .ok_or_else(|| anyhow!("no Cancel link on the {prompt} page"))?;
                    current = current.join(&abort)?;
                    response = browser.get(current.clone()).send().await?;
                    continue;
                }
                let action = current.join(&action)?;
                let form: Vec<(&str, &str)> = match prompt.as_str() {
                    "login" => vec![("prompt", "login"), ("login", account), ("password", "any")],
                    "consent" => vec![("prompt", "consent")],
                    other => bail!("unexpected interaction prompt {other:?}"),
                };
                current = action.clone();
                response = browser.post(action).form(&form).send().await?;
            } else {
                bail!(
                    "authorization flow: HTTP {status} at {}: {}",
                    current.path(),
                    page_error(&page.body)
                );
            }
        }
        bail!("authorization flow did not leave the authorization server")
    }
}

/// The `href` of the link to `/interaction/<uid>/abort`.
fn abort_href(html: &str) -> Option<String> {
    let end = html.find("/abort\"")? + "/abort".len();
    let start = html[..end].rfind("href=\"")? + "href=\"".len();
    Some(html[start..end].to_owned())
}

/// The form of a devInteractions page: its action and its hidden `prompt`.
fn interaction_form(html: &str) -> anyhow::Result<(String, String)> {
    let action = attribute_after(html, "<form", "action")
        .ok_or_else(|| anyhow!("no form: {}", page_error(html)))?;
    let prompt = attribute_after(html, "name=\"prompt\"", "value")
        .ok_or_else(|| anyhow!("no prompt field in the form"))?;
    Ok((action, prompt))
}

/// The value of `attr="..."` after the first `marker` in `html`, unescaped.
fn attribute_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let rest = &html[html.find(marker)?..];
    let needle = format!("{attr}=\"");
    let start = rest.find(&needle)? + needle.len();
    let end = rest[start..].find('"')? + start;
    Some(
        rest[start..end]
            .replace("&amp;", "&")
            .replace("&#x2F;", "/")
            .replace("&#39;", "'")
            .replace("&quot;", "\""),
    )
}

/// oidc-provider's error pages name the error in a `<pre>`; else a prefix.
fn page_error(html: &str) -> String {
    html.find("<pre>")
        .and_then(|start| {
            let rest = &html[start + 5..];
            rest.find("</pre>").map(|end| rest[..end].to_owned())
        })
        .unwrap_or_else(|| html.chars().take(300).collect())
}
