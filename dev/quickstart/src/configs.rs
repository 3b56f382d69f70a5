//! The service configs the quick start writes into the state directory, and
//! the optional user file merged over them.
//!
//! Without a user file: the embedded SQLite store and one provider, `demo`,
//! served by the development-only demo authorization server. With one
//! (`--config`), its `[web_frontend]` and `[get_service]` tables are merged
//! over the generated configs (tables merge key by key; anything else, such
//! as a `providers` array, replaces), its `[store]` URLs replace SQLite, and
//! the demo server runs only if `demo = true`. set-service's provider list is
//! the union of both services' providers.
//!
//! set-service writes the append-only audit table in the store, and with
//! PostgreSQL get-service does too (with its reader role; SQLite has no roles,
//! so there get-service's audit events stay in its JSON log).
//!
//! The configs name secret files (and hold provider client secrets when the
//! user's file does); they are written with mode 0600.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use tokenvault_runtime::files::replace_file;
use toml::{Table, Value};

use crate::state::{State, read_secret};

/// The demo provider's name in every catalogue.
pub const DEMO_PROVIDER: &str = "demo";
/// The demo authorization server's client id.
pub const DEMO_CLIENT_ID: &str = tokenvault_demo_auth::DEFAULT_CLIENT_ID;

/// The user's file (`--config`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Also run the demo authorization server and its `demo` provider
    /// (default: only when the file configures no providers).
    pub demo: Option<bool>,
    /// PostgreSQL instead of SQLite.
    pub store: Option<StoreUrls>,
    /// Merged over web-frontend.toml.
    #[serde(default)]
    pub web_frontend: Table,
    /// Merged over get-service.toml.
    #[serde(default)]
    pub get_service: Table,
    /// Merged over set-service.toml.
    #[serde(default)]
    pub set_service: Table,
}

/// Store URLs, one per database role. Debug output is hand-written in case
/// a URL holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreUrls {
    /// `tokenvault_owner`: runs the migrations at start.
    pub owner_url: String,
    /// `tokenvault_writer`: set-service.
    pub writer_url: String,
    /// `tokenvault_reader`: get-service.
    pub reader_url: String,
}

impl std::fmt::Debug for StoreUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreUrls { .. }")
    }
}

impl UserConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    fn has_providers(&self) -> bool {
        self.web_frontend.contains_key("providers") || self.get_service.contains_key("providers")
    }
}

/// What to start, once the configs are written.
#[derive(Debug)]
pub struct Plan {
    /// set-service's config file and port.
    pub set_service: (PathBuf, u16),
    /// get-service's config file and port.
    pub get_service: (PathBuf, u16),
    /// web-frontend's config file and port.
    pub web_frontend: (PathBuf, u16),
    /// The demo authorization server's port and state file, if it runs.
    pub demo: Option<(u16, PathBuf)>,
    /// The public URL to open.
    pub public_url: String,
    /// The worker's config file.
    pub worker_config: PathBuf,
    /// Run the PostgreSQL migrations with this owner URL first.
    pub migrate_with: Option<String>,
    /// Provider names, for the printed instructions.
    pub providers: Vec<String>,
    /// The demo client secret, handed to the demo server by environment.
    pub demo_client_secret: Option<String>,
}

