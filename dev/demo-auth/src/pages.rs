//! The HTML pages (maud escapes every value): the home page, the demo
//! sign-in and consent page, and error pages. Every page carries a
//! "development only" banner. No script; the stylesheet is served at
//! `/static/style.css` so the CSP allows no inline style.

use maud::{DOCTYPE, Markup, html};

/// The stylesheet.
pub(crate) const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--accent:#0b5cad;--line:#d0d7de;--warn:#7a4d00;--warnbg:#fff4d6}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9da7b3;--accent:#58a6ff;--line:#30363d;--warn:#f0c36b;--warnbg:#3a2a05}}\
*{box-sizing:border-box}body{margin:0;font:1.05rem/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}\
.banner{background:var(--warnbg);color:var(--warn);border-bottom:2px solid var(--warn);padding:.6rem 1rem;text-align:center;font-weight:700}\
main{max-width:36rem;margin:0 auto;padding:1rem}h1{font-size:1.4rem}code{word-break:break-all}\
label{display:block;font-weight:600;margin:.5rem 0 .25rem}input[type=text]{width:100%;padding:.6rem;font:inherit;border:1px solid var(--line);border-radius:.4rem}\
.buttons{display:flex;gap:1rem;margin-top:1rem}button{flex:1;padding:.8rem 1rem;border-radius:.5rem;border:1px solid var(--accent);\
background:var(--accent);color:#fff;font:inherit;font-weight:600;cursor:pointer}button.secondary{background:transparent;color:var(--accent)}\
p.muted,dt{color:var(--muted)}p.error{color:#a40e26;font-weight:600}dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dd{margin:0}";

/// The banner text shown on every page.
pub(crate) const BANNER: &str = "DEVELOPMENT ONLY — tokenvault's demo authorization server. \
     Not a real identity provider: never use it for real accounts.";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                meta name="robots" content="noindex";
                title { (title) " · demo authorization server (development only)" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                div.banner role="alert" { (BANNER) }
                main { (body) }
            }
        }
    }
}

/// The home page: what this is and its endpoints.
pub(crate) fn home(issuer: &str, client_id: &str, redirect_uri: &str) -> Markup {
    let endpoints = [
        ("GET", "/authorize", "demo sign-in and consent page"),
        (
            "POST",
            "/token",
            "authorization_code and refresh_token grants",
        ),
        ("GET", "/userinfo", "who a Bearer access token belongs to"),
        ("POST", "/revoke", "RFC 7009 token revocation"),
        (
            "GET",
            "/.well-known/oauth-authorization-server",
            "RFC 8414 metadata",
        ),
        ("GET", "/healthz", "liveness"),
    ];
    layout(
        "Demo authorization server",
        html! {
            h1 { "Demo authorization server — development only" }
            p {
                "A tiny OAuth 2.0 authorization server built into tokenvault so that the quick start "
                "can connect an account without registering an app at a real provider. "
                "Its users are made up (you type a name), its tokens are worthless outside this "
                "machine, and it keeps only SHA-256 fingerprints of them."
            }
            dl {
                dt { "issuer" } dd { code { (issuer) } }
                dt { "client_id" } dd { code { (client_id) } }
                dt { "redirect_uri" } dd { code { (redirect_uri) } }
            }
            h2 { "Endpoints" }
            ul {
                @for (method, path, what) in endpoints {
                    li { code { (method) " " (issuer) (path) } " — " (what) }
                }
            }
        },
    )
}

/// The authorization request as carried by the consent form.
#[derive(Debug, Clone)]
pub(crate) struct ConsentForm<'a> {
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
    pub scope: &'a str,
    pub code_challenge: &'a str,
    /// The single-use form token. Not a credential for anything else.
    pub consent: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

/// The sign-in and consent page.
pub(crate) fn consent(form: &ConsentForm<'_>) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "Demo authorization server — development only" }
            p {
                "Sign in as a made-up demo user and allow "
                code { (form.client_id) }
                " to access it"
                @if !form.scope.is_empty() { " (scope " code { (form.scope) } ")" }
                ". No password: this server is for trying tokenvault out on your own machine."
            }
            @if let Some(error) = form.error { p.error { (error) } }
            form method="post" action="/authorize" {
                input type="hidden" name="response_type" value="code";
                input type="hidden" name="client_id" value=(form.client_id);
                @if let Some(r) = form.redirect_uri { input type="hidden" name="redirect_uri" value=(r); }
                @if let Some(s) = form.state { input type="hidden" name="state" value=(s); }
                @if !form.scope.is_empty() { input type="hidden" name="scope" value=(form.scope); }
                input type="hidden" name="code_challenge" value=(form.code_challenge);
                input type="hidden" name="code_challenge_method" value="S256";
                input type="hidden" name="consent" value=(form.consent);
                label for="username" { "Demo user name" }
                input #username type="text" name="username" value=(form.username)
                    required pattern="[a-z0-9._\\-]{1,32}" maxlength="32" autocomplete="off"
                    autocapitalize="none" spellcheck="false";
                p.muted { "1–32 characters of a–z, 0–9, '.', '_', '-'. The same name is the same demo account." }
                div.buttons {
                    button type="submit" name="decision" value="allow" { "Allow" }
                    button.secondary type="submit" name="decision" value="deny" { "Deny" }
                }
            }
        },
    )
}

/// An error page (the request cannot be sent back to the client).
pub(crate) fn error(title: &str, message: &str) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            p { (message) }
            p.muted { "Start again from the application that sent you here." }
        },
    )
}
