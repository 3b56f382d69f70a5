//! The `tokenvault-admin` command line: the account inventory from
//! get-service, for operators and scripts. It never sees a token.
//!
//! ```text
//! tokenvault-admin accounts list [--provider P] [--status S] [--prefix X]
//!                                [--changed-since RFC3339|UNIX] [--page-size N] [--json]
//! tokenvault-admin accounts show ACCOUNT --provider P [--json]
//! tokenvault-admin events watch [--after CURSOR] [--provider P] [--prefix X] [--json]
//! ```
//!
//! Connection settings are the worker CLI's (`--config`, `--address`,
//! `--trust-domain`, `--cert`, `--key`, `--ca`), read from
//! `TOKENVAULT_ADMIN_*` variables rather than `TOKENVAULT_WORKER_*`: the
//! certificate is an `admin` identity's, not a worker's. Exit codes are the
//! worker CLI's (3: no such account, 5: unavailable, 6: not allowed). The
//! binary is a thin wrapper around [`run`], which tests call in-process.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokenvault_proto::v1::{
    AccountEvent, AccountEventKind, AccountStatus, AccountSummary, ListAccountsRequest,
    WatchAccountEventsRequest,
};

use crate::admin::{AdminClient, resumable};
use crate::cli::exit_code;
use crate::{PartialConfig, WorkerConfig, WorkerError};

const ENV_CONFIG: &str = "TOKENVAULT_ADMIN_CONFIG";
const ENV_ADDRESS: &str = "TOKENVAULT_ADMIN_ADDRESS";
const ENV_TRUST_DOMAIN: &str = "TOKENVAULT_ADMIN_TRUST_DOMAIN";
const ENV_CERT: &str = "TOKENVAULT_ADMIN_CERT";
const ENV_KEY: &str = "TOKENVAULT_ADMIN_KEY";
const ENV_CA: &str = "TOKENVAULT_ADMIN_CA";

/// The longest wait before a cut-off watch opens its stream again.
const MAX_RESUME_WAIT: Duration = Duration::from_secs(10);

/// Read tokenvault's account inventory and account events (never a token).
#[derive(Debug, Parser)]
#[command(name = "tokenvault-admin", version)]
struct Cli {
    /// A TOML file with `address`, `trust_domain` and `[tls] cert/key/ca`.
    #[arg(long, global = true, env = ENV_CONFIG)]
    config: Option<PathBuf>,
    /// get-service's host:port, or several, comma-separated (replicas).
    #[arg(long, global = true, env = ENV_ADDRESS)]
    address: Option<String>,
    /// The SPIFFE trust domain.
    #[arg(long, global = true, env = ENV_TRUST_DOMAIN)]
    trust_domain: Option<String>,
    /// The admin certificate (PEM), SPIFFE ID spiffe://<td>/admin[/<name>].
    #[arg(long, global = true, env = ENV_CERT)]
    cert: Option<PathBuf>,
    /// The admin certificate's private key (PEM).
    #[arg(long, global = true, env = ENV_KEY)]
    key: Option<PathBuf>,
    /// The CA bundle (PEM).
    #[arg(long, global = true, env = ENV_CA)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The account inventory.
    #[command(subcommand)]
    Accounts(Accounts),
    /// Account events.
    #[command(subcommand)]
    Events(Events),
}

