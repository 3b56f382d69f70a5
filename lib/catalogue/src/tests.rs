//! Tests: the shipped catalogue passes its schema check, and each rule of
//! the check refuses a file that breaks it (built from a valid 40-entry
//! fixture with one entry changed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

/// A valid entry; `NAME` is replaced by the provider name.
const TEMPLATE: &str = r#"
[providers.NAME]
display_name = "Example"
docs = "https://docs.example.com/oauth"
authorization_endpoint = "https://auth.example.com/authorize"
token_endpoint = "https://auth.example.com/token"
scopes = ["read"]
scope_separator = " "
authorization_params = {}
client_auth = "client_secret_basic"
pkce = "supported"
subject = { from = "userinfo", url = "https://api.example.com/me", field = "id" }
refresh_token_rotates = true
expires_in = "always"
token_response = "standard"
classes = ["rotating", "client_auth_header", "no_revocation"]

[providers.NAME.sources]
endpoints = "https://docs.example.com/oauth"
offline_access = "https://docs.example.com/oauth#scopes"
scope_separator = "https://docs.example.com/oauth#scopes"
client_auth = "https://docs.example.com/oauth#token"
pkce = "https://docs.example.com/oauth#pkce"
subject = "https://docs.example.com/api/me"
rotation = "https://docs.example.com/oauth#refresh"
expires_in = "https://docs.example.com/oauth#token"
token_response = "https://docs.example.com/oauth#token"
"#;

/// A file of `MIN_PROVIDERS` entries: `target` (the template changed by
/// `change`) and fillers.
fn file(change: impl Fn(String) -> String) -> String {
    let mut text = String::from("version = 1\n");
    text.push_str(&change(TEMPLATE.replace("NAME", "target")));
    for i in 1..MIN_PROVIDERS {
        text.push_str(&TEMPLATE.replace("NAME", &format!("filler-{i:02}")));
    }
    text
}

/// Replaces `from` (which must occur) in the target entry.
fn replace(from: &'static str, to: &'static str) -> impl Fn(String) -> String {
    move |entry: String| {
        assert!(entry.contains(from), "fixture lacks {from:?}");
        entry.replacen(from, to, 1)
    }
}

/// The `Invalid` error's key and problem, failing on any other outcome.
fn invalid(text: &str) -> (String, String) {
    match Catalogue::parse(text) {
        Err(CatalogueError::Invalid {
            provider,
            key,
            problem,
        }) => {
            assert_eq!(provider, "target");
            (key, problem)
        }
        other => panic!("expected an Invalid error for `target`, got {other:?}"),
    }
}

/// The `Schema` error's problem, failing on any other outcome.
fn schema(text: &str) -> String {
    match Catalogue::parse(text) {
        Err(CatalogueError::Schema { provider, problem }) => {
            assert_eq!(provider, "target");
            problem
        }
        other => panic!("expected a Schema error for `target`, got {other:?}"),
    }
}

#[test]
fn shipped_catalogue_validates() {
    let catalogue = catalogue().unwrap();
    assert!(
        catalogue.len() >= MIN_PROVIDERS,
        "{} providers",
        catalogue.len()
    );
    assert!(catalogue.get("no-such-provider").is_none());

    let slack = catalogue.get("slack").unwrap();
    assert_eq!(slack.token_response, TokenResponse::Nested);
    assert_eq!(slack.token_response_path.as_deref(), Some("authed_user"));
    assert_eq!(slack.scope_separator, ScopeSeparator::Comma);
    assert_eq!(
        slack.subject,
        Subject::TokenResponse {
            field: "authed_user.id".into()
        }
    );

    let google = catalogue.get("google").unwrap();
    assert_eq!(
        google.issuer.as_deref(),
        Some("https://accounts.google.com")
    );
    assert_eq!(
        google
            .authorization_params
            .get("access_type")
            .map(String::as_str),
        Some("offline")
    );
    assert!(!google.refresh_token_rotates);

    let microsoft = catalogue.get("microsoft").unwrap();
    assert!(microsoft.refresh_token_rotates);
    assert_eq!(microsoft.refresh_token_idle_days, Some(90));
    assert!(microsoft.classes.contains(&Class::NoRevocation));

    let salesforce = catalogue.get("salesforce").unwrap();
    assert_eq!(salesforce.expires_in, ExpiresIn::Never);
    assert_eq!(salesforce.placeholders, ["my_domain"]);
}

#[test]
fn every_class_has_a_provider_to_test_it_with() {
    let catalogue = catalogue().unwrap();
    for class in Class::ALL {
        assert!(
            catalogue.in_class(class).next().is_some(),
            "no provider in class {class}"
        );
    }
}

