//! The files under `deploy/` work with the real services: every TOML config
//! there (the examples, the compose configs, the configs embedded in the
//! Kubernetes manifests) loads with the service's own loader; the systemd
//! units' `Environment=` overrides point the example configs at their
//! `LoadCredential=` files; and a credentials directory laid out as the units
//! ask starts set-service and get-service, whose plaintext health listeners
//! then answer a real gRPC health client (Python grpcio), as the kubelet's
//! `grpc:` probes in deploy/k8s would. get-service's rotation journal is
//! where each deployment keeps it (a StateDirectory, a named volume, a
//! PersistentVolume) and its `[shutdown]` settings load. deploy/check
//! validates the same files with linters and schemas.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use tokenvault_runtime::settings::ServiceConfig as _;

use tokenvault_tests::pki::TRUST_DOMAIN;
use tokenvault_tests::procs::free_port;
use tokenvault_tests::services::sqlite_url;
use tokenvault_tests::{TestPki, init_tracing, start_get_service, start_set_service};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(rel: &str) -> String {
    let path = deploy_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// The three services, by their config-file stem.
const SET: &str = "set-service";
const GET: &str = "get-service";
const WEB: &str = "web-frontend";

/// A config for each service, parsed with the service's own loader.
struct Configs {
    set: tokenvault_set_service::Config,
    get: tokenvault_get_service::Config,
    web: tokenvault_web_frontend::Config,
}

impl Configs {
    fn load(set: &str, get: &str, web: &str, env: impl Fn(&str) -> Option<String> + Copy) -> Self {
        Self {
            set: tokenvault_set_service::Config::from_toml(set, env)
                .unwrap_or_else(|e| panic!("set-service: {e}")),
            get: tokenvault_get_service::Config::from_toml(get, env)
                .unwrap_or_else(|e| panic!("get-service: {e}")),
            web: tokenvault_web_frontend::Config::from_toml(web, env)
                .unwrap_or_else(|e| panic!("web-frontend: {e}")),
        }
    }

    /// The provider catalogue is the same everywhere: set-service accepts
    /// exactly the providers that web-frontend connects and get-service
    /// refreshes.
    fn assert_one_catalogue(&self, what: &str) {
        let set: BTreeSet<&str> = self.set.providers.iter().map(String::as_str).collect();
        // (A client-credentials-only client serves no accounts.)
        let get: BTreeSet<&str> = self
            .get
            .providers
            .iter()
            .filter(|p| !p.client_credentials || set_has(&self.set.providers, &p.name))
            .map(|p| p.name.as_str())
            .collect();
        let web: BTreeSet<&str> = self.web.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            set, get,
            "{what}: set-service and get-service providers differ"
        );
        assert_eq!(
            set, web,
            "{what}: set-service and web-frontend providers differ"
        );
        let expected: BTreeSet<&str> = ["github", "google", "microsoft", "oidc"].into();
        assert_eq!(set, expected, "{what}");
    }
}

#[test]
fn the_import_example_loads_with_the_import_loader() {
    let config =
        tokenvault_import::ImportConfig::load(&deploy_dir().join("examples/import.toml")).unwrap();
    assert_eq!(config.set_service.address, "set.internal:7401");
    // The catalogue filled in the provider's endpoints.
    assert_eq!(config.providers[0].name, "google");
    assert_eq!(
        config.providers[0].issuer.as_deref(),
        Some("https://accounts.google.com")
    );
}