#[derive(Debug, Subcommand)]
enum Accounts {
    /// List every account the filters admit, in (account, provider) order.
    List {
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only accounts in this status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// Only accounts whose id starts with this (e.g. a tenant, `acme:`).
        #[arg(long)]
        prefix: Option<String>,
        /// Only accounts whose status changed at or after this time:
        /// RFC 3339 (`2025-01-31T00:00:00Z`) or seconds since the Unix epoch.
        #[arg(long, value_parser = parse_time)]
        changed_since: Option<i64>,
        /// Accounts fetched per call (1-1000).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1000))]
        page_size: u32,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one account.
    Show {
        /// The account id.
        account: String,
        /// Its provider.
        #[arg(long)]
        provider: String,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Events {
    /// Print account events as they happen, until interrupted (Ctrl-C);
    /// resumes after the last event printed when get-service goes away.
    Watch {
        /// Only events after this cursor (0: from the first).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only accounts whose id starts with this.
        #[arg(long)]
        prefix: Option<String>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `--status` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Status {
    Active,
    ReauthorizationRequired,
    Disconnected,
}

impl From<Status> for AccountStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Active => AccountStatus::Active,
            Status::ReauthorizationRequired => AccountStatus::ReauthorizationRequired,
            Status::Disconnected => AccountStatus::Disconnected,
        }
    }
}

/// `--changed-since`: seconds since the epoch, or RFC 3339.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(unix) = text.parse::<i64>() {
        return if unix >= 0 {
            Ok(unix)
        } else {
            Err("seconds since the Unix epoch cannot be negative".into())
        };
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| "use RFC 3339 (2025-01-31T00:00:00Z) or seconds since the Unix epoch".into())
}

/// Runs the command line `args` (program name first), writing to `out` and
/// `err`, until done or, for `events watch`, interrupted (Ctrl-C); returns
/// the process exit code.
pub async fn run(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8 {
    run_until(args, out, err, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

/// [`run`], with `stop` instead of Ctrl-C ending `events watch` (exit 0).
pub async fn run_until(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    stop: impl Future<Output = ()> + Send,
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = write!(out, "{e}");
            return 0;
        }
        Err(e) => {
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let _ = writeln!(err, "{first} (see tokenvault-admin --help)");
            return 2;
        }
    };
    match execute(cli, out, err, stop).await {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            exit_code(&e)
        }
    }
}

async fn execute(
    cli: Cli,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    stop: impl Future<Output = ()> + Send,
) -> Result<(), WorkerError> {
    let file = match &cli.config {
        Some(path) => Some(WorkerConfig::from_toml_file(path)?),
        None => None,
    };
    let config = PartialConfig {
        address: cli.address,
        trust_domain: cli.trust_domain,
        cert: cli.cert,
        key: cli.key,
        ca: cli.ca,
    }
    .complete(file)?;
    let client = AdminClient::new(&config)?;
    match cli.command {
        Command::Accounts(Accounts::List {
            provider,
            status,
            prefix,
            changed_since,
            page_size,
            json,
        }) => {
            let request = ListAccountsRequest {
                provider: provider.unwrap_or_default(),
                status: status.map_or(AccountStatus::Unspecified, AccountStatus::from) as i32,
                account_prefix: prefix.unwrap_or_default(),
                changed_since_unix: changed_since.unwrap_or(0),
                page_size,
                page_token: String::new(),
            };
            list(&client, request, json, out).await
        }
        Command::Accounts(Accounts::Show {
            account,
            provider,
            json,
        }) => {
            let Some(summary) = client.account(&account, &provider).await? else {
                return Err(WorkerError::NoSuchAccount { account, provider });
            };
            if json {
                writeln!(out, "{}", account_json(&summary)).map_err(stdout)
            } else {
                show(&summary, out)
            }
        }
        Command::Events(Events::Watch {
            after,
            provider,
            prefix,
            json,
        }) => {
            let request = WatchAccountEventsRequest {
                after_cursor: after,
                provider: provider.unwrap_or_default(),
                account_prefix: prefix.unwrap_or_default(),
            };
            tokio::select! {
                watched = watch(&client, request, json, out, err) => watched,
                () = stop => Ok(()),
            }
        }
    }
}

/// Every page: JSON lines as they come, or one table at the end.
async fn list(
    client: &AdminClient,
    request: ListAccountsRequest,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), WorkerError> {
    let mut pages = client.pages(request);
    let mut rows = Vec::new();
    while let Some(page) = pages.next().await? {
        if json {
            for summary in &page {
                writeln!(out, "{}", account_json(summary)).map_err(stdout)?;
            }
        } else {
            rows.extend(page.iter().map(table_row));
        }
    }
    if !json {
        write_table(
            &[
                "ACCOUNT",
                "PROVIDER",
                "STATUS",
                "UPDATED",
                "CONNECTED",
                "TOKEN STORED",
                "FAILED DELIVERIES",
                "REASON",
            ],
            &rows,
            out,
        )?;
    }
    Ok(())
}