#[test]
fn every_shipped_entry_lists_exactly_its_implied_classes() {
    for (name, entry) in catalogue().unwrap().iter() {
        let listed: std::collections::BTreeSet<Class> = entry.classes.iter().copied().collect();
        assert_eq!(listed, Class::implied_set(entry), "{name}");
        assert_eq!(listed.len(), entry.classes.len(), "{name}");
    }
}

#[test]
fn the_fixture_is_valid() {
    let catalogue = Catalogue::parse(&file(|e| e)).unwrap();
    assert_eq!(catalogue.len(), MIN_PROVIDERS);
    assert_eq!(
        catalogue.get("target").unwrap().client_auth,
        ClientAuth::ClientSecretBasic
    );
}

#[test]
fn an_unknown_key_fails() {
    let problem = schema(&file(replace(
        "pkce = \"supported\"",
        "pkce = \"supported\"\ncolour = \"blue\"",
    )));
    assert!(problem.contains("colour"), "{problem}");

    let problem = schema(&file(replace(
        "token_response = \"https://docs.example.com/oauth#token\"",
        "token_response = \"https://docs.example.com/oauth#token\"\nflavour = \"https://docs.example.com/\"",
    )));
    assert!(problem.contains("flavour"), "{problem}");

    let problem = schema(&file(replace(
        "field = \"id\" }",
        "field = \"id\", extra = \"x\" }",
    )));
    assert!(problem.contains("extra"), "{problem}");
}

#[test]
fn an_unknown_value_of_a_closed_set_fails() {
    let problem = schema(&file(replace("pkce = \"supported\"", "pkce = \"maybe\"")));
    assert!(problem.contains("maybe"), "{problem}");
    let problem = schema(&file(replace(
        "\"no_revocation\"]",
        "\"no_revocation\", \"flaky\"]",
    )));
    assert!(problem.contains("flaky"), "{problem}");
}

#[test]
fn a_missing_source_fails() {
    let (key, problem) = invalid(&file(replace(
        "pkce = \"https://docs.example.com/oauth#pkce\"\n",
        "",
    )));
    assert_eq!(key, "sources.pkce");
    assert!(problem.contains("missing"), "{problem}");

    // An optional fact brings its source requirement with it.
    let (key, _) = invalid(&file(replace(
        "expires_in = \"always\"",
        "expires_in = \"always\"\nnotes = \"quirk\"",
    )));
    assert_eq!(key, "sources.notes");
}

#[test]
fn a_source_without_its_fact_or_off_site_fails() {
    let (key, problem) = invalid(&file(replace(
        "rotation = \"https://docs.example.com/oauth#refresh\"",
        "rotation = \"https://docs.example.com/oauth#refresh\"\nrevocation = \"https://docs.example.com/revoke\"",
    )));
    assert_eq!(key, "sources.revocation");
    assert!(problem.contains("no fact"), "{problem}");

    let (key, problem) = invalid(&file(replace(
        "subject = \"https://docs.example.com/api/me\"",
        "subject = \"https://blog.elsewhere.net/example-me\"",
    )));
    assert_eq!(key, "sources.subject");
    assert!(problem.contains("example.com"), "{problem}");

    let (key, _) = invalid(&file(replace(
        "subject = \"https://docs.example.com/api/me\"",
        "subject = \"http://docs.example.com/api/me\"",
    )));
    assert_eq!(key, "sources.subject");
}

#[test]
fn a_class_inconsistent_with_the_facts_fails() {
    // Claims non-rotating while refresh_token_rotates = true.
    let (key, problem) = invalid(&file(replace("[\"rotating\",", "[\"non_rotating\",")));
    assert_eq!(key, "classes");
    assert!(problem.contains("rotating"), "{problem}");

    // Leaves out a class the facts imply (comma separator).
    let (key, problem) = invalid(&file(replace(
        "scope_separator = \" \"",
        "scope_separator = \",\"",
    )));
    assert_eq!(key, "classes");
    assert!(problem.contains("comma_scopes"), "{problem}");

    // Keeps no_revocation although a revocation endpoint is now listed.
    let (key, problem) = invalid(&file(|e| {
        replace("token_endpoint = \"https://auth.example.com/token\"", "token_endpoint = \"https://auth.example.com/token\"\nrevocation_endpoint = \"https://auth.example.com/revoke\"")(e)
            .replacen("rotation = ", "revocation = \"https://docs.example.com/revoke\"\nrotation = ", 1)
    }));
    assert_eq!(key, "classes");
    assert!(problem.contains("no_revocation"), "{problem}");

    let (key, _) = invalid(&file(replace(
        "\"no_revocation\"]",
        "\"no_revocation\", \"rotating\"]",
    )));
    assert_eq!(key, "classes");
}

