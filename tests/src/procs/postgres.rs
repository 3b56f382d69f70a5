//! A private PostgreSQL cluster for one test: its own `initdb` in a temporary
//! directory, its own port on 127.0.0.1 and socket directory, trust
//! authentication, and fsync on (the point is durability across a crash).
//! A test may crash it ([`PgCluster::crash`]: SIGKILL to the postmaster and
//! every backend) and start it again ([`PgCluster::start`]) without
//! disturbing the machine's shared server on 5432.
//!
//! The tests run as root and `initdb` refuses root, so every server command
//! runs as the `postgres` OS user (`runuser -u postgres --`), and the
//! directory is given to that user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use sqlx::Connection;
use tempfile::TempDir;

use super::command::{run_async, run_with_timeout};
use super::{free_port, tail, workspace_root};
use crate::store::{OWNER, READER, WRITER};

/// How long `initdb`, `pg_ctl start` and the setup script may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The three role URLs of one tokenvault database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrls {
    /// `tokenvault_owner` (migrations, row counts).
    pub owner: String,
    /// `tokenvault_writer` (set-service).
    pub writer: String,
    /// `tokenvault_reader` (get-service).
    pub reader: String,
}

/// A private PostgreSQL cluster; crashed and removed when dropped.
#[derive(Debug)]
pub struct PgCluster {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    starts: u32,
}

