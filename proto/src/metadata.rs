//! The syntax of account metadata (`StoreRefreshTokenRequest.metadata_json`), as the `.proto`
//! documents it: a JSON object of at most 16 keys (1-64 characters of `A-Z a-z 0-9 . _ -`), each
//! value a string of at most 256 characters or a list of at most 16 such strings (tags), 2 KiB in
//! all. web-frontend checks it when a connect link carries it, set-service before storing it.
//! Metadata is non-secret and never decides who may read a token.

use serde_json::Value;

pub use tokenvault_limits::MAX_METADATA_LEN;

/// The most keys, and the most strings in one list.
pub const MAX_METADATA_ENTRIES: usize = 16;
/// The longest key.
pub const MAX_METADATA_KEY_LEN: usize = 64;
/// The longest string value.
pub const MAX_METADATA_VALUE_LEN: usize = 256;

/// Checks metadata and returns it in compact form (no insignificant white space).
pub fn check_metadata(json: &str) -> Result<String, String> {
    if json.len() > MAX_METADATA_LEN {
        return Err(format!("metadata: longer than {MAX_METADATA_LEN} bytes"));
    }
    let value: Value =
        serde_json::from_str(json).map_err(|_| "metadata: not valid JSON".to_owned())?;
    let Value::Object(map) = &value else {
        return Err("metadata: must be a JSON object".to_owned());
    };
    if map.len() > MAX_METADATA_ENTRIES {
        return Err(format!("metadata: more than {MAX_METADATA_ENTRIES} keys"));
    }
    for (key, value) in map {
        let key_ok = !key.is_empty()
            && key.len() <= MAX_METADATA_KEY_LEN
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !key_ok {
            return Err(format!(
                "metadata: keys are 1-{MAX_METADATA_KEY_LEN} characters of A-Z, a-z, 0-9, '.', '_', '-'"
            ));
        }
        let strings: Vec<&Value> = match value {
            Value::Array(items) if items.len() <= MAX_METADATA_ENTRIES => items.iter().collect(),
            Value::Array(_) => {
                return Err(format!(
                    "metadata: {key}: more than {MAX_METADATA_ENTRIES} values"
                ));
            }
            other => vec![other],
        };
        for item in strings {
            match item {
                Value::String(s)
                    if s.chars().count() <= MAX_METADATA_VALUE_LEN
                        && !s.chars().any(char::is_control) => {}
                _ => {
                    return Err(format!(
                        "metadata: {key}: values are strings of at most \
                         {MAX_METADATA_VALUE_LEN} printable characters, or lists of them"
                    ));
                }
            }
        }
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_of_strings_and_tag_lists() {
        assert_eq!(
            check_metadata(r#"{ "tenant": "acme", "tags": ["a", "b"] }"#).ok(),
            Some(r#"{"tags":["a","b"],"tenant":"acme"}"#.to_owned())
        );
        assert!(check_metadata("{}").is_ok());
        for bad in [
            "[]",
            "\"x\"",
            "{",
            r#"{"n": 1}"#,
            r#"{"o": {"x": "y"}}"#,
            r#"{"bad key": "x"}"#,
            r#"{"t": ["x", 1]}"#,
            r#"{"c": "a\u0000b"}"#,
        ] {
            assert!(check_metadata(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"x": "{}"}}"#, "y".repeat(MAX_METADATA_VALUE_LEN + 1));
        assert!(check_metadata(&long).is_err());
        let huge = format!(r#"{{"x": "{}"}}"#, "y".repeat(MAX_METADATA_LEN));
        assert!(check_metadata(&huge).is_err());
    }
}