#[test]
fn example_configs_load_with_the_real_loaders() {
    let c = Configs::load(
        &read("examples/set-service.toml"),
        &read("examples/get-service.toml"),
        &read("examples/web-frontend.toml"),
        no_env,
    );
    c.assert_one_catalogue("deploy/examples");
    assert_eq!(c.set.service.listen.port(), 7401);
    assert_eq!(c.get.service.listen.port(), 7402);
    assert_eq!(c.web.service.listen.port(), 7403);
    assert_eq!(c.set.service.health_listen.map(|a| a.port()), Some(7411));
    assert_eq!(c.get.service.health_listen.map(|a| a.port()), Some(7412));
    assert!(c.set.store.url.starts_with("postgres://tokenvault_writer:"));
    assert!(c.get.store.url.starts_with("postgres://tokenvault_reader:"));
    // Each provider's refresh side names what the provider documents.
    let get: BTreeMap<&str, &tokenvault_oauth::ProviderConfig> = c
        .get
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    // The catalogue filled in what the examples leave out.
    assert_eq!(
        get["google"].issuer.as_deref(),
        Some("https://accounts.google.com")
    );
    assert_eq!(get["google"].keep_alive_days, Some(90.0));
    assert_eq!(
        get["github"].token_endpoint.as_deref(),
        Some("https://github.com/login/oauth/access_token")
    );
    assert_eq!(
        get["microsoft"].issuer.as_deref(),
        Some("https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0")
    );
    assert_eq!(get["microsoft"].keep_alive_days, Some(30.0));
    let web: BTreeMap<&str, &tokenvault_web_frontend::provider::ProviderConfig> = c
        .web
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    assert_eq!(web["google"].auth_params["access_type"], "offline");
    assert_eq!(web["microsoft"].subject_claim, "oid");
    assert_eq!(
        web["github"].user_endpoint.as_deref(),
        Some("https://api.github.com/user")
    );
    assert!(
        get["oidc"].issuer.is_some(),
        "the generic provider uses discovery"
    );
    // The systemd unit's StateDirectory= holds the journal.
    assert_eq!(
        c.get.rotation.journal_dir.as_deref(),
        Some(Path::new("/var/lib/tokenvault-get-service/journal"))
    );
    let shutdown = &c.get.service.shutdown;
    assert!(shutdown.grace_secs > shutdown.drain_secs);
    // The example account policy loads with get-service's own parser,
    // against the example's providers.
    let providers: Vec<&str> = get.keys().copied().collect();
    let policy = tokenvault_get_service::policy::Policy::parse(
        &read("examples/get-service-policy.toml"),
        &c.get.service.trust_domain,
        &providers,
    )
    .unwrap();
    assert_eq!(policy.rule_count(), 4);
}

#[test]
fn compose_configs_load_with_the_real_loaders() {
    let c = Configs::load(
        &read("compose/config/set-service.toml"),
        &read("compose/config/get-service.toml"),
        &read("compose/config/web-frontend.toml"),
        no_env,
    );
    c.assert_one_catalogue("deploy/compose/config");
    // The database passwords come from PGPASSFILE, never from the config.
    for url in [&c.set.store.url, &c.get.store.url] {
        let parsed = url::Url::parse(url).unwrap();
        assert_eq!(parsed.password(), None, "{url}");
    }
    assert_eq!(c.get.set_service.address, "set-service:7401");
    assert_eq!(c.web.set_service.address, "set-service:7401");
    // On the named volume the replicas share (compose.yaml mounts it at
    // /var/lib/tokenvault).
    assert_eq!(
        c.get.rotation.journal_dir.as_deref(),
        Some(Path::new("/var/lib/tokenvault/journal"))
    );
}

/// The TOML documents embedded in deploy/k8s as `<name>.toml: |` block
/// scalars (ConfigMap `data` or Secret `stringData`), by file name.
fn k8s_embedded_tomls() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let Some(name) = trimmed.strip_suffix(".toml: |") else {
                continue;
            };
            let key_indent = line.len() - trimmed.len();
            let body: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
                .copied()
                .collect();
            let indent = body
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            let toml: String = body
                .iter()
                .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
                .collect();
            assert!(
                found.insert(format!("{name}.toml"), toml).is_none(),
                "{name}.toml is embedded twice"
            );
        }
    }
    found
}

#[test]
fn kubernetes_configs_load_with_the_real_loaders() {
    let tomls = k8s_embedded_tomls();
    let names: Vec<&str> = tomls.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["get-service.toml", "set-service.toml", "web-frontend.toml"]
    );
    let c = Configs::load(
        &tomls["set-service.toml"],
        &tomls["get-service.toml"],
        &tomls["web-frontend.toml"],
        no_env,
    );
    c.assert_one_catalogue("deploy/k8s");
    // The kubelet's grpc probes reach the plaintext health listeners on the
    // pod's address; the mTLS ports are the Services' ports.
    assert_eq!(
        c.set.service.health_listen,
        Some("0.0.0.0:7411".parse().unwrap())
    );
    assert_eq!(
        c.get.service.health_listen,
        Some("0.0.0.0:7412".parse().unwrap())
    );
    assert_eq!(c.set.service.listen, "0.0.0.0:7401".parse().unwrap());
    assert_eq!(c.get.service.listen, "0.0.0.0:7402".parse().unwrap());
    assert_eq!(c.web.service.listen, "0.0.0.0:7403".parse().unwrap());
    assert_eq!(
        c.get.private_keys_dir,
        Path::new("/etc/tokenvault/private-keys")
    );
    // Inside each pod's PersistentVolume (mounted at /var/lib/tokenvault);
    // the StatefulSet's terminationGracePeriodSeconds covers drain + grace.
    assert_eq!(
        c.get.rotation.journal_dir.as_deref(),
        Some(Path::new("/var/lib/tokenvault/journal"))
    );
    assert_eq!(
        (
            c.get.service.shutdown.drain_secs,
            c.get.service.shutdown.grace_secs
        ),
        (5, 25)
    );
}

