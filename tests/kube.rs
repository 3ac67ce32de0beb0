//! `faultline kube manifests` through the real binary: the rendered examples committed in
//! deploy/kubernetes/ are current and read back into k8s-openapi's types unchanged, bad flags
//! and bad files are refused before anything is written, and no token reaches the output.

mod common;

use faultline::kube::{from_yaml, to_yaml, Object};

const EXAMPLES: &str = "deploy/kubernetes";
/// The one command that regenerates them; its flags are the ones below.
const REGENERATE: &str = "scripts/update-kube-examples.sh";
const FLAGS: &[&str] = &[
    "--workers",
    "4",
    "--namespace",
    "faultline",
    "--image",
    "registry.example/faultline:0.1.0",
    "--start-at",
    "2026-12-01T10:00:00Z",
    "--gpu",
    "runtime-class",
];
const SETS: [&str; 3] = ["drill.yaml", "merge.yaml", "fetch.yaml"];

fn manifests(file: &std::path::Path, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = common::faultline();
    cmd.args(["kube", "manifests"]).arg(file).args(extra);
    cmd
}

#[test]
fn committed_examples_are_current() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = common::repo_root().join(EXAMPLES).join("experiment.yaml");
    manifests(&experiment, FLAGS)
        .arg("--out")
        .arg(dir.path())
        .assert()
        .success();
    for set in SETS {
        let rendered = std::fs::read(dir.path().join(set)).unwrap();
        let committed =
            std::fs::read(common::repo_root().join(EXAMPLES).join(set)).unwrap_or_else(|_| {
                panic!("{EXAMPLES}/{set} is missing: create it with `{REGENERATE}`")
            });
        assert!(
            rendered == committed,
            "{EXAMPLES}/{set} is stale: regenerate it with `{REGENERATE}` and commit the result"
        );
    }
    // Without --out, the drill's set is what stdout gets.
    let out = manifests(&experiment, FLAGS).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        std::fs::read(dir.path().join("drill.yaml")).unwrap()
    );
}

/// Every committed document reads back as a k8s-openapi object of its kind, and writing those
/// objects again gives the file byte for byte: nothing was lost or invented on the way.
#[test]
fn committed_examples_read_back_into_typed_objects() {
    let mut kinds = Vec::new();
    for set in SETS {
        let text = std::fs::read_to_string(common::repo_root().join(EXAMPLES).join(set)).unwrap();
        let objects = from_yaml(&text).unwrap_or_else(|e| panic!("{set}: {e}"));
        let (what, _) = text.split_once('\n').unwrap();
        let again = to_yaml(what.trim_start_matches("# "), &objects).unwrap();
        assert_eq!(again, text, "{set} changed on the way through the types");
        kinds.extend(objects.iter().map(Object::kind));
    }
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ConfigMap",
            "PersistentVolumeClaim",
            "Service",
            "Job",
            "ServiceAccount",
            "Service",
            "DaemonSet",
            "Job",
            "Pod"
        ]
    );
}

#[test]
fn the_token_is_referenced_never_written() {
    let experiment = common::repo_root().join(EXAMPLES).join("experiment.yaml");
    let token = "kube-test-token-never-rendered-0123";
    let out = manifests(&experiment, FLAGS)
        .env("FAULTLINE_AGENT_TOKEN", token)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("secretKeyRef"), "{text}");
    assert!(!text.contains(token));
}

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let experiment = common::repo_root().join(EXAMPLES).join("experiment.yaml");
    let base = ["--image", "registry.example/faultline:1"];
    for (extra, says) in [
        (
            &["--workers", "0", "--start-in", "3m"][..],
            "--workers must be between 1",
        ),
        (
            &["--workers", "2", "--start-at", "tomorrow"][..],
            "invalid value 'tomorrow' for '--start-at",
        ),
        (&["--workers", "2"][..], "--start-at"),
        (
            &["--workers", "2", "--start-in", "3m", "--namespace", "Chaos"][..],
            "--namespace `Chaos`",
        ),
        (
            &[
                "--workers",
                "2",
                "--start-in",
                "3m",
                "--agent-node-selector",
                "gpu",
            ][..],
            "--agent-node-selector `gpu`",
        ),
        (
            &["--workers", "2", "--start-in", "3m", "--records-size", "0"][..],
            "--records-size must be above zero",
        ),
    ] {
        let out = manifests(&experiment, &base).args(extra).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{extra:?} printed manifests");
    }
}

/// A broken file is refused with its position; a file for the cluster (names that resolve
/// only there, a header variable set only there) renders.
#[test]
fn the_file_is_checked_without_resolving_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"version: 1
name: cluster-only
load:
  chat:
    url: http://gateway.llm.svc.cluster.local.invalid:8000/v1/chat/completions
    rate: 10/s
    request: { api: openai-chat }
    headers: { authorization: "Bearer ${FAULTLINE_KUBE_TEST_UNSET}" }
timeline:
  - { at: 10s, end: true }
"#;
    let flags = [
        "--workers",
        "2",
        "--image",
        "i:1",
        "--start-in",
        "3m",
        "--env-secret",
        "gateway-keys",
    ];
    let file = common::write(dir.path(), "cluster.yaml", good);
    let out = manifests(&file, &flags)
        .env_remove("FAULTLINE_KUBE_TEST_UNSET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("secretRef:\n            name: gateway-keys"),
        "{text}"
    );
    // No hosts: no agent.
    assert!(!text.contains("DaemonSet"), "{text}");

    let bad = common::write(
        dir.path(),
        "bad.yaml",
        &good.replace("rate: 10/s", "rate: fast"),
    );
    let out = manifests(&bad, &flags).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:6:11: expected a rate"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