impl PgCluster {
    /// `initdb`, configure, start, and wait until it accepts connections.
    pub async fn start_new() -> anyhow::Result<Self> {
        let bin = postgres_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("tvpg")
            .tempdir()
            .context("creating the cluster's directory")?;
        let as_postgres = rustix::process::geteuid().is_root();
        if as_postgres {
            let (uid, gid) = postgres_user()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .with_context(|| format!("giving {} to postgres", dir.path().display()))?;
        }
        let mut cluster = Self {
            dir,
            bin,
            port: free_port()?,
            as_postgres,
            starts: 0,
        };
        let data = cluster.data_dir();
        let mut initdb = cluster.command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            // The cluster's own files need no sync at creation; the server
            // runs with fsync on.
            .arg("--no-sync");
        run_async(initdb, COMMAND_TIMEOUT)
            .await?
            .success("initdb")?;
        let socket_dir = cluster.dir.path().to_owned();
        let settings = format!(
            "\n# tokenvault-tests\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{socket}'\nfsync = on\nsynchronous_commit = on\n\
             full_page_writes = on\nmax_connections = 60\nshared_buffers = 16MB\n\
             logging_collector = off\n",
            port = cluster.port,
            socket = socket_dir.display(),
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .with_context(|| format!("reading {}", conf.display()))?;
        text.push_str(&settings);
        std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        cluster.start().await?;
        Ok(cluster)
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server log (every run).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Everything the server logged.
    pub fn logs(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The superuser URL.
    pub fn admin_url(&self) -> String {
        self.url("postgres", "postgres")
    }

    /// `postgres://<role>@127.0.0.1:<port>/<db>`.
    pub fn url(&self, role: &str, db: &str) -> String {
        format!("postgres://{role}@127.0.0.1:{}/{db}", self.port)
    }

    /// How many times the server was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The postmaster's pid, from `postmaster.pid`, if that file exists.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Whether the postmaster runs.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some_and(alive)
    }

    /// Starts the server (after [`PgCluster::crash`] that includes crash
    /// recovery) and waits until it accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("PostgreSQL on port {} is already running", self.port);
        }
        self.starts += 1;
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "50", "start"]);
        let out = run_async(pg_ctl, COMMAND_TIMEOUT).await?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed ({}): {}{}\nserver log:\n{}",
                out.status,
                out.stdout,
                out.stderr,
                tail(&self.logs(), 30)
            );
        }
        // pg_ctl -w waited for readiness; confirm over TCP.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match sqlx::postgres::PgConnection::connect(&self.admin_url()).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(anyhow!(e).context(format!(
                        "PostgreSQL on port {} does not accept connections; log:\n{}",
                        self.port,
                        tail(&self.logs(), 30)
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Crashes the server: SIGKILL to the postmaster and to every process it
    /// started (backends, checkpointer, WAL writer), as a power cut would
    /// leave it. Committed transactions must survive ([`PgCluster::start`]
    /// runs crash recovery).
    pub fn crash(&self) -> anyhow::Result<()> {
        let Some(postmaster) = self.postmaster_pid().filter(|p| alive(*p)) else {
            return Ok(());
        };
        // Frozen first, so that it starts no backend meanwhile; then its
        // children (found while they are still its children), then itself.
        signal(postmaster, rustix::process::Signal::STOP)?;
        let children = children_of(postmaster);
        for child in &children {
            let _ = signal(*child, rustix::process::Signal::KILL);
        }
        signal(postmaster, rustix::process::Signal::KILL)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(postmaster) || children.iter().any(|c| alive(*c)) {
            if Instant::now() > deadline {
                bail!("PostgreSQL processes survived SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `pg_ctl stop -m fast` (a clean shutdown).
    pub async fn stop(&self) -> anyhow::Result<()> {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "30", "stop"]);
        run_async(pg_ctl, COMMAND_TIMEOUT)
            .await?
            .success("pg_ctl stop")
            .map(drop)
    }

    /// Creates the three tokenvault roles and database `dbname` with
    /// `deploy/postgres/setup.sql` (as `.ci/run` does; trust authentication,
    /// so the passwords are placeholders), then migrates it as the owner.
    pub async fn create_tokenvault_database(&self, dbname: &str) -> anyhow::Result<StoreUrls> {
        let script = workspace_root().join("deploy/postgres/setup.sql");
        let mut psql = Command::new(self.bin.join("psql"));
        psql.arg(self.admin_url())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-v", "owner_password=test-owner"])
            .args(["-v", "writer_password=test-writer"])
            .args(["-v", "reader_password=test-reader"])
            .arg("-v")
            .arg(format!("dbname={dbname}"))
            .arg("-f")
            .arg(&script);
        run_async(psql, COMMAND_TIMEOUT)
            .await?
            .success("psql -f deploy/postgres/setup.sql")?;
        let urls = StoreUrls {
            owner: self.url(OWNER, dbname),
            writer: self.url(WRITER, dbname),
            reader: self.url(READER, dbname),
        };
        tokenvault_store::migrate(&urls.owner)
            .await
            .context("migrating the tokenvault database")?;
        Ok(urls)
    }

    /// A command for the PostgreSQL program `program`, run as the postgres
    /// user when this process is root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // A crash is immediate and needs no one's cooperation; the data goes
        // with the directory.
        if self.crash().is_err() {
            let mut pg_ctl = self.command("pg_ctl");
            pg_ctl
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "stop"]);
            let _ = run_with_timeout(pg_ctl, Duration::from_secs(10));
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`
/// (`TOKENVAULT_TEST_PG_BIN` overrides).
pub fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TOKENVAULT_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .with_context(|| format!("{} (is PostgreSQL installed?)", root.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| anyhow!("no /usr/lib/postgresql/<version>/bin/initdb found"))
}

/// The uid and gid of the `postgres` OS user, from /etc/passwd.
fn postgres_user() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres"))
                .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
        })
        .ok_or_else(|| anyhow!("no postgres user in /etc/passwd"))
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_fields(&stat).is_some_and(|(state, _)| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The state and parent pid from a `/proc/<pid>/stat` line.
fn stat_fields(stat: &str) -> Option<(char, u32)> {
    // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The live processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| stat_fields(&s))
                .is_some_and(|(state, ppid)| ppid == parent && state != 'Z')
        })
        .collect()
}

fn signal(pid: u32, signal: rustix::process::Signal) -> anyhow::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| anyhow!("bad pid {pid}"))?;
    rustix::process::kill_process(pid, signal).with_context(|| format!("{signal:?} to {pid:?}"))
}