/// One systemd unit with its drop-ins: what it loads as credentials and the
/// environment it sets.
#[derive(Debug)]
struct Unit {
    exec_start: String,
    /// Credential id -> source path.
    credentials: BTreeMap<String, String>,
    /// Variable -> value (with `%d` still in it).
    environment: BTreeMap<String, String>,
    /// `StateDirectory=` names (under /var/lib).
    state_directories: Vec<String>,
}

impl Unit {
    fn read(name: &str) -> Self {
        let dir = deploy_dir().join("systemd");
        let mut files = vec![dir.join(name)];
        if let Ok(entries) = std::fs::read_dir(dir.join(format!("{name}.d"))) {
            let mut dropins: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
            dropins.sort();
            files.extend(dropins);
        }
        let mut unit = Unit {
            exec_start: String::new(),
            credentials: BTreeMap::new(),
            environment: BTreeMap::new(),
            state_directories: Vec::new(),
        };
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines().map(str::trim) {
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                match key {
                    "ExecStart" => value.clone_into(&mut unit.exec_start),
                    "LoadCredential" => {
                        let (id, source) = value.split_once(':').unwrap();
                        unit.credentials.insert(id.to_owned(), source.to_owned());
                    }
                    "Environment" => {
                        let (var, val) = value.split_once('=').unwrap();
                        assert!(!val.contains(' '), "{line}: one assignment per line");
                        unit.environment.insert(var.to_owned(), val.to_owned());
                    }
                    "StateDirectory" => unit
                        .state_directories
                        .extend(value.split_whitespace().map(str::to_owned)),
                    _ => {}
                }
            }
        }
        unit
    }

    /// The unit's environment with `%d` replaced by `creds`.
    fn env_in(&self, creds: &Path) -> BTreeMap<String, String> {
        let d = creds.display().to_string();
        self.environment
            .iter()
            .map(|(k, v)| (k.clone(), v.replace("%d", &d)))
            .collect()
    }

    /// The config path ExecStart passes with `--config`, `%d` replaced.
    fn config_path(&self, creds: &Path) -> PathBuf {
        let arg = self
            .exec_start
            .split_whitespace()
            .skip_while(|a| *a != "--config")
            .nth(1)
            .unwrap_or_else(|| panic!("ExecStart {} has no --config", self.exec_start));
        PathBuf::from(arg.replace("%d", &creds.display().to_string()))
    }
}

