//! The input: one record per line of a JSON-lines file, or per row of a CSV
//! file with a header (`account,provider,refresh_token[,metadata]`, the
//! metadata a JSON object of strings). A record that cannot be read is
//! reported by line number with a reason that never quotes the line (it
//! may hold a token).
//!
//! Holds the plaintext refresh tokens of the input in wiped buffers
//! ([`Secret`]); `Debug` never prints one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use tokenvault_runtime::secret::Secret;
use zeroize::Zeroizing;

use crate::ImportError;

/// The input's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

impl Format {
    /// The format a file name suggests (`.csv`, else JSON lines).
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// One token to import.
pub struct Record {
    /// The line (JSON lines) or row (CSV, the header is row 1) it came from.
    pub line: u64,
    /// The account id.
    pub account: String,
    /// The provider name.
    pub provider: String,
    /// The refresh token.
    pub refresh_token: Secret,
    /// The account's metadata, a JSON object of strings.
    pub metadata: Option<String>,
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("line", &self.line)
            .field("account", &self.account)
            .field("provider", &self.provider)
            .field("refresh_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A record, or the line number and why it cannot be imported.
pub type Parsed = Result<Record, (u64, String)>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord {
    account: String,
    provider: String,
    refresh_token: Secret,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRecord {
    account: String,
    provider: String,
    refresh_token: Secret,
    #[serde(default)]
    metadata: Option<String>,
}

/// Reads every record of `path`.
pub fn read(path: &Path, format: Format) -> Result<Vec<Parsed>, ImportError> {
    let input_error = |reason: String| ImportError::Input {
        path: path.to_owned(),
        reason,
    };
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| input_error(e.to_string()))?);
    match format {
        Format::Jsonl => Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| json_line(i as u64 + 1, l))
            .collect()),
        Format::Csv => csv_rows(&text).map_err(input_error),
    }
}

fn json_line(line: u64, text: &str) -> Parsed {
    let parsed: JsonRecord = serde_json::from_str(text).map_err(|e| (line, json_reason(&e)))?;
    let metadata = parsed
        .metadata
        .filter(|m| !m.is_empty())
        .map(|m| serde_json::to_string(&m).unwrap_or_default());
    record(
        line,
        parsed.account,
        parsed.provider,
        parsed.refresh_token,
        metadata,
    )
}

/// serde_json's reason without any value from the line.
fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match e.classify() {
        serde_json::error::Category::Data
            if text.starts_with("missing field") || text.starts_with("unknown field") =>
        {
            text.split(" at line").next().unwrap_or_default().to_owned()
        }
        serde_json::error::Category::Data => {
            "a field has the wrong type (account, provider and refresh_token are strings; metadata an object of strings)".into()
        }
        _ => "not a JSON object".into(),
    }
}

fn csv_rows(text: &str) -> Result<Vec<Parsed>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("CSV header: {e}"))?
        .clone();
    for required in ["account", "provider", "refresh_token"] {
        if !headers.iter().any(|h| h == required) {
            return Err(format!("the CSV header has no {required:?} column"));
        }
    }
    Ok(reader
        .deserialize::<CsvRecord>()
        .enumerate()
        .map(|(i, row)| {
            // The header is row 1.
            let line = i as u64 + 2;
            let row = row.map_err(|e| (line, csv_reason(&e)))?;
            let metadata = row.metadata.filter(|m| !m.trim().is_empty());
            if let Some(m) = &metadata
                && serde_json::from_str::<BTreeMap<String, String>>(m).is_err()
            {
                return Err((line, "metadata is not a JSON object of strings".into()));
            }
            record(line, row.account, row.provider, row.refresh_token, metadata)
        })
        .collect())
}

/// The csv crate's reason without any value from the row.
fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { .. } => {
            "the row has a different number of fields than the header".into()
        }
        csv::ErrorKind::Utf8 { .. } => "the row is not UTF-8".into(),
        _ => "the row cannot be read".into(),
    }
}

fn record(
    line: u64,
    account: String,
    provider: String,
    refresh_token: Secret,
    metadata: Option<String>,
) -> Parsed {
    tokenvault_proto::ids::check_account(&account).map_err(|e| (line, e.to_string()))?;
    tokenvault_proto::ids::check_provider(&provider).map_err(|e| (line, e.to_string()))?;
    if refresh_token.expose().trim().is_empty() {
        return Err((line, "refresh_token is empty".into()));
    }
    Ok(Record {
        line,
        account,
        provider,
        refresh_token,
        metadata,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_and_their_errors_never_quote_a_token() {
        let ok = json_line(
            3,
            r#"{"account":"google:1","provider":"google","refresh_token":"rt-secret-1","metadata":{"tenant":"t1"}}"#,
        )
        .unwrap();
        assert_eq!(ok.line, 3);
        assert_eq!(ok.refresh_token.expose(), "rt-secret-1");
        assert_eq!(ok.metadata.as_deref(), Some(r#"{"tenant":"t1"}"#));
        assert!(!format!("{ok:?}").contains("rt-secret-1"));
        for bad in [
            r#"{"account":"a","provider":"p"}"#,
            r#"{"account":"a","provider":"p","refresh_token":"rt-secret-1","metadata":"rt-secret-1"}"#,
            r#"{"account":"a","provider":"p","refresh_token":"rt-secret-1","x":1}"#,
            r#"rt-secret-1"#,
            r#"{"account":"a b","provider":"p","refresh_token":"rt-secret-1"}"#,
            r#"{"account":"a","provider":"p","refresh_token":" "}"#,
        ] {
            let (line, reason) = json_line(7, bad).unwrap_err();
            assert_eq!(line, 7);
            assert!(!reason.contains("rt-secret-1"), "{bad}: {reason}");
        }
    }

    #[test]
    fn csv_rows_count_from_the_header() {
        let rows = csv_rows(
            "account,provider,refresh_token,metadata\n\
             a1,google,rt-1,\n\
             a2,google,rt-2,\"{\"\"tenant\"\":\"\"t\"\"}\"\n\
             a3,google\n\
             a4,google,rt-4,not-json\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 4);
        let first = rows[0].as_ref().unwrap();
        assert_eq!((first.line, first.metadata.as_deref()), (2, None));
        assert_eq!(
            rows[1].as_ref().unwrap().metadata.as_deref(),
            Some(r#"{"tenant":"t"}"#)
        );
        assert_eq!(rows[2].as_ref().unwrap_err().0, 4);
        assert!(!rows[3].as_ref().unwrap_err().1.contains("not-json"));
        assert!(csv_rows("account,token\n").is_err());
    }
}
