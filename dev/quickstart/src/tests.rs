//! The generated configs load with the services' own config loaders, for the
//! demo and for a user file with PostgreSQL and real providers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use tokenvault_runtime::settings::ServiceConfig as _;

use crate::configs::{UserConfig, write_all};
use crate::state::State;

fn fake_state(dir: &Path) -> State {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let state = State {
        dir: dir.to_path_buf(),
        trust_domain: "tokenvault.local".into(),
        cookie_key: secrets.join("web-cookie.key"),
        link_secret: secrets.join("web-link.secret"),
        demo_client_secret: secrets.join("demo-client.secret"),
    };
    std::fs::write(&state.cookie_key, [7u8; 64]).unwrap();
    std::fs::write(&state.link_secret, "a".repeat(96)).unwrap();
    std::fs::write(&state.demo_client_secret, "b".repeat(64)).unwrap();
    state
}

fn load_all(dir: &Path) {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    tokenvault_set_service::Config::from_toml(&read("set-service.toml"), |_| None).unwrap();
    tokenvault_get_service::Config::from_toml(&read("get-service.toml"), |_| None).unwrap();
    tokenvault_web_frontend::Config::from_toml(&read("web-frontend.toml"), |_| None).unwrap();
    let worker: toml::Table = toml::from_str(&read("worker.toml")).unwrap();
    assert!(
        worker["tls"]["cert"]
            .as_str()
            .unwrap()
            .ends_with("worker-demo.pem")
    );
}

#[test]
fn demo_configs_load() {
    let dir = tempfile::tempdir().unwrap();
    let state = fake_state(dir.path());
    let plan = write_all(&state, 7401, None).unwrap();
    load_all(dir.path());
    assert!(plan.demo.is_some());
    assert_eq!(plan.providers, vec!["demo".to_owned()]);
    assert!(plan.migrate_with.is_none());
    let set = std::fs::read_to_string(dir.path().join("set-service.toml")).unwrap();
    assert!(set.contains("sqlite://"));
    // Configs hold the demo client secret: owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("web-frontend.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0);
}

#[test]
fn the_postgres_example_loads_without_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let state = fake_state(dir.path());
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/examples/quickstart.toml");
    let user = UserConfig::load(&example).unwrap();
    let plan = write_all(&state, 7401, Some(&user)).unwrap();
    load_all(dir.path());
    assert!(
        plan.demo.is_none(),
        "real providers given, so no demo server"
    );
    assert!(plan.migrate_with.is_some());
    assert_eq!(
        plan.providers,
        vec!["google".to_owned(), "github".to_owned()]
    );
    let get = std::fs::read_to_string(dir.path().join("get-service.toml")).unwrap();
    assert!(get.contains("postgres://tokenvault_reader"));
    assert!(!get.contains("demo"));
}
