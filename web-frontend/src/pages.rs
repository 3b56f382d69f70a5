//! The server-rendered pages: plain HTML (maud escapes every value), one small
//! stylesheet, no script, readable on a phone. Pages show account ids and
//! provider names, never a token.

use maud::{DOCTYPE, Markup, html};

use crate::error::ErrorPage;
use crate::link::LinkParams;

/// The stylesheet at `/static/style.css` (served by this binary; the CSP
/// allows no inline style).
pub const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--accent:#0b5cad;--line:#d0d7de;--bad:#a40e26}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9da7b3;--accent:#58a6ff;--line:#30363d;--bad:#ff7b72}}\
*{box-sizing:border-box}body{margin:0;font:1.05rem/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}\
header,main{max-width:36rem;margin:0 auto;padding:1rem}header{border-bottom:1px solid var(--line);font-weight:600}\
h1{font-size:1.5rem;margin:.5rem 0 1rem}ul.providers{list-style:none;padding:0;margin:0}ul.providers li{margin:0 0 .75rem}\
a.button,button{display:block;width:100%;padding:.8rem 1rem;border-radius:.5rem;border:1px solid var(--accent);background:var(--accent);color:#fff;\
font:inherit;font-weight:600;text-align:center;text-decoration:none;cursor:pointer}button.secondary{background:transparent;color:var(--accent)}\
a.button:focus-visible,button:focus-visible,a:focus-visible{outline:3px solid var(--fg);outline-offset:2px}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{color:var(--muted)}dd{margin:0;word-break:break-all}\
p.muted{color:var(--muted)}main[data-page=error] h1{color:var(--bad)}form{margin:1.5rem 0}";

fn layout(title: &str, page: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · tokenvault" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                header { "tokenvault" }
                main data-page=(page) { (body) }
            }
        }
    }
}

/// One provider on the start page.
#[derive(Debug)]
pub struct ProviderEntry<'a> {
    /// The provider's name.
    pub name: &'a str,
    /// The name shown.
    pub display_name: &'a str,
}

/// The start page: a Connect button per provider. With a signed link, the
/// buttons carry it on, and the page names the account being connected.
pub fn home(providers: &[ProviderEntry<'_>], link: Option<(&str, &LinkParams)>) -> Markup {
    let query = link
        .map(|(_, p)| format!("?{}", p.query()))
        .unwrap_or_default();
    layout(
        "Connect an account",
        "home",
        html! {
            h1 { "Connect an account" }
            @if let Some((account, _)) = link {
                p { "Your application asked to connect an account for " strong data-field="account" { (account) } "." }
            }
            p { "Choose where your account is. You will sign in there and allow offline access; "
                "tokenvault then keeps that access, encrypted. No token is ever shown to you or kept in this browser." }
            @if providers.is_empty() {
                p { "No provider matches this link." }
            }
            ul.providers {
                @for p in providers {
                    li {
                        a.button href={ "/connect/" (p.name) (query) } data-provider=(p.name) {
                            "Connect " (p.display_name)
                        }
                    }
                }
            }
        },
    )
}

/// The page after a successful connect.
pub fn connected(provider: &str, display_name: &str, account: &str) -> Markup {
    layout(
        "Account connected",
        "connected",
        html! {
            h1 { "Account connected" }
            p { "tokenvault now keeps offline access to this account. You can close this page." }
            dl {
                dt { "Provider" } dd data-field="provider" { (display_name) }
                dt { "Account" } dd data-field="account" { (account) }
            }
            form method="post" action="/disconnect" {
                input type="hidden" name="account" value=(account);
                input type="hidden" name="provider" value=(provider);
                button.secondary type="submit" { "Disconnect this account" }
            }
            p { a href="/" { "Connect another account" } }
        },
    )
}

/// Asks before starting a sign-in that another site (or a link from an
/// e-mail or an application) sent the browser to: the button is a link on
/// this site, so only a person's click proceeds.
pub fn confirm_connect(
    provider: &str,
    display_name: &str,
    account: Option<&str>,
    link: &LinkParams,
) -> Markup {
    let query = if link.is_present() {
        format!("?{}", link.query())
    } else {
        String::new()
    };
    layout(
        "Connect an account",
        "confirm-connect",
        html! {
            h1 { "Connect " (display_name) "?" }
            @if let Some(account) = account {
                p { "This connects your " (display_name) " account for " strong data-field="account" { (account) } "." }
            } @else {
                p { "This connects your " (display_name) " account." }
            }
            p { "Continue only if you started this yourself. You will sign in at " (display_name) " and allow offline access." }
            ul.providers {
                li { a.button href={ "/connect/" (provider) (query) } data-provider=(provider) { "Continue to " (display_name) } }
            }
            p { a href="/" { "Cancel" } }
        },
    )
}

/// Asks before disconnecting.
pub fn confirm_disconnect(provider: &str, account: &str, link: &LinkParams) -> Markup {
    layout(
        "Disconnect the account?",
        "confirm-disconnect",
        html! {
            h1 { "Disconnect the account?" }
            p { "tokenvault will stop keeping access to this account. Applications using it lose access within seconds." }
            dl {
                dt { "Provider" } dd data-field="provider" { (provider) }
                dt { "Account" } dd data-field="account" { (account) }
            }
            form method="post" action="/disconnect" {
                input type="hidden" name="account" value=(account);
                input type="hidden" name="provider" value=(provider);
                @if let Some(e) = link.expires { input type="hidden" name="expires" value=(e); }
                @if let Some(s) = &link.sig { input type="hidden" name="sig" value=(s); }
                button type="submit" { "Disconnect" }
            }
        },
    )
}

/// The page after a disconnect.
pub fn disconnected(provider: &str, account: &str) -> Markup {
    layout(
        "Account disconnected",
        "disconnected",
        html! {
            h1 { "Account disconnected" }
            p { "tokenvault no longer keeps access to this account." }
            dl {
                dt { "Provider" } dd data-field="provider" { (provider) }
                dt { "Account" } dd data-field="account" { (account) }
            }
            p { a href="/" { "Connect an account" } }
        },
    )
}

/// An error page: what went wrong, and what to do.
pub fn error(page: &ErrorPage, detail: &str) -> Markup {
    layout(
        page.title,
        "error",
        html! {
            h1 { (page.title) }
            p data-field="action" { (page.action) }
            p.muted {
                "Error " code data-error=(page.code) { (page.code) }
                @if !detail.is_empty() { ": " (detail) }
            }
            p { a href="/" { "Back to the start page" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let page = connected("p", "<script>x</script>", "a\"b").into_string();
        assert!(!page.contains("<script>x"));
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(page.contains("a&quot;b"));
    }
}
