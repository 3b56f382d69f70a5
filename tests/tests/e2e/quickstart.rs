//! The quick start, as a newcomer runs it: `scripts/quickstart` in a temporary
//! directory comes up with set-service, get-service, web-frontend and the demo
//! authorization server as separate processes; the signup flow is clicked
//! through (HTTP level) at the demo server; the worker command it printed
//! fetches an access token that the demo server's userinfo accepts; Ctrl-C
//! stops everything; and a second run reuses the state, with the account
//! still connected.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use tokenvault_store::StoreAdmin;
use tokenvault_tests::store::{Backend, TestStore};
use tokenvault_tests::web::WebBrowser;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A base port with the next three free too.
fn free_port_base() -> u16 {
    for _ in 0..50 {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base < 60000 && (0..4).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no four consecutive free ports");
}

/// The running quick start: its own process group, killed on drop.
struct QuickStart {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl QuickStart {
    fn start(dir: &Path, port_base: u16, extra: &[&str]) -> Self {
        let mut child = Command::new("bash")
            .arg(repo_root().join("scripts/quickstart"))
            .arg("--state")
            .arg(dir.join("state"))
            .arg("--port-base")
            .arg(port_base.to_string())
            .args(extra)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("quickstart| {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        QuickStart {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads output until a line contains `needle` (the release binaries are
    /// already built by the setup script, so this is quick).
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no {needle:?} from the quick start ({e}); saw {:#?}",
                    self.seen
                ),
            }
        }
    }

    fn pgid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap()
    }

    /// Ctrl-C as a terminal sends it: SIGINT to the whole process group.
    fn interrupt(&mut self) -> std::process::ExitStatus {
        kill_process_group(self.pgid(), Signal::INT).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the quick start did not stop on Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for QuickStart {
    fn drop(&mut self) {
        let _ = kill_process_group(self.pgid(), Signal::KILL);
        let _ = self.child.wait();
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Unescapes the five characters maud escapes.
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden fields of the demo server's consent form.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input")
        .skip(1)
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| {
            let attr = |name: &str| {
                let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
                let end = tag[start..].find('"')? + start;
                Some(unescape(&tag[start..end]))
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

/// Signs in at the demo authorization server as `user` and allows; returns
/// the callback URL it redirects to.
async fn allow_at_demo_server(authorization_url: &str, user: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(authorization_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("evelopment only"),
        "the demo server says it is for development only"
    );
    let mut form = hidden_fields(&html);
    form.push(("username".into(), user.into()));
    form.push(("decision".into(), "allow".into()));
    let origin = url::Url::parse(authorization_url)
        .unwrap()
        .origin()
        .ascii_serialization();
    let answer = http
        .post(
            url::Url::parse(authorization_url)
                .unwrap()
                .join("/authorize")
                .unwrap(),
        )
        .header("origin", origin)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303, "{:?}", answer.text().await);
    answer.headers()["location"].to_str().unwrap().to_owned()
}

/// Runs the worker command the quick start printed, in `dir`.
fn run_printed_worker_command(line: &str, dir: &Path) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(words[0].ends_with("tokenvault-worker"), "{line}");
    let output = Command::new(words[0])
        .args(&words[1..])
        .arg("--json")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "worker failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

async fn userinfo_sub(port: u16, access_token: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["sub"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_serves_the_flow_end_to_end_and_reuses_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_base();
    let (web_port, demo_port) = (base + 2, base + 3);

    let mut qs = QuickStart::start(dir.path(), base, &[]);
    let made = qs.wait_for("Making the state directory", Duration::from_secs(120));
    assert!(made.contains(&dir.path().display().to_string()));
    let open = qs.wait_for("Open http://", Duration::from_secs(120));
    assert!(
        open.contains(&format!("http://127.0.0.1:{web_port}/")),
        "{open}"
    );
    let command = qs.wait_for("token --account", Duration::from_secs(10));
    qs.wait_for("Ctrl-C stops everything", Duration::from_secs(10));
    for f in [
        "ca/ca.key",
        "certs/get-service.key",
        "tokenvault.db",
        "secrets/web-cookie.key",
    ] {
        assert!(dir.path().join("state").join(f).exists(), "state/{f}");
    }
    assert!(
        std::fs::read_dir(dir.path().join("state/keys/private"))
            .unwrap()
            .count()
            == 1,
        "one RSA key pair"
    );

    // Click through the signup flow at the demo authorization server.
    let mut browser = WebBrowser::new(&format!("http://127.0.0.1:{web_port}")).unwrap();
    let home = browser.get("/").await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(
        home.0.body.contains("/connect/demo"),
        "the home page offers the demo provider"
    );
    let authorization_url = browser.start("demo", "").await.unwrap();
    assert!(authorization_url.starts_with(&format!("http://127.0.0.1:{demo_port}/authorize?")));
    let callback = allow_at_demo_server(&authorization_url, "alice").await;
    let connected = browser.get(&callback).await.unwrap();
    assert_eq!(
        connected.kind().as_deref(),
        Some("connected"),
        "{:?}",
        connected.error_code()
    );
    assert_eq!(connected.field("account").as_deref(), Some("demo:alice"));

    // The quick start prints the exact command for the account just connected.
    qs.wait_for("Connected demo:alice at demo", Duration::from_secs(10));
    let exact = qs.wait_for("token --account", Duration::from_secs(5));
    assert_eq!(exact.trim(), command.trim());
    // The printed worker command fetches a token the provider accepts.
    let command = command.trim().to_owned();
    assert!(
        command.contains("--account demo:alice --provider demo"),
        "{command}"
    );
    let token = run_printed_worker_command(&command, dir.path());
    assert_eq!(userinfo_sub(demo_port, &token).await, "alice");

    // set-service wrote the audit table in the SQLite store; get-service,
    // which keeps SQLite read-only, only its JSON audit log.
    let db = format!(
        "sqlite://{}",
        dir.path().join("state/tokenvault.db").display()
    );
    let rows = audit_rows_until(&db, "StoreRefreshToken").await;
    let stored = expected_row(
        "set-service",
        "StoreRefreshToken",
        "/web-frontend",
        "demo:alice",
    );
    assert!(rows.contains(&stored), "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == "set-service"), "{rows:?}");
    // Log lines reach the file within get-service's flush interval (50 ms).
    let get_log_path = dir.path().join("state/logs/get-service.log");
    let audited = |log: &str| {
        log.lines().any(|l| {
            l.starts_with('{')
                && l.contains(r#""rpc":"GetAccessToken""#)
                && l.contains(r#""outcome":"ok""#)
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !audited(&std::fs::read_to_string(&get_log_path).unwrap())
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        audited(&std::fs::read_to_string(&get_log_path).unwrap()),
        "no GetAccessToken audit line in get-service's log"
    );

    // SQLite is one host, one get-service: a second one on the quick
    // start's store (on another port) is refused at start, saying why.
    let second = Command::new(tokenvault_tests::procs::binary("get-service").unwrap())
        .arg("--config")
        .arg(dir.path().join("state/get-service.toml"))
        .env("TOKENVAULT_GET_LISTEN", "127.0.0.1:0")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&second.stderr).into_owned()
        + &String::from_utf8_lossy(&second.stdout);
    assert!(!second.status.success(), "{said}");
    assert!(
        said.contains("another get-service is already serving this SQLite store"),
        "{said}"
    );
    // The first one still serves.
    let token = run_printed_worker_command(&command, dir.path());
    assert_eq!(userinfo_sub(demo_port, &token).await, "alice");

    // Ctrl-C stops every process.
    let status = qs.interrupt();
    assert!(status.success(), "quick start exit status {status}");
    for port in base..base + 4 {
        assert!(!listening(port), "port {port} still open after Ctrl-C");
    }
    drop(qs);

    // The next run reuses the state: no new CA, the account still connected.
    let mut again = QuickStart::start(dir.path(), base, &[]);
    again.wait_for("Ctrl-C stops everything", Duration::from_secs(120));
    assert!(
        !again
            .seen
            .iter()
            .any(|l| l.contains("Making the state directory")),
        "the second run made a new state directory"
    );
    let token = run_printed_worker_command(&command, dir.path());
    assert_eq!(userinfo_sub(demo_port, &token).await, "alice");
    assert!(again.interrupt().success());
}

/// `--config` with PostgreSQL: the quick start runs the migrations as the
/// owner (`set-service migrate`), and the same processes store in and read
/// from PostgreSQL (the demo provider stands in for a real one, which cannot
/// be reached from here; `demo = true` keeps it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_with_a_config_file_runs_against_postgres() {
    let store = TestStore::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quickstart.toml");
    std::fs::write(
        &config,
        format!(
            "demo = true\n[store]\nowner_url = \"{}\"\nwriter_url = \"{}\"\nreader_url = \"{}\"\n",
            store.owner_url, store.writer_url, store.reader_url
        ),
    )
    .unwrap();
    let base = free_port_base();
    let (web_port, demo_port) = (base + 2, base + 3);
    let mut qs = QuickStart::start(dir.path(), base, &["--config", config.to_str().unwrap()]);
    qs.wait_for("Ctrl-C stops everything", Duration::from_secs(120));
    let set_config = std::fs::read_to_string(dir.path().join("state/set-service.toml")).unwrap();
    assert!(set_config.contains("postgres://"), "{set_config}");
    assert!(
        !dir.path().join("state/tokenvault.db").exists(),
        "no SQLite file"
    );

    let mut browser = WebBrowser::new(&format!("http://127.0.0.1:{web_port}")).unwrap();
    let authorization_url = browser.start("demo", "").await.unwrap();
    let callback = allow_at_demo_server(&authorization_url, "pat").await;
    let connected = browser.get(&callback).await.unwrap();
    assert_eq!(connected.field("account").as_deref(), Some("demo:pat"));
    qs.wait_for("Connected demo:pat at demo", Duration::from_secs(10));
    let command = qs.wait_for("token --account", Duration::from_secs(5));
    let token = run_printed_worker_command(command.trim(), dir.path());
    assert_eq!(userinfo_sub(demo_port, &token).await, "pat");

    // Both gRPC services wrote the audit table, with their own roles.
    let rows = audit_rows_until(&store.owner_url, "GetAccessToken").await;
    assert!(
        rows.contains(&expected_row(
            "set-service",
            "StoreRefreshToken",
            "/web-frontend",
            "demo:pat"
        )),
        "{rows:?}"
    );
    assert!(
        rows.contains(&expected_row(
            "get-service",
            "GetAccessToken",
            "/worker/demo",
            "demo:pat"
        )),
        "{rows:?}"
    );

    // The sealed token is in PostgreSQL.
    let admin = StoreAdmin::connect(&store.owner_url).await.unwrap();
    assert_eq!(admin.count_rows().await.unwrap().sealed_tokens, 1);
    admin.close().await;
    assert!(qs.interrupt().success());
}

/// (service, action, caller's SPIFFE ID suffix, account, outcome) of an audit row.
type AuditRow = (String, String, String, String, String);

fn expected_row(service: &str, action: &str, caller_suffix: &str, account: &str) -> AuditRow {
    (
        service.to_owned(),
        action.to_owned(),
        caller_suffix.to_owned(),
        account.to_owned(),
        "ok".to_owned(),
    )
}

/// The audit table's rows (caller cut to its path), once one for `action`
/// is there (rows are written off the request path), within 10 s.
async fn audit_rows_until(url: &str, action: &str) -> Vec<AuditRow> {
    use sqlx::Connection;
    const SELECT: &str =
        "SELECT service, action, caller, account, outcome FROM audit_events ORDER BY id";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<AuditRow> = if url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_as(SELECT).fetch_all(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as(SELECT).fetch_all(&mut c).await.unwrap()
        };
        let rows: Vec<AuditRow> = rows
            .into_iter()
            .map(|(service, action, caller, account, outcome)| {
                let path = caller.splitn(4, '/').nth(3).map(|p| format!("/{p}"));
                (service, action, path.unwrap_or(caller), account, outcome)
            })
            .collect();
        if rows.iter().any(|r| r.1 == action) || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
