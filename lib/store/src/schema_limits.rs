//! Tests that the migrations' length CHECKs are the column widths of
//! `tokenvault_limits` (`store_columns`, `audit_columns`), on both backends,
//! so that the relations tested there (every column holds what the code
//! accepts) are about the real schema.

use tokenvault_limits::{audit_columns, store_columns};

/// Every migration of both backends, as (`<backend>/<file>`, SQL), in order.
fn migrations() -> std::io::Result<Vec<(String, String)>> {
    let mut all = Vec::new();
    for backend in ["postgres", "sqlite"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut files = std::fs::read_dir(dir)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()?;
        files.sort();
        for path in files {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            all.push((format!("{backend}/{name}"), std::fs::read_to_string(&path)?));
        }
    }
    Ok(all)
}

/// The width `tokenvault_limits` gives a column of a table.
fn expected(table: &str, column: &str) -> Option<usize> {
    if table == "audit_events" {
        return match column {
            "at" => Some(audit_columns::AT_CHARS),
            "service" => Some(audit_columns::SERVICE_CHARS),
            "caller" => Some(audit_columns::CALLER_CHARS),
            "peer" => Some(audit_columns::PEER_CHARS),
            "action" => Some(audit_columns::ACTION_CHARS),
            "account" | "provider" => Some(audit_columns::ID_CHARS),
            "outcome" => Some(audit_columns::OUTCOME_CHARS),
            "error" => Some(audit_columns::ERROR_CHARS),
            "policy" => Some(audit_columns::POLICY_CHARS),
            _ => None,
        };
    }
    match column {
        "account" | "provider" | "kid" | "from_kid" | "to_kid" => Some(store_columns::ID_CHARS),
        "sealed_token" => Some(store_columns::SEALED_TOKEN_BYTES),
        "reason" => Some(store_columns::REASON_CHARS),
        "token_type" => Some(store_columns::TOKEN_TYPE_CHARS),
        "scopes" => Some(store_columns::SCOPES_CHARS),
        "metadata" => Some(store_columns::METADATA_BYTES),
        "endpoint" => Some(store_columns::ENDPOINT_CHARS),
        "detail" => Some(store_columns::REASON_CHARS),
        _ => None,
    }
}

/// The table a `CREATE TABLE` or `ALTER TABLE` line names.
fn table_of(line: &str) -> Option<&str> {
    let rest = line
        .trim_start()
        .strip_prefix("CREATE TABLE ")
        .or_else(|| line.trim_start().strip_prefix("ALTER TABLE "))?;
    let name = rest.split_whitespace().next()?;
    Some(name.trim_start_matches("public."))
}

/// `(column, width)` of a line's upper-bounded length CHECK, if it has one.
fn length_check(line: &str) -> Option<(&str, usize)> {
    let (_, after) = line.split_once("CHECK (")?;
    let (_, arg) = after.split_once("length(")?;
    let arg = arg.strip_prefix("CAST(").unwrap_or(arg);
    let column = arg
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()?;
    if !(after.contains("BETWEEN") || after.contains("<=")) {
        return None;
    }
    let digits: String = after
        .rsplit(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .to_owned();
    Some((column, digits.parse().ok()?))
}

#[test]
fn every_length_check_is_a_limits_column_width() -> std::io::Result<()> {
    let migrations = migrations()?;
    assert!(migrations.len() >= 15, "{} migrations", migrations.len());
    let mut checked = 0;
    for (file, sql) in &migrations {
        let mut table = "";
        for line in sql.lines().filter(|l| !l.trim_start().starts_with("--")) {
            if let Some(name) = table_of(line) {
                table = name;
            }
            if let Some((column, width)) = length_check(line) {
                let want = expected(table, column);
                assert_eq!(want, Some(width), "{file}: {table}.{column}: {line}");
                checked += 1;
            }
        }
    }
    // Each backend: token_events 4, token_status 3, token_revocations 2,
    // token_reseals 5, audit_events 8 (SQLite: 9, with `at`), its policy 1,
    // shared_access_tokens 6, account_metadata 3, account_events 4,
    // account_event_deliveries 2, token_expiries 2.
    assert_eq!(checked, 29 + 30 + 2 * 11, "length CHECKs found");
    Ok(())
}
