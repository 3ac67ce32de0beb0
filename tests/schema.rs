//! docs/experiment.schema.json is generated from the experiment file's types (`faultline
//! schema`). These tests keep the committed copy current, so editors never check files against
//! a stale schema, and prove the schema says what faultline accepts: every shipped experiment
//! matches it (and points at it), an unknown key does not, and each unit's pattern agrees with
//! its parser.

mod common;

use std::path::{Path, PathBuf};

use faultline::net::HostPort;
use faultline::units::{Dur, ErrorStatus, Percent, Rate, Size};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

const COMMITTED: &str = "docs/experiment.schema.json";
/// The one command that regenerates it; the staleness message names it.
const REGENERATE: &str = "scripts/update-schema.sh";

/// The schema as this build generates it (the same function `faultline schema` prints).
fn schema() -> Value {
    let text = faultline::experiment::schema::json_schema().expect("the schema renders");
    serde_json::from_str(&text).expect("the schema is JSON")
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::validator_for(schema).expect("the schema compiles")
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

/// YAML read the way a YAML language server sees it: plain data, no faultline types.
fn yaml_value(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("not YAML: {e}\n{yaml}"))
}

#[test]
fn committed_schema_is_current() {
    let generated = common::faultline().arg("schema").output().unwrap();
    assert!(generated.status.success(), "`faultline schema` failed");
    let committed = std::fs::read(common::repo_root().join(COMMITTED))
        .unwrap_or_else(|_| panic!("{COMMITTED} is missing: create it with `{REGENERATE}`"));
    assert!(
        generated.stdout == committed,
        "{COMMITTED} is stale (the experiment file's types changed): regenerate it with \
         `{REGENERATE}` and commit the result"
    );
}

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            found.push(path);
        }
    }
}

fn shipped_experiments() -> Vec<PathBuf> {
    let mut files = Vec::new();
    yaml_files(&common::repo_root().join("experiments"), &mut files);
    files.sort();
    // The quickstart, 4 gateway drills, 6 outage drills, 1 GPU drill at the time of writing:
    // finding far fewer would mean the walk is broken, not that every file passed.
    assert!(files.len() >= 12, "found only {files:?}");
    files
}

#[test]
fn every_shipped_experiment_matches_the_schema_and_points_at_it() {
    let schema = schema();
    let validator = validator(&schema);
    let committed = common::repo_root().join(COMMITTED).canonicalize().unwrap();
    for file in shipped_experiments() {
        let text = std::fs::read_to_string(&file).unwrap();
        let problems = errors(&validator, &yaml_value(&text));
        assert!(
            problems.is_empty(),
            "{} does not match the schema:\n{}",
            file.display(),
            problems.join("\n")
        );

        // The first line tells YAML language servers which schema to use; its path is relative
        // to the file, so it differs by directory.
        let first = text.lines().next().unwrap_or_default();
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| {
                panic!(
                    "{}: the first line is not `# yaml-language-server: $schema=...`",
                    file.display()
                )
            });
        let resolved = file.parent().unwrap().join(target).canonicalize();
        assert!(
            resolved.as_ref().is_ok_and(|p| *p == committed),
            "{}: $schema={target} does not lead to {COMMITTED}",
            file.display()
        );
    }
}

#[test]
fn unknown_keys_fail_against_the_schema() {
    let schema = schema();
    let validator = validator(&schema);
    let quickstart =
        std::fs::read_to_string(common::repo_root().join("experiments/quickstart.yaml")).unwrap();
    let valid = yaml_value(&quickstart);
    assert!(errors(&validator, &valid).is_empty());

    let mut top = valid.clone();
    top["retries"] = json!(3);
    let mut stream = valid.clone();
    stream["load"]["chat"]["rat"] = json!("40/s");
    let mut fault = valid.clone();
    fault["timeline"][0]["inject"]["fault"]["http_error"]["statuss"] = json!(503);
    let mut budget = valid;
    budget["expect"]["max_error_rat"] = json!("1%");
    for (what, file) in [
        ("a top-level key", top),
        ("a load stream key", stream),
        ("a fault parameter", fault),
        ("a budget", budget),
    ] {
        // The one key added is the only difference from a valid file, so it is what failed
        // (inside an optional value the error reads as a failed `anyOf`).
        assert!(
            !errors(&validator, &file).is_empty(),
            "an unknown {what} passed the schema"
        );
    }
}

/// For each YAML scalar: faultline's parser accepts it exactly when the schema of `def` does.
fn agree<T: DeserializeOwned>(def: &str, scalars: &[&str]) {
    let full = schema();
    let one = json!({
        "$schema": full["$schema"],
        "$defs": full["$defs"],
        "$ref": format!("#/$defs/{def}"),
    });
    let validator = validator(&one);
    for yaml in scalars {
        let parsed = serde_saphyr::from_str::<T>(yaml).is_ok();
        let matches = validator.is_valid(&yaml_value(yaml));
        assert_eq!(
            parsed,
            matches,
            "{def} `{yaml}`: faultline {} it, the schema {} it",
            if parsed { "accepts" } else { "refuses" },
            if matches { "accepts" } else { "refuses" },
        );
    }
}

// Out of range values the patterns cannot express (a rate of 0/s or over 1000000/s, a
// percentage over 100% written as a string, a duration over 30 days) pass the schema and are
// refused by `faultline validate`; they are left out here on purpose.

#[test]
fn duration_pattern_agrees_with_the_parser() {
    agree::<Dur>(
        "Duration",
        &[
            "250ms",
            "10s",
            "1m30s",
            "1m 30s",
            "500us",
            "1.5s",
            "2h",
            "0",
            "10",
            "1",
            "ms",
            "ten",
            "10 parsecs",
            "-1s",
            "1s-",
            "\"\"",
        ],
    );
}

#[test]
fn rate_pattern_agrees_with_the_parser() {
    agree::<Rate>(
        "Rate",
        &[
            "50/s", "3000/m", "10/min", "100/h", "0.5/s", "1e3/s", "50 / s", "50", "50/day",
            "fast", "/s", "-5/s",
        ],
    );
}

#[test]
fn percent_pattern_agrees_with_the_parser() {
    agree::<Percent>(
        "Percent",
        &[
            "1%", "0.5%", "100%", "0.3", "1", "0", "\"0.3\"", "1.5", "-1%", "-0.1", "lots", "\"%\"",
        ],
    );
}

#[test]
fn size_pattern_agrees_with_the_parser() {
    agree::<Size>(
        "Size",
        &[
            "512KiB", "2GiB", "1.5GB", "2gib", "1kB", "4096", "10 MiB", "0", "1.5", "lots", "2XB",
            "GiB", "-1",
        ],
    );
}

#[test]
fn host_port_pattern_agrees_with_the_parser() {
    agree::<HostPort>(
        "HostPort",
        &[
            "10.0.0.7:7070",
            "\"[::1]:1\"",
            "faultline-agent.chaos.svc.cluster.local:7070",
            "localhost:1",
            "localhost",
            ":7070",
            "agent:",
            "\"::1:7070\"",
            "http://agent:7070",
            "two words:7070",
            "user@agent:7070",
        ],
    );
}

#[test]
fn error_status_schema_agrees_with_the_parser() {
    agree::<ErrorStatus>(
        "ErrorStatus",
        &["400", "429", "503", "599", "399", "600", "200", "five"],
    );
}
