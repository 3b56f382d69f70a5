//! Driving web-frontend at the HTTP level as a browser would: a cookie jar
//! (kept by hand, so tests see every `Set-Cookie`), no automatic redirects,
//! and every response kept for leak checks. [`WebBrowser::connect`] runs the
//! whole signup flow against the real authorization server.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use url::Url;

use crate::oidc::{Decision, OidcServer, Seen};

/// A page web-frontend answered.
#[derive(Debug, Clone)]
pub struct Page(pub Seen);

impl Page {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.0.status
    }

    /// `data-page` of `<main>`: `home`, `connected`, `error`, ...
    pub fn kind(&self) -> Option<String> {
        attribute(&self.0.body, "data-page")
    }

    /// `data-error` on an error page, e.g. `state-expired`.
    pub fn error_code(&self) -> Option<String> {
        attribute(&self.0.body, "data-error")
    }

    /// The text of the element with `data-field="<name>"`.
    pub fn field(&self, name: &str) -> Option<String> {
        let marker = format!("data-field=\"{name}\">");
        let start = self.0.body.find(&marker)? + marker.len();
        let end = self.0.body[start..].find('<')? + start;
        Some(self.0.body[start..end].to_owned())
    }
}

fn attribute(html: &str, name: &str) -> Option<String> {
    let marker = format!("{name}=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// A browser for web-frontend.
#[derive(Debug)]
pub struct WebBrowser {
    base: Url,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    /// Every response from web-frontend and the authorization server.
    pub seen: Vec<Seen>,
}

impl WebBrowser {
    /// A browser with no cookies, for the frontend at `base`.
    pub fn new(base: &str) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        Ok(Self {
            base: Url::parse(base)?,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(30))
                .no_proxy()
                .build()?,
            cookies: BTreeMap::new(),
            seen: Vec::new(),
        })
    }

    /// The cookies this browser holds now.
    pub fn cookies(&self) -> &BTreeMap<String, String> {
        &self.cookies
    }

    /// Replaces the cookie jar (e.g. with one saved earlier, for a replay).
    pub fn set_cookies(&mut self, cookies: BTreeMap<String, String>) {
        self.cookies = cookies;
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, seen: &Seen) {
        for (name, value) in &seen.headers {
            if name != "set-cookie" {
                continue;
            }
            let pair = value.split(';').next().unwrap_or_default();
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let expired = value
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"))
                || value.contains("1970");
            if expired || v.is_empty() {
                self.cookies.remove(k.trim());
            } else {
                self.cookies.insert(k.trim().to_owned(), v.to_owned());
            }
        }
    }

    /// GET `path_or_url` (relative to the frontend) with this browser's
    /// cookies, as a click on one of the frontend's own pages
    /// (`Sec-Fetch-Site: same-origin`).
    pub async fn get(&mut self, path_or_url: &str) -> anyhow::Result<Page> {
        self.get_from(path_or_url, "same-origin").await
    }

    /// GET as a navigation whose `Sec-Fetch-Site` is `site` (`cross-site`
    /// for a link on another site, `none` for a typed URL).
    pub async fn get_from(&mut self, path_or_url: &str, site: &str) -> anyhow::Result<Page> {
        let url = self.base.join(path_or_url)?;
        let response = self
            .http
            .get(url.clone())
            .header(reqwest::header::COOKIE, self.cookie_header())
            .header("sec-fetch-site", site)
            .send()
            .await?;
        self.keep(&url, response).await
    }

    /// POST a form, as the frontend's own page would (with its `Origin`).
    pub async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Page> {
        let url = self.base.join(path)?;
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::COOKIE, self.cookie_header())
            .header(
                reqwest::header::ORIGIN,
                self.base.origin().ascii_serialization(),
            )
            .form(form)
            .send()
            .await?;
        self.keep(&url, response).await
    }

    /// POST raw bytes as a form body.
    pub async fn post_raw(&mut self, path: &str, body: Vec<u8>) -> anyhow::Result<Page> {
        let url = self.base.join(path)?;
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::COOKIE, self.cookie_header())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await?;
        self.keep(&url, response).await
    }

    async fn keep(&mut self, url: &Url, response: reqwest::Response) -> anyhow::Result<Page> {
        let seen = Seen::read(url, response).await?;
        self.absorb(&seen);
        self.seen.push(seen.clone());
        Ok(Page(seen))
    }

    /// `GET /connect/<provider><query>`; returns the authorization URL the
    /// frontend redirected to.
    pub async fn start(&mut self, provider: &str, query: &str) -> anyhow::Result<String> {
        let page = self.get(&format!("/connect/{provider}{query}")).await?;
        if page.status() != 303 {
            bail!(
                "/connect/{provider} answered {} ({:?}) instead of a redirect",
                page.status(),
                page.error_code()
            );
        }
        page.0
            .header("location")
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("redirect without Location"))
    }

    /// Signs in at the authorization server as `login` (or cancels), and
    /// returns the callback URL it redirects to (not yet followed).
    pub async fn at_provider(
        &mut self,
        oidc: &OidcServer,
        authorization_url: &str,
        login: &str,
        decision: Decision,
    ) -> anyhow::Result<Url> {
        let (callback, seen) = oidc.authorize(authorization_url, login, decision).await?;
        self.seen.extend(seen);
        if !callback.as_str().starts_with(self.base.as_str()) {
            bail!("the authorization server redirected to {callback}, not to the frontend");
        }
        Ok(callback)
    }

    /// The whole flow: start, sign in and decide, then the callback page.
    pub async fn connect(
        &mut self,
        oidc: &OidcServer,
        provider: &str,
        query: &str,
        login: &str,
        decision: Decision,
    ) -> anyhow::Result<Page> {
        let authorization_url = self.start(provider, query).await?;
        let callback = self
            .at_provider(oidc, &authorization_url, login, decision)
            .await?;
        self.get(callback.as_str()).await
    }
}
