//! No two shipped experiments share a port, and no test hard-codes one a shipped experiment
//! uses: the drills run concurrently under `cargo nextest run` (and beside each other's tests
//! under `cargo test`), and two users of one port make one of them fail for no reason of its
//! own.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::{experiment_ports, local_ports, repo_root};

/// Every file under `dir` whose name ends in one of `exts`, relative to the repository root.
fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, exts, out);
            } else if exts.iter().any(|e| path.to_string_lossy().ends_with(e)) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_root().join(dir), exts, &mut out);
    out.sort();
    out.into_iter()
        .map(|p| p.strip_prefix(repo_root()).unwrap().to_path_buf())
        .collect()
}

/// Each shipped experiment (experiments/**/*.yaml) with the local ports it uses.
fn shipped() -> BTreeMap<String, BTreeSet<u16>> {
    files("experiments", &[".yaml", ".yml"])
        .into_iter()
        .map(|f| {
            let yaml = std::fs::read_to_string(repo_root().join(&f)).unwrap();
            (f.display().to_string(), experiment_ports(&yaml))
        })
        .collect()
}

/// "port P: a, b" for every port that more than one of `users` names.
fn clashes(users: &BTreeMap<String, BTreeSet<u16>>) -> Vec<String> {
    let mut by_port: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for (name, ports) in users {
        for p in ports {
            by_port.entry(*p).or_default().push(name);
        }
    }
    by_port
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(p, names)| format!("port {p}: {}", names.join(", ")))
        .collect()
}

#[test]
fn no_two_shipped_experiments_share_a_port() {
    let shipped = shipped();
    // The scan itself must see the experiments and their ports, or this test proves nothing.
    assert!(
        shipped.len() >= 10,
        "only {} experiments found",
        shipped.len()
    );
    for (file, ports) in &shipped {
        assert!(!ports.is_empty(), "no port found in {file}");
    }
    let clashes = clashes(&shipped);
    assert!(
        clashes.is_empty(),
        "shipped experiments share ports (give each its own range):\n{}",
        clashes.join("\n")
    );
}

#[test]
fn no_test_hard_codes_a_port_a_shipped_experiment_uses() {
    let used: BTreeSet<u16> = shipped().into_values().flatten().collect();
    let mut found = Vec::new();
    // tests/ only: src/ names the agent's example address (port 7070) in help text and in
    // unit tests that parse addresses without binding them.
    for file in files("tests", &[".rs"]) {
        let text = std::fs::read_to_string(repo_root().join(&file)).unwrap();
        for (n, line) in text.lines().enumerate() {
            for port in local_ports(line).intersection(&used) {
                found.push(format!("{}:{}: port {port}", file.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "tests name ports that shipped experiments use (take them from common::free_ports):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_port_scan_finds_listen_upstream_ready_and_url_ports_and_a_clash() {
    let a = r#"
# a comment naming 127.0.0.1:1 is not a port in use
services:
  s: { simulate: { listen: "127.0.0.1:61001" } }
  c:
    command: [x, --listen, "127.0.0.1:61002"]
    ready: { http: "http://localhost:61002/health" }
proxies:
  p: { listen: "0.0.0.0:61003", upstream: "127.0.0.1:61001" }
load:
  l: { url: "http://[::1]:61004/v1/chat/completions", rate: 1/s }
  m: { url: "http://example.com:61005/", rate: 1/s }
other: "127.0.0.1:0"
"#;
    let ports = experiment_ports(a);
    assert_eq!(ports, BTreeSet::from([61001, 61002, 61003, 61004]));
    let b = experiment_ports(r#"gateway: { listen: "127.0.0.2:61003" }"#);
    let users = BTreeMap::from([("a.yaml".to_string(), ports), ("b.yaml".to_string(), b)]);
    assert_eq!(clashes(&users), vec!["port 61003: a.yaml, b.yaml"]);
}