async fn watch(
    client: &AdminClient,
    request: WatchAccountEventsRequest,
    json: bool,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<(), WorkerError> {
    let mut events = client.watch(request);
    let mut wait = Duration::from_millis(500);
    loop {
        match events.next().await {
            Ok(event) => {
                wait = Duration::from_millis(500);
                let line = if json {
                    event_json(&event).to_string()
                } else {
                    event_text(&event)
                };
                writeln!(out, "{line}").map_err(stdout)?;
                out.flush().map_err(stdout)?;
            }
            Err(e) if resumable(&e) => {
                let _ = writeln!(
                    err,
                    "the event stream was cut off ({e}); resuming after cursor {} in {:?}",
                    events.cursor(),
                    wait
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RESUME_WAIT);
            }
            Err(e) => return Err(e),
        }
    }
}

fn stdout(e: std::io::Error) -> WorkerError {
    WorkerError::Config(format!("stdout: {e}"))
}

/// `active`, `reauthorization_required`, `disconnected` (`unspecified`).
fn status_name(status: i32) -> String {
    let status = AccountStatus::try_from(status).unwrap_or(AccountStatus::Unspecified);
    lower(status.as_str_name(), "ACCOUNT_STATUS_")
}

/// `connected`, `reauthorization_required`, ... (`unspecified`).
fn kind_name(kind: i32) -> String {
    let kind = AccountEventKind::try_from(kind).unwrap_or(AccountEventKind::Unspecified);
    lower(kind.as_str_name(), "ACCOUNT_EVENT_KIND_")
}

fn lower(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// RFC 3339 in UTC, or `-` for 0 (unknown).
fn time_text(unix: i64) -> String {
    if unix == 0 {
        return "-".into();
    }
    tokenvault_unix_time::rfc3339_or_number(unix)
}

/// Metadata as JSON: the object itself, `null` when none.
fn metadata_value(metadata_json: &str) -> serde_json::Value {
    if metadata_json.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(metadata_json)
        .unwrap_or_else(|_| serde_json::Value::String(metadata_json.to_owned()))
}

fn account_json(a: &AccountSummary) -> serde_json::Value {
    serde_json::json!({
        "account": a.account,
        "provider": a.provider,
        "status": status_name(a.status),
        "reason": a.reason,
        "connected_at_unix": a.connected_at_unix,
        "updated_at_unix": a.updated_at_unix,
        "token_stored_at_unix": a.token_stored_at_unix,
        "refresh_token_expires_at_unix": a.refresh_token_expires_at_unix,
        "metadata": metadata_value(&a.metadata_json),
        "failed_event_deliveries": a.failed_event_deliveries,
    })
}

fn event_json(e: &AccountEvent) -> serde_json::Value {
    serde_json::json!({
        "cursor": e.cursor,
        "id": e.id,
        "kind": kind_name(e.kind),
        "account": e.account,
        "provider": e.provider,
        "status": status_name(e.status),
        "reason": e.reason,
        "occurred_at_unix": e.occurred_at_unix,
        "metadata": metadata_value(&e.metadata_json),
    })
}

fn event_text(e: &AccountEvent) -> String {
    let mut line = format!(
        "{} {} {} {} {} {}",
        e.cursor,
        time_text(e.occurred_at_unix),
        kind_name(e.kind),
        e.account,
        e.provider,
        status_name(e.status)
    );
    if !e.reason.is_empty() {
        line.push(' ');
        line.push_str(&printable(&e.reason));
    }
    line
}

fn table_row(a: &AccountSummary) -> Vec<String> {
    vec![
        a.account.clone(),
        a.provider.clone(),
        status_name(a.status),
        time_text(a.updated_at_unix),
        time_text(a.connected_at_unix),
        time_text(a.token_stored_at_unix),
        a.failed_event_deliveries.to_string(),
        printable(&a.reason),
    ]
}

/// A reason as one line of text (control characters escaped).
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn write_table(
    header: &[&str],
    rows: &[Vec<String>],
    out: &mut (dyn Write + Send),
) -> Result<(), WorkerError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_owned()
    };
    writeln!(out, "{}", line(&mut header.iter().copied())).map_err(stdout)?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str))).map_err(stdout)?;
    }
    Ok(())
}