/// Writes set-service.toml, get-service.toml, web-frontend.toml and
/// worker.toml into the state directory.
pub fn write_all(state: &State, port_base: u16, user: Option<&UserConfig>) -> anyhow::Result<Plan> {
    let Some(last) = port_base.checked_add(3) else {
        bail!("--port-base {port_base} is too high");
    };
    let (set_port, get_port, web_port, demo_port) = (port_base, port_base + 1, port_base + 2, last);
    let empty = UserConfig::default();
    let user = user.unwrap_or(&empty);
    let demo = user.demo.unwrap_or(!user.has_providers());
    let public_url = format!("http://127.0.0.1:{web_port}");
    let demo_secret = read_secret(&state.demo_client_secret)?;
    let demo_url = format!("http://127.0.0.1:{demo_port}");

    let (sqlite_writer, sqlite_reader) = {
        let db = state.dir.join("tokenvault.db");
        let url = format!("sqlite://{}", db.display());
        (url.clone(), url)
    };
    let (writer_url, reader_url, migrate_with) = match &user.store {
        Some(s) => (
            s.writer_url.clone(),
            s.reader_url.clone(),
            Some(s.owner_url.clone()),
        ),
        None => (sqlite_writer, sqlite_reader, None),
    };
    let keys = state.dir.join("keys");
    let s = |p: &Path| Value::String(p.display().to_string());
    let tls = |stem: &str| -> Value {
        let (cert, key) = state.cert(stem);
        let mut t = Table::new();
        t.insert("cert".into(), s(&cert));
        t.insert("key".into(), s(&key));
        t.insert("ca".into(), s(&state.ca_bundle()));
        Value::Table(t)
    };
    let table = |text: String| -> anyhow::Result<Table> { Ok(toml::from_str(&text)?) };

    let mut web = table(format!(
        r#"listen = "127.0.0.1:{web_port}"
public_url = "{public_url}"
trust_domain = {td}
public_keys_dir = {public_keys}
[set_service]
address = "127.0.0.1:{set_port}"
[session]
cookie_key_file = {cookie}
[links]
secret_file = {link}
"#,
        td = Value::String(state.trust_domain.clone()),
        public_keys = s(&keys.join("public")),
        cookie = s(&state.cookie_key),
        link = s(&state.link_secret),
    ))?;
    web.insert("tls".into(), tls("web-frontend"));
    let mut get = table(format!(
        r#"listen = "127.0.0.1:{get_port}"
trust_domain = {td}
private_keys_dir = {private_keys}
public_keys_dir = {public_keys}
[store]
url = {reader}
[set_service]
address = "127.0.0.1:{set_port}"
[rotation]
journal_dir = {journal}
"#,
        td = Value::String(state.trust_domain.clone()),
        reader = Value::String(reader_url.clone()),
        private_keys = s(&keys.join("private")),
        public_keys = s(&keys.join("public")),
        journal = s(&state.dir.join("get-service-journal")),
    ))?;
    get.insert("tls".into(), tls("get-service"));
    if user.store.is_some() {
        // PostgreSQL: the reader role may append audit rows. Not on SQLite,
        // which has no roles: get-service keeps the store read-only there.
        let mut audit = Table::new();
        audit.insert("database_url".into(), Value::String(reader_url.clone()));
        get.insert("audit".into(), Value::Table(audit));
    }
    if demo {
        let web_demo = table(format!(
            r#"name = "{DEMO_PROVIDER}"
display_name = "Demo provider (development only)"
kind = "oauth2"
authorization_endpoint = "{demo_url}/authorize"
token_endpoint = "{demo_url}/token"
user_endpoint = "{demo_url}/userinfo"
subject_field = "sub"
client_id = "{DEMO_CLIENT_ID}"
client_secret = "{demo_secret}"
scopes = ["profile"]
"#
        ))?;
        let get_demo = table(format!(
            r#"name = "{DEMO_PROVIDER}"
token_endpoint = "{demo_url}/token"
revocation_endpoint = "{demo_url}/revoke"
client_id = "{DEMO_CLIENT_ID}"
client_secret = "{demo_secret}"
"#
        ))?;
        web.insert(
            "providers".into(),
            Value::Array(vec![Value::Table(web_demo)]),
        );
        get.insert(
            "providers".into(),
            Value::Array(vec![Value::Table(get_demo)]),
        );
    }
    merge(&mut web, &user.web_frontend, demo);
    merge(&mut get, &user.get_service, demo);

    let mut providers = names(&web);
    for name in names(&get) {
        if !providers.contains(&name) {
            providers.push(name);
        }
    }
    if providers.is_empty() {
        bail!(
            "no providers: configure [[web_frontend.providers]] and [[get_service.providers]], or set demo = true"
        );
    }
    let mut set = table(format!(
        r#"listen = "127.0.0.1:{set_port}"
trust_domain = {td}
public_keys_dir = {public_keys}
[store]
url = {writer}
[audit]
database_url = {writer}
"#,
        td = Value::String(state.trust_domain.clone()),
        writer = Value::String(writer_url.clone()),
        public_keys = s(&keys.join("public")),
    ))?;
    set.insert("tls".into(), tls("set-service"));
    set.insert(
        "providers".into(),
        Value::Array(providers.iter().cloned().map(Value::String).collect()),
    );
    merge(&mut set, &user.set_service, false);

    let mut worker = table(format!(
        r#"address = "127.0.0.1:{get_port}"
trust_domain = {td}
"#,
        td = Value::String(state.trust_domain.clone()),
    ))?;
    worker.insert("tls".into(), tls("worker-demo"));

    let path = |name: &str| state.dir.join(name);
    write_private(&path("set-service.toml"), &set)?;
    write_private(&path("get-service.toml"), &get)?;
    write_private(&path("web-frontend.toml"), &web)?;
    write_private(&path("worker.toml"), &worker)?;
    Ok(Plan {
        set_service: (path("set-service.toml"), set_port),
        get_service: (path("get-service.toml"), get_port),
        web_frontend: (path("web-frontend.toml"), web_port),
        demo: demo.then(|| (demo_port, path("demo-authorization-server.json"))),
        public_url,
        worker_config: path("worker.toml"),
        migrate_with,
        providers,
        demo_client_secret: demo.then_some(demo_secret),
    })
}

/// Merges `over` into `base`: tables key by key, everything else replaced.
/// With `keep_demo`, a user `providers` array is appended to the demo one
/// instead of replacing it.
fn merge(base: &mut Table, over: &Table, keep_demo: bool) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o, false),
            (Some(Value::Array(b)), Value::Array(o)) if keep_demo && key == "providers" => {
                b.extend(o.iter().cloned());
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn names(config: &Table) -> Vec<String> {
    config
        .get("providers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn write_private(path: &Path, table: &Table) -> anyhow::Result<()> {
    let text = format!(
        "# Written by tokenvault-quickstart on every start; edit the --config file instead.\n{}",
        toml::to_string(table)?
    );
    replace_file(path, text.as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))
}
