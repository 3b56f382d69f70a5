//! The crate graph keeps the trust boundaries: read from `cargo metadata`
//! (the resolved normal dependencies of each workspace crate, dev-dependencies
//! aside), so that a dependency added in the wrong place fails here rather
//! than in a review.
//!
//! - Only get-service links the crate that can open a sealed token
//!   (`tokenvault-opener`); web-frontend has no store access either.
//! - Shared libraries under `lib/` never depend on a deployed service, the
//!   ops tool, the worker client or a development tool.
//! - The layers hold: `tokenvault-limits` depends on no crate at all,
//!   `tokenvault-tls` on no tokenvault crate but it, and
//!   each library only on the layers below it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Each workspace crate's tokenvault dependencies, direct and transitive,
/// normal (not dev or build) only.
struct Graph {
    direct: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn load() -> Graph {
        // Resolved for this host only: other platforms' crates are never
        // downloaded, and the test must not need the network.
        let rustc = std::process::Command::new("rustc")
            .arg("-vV")
            .output()
            .unwrap();
        let host = String::from_utf8(rustc.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
            .unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--offline"])
            .args(["--filter-platform", &host])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo metadata: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
        let name_of: BTreeMap<&str, &str> = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let mut direct = BTreeMap::new();
        for node in meta["resolve"]["nodes"].as_array().unwrap() {
            let name = name_of[node["id"].as_str().unwrap()];
            if !name.starts_with("tokenvault-") {
                continue;
            }
            let deps: BTreeSet<String> = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| name_of[d["pkg"].as_str().unwrap()].to_owned())
                .collect();
            direct.insert(name.to_owned(), deps);
        }
        Graph { direct }
    }

    /// Every crate `name` links, however indirectly.
    fn closure(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_owned()];
        while let Some(next) = todo.pop() {
            for dep in self.direct.get(&next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }

    fn tokenvault_deps(&self, name: &str) -> BTreeSet<String> {
        self.direct[name]
            .iter()
            .filter(|d| d.starts_with("tokenvault-"))
            .cloned()
            .collect()
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn only_get_service_can_open_a_sealed_token() {
    let graph = Graph::load();
    let openers: BTreeSet<&String> = graph
        .direct
        .keys()
        .filter(|name| *name != "tokenvault-tests")
        .filter(|name| graph.closure(name).contains("tokenvault-opener"))
        .collect();
    assert_eq!(
        openers,
        BTreeSet::from([&"tokenvault-get-service".to_owned()]),
        "crates linking tokenvault-opener"
    );
    let web = graph.closure("tokenvault-web-frontend");
    for never in ["tokenvault-store", "tokenvault-get-service", "sqlx"] {
        assert!(!web.contains(never), "web-frontend links {never}");
    }
    // The import seals with public keys only, and never reads the store.
    let import = graph.closure("tokenvault-import");
    for never in ["tokenvault-opener", "tokenvault-store", "sqlx"] {
        assert!(!import.contains(never), "tokenvault-import links {never}");
    }
    let set_service = graph.closure("tokenvault-set-service");
    assert!(!set_service.contains("tokenvault-get-service"));
    assert!(!set_service.contains("cryptoki"));
    // The opener does not depend on the rsa crate, whose decryption is
    // affected by RUSTSEC-2023-0071 (`.clippy.toml` forbids calling it
    // anywhere).
    assert!(!graph.direct["tokenvault-opener"].contains("rsa"));
}

#[test]
fn shared_libraries_depend_only_on_the_layers_below() {
    let graph = Graph::load();
    let layers: [(&str, &[&str]); 12] = [
        ("tokenvault-limits", &[]),
        ("tokenvault-unix-time", &[]),
        ("tokenvault-catalogue", &[]),
        ("tokenvault-proto", &["tokenvault-limits"]),
        (
            "tokenvault-tls",
            &["tokenvault-limits", "tokenvault-unix-time"],
        ),
        ("tokenvault-seal", &["tokenvault-limits"]),
        ("tokenvault-runtime", &["tokenvault-tls"]),
        (
            "tokenvault-rpc",
            &[
                "tokenvault-limits",
                "tokenvault-proto",
                "tokenvault-tls",
                "tokenvault-runtime",
            ],
        ),
        (
            "tokenvault-store",
            &[
                "tokenvault-limits",
                "tokenvault-runtime",
                "tokenvault-unix-time",
            ],
        ),
        (
            "tokenvault-oauth",
            &["tokenvault-runtime", "tokenvault-catalogue"],
        ),
        (
            "tokenvault-opener",
            &["tokenvault-seal", "tokenvault-runtime"],
        ),
        (
            "tokenvault-set-client",
            &["tokenvault-limits", "tokenvault-proto", "tokenvault-tls"],
        ),
    ];
    for (name, allowed) in layers {
        assert_eq!(
            graph.tokenvault_deps(name),
            set(allowed),
            "{name}'s tokenvault dependencies"
        );
    }
    let top: BTreeSet<String> = set(&[
        "tokenvault-set-service",
        "tokenvault-get-service",
        "tokenvault-web-frontend",
        "tokenvault-pki",
        "tokenvault-worker",
        "tokenvault-import",
        "tokenvault-demo-auth",
        "tokenvault-quickstart",
        "tokenvault-tests",
    ]);
    for (name, _) in layers {
        let reaches: BTreeSet<String> = graph.closure(name).intersection(&top).cloned().collect();
        assert!(reaches.is_empty(), "{name} links {reaches:?}");
    }
}