#[test]
fn a_bad_url_fails() {
    let (key, problem) = invalid(&file(replace(
        "\"https://auth.example.com/token\"",
        "\"http://auth.example.com/token\"",
    )));
    assert_eq!(key, "token_endpoint");
    assert!(problem.contains("https"), "{problem}");

    let (key, problem) = invalid(&file(replace(
        "\"https://auth.example.com/token\"",
        "\"https://auth example.com/token\"",
    )));
    assert_eq!(key, "token_endpoint");
    assert!(problem.contains("not a URL"), "{problem}");

    let (key, _) = invalid(&file(replace(
        "\"https://api.example.com/me\"",
        "\"ftp://api.example.com/me\"",
    )));
    assert_eq!(key, "subject");

    let (key, _) = invalid(&file(replace(
        "docs = \"https://docs.example.com/oauth\"",
        "docs = \"docs.example.com\"",
    )));
    assert_eq!(key, "docs");
}

#[test]
fn placeholders_must_be_exactly_those_declared() {
    let templated = "\"https://{tenant}.example.com/token\"";
    let (key, problem) = invalid(&file(replace(
        "\"https://auth.example.com/token\"",
        templated,
    )));
    assert_eq!(key, "token_endpoint");
    assert!(problem.contains("{tenant}"), "{problem}");

    let declared = |e: String| e.replacen("scopes = ", "placeholders = [\"tenant\"]\nscopes = ", 1);
    let catalogue = Catalogue::parse(&file(|e| {
        declared(replace("\"https://auth.example.com/token\"", templated)(e))
    }))
    .unwrap();
    assert_eq!(catalogue.get("target").unwrap().placeholders, ["tenant"]);

    let (key, problem) = invalid(&file(declared));
    assert_eq!(key, "placeholders");
    assert!(problem.contains("no URL uses it"), "{problem}");

    let (key, _) = invalid(&file(replace(
        "\"https://auth.example.com/token\"",
        "\"https://{Tenant}.example.com/token\"",
    )));
    assert_eq!(key, "token_endpoint");
}

#[test]
fn endpoints_are_an_issuer_or_both_endpoints() {
    let (key, _) = invalid(&file(replace(
        "docs = ",
        "issuer = \"https://auth.example.com\"\ndocs = ",
    )));
    assert_eq!(key, "issuer");
    let (key, _) = invalid(&file(replace(
        "authorization_endpoint = \"https://auth.example.com/authorize\"\n",
        "",
    )));
    assert_eq!(key, "authorization_endpoint");
}

#[test]
fn other_rules_fail_with_the_provider_and_key() {
    let (key, _) = invalid(&file(replace(
        "token_response = \"standard\"",
        "token_response = \"nested\"",
    )));
    assert_eq!(key, "token_response_path");
    let (key, _) = invalid(&file(replace(
        "authorization_params = {}",
        "authorization_params = { scope = \"x\" }",
    )));
    assert_eq!(key, "authorization_params");
    let (key, _) = invalid(&file(replace(
        "subject = { from = \"userinfo\", url = \"https://api.example.com/me\", field = \"id\" }",
        "subject = { from = \"id_token\", claim = \"sub\" }",
    )));
    assert_eq!(key, "subject", "an ID-token subject needs the openid scope");

    let (key, problem) = invalid(&file(replace(
        "expires_in = \"always\"",
        "refresh_token_lifetime_days = 30\nrefresh_token_idle_days = 60\nexpires_in = \"always\"",
    )));
    assert_eq!(key, "refresh_token_idle_days");
    assert!(problem.contains("exceeds"), "{problem}");

    let message = Catalogue::parse(&file(replace(
        "[providers.target]",
        "[providers.\"Bad Name\"]",
    )))
    .unwrap_err();
    assert!(message.to_string().contains("Bad Name"), "{message}");
}

#[test]
fn the_version_and_the_count_are_checked() {
    let wrong_version = file(|e| e).replacen("version = 1", "version = 2", 1);
    assert_eq!(
        Catalogue::parse(&wrong_version),
        Err(CatalogueError::Version {
            expected: 1,
            found: 2
        })
    );
    let one_entry = format!("version = 1\n{}", TEMPLATE.replace("NAME", "target"));
    assert_eq!(
        Catalogue::parse(&one_entry),
        Err(CatalogueError::TooFew {
            min: MIN_PROVIDERS,
            found: 1
        })
    );
    let stray = file(|e| e).replacen("version = 1\n", "version = 1\nextra = true\n", 1);
    assert!(matches!(
        Catalogue::parse(&stray),
        Err(CatalogueError::Syntax(_))
    ));
}