#[test]
fn systemd_units_point_the_example_configs_at_their_credentials() {
    let creds = Path::new("/run/credentials/unit.service");
    let units: BTreeMap<&str, Unit> = [SET, GET, WEB]
        .into_iter()
        .map(|s| (s, Unit::read(&format!("tokenvault-{s}.service"))))
        .collect();
    for (svc, unit) in &units {
        assert_eq!(unit.config_path(creds), creds.join(format!("{svc}.toml")));
        assert_eq!(
            unit.credentials[&format!("{svc}.toml")],
            format!("/etc/tokenvault/{svc}/{svc}.toml"),
            "{svc}: the config is itself a credential (it holds secrets)"
        );
        for value in unit.env_in(creds).values() {
            if let Some(id) = value.strip_prefix(&format!("{}/", creds.display())) {
                assert!(
                    unit.credentials.contains_key(id),
                    "{svc}: {value} is not loaded"
                );
            }
        }
    }
    let lookup = |svc: &'static str| {
        let env = units[svc].env_in(creds);
        move |k: &str| env.get(k).cloned()
    };
    let set_env = lookup(SET);
    let set =
        tokenvault_set_service::Config::from_toml(&read("examples/set-service.toml"), &set_env)
            .unwrap();
    let get_env = lookup(GET);
    let get =
        tokenvault_get_service::Config::from_toml(&read("examples/get-service.toml"), &get_env)
            .unwrap();
    let web_env = lookup(WEB);
    let web =
        tokenvault_web_frontend::Config::from_toml(&read("examples/web-frontend.toml"), &web_env)
            .unwrap();
    for tls in [&set.service.tls, &get.service.tls, &web.service.tls] {
        assert_eq!(tls.cert, creds.join("tls.crt"));
        assert_eq!(tls.key, creds.join("tls.key"));
        assert_eq!(tls.ca, creds.join("ca.crt"));
    }
    // get-service's private keys are the *.pem credentials, loaded one by one
    // (a drop-in), and nothing else it loads ends in .pem.
    assert_eq!(get.private_keys_dir, creds);
    let pem: Vec<&String> = units[GET]
        .credentials
        .keys()
        .filter(|id| id.ends_with(".pem"))
        .collect();
    assert!(!pem.is_empty());
    for id in pem {
        assert!(
            units[GET].credentials[id].starts_with("/etc/tokenvault/get-service/private-keys/")
        );
    }
    // get-service writes only its rotation journal, inside the unit's
    // StateDirectory= (owned by the dynamic user, kept across restarts).
    let journal = get.rotation.journal_dir.as_deref().unwrap();
    assert!(
        units[GET]
            .state_directories
            .iter()
            .any(|d| journal.starts_with(Path::new("/var/lib").join(d))),
        "{} is not in a StateDirectory= of {:?}",
        journal.display(),
        units[GET].state_directories
    );
    assert_eq!(web.session.cookie_key_file, Some(creds.join("cookie.key")));
    assert_eq!(web.links.secret_file, Some(creds.join("link-secret")));
    // Public keys are not secret: read from /etc/tokenvault/public-keys, the
    // one part of /etc/tokenvault the units bind into their sandbox.
    for dir in [
        &set.public_keys_dir,
        &get.public_keys_dir,
        &web.public_keys_dir,
    ] {
        assert_eq!(dir, Path::new("/etc/tokenvault/public-keys"));
    }
}

