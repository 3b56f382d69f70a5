//! URL rules for the catalogue: https only, parsed by the `url` crate after
//! every `{placeholder}` is filled with a sample value; which placeholders a
//! URL uses; and whether a documentation link is on the provider's own site.

use url::Url;

/// What fills a placeholder when a templated URL is checked: a valid DNS
/// label and path segment.
const SAMPLE: &str = "placeholder";

/// What a URL is for, which decides what it may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UrlKind {
    /// An endpoint the client calls: placeholders allowed, no fragment.
    Endpoint,
    /// A documentation link: no placeholders, fragments allowed.
    Doc,
}

/// Checks `text` as a URL of `kind`; returns it parsed (placeholders filled
/// with a sample) and the placeholder names it uses.
pub(crate) fn check(text: &str, kind: UrlKind) -> Result<(Url, Vec<String>), String> {
    let names = placeholder_names(text)?;
    if kind == UrlKind::Doc && !names.is_empty() {
        return Err(format!(
            "`{text}`: a documentation link takes no placeholders"
        ));
    }
    let mut filled = text.to_owned();
    for name in &names {
        filled = filled.replace(&format!("{{{name}}}"), SAMPLE);
    }
    let url = Url::parse(&filled).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!("`{text}` must use https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{text}` must not carry credentials"));
    }
    if kind == UrlKind::Endpoint && url.fragment().is_some() {
        return Err(format!("`{text}`: an endpoint takes no fragment"));
    }
    Ok((url, names))
}

/// The `{name}` tokens in `text`, in order, or why its braces are malformed.
pub(crate) fn placeholder_names(text: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['{', '}']) {
        if rest[at..].starts_with('}') {
            return Err(format!("`{text}`: `}}` without `{{`"));
        }
        let after = &rest[at + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("`{text}`: `{{` without `}}`"))?;
        let name = &after[..close];
        if !is_placeholder_name(name) {
            return Err(format!(
                "`{text}`: `{{{name}}}` is not a placeholder (a-z, 0-9 and _, starting with a letter)"
            ));
        }
        names.push(name.to_owned());
        rest = &after[close + 1..];
    }
    Ok(names)
}

/// Whether `name` may name a placeholder: `[a-z][a-z0-9_]*`.
pub(crate) fn is_placeholder_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The site a host belongs to, as its last two DNS labels
/// (`learn.microsoft.com` -> `microsoft.com`).
pub(crate) fn site(host: &str) -> String {
    let labels: Vec<&str> = host.rsplit('.').take(2).collect();
    labels.into_iter().rev().collect::<Vec<_>>().join(".")
}