fn show(a: &AccountSummary, out: &mut (dyn Write + Send)) -> Result<(), WorkerError> {
    let fields = [
        ("account", a.account.clone()),
        ("provider", a.provider.clone()),
        ("status", status_name(a.status)),
        ("reason", printable(&a.reason)),
        ("updated", time_text(a.updated_at_unix)),
        ("connected", time_text(a.connected_at_unix)),
        ("token stored", time_text(a.token_stored_at_unix)),
        (
            "refresh token expires",
            time_text(a.refresh_token_expires_at_unix),
        ),
        ("failed deliveries", a.failed_event_deliveries.to_string()),
        (
            "metadata",
            if a.metadata_json.is_empty() {
                "-".into()
            } else {
                a.metadata_json.clone()
            },
        ),
    ];
    for (name, value) in fields {
        writeln!(out, "{:<22}{value}", format!("{name}:")).map_err(stdout)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn changed_since_takes_rfc3339_or_unix() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Ok(1_700_000_000));
        assert!(parse_time("-5").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn names_and_times() {
        assert_eq!(
            status_name(AccountStatus::ReauthorizationRequired as i32),
            "reauthorization_required"
        );
        assert_eq!(status_name(99), "unspecified");
        assert_eq!(kind_name(AccountEventKind::Recovered as i32), "recovered");
        assert_eq!(time_text(0), "-");
        assert_eq!(time_text(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(printable("a\nb"), "a\\nb");
    }

    #[test]
    fn json_lines_carry_every_field_and_the_metadata_object() {
        let a = AccountSummary {
            account: "acme:1".into(),
            provider: "google".into(),
            status: AccountStatus::Active as i32,
            metadata_json: r#"{"tenant":"acme"}"#.into(),
            ..AccountSummary::default()
        };
        let v = account_json(&a);
        assert_eq!(v["status"], "active");
        assert_eq!(v["metadata"]["tenant"], "acme");
        assert_eq!(v["refresh_token_expires_at_unix"], 0);
        assert!(account_json(&AccountSummary::default())["metadata"].is_null());
    }

    #[test]
    fn the_table_aligns_columns() {
        let mut out = Vec::new();
        write_table(
            &["A", "B", "C"],
            &[
                vec!["long-value".into(), "x".into(), "last".into()],
                vec!["s".into(), "yy".into(), String::new()],
            ],
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "A           B   C\nlong-value  x   last\ns           yy\n"
        );
    }

    #[tokio::test]
    async fn bad_arguments_exit_2_with_one_line() {
        for args in [
            vec!["tokenvault-admin", "accounts", "list", "--status", "dead"],
            vec!["tokenvault-admin", "accounts", "list", "--page-size", "0"],
            vec![
                "tokenvault-admin",
                "accounts",
                "list",
                "--changed-since",
                "soon",
            ],
            vec!["tokenvault-admin", "accounts", "show", "acme:1"],
            vec!["tokenvault-admin", "events"],
        ] {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = run_until(
                args.iter().map(std::ffi::OsString::from),
                &mut out,
                &mut err,
                std::future::pending(),
            )
            .await;
            let err = String::from_utf8(err).unwrap();
            assert_eq!(code, 2, "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
    }

    #[tokio::test]
    async fn missing_settings_are_named() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_until(
            ["tokenvault-admin", "accounts", "list"].map(std::ffi::OsString::from),
            &mut out,
            &mut err,
            std::future::pending(),
        )
        .await;
        assert_eq!(code, 1);
        assert!(
            String::from_utf8(err)
                .unwrap()
                .contains("address is not set")
        );
    }
}
