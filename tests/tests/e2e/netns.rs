//! The network split, tested: web-frontend, set-service, get-service and a
//! worker each in a Linux network namespace of their own, joined by veth
//! links only where the design has a path (web-frontend → set-service,
//! get-service → set-service, worker → get-service). The real release
//! binaries of set-service and get-service run inside their namespaces; a
//! Python grpcio client, run inside the caller's namespace with the caller's
//! certificate, shows each designed path working over mutual TLS, and shows
//! that from web-frontend's namespace no connection to get-service can even be
//! opened. Skips, saying why, only where namespaces cannot be created.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenvault_tests::netns::Lab;

const SET_PORT: u16 = 7401;
const GET_PORT: u16 = 7402;
// Links: web–set, get–set, worker–get (/30 each).
const WEB_TO_SET: (&str, &str) = ("10.201.1.1/30", "10.201.1.2/30");
const GET_TO_SET: (&str, &str) = ("10.201.2.1/30", "10.201.2.2/30");
const WORKER_TO_GET: (&str, &str) = ("10.201.3.1/30", "10.201.3.2/30");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn release_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("release").join(name);
    assert!(
        path.is_file(),
        "{} missing: run scripts/build-release",
        path.display()
    );
    path
}

fn ip_of(cidr: &str) -> &str {
    cidr.split('/').next().unwrap()
}

fn pki(state: &Path, args: &[&str]) {
    let status = Command::new(release_bin("pki"))
        .arg("--state")
        .arg(state)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "pki {args:?}");
}

/// A service process inside a namespace, killed on drop.
struct InNs(Child);

