//! The key-rotation commands as operators run them: the release
//! `get-service` binary's `reseal` and `retire-key`, with get-service's own
//! config file, against set-service and PostgreSQL. The first `reseal` is
//! killed (SIGKILL) part-way; `retire-key` then refuses with the count left;
//! a second `reseal` finishes the rest; `retire-key` refuses while the public
//! half is still deployed, then removes the private key; and every token
//! opens under the new key alone.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenvault_opener::PrivateKeyRing;
use tokenvault_seal::PublicKeySet;
use tokenvault_store::{Latest, TokenReader};
use tokenvault_tests::procs::{binary, toml_path, toml_string};
use tokenvault_tests::store::Backend;
use tokenvault_tests::system::{Options, System};
use tokenvault_tls::Role;

use super::{
    SECRET_PREFIX, SYNTHETIC_PROVIDER, counts_by_kid, rand_u64, set_client, stop_get_service,
    store_all,
};

/// get-service's config file for the commands: its identity, reader role,
/// keys and set-service; the provider is never called by them.
fn write_config(system: &System, kid2: &str, path: &Path) {
    let tls = system.pki.issue(Role::GetService, None).unwrap();
    let crl = tls
        .crl
        .as_deref()
        .map_or_else(String::new, |c| format!("crl = {}\n", toml_path(c)));
    let text = format!(
        "listen = \"127.0.0.1:0\"\n\
         trust_domain = {td}\n\
         private_keys_dir = {private}\n\
         public_keys_dir = {public}\n\
         sealing_kid = {kid2}\n\
         [tls]\ncert = {cert}\nkey = {key}\nca = {ca}\n{crl}\
         [store]\nurl = {store}\n\
         [set_service]\naddress = {set}\n\
         [[providers]]\nname = \"{SYNTHETIC_PROVIDER}\"\n\
         token_endpoint = \"http://127.0.0.1:9/token\"\n\
         client_id = \"reseal-test\"\nclient_secret = \"unused\"\n",
        td = toml_string(tokenvault_tests::pki::TRUST_DOMAIN),
        private = toml_path(&system.pki.private_keys_dir()),
        public = toml_path(&system.pki.public_keys_dir()),
        kid2 = toml_string(kid2),
        cert = toml_path(&tls.cert),
        key = toml_path(&tls.key),
        ca = toml_path(&tls.ca),
        store = toml_string(&system.store.reader_url),
        set = toml_string(&system.set.address()),
    );
    std::fs::write(path, text).unwrap();
}

/// Runs `get-service <args> --config <config>` to its end: (success, stdout
/// and stderr).
fn run(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary("get-service").unwrap())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("TOKENVAULT_LOG", "info")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Starts `get-service reseal` and SIGKILLs it at its first progress line
/// that reports some tokens re-sealed; returns that line.
fn reseal_killed_part_way(config: &Path) -> String {
    let mut child = Command::new(binary("get-service").unwrap())
        .args(["reseal", "--concurrency", "2", "--config"])
        .arg(config)
        .env("TOKENVAULT_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut killed_at = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let progressed = line.contains("re-sealing")
            && line.contains("resealed")
            && !line.contains("resealed 0 ");
        if progressed {
            killed_at = Some(line);
            break;
        }
        let over =
            line.contains("re-seal finished") || started.elapsed() > Duration::from_secs(120);
        seen.push(line);
        if over {
            break;
        }
    }
    // Already gone if it finished: then only the wait matters.
    let _ = child.kill();
    child.wait().unwrap();
    killed_at.unwrap_or_else(|| panic!("no progress line to kill it at:\n{}", seen.join("\n")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reseal_command_killed_part_way_resumes_and_retire_key_waits_for_it() {
    let mut system = System::start(Options {
        backend: Backend::Postgres,
        ..Options::default()
    })
    .await
    .unwrap();
    let kid1 = system.pki.kid.clone();
    stop_get_service(&mut system).await;
    // 1500 tokens under key 1 (enough for several progress lines).
    let web = set_client(&system, Role::WebFrontend);
    let sealer = Arc::new(PublicKeySet::load_dir(&system.pki.public_keys_dir()).unwrap());
    let plaintexts: BTreeMap<String, String> = (0..1500)
        .map(|i| {
            (
                format!("cli-{i:05}"),
                format!("{SECRET_PREFIX}{i}-{:016x}", rand_u64()),
            )
        })
        .collect();
    store_all(&web, &sealer, &plaintexts).await;

    // Key 2; set-service restarted to know it (the runbook's first step).
    let kid2 = system.pki.state().keygen(false).unwrap().kid;
    system.stop_set_service().await.unwrap();
    system.restart_set_service().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("get-service.toml");
    write_config(&system, &kid2, &config);

    // The first run, SIGKILLed part-way: nothing is lost or half-done.
    let config_for_kill = config.clone();
    let progress = tokio::task::spawn_blocking(move || reseal_killed_part_way(&config_for_kill))
        .await
        .unwrap();
    // Let calls that were in flight when it died settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = counts_by_kid(&system).await;
    let (left, done) = (counts[&kid1], counts.get(&kid2).copied().unwrap_or(0));
    eprintln!("killed at: {progress}\nthen {done} under key 2, {left} under key 1");
    assert_eq!(left + done, 1500, "{counts:?}");
    assert!(left > 0 && done > 0, "{counts:?}");

    // retire-key refuses with the count left; the key file stays.
    let (ok, out) = {
        let config = config.clone();
        let kid1 = kid1.clone();
        tokio::task::spawn_blocking(move || run(&config, &["retire-key", &kid1]))
            .await
            .unwrap()
    };
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("{left} stored tokens")), "{out}");
    let private1 = system.pki.private_keys_dir().join(format!("{kid1}.pem"));
    assert!(private1.is_file());

    // The second run does only what is left.
    let (ok, out) = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || run(&config, &["reseal"]))
            .await
            .unwrap()
    };
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("resealed {left} of {left}, skipped 0, failed 0")),
        "{out}"
    );
    assert!(
        !out.contains(SECRET_PREFIX),
        "a token in the command's output"
    );
    eprintln!("second run: {}", out.lines().last().unwrap_or_default());
    assert_eq!(counts_by_kid(&system).await.get(&kid1), None);

    // retire-key: refused while the public half is deployed, then done.
    let retire = |config: std::path::PathBuf, kid: String| {
        tokio::task::spawn_blocking(move || run(&config, &["retire-key", &kid]))
    };
    let (ok, out) = retire(config.clone(), kid1.clone()).await.unwrap();
    assert!(!ok && out.contains("its public key"), "{out}");
    std::fs::remove_file(system.pki.public_keys_dir().join(format!("{kid1}.pem"))).unwrap();
    let (ok, out) = retire(config.clone(), kid1.clone()).await.unwrap();
    assert!(ok, "{out}");
    assert!(!private1.exists());

    // Every token opens under key 2 alone, to its original plaintext.
    let ring = PrivateKeyRing::load_dir(&system.pki.private_keys_dir()).unwrap();
    assert_eq!(ring.kids(), [kid2.as_str()]);
    let reader = TokenReader::connect(&system.store.reader_url)
        .await
        .unwrap();
    for (account, plaintext) in &plaintexts {
        let Latest::Token { sealed_token, .. } =
            reader.latest(account, SYNTHETIC_PROVIDER).await.unwrap()
        else {
            panic!("{account} lost its token");
        };
        let opened = ring
            .open(&sealed_token, account, SYNTHETIC_PROVIDER)
            .unwrap();
        assert_eq!(opened.as_slice(), plaintext.as_bytes());
    }
    system.stop().await.unwrap();
}