/// Lays out what a unit's `LoadCredential=` lines load, as systemd does
/// (one file per credential, mode 0400), from a fake root holding the files
/// at their /etc/tokenvault paths.
fn load_credentials(unit: &Unit, root: &Path, creds: &Path) {
    std::fs::create_dir_all(creds).unwrap();
    for (id, source) in &unit.credentials {
        let from = root.join(source.trim_start_matches('/'));
        let to = creds.join(id);
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
}

fn place(root: &Path, path: &str, from: &Path) {
    let to = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
}

/// Asks the plaintext gRPC health listener at `address` for each service's
/// status with Python grpcio's health client (as a kubelet grpc probe does).
async fn health(address: String, services: &[&str]) -> Result<String, String> {
    const SCRIPT: &str = r#"
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as channel:
    grpc.channel_ready_future(channel).result(timeout=30)
    stub = health_pb2_grpc.HealthStub(channel)
    for service in sys.argv[2:]:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        print(service or "<server>", health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
"#;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut command = Command::new(&python);
    command.arg("-c").arg(SCRIPT).arg(address).args(services);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_credentials_start_set_service_and_get_service() {
    init_tracing();
    let pki = TestPki::new().unwrap();
    let set_files = pki.issue(tokenvault_tls::Role::SetService, None).unwrap();
    let get_files = pki.issue(tokenvault_tls::Role::GetService, None).unwrap();
    let scratch = pki.scratch();
    let root = scratch.join("root");
    let kid = pki.kid.clone();

    // The files at the paths the units load them from.
    let examples = deploy_dir().join("examples");
    place(&root, "/etc/tokenvault/ca.crt", &set_files.ca);
    for (svc, files) in [(SET, &set_files), (GET, &get_files)] {
        place(
            &root,
            &format!("/etc/tokenvault/{svc}/{svc}.toml"),
            &examples.join(format!("{svc}.toml")),
        );
        place(
            &root,
            &format!("/etc/tokenvault/{svc}/tls.crt"),
            &files.cert,
        );
        place(&root, &format!("/etc/tokenvault/{svc}/tls.key"), &files.key);
    }
    place(
        &root,
        &format!("/etc/tokenvault/get-service/private-keys/{kid}.pem"),
        &pki.private_keys_dir().join(format!("{kid}.pem")),
    );
    place(
        &root,
        &format!("/etc/tokenvault/public-keys/{kid}.pem"),
        &pki.public_keys_dir().join(format!("{kid}.pem")),
    );
    let public_keys = root
        .join("etc/tokenvault/public-keys")
        .display()
        .to_string();

    // set-service, from its credentials directory. The test overrides only
    // what differs on this machine: trust domain, ports, store, key paths.
    let set_unit = Unit::read("tokenvault-set-service.service");
    let set_creds = scratch.join("credentials/tokenvault-set-service.service");
    load_credentials(&set_unit, &root, &set_creds);
    let set_health = free_port().unwrap();
    let mut env = set_unit.env_in(&set_creds);
    env.insert("TOKENVAULT_SET_TRUST_DOMAIN".into(), TRUST_DOMAIN.into());
    env.insert(
        "TOKENVAULT_SET_HEALTH_LISTEN".into(),
        format!("127.0.0.1:{set_health}"),
    );
    env.insert("TOKENVAULT_SET_STORE_URL".into(), sqlite_url(&scratch));
    env.insert("TOKENVAULT_SET_PUBLIC_KEYS_DIR".into(), public_keys.clone());
    let config = tokenvault_set_service::Config::load(&set_unit.config_path(&set_creds), |k| {
        env.get(k).cloned()
    })
    .unwrap();
    let set = start_set_service(config).await.unwrap();
    let reply = health(
        format!("127.0.0.1:{set_health}"),
        &["", "tokenvault.v1.SetService"],
    )
    .await;
    let set_port = set.addr.port();
    let reply = match reply {
        Ok(r) => r,
        Err(e) => panic!("set-service health: {e}; service: {:?}", set.stop().await),
    };
    assert_eq!(
        reply,
        "<server> SERVING\ntokenvault.v1.SetService SERVING\n"
    );

    // get-service: the drop-in loads the private key as <kid>.pem beside the
    // config and the TLS files, and %d is its private_keys_dir.
    let mut get_unit = Unit::read("tokenvault-get-service.service");
    get_unit.credentials = get_unit
        .credentials
        .into_iter()
        .map(|(id, source)| {
            (
                id.replace("REPLACE-WITH-KID", &kid),
                source.replace("REPLACE-WITH-KID", &kid),
            )
        })
        .collect();
    let get_creds = scratch.join("credentials/tokenvault-get-service.service");
    load_credentials(&get_unit, &root, &get_creds);
    let get_health = free_port().unwrap();
    let mut env = get_unit.env_in(&get_creds);
    env.insert("TOKENVAULT_GET_TRUST_DOMAIN".into(), TRUST_DOMAIN.into());
    env.insert(
        "TOKENVAULT_GET_HEALTH_LISTEN".into(),
        format!("127.0.0.1:{get_health}"),
    );
    env.insert("TOKENVAULT_GET_STORE_URL".into(), sqlite_url(&scratch));
    env.insert("TOKENVAULT_GET_PUBLIC_KEYS_DIR".into(), public_keys);
    env.insert(
        "TOKENVAULT_GET_SET_SERVICE_ADDRESS".into(),
        format!("localhost:{set_port}"),
    );
    // The journal where systemd would put the StateDirectory= (/var/lib),
    // here under the scratch directory.
    let example = tokenvault_get_service::Config::load(&get_unit.config_path(&get_creds), no_env)
        .unwrap()
        .rotation
        .journal_dir
        .unwrap();
    let state_root = scratch.join("var-lib");
    let journal = state_root.join(example.strip_prefix("/var/lib").unwrap());
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        journal.parent().unwrap(),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    env.insert(
        "TOKENVAULT_GET_JOURNAL_DIR".into(),
        journal.display().to_string(),
    );
    let mut config = tokenvault_get_service::Config::load(&get_unit.config_path(&get_creds), |k| {
        env.get(k).cloned()
    })
    .unwrap();
    // Providers found by OIDC discovery would be asked at start-up, and this
    // machine reaches no provider: keep the ones with a configured endpoint.
    config.providers.retain(|p| p.issuer.is_none());
    assert!(!config.providers.is_empty());
    let get = start_get_service(config).await.unwrap();
    let reply = match health(
        format!("127.0.0.1:{get_health}"),
        &["", "tokenvault.v1.GetService"],
    )
    .await
    {
        Ok(r) => r,
        Err(e) => panic!("get-service health: {e}; service: {:?}", get.stop().await),
    };
    assert_eq!(
        reply,
        "<server> SERVING\ntokenvault.v1.GetService SERVING\n"
    );
    // get-service made the journal directory, owner-only.
    let mode = std::fs::metadata(&journal).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", journal.display());

    get.stop().await.unwrap();
    set.stop().await.unwrap();
}

fn set_has(providers: &[String], name: &str) -> bool {
    providers.iter().any(|p| p == name)
}