impl Drop for InNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn probe(lab: &Lab, from: &str, address: &str, state: &Path, stem: &str) -> Value {
    let certs = state.join("certs");
    let out = lab
        .command(from, "python3")
        .arg(repo_root().join("tests/interop/netns_probe.py"))
        .arg(address)
        .arg(state.join("ca/bundle.pem"))
        .arg(certs.join(format!("{stem}.pem")))
        .arg(certs.join(format!("{stem}.key")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_serving(lab: &Lab, from: &str, address: &str, state: &Path, stem: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = probe(lab, from, address, state, stem);
        if answer["health"] == "SERVING" {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the service at {address} exited: {status}");
        }
        assert!(Instant::now() < deadline, "{address} not serving: {answer}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn web_frontend_cannot_reach_get_service_and_designed_paths_work() {
    let prefix = format!("tv{}", std::process::id() % 100_000);
    let Some(lab) = Lab::create(&prefix, &["web", "set", "get", "wrk"]).unwrap() else {
        return;
    };
    lab.link("web", WEB_TO_SET.0, "set", WEB_TO_SET.1).unwrap();
    lab.link("get", GET_TO_SET.0, "set", GET_TO_SET.1).unwrap();
    lab.link("wrk", WORKER_TO_GET.0, "get", WORKER_TO_GET.1)
        .unwrap();
    let (set_from_web, set_from_get) = (ip_of(WEB_TO_SET.1), ip_of(GET_TO_SET.1));
    let get_from_worker = ip_of(WORKER_TO_GET.1);
    let get_addresses = [ip_of(GET_TO_SET.0), get_from_worker];

    // Certificates name the addresses each service is reached at.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    pki(&state, &["init", "--trust-domain", "tokenvault.local"]);
    pki(
        &state,
        &[
            "issue",
            "set-service",
            "--ip",
            set_from_web,
            "--ip",
            set_from_get,
        ],
    );
    pki(
        &state,
        &[
            "issue",
            "get-service",
            "--ip",
            get_from_worker,
            "--ip",
            get_addresses[0],
        ],
    );
    pki(&state, &["issue", "web-frontend"]);
    pki(&state, &["issue", "worker", "--name", "demo"]);
    pki(&state, &["keygen"]);
    let s = |p: &str| state.join(p).display().to_string();
    let db = dir.path().join("tokenvault.db");
    let tls = |stem: &str| {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n",
            s(&format!("certs/{stem}.pem")),
            s(&format!("certs/{stem}.key")),
            s("ca/bundle.pem")
        )
    };
    let set_config = dir.path().join("set-service.toml");
    std::fs::write(
        &set_config,
        format!(
            "listen = \"0.0.0.0:{SET_PORT}\"\ntrust_domain = \"tokenvault.local\"\n\
             public_keys_dir = \"{}\"\nproviders = [\"demo\"]\n[store]\nurl = \"sqlite://{}\"\n{}",
            s("keys/public"),
            db.display(),
            tls("set-service")
        ),
    )
    .unwrap();
    let get_config = dir.path().join("get-service.toml");
    std::fs::write(
        &get_config,
        format!(
            "listen = \"0.0.0.0:{GET_PORT}\"\ntrust_domain = \"tokenvault.local\"\n\
             private_keys_dir = \"{}\"\npublic_keys_dir = \"{}\"\n\
             [store]\nurl = \"sqlite://{}\"\n[set_service]\naddress = \"{set_from_get}:{SET_PORT}\"\n\
             [[providers]]\nname = \"demo\"\ntoken_endpoint = \"https://provider.invalid/token\"\n\
             client_id = \"x\"\nclient_secret = \"y\"\n{}",
            s("keys/private"),
            s("keys/public"),
            db.display(),
            tls("get-service")
        ),
    )
    .unwrap();

    let start = |ns: &str, bin: &str, config: &Path| {
        let log = std::fs::File::create(dir.path().join(format!("{bin}.log"))).unwrap();
        InNs(
            lab.command(ns, release_bin(bin))
                .arg("--config")
                .arg(config)
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap(),
        )
    };
    // set-service first: it creates the SQLite file get-service opens read-only.
    let mut set = start("set", "set-service", &set_config);
    let set_addr = format!("{set_from_web}:{SET_PORT}");
    wait_serving(&lab, "web", &set_addr, &state, "web-frontend", &mut set.0);
    let mut get = start("get", "get-service", &get_config);
    let get_addr = format!("{get_from_worker}:{GET_PORT}");
    wait_serving(&lab, "wrk", &get_addr, &state, "worker-demo", &mut get.0);

    // Designed paths, over mutual TLS with each caller's own certificate.
    let web_to_set = probe(&lab, "web", &set_addr, &state, "web-frontend");
    assert_eq!(
        (web_to_set["tcp"].as_str(), web_to_set["health"].as_str()),
        (Some("connected"), Some("SERVING"))
    );
    let get_to_set = probe(
        &lab,
        "get",
        &format!("{set_from_get}:{SET_PORT}"),
        &state,
        "get-service",
    );
    assert_eq!(
        (get_to_set["tcp"].as_str(), get_to_set["health"].as_str()),
        (Some("connected"), Some("SERVING"))
    );
    let worker_to_get = probe(&lab, "wrk", &get_addr, &state, "worker-demo");
    assert_eq!(
        (
            worker_to_get["tcp"].as_str(),
            worker_to_get["health"].as_str()
        ),
        (Some("connected"), Some("SERVING"))
    );
    // A real worker call over the designed path: unknown account, so NOT_FOUND
    // from get-service (which answered after reading the store).
    let worker = lab
        .command("wrk", release_bin("tokenvault-worker"))
        .args(["--address", &get_addr, "--trust-domain", "tokenvault.local"])
        .arg("--cert")
        .arg(state.join("certs/worker-demo.pem"))
        .arg("--key")
        .arg(state.join("certs/worker-demo.key"))
        .arg("--ca")
        .arg(state.join("ca/bundle.pem"))
        .args(["token", "--account", "demo:nobody", "--provider", "demo"])
        .output()
        .unwrap();
    assert_eq!(
        worker.status.code(),
        Some(3),
        "exit 3 = unknown account: {}",
        String::from_utf8_lossy(&worker.stderr)
    );

    // web-frontend's namespace has no route to any of get-service's addresses:
    // the connection cannot even be opened, and a gRPC call is UNAVAILABLE.
    let web_routes = lab.routes("web").unwrap();
    assert!(!web_routes.contains("default"), "{web_routes}");
    for address in get_addresses {
        let answer = probe(
            &lab,
            "web",
            &format!("{address}:{GET_PORT}"),
            &state,
            "web-frontend",
        );
        assert_eq!(
            answer["tcp"], "ENETUNREACH",
            "web-frontend → get-service {address}: {answer}"
        );
        assert_eq!(answer["health"], "UNAVAILABLE", "{answer}");
    }
    // Nor can a worker reach set-service.
    let answer = probe(&lab, "wrk", &set_addr, &state, "worker-demo");
    assert_eq!(
        answer["tcp"], "ENETUNREACH",
        "worker → set-service: {answer}"
    );
    drop(get);
    drop(set);
}
