use std::time::Duration;

use super::*;

fn config(agent: bool) -> KubeConfig {
    KubeConfig {
        file_name: "drill.yaml".into(),
        source: "version: 1\nname: t\n\n# a comment\nload: {}\n".into(),
        experiment_name: "t".into(),
        run_length: Duration::from_secs(240),
        workers: 3,
        namespace: "chaos".into(),
        create_namespace: true,
        image: "registry.example/faultline:1".into(),
        start_at: "2026-12-01T10:00:00Z".into(),
        lead: MAX_LEAD,
        records: Records {
            claim: "records".into(),
            size: "2Gi".into(),
            storage_class: Some("nfs".into()),
        },
        env_secret: Some("gateway-keys".into()),
        agent: agent.then(|| AgentSettings {
            node_selector: ("faultline.dev/agent".into(), "true".into()),
            token_secret: "agent-token".into(),
            token_envs: vec!["FAULTLINE_AGENT_TOKEN".into(), "OTHER_TOKEN".into()],
            max_lease_ttl: "60s".into(),
            max_fault_duration: "1800s".into(),
            gpu: Gpu::Resource(1),
        }),
    }
}

fn kinds(objects: &[Object]) -> Vec<&'static str> {
    objects.iter().map(Object::kind).collect()
}

/// Typed objects -> YAML -> typed objects: the same, kind by kind and field by field.
#[test]
fn rendered_yaml_reads_back_into_the_same_typed_objects() {
    for agent in [true, false] {
        let m = render(&config(agent));
        for set in [&m.drill, &m.merge, &m.fetch] {
            let yaml = to_yaml("test", set).unwrap();
            assert_eq!(&from_yaml(&yaml).unwrap(), set, "{yaml}");
        }
    }
}

#[test]
fn the_agent_is_rendered_only_for_an_experiment_with_hosts() {
    let with = render(&config(true));
    assert_eq!(
        kinds(&with.drill),
        [
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "PersistentVolumeClaim",
            "Service",
            "Job",
            "ServiceAccount",
            "Service",
            "DaemonSet"
        ]
    );
    let without = render(&config(false));
    assert!(!kinds(&without.drill).contains(&"DaemonSet"));
}

fn the_job(objects: &[Object]) -> &k8s_openapi::api::batch::v1::Job {
    objects
        .iter()
        .find_map(|o| match o {
            Object::Job(j) => Some(&**j),
            _ => None,
        })
        .unwrap()
}

#[test]
fn the_segments_job_is_indexed_never_retried_and_bounded_in_time() {
    let c = config(true);
    let m = render(&c);
    let spec = the_job(&m.drill).spec.as_ref().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!((spec.completions, spec.parallelism), (Some(3), Some(3)));
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(
        spec.active_deadline_seconds,
        Some((15 * 60 + 240 + 120) as i64)
    );
    let pod = spec.template.spec.as_ref().unwrap();
    let script = &pod.containers[0].command.as_ref().unwrap()[2];
    assert!(script.contains("--segment \"$k/3\""), "{script}");
    assert!(
        script.contains("--start-at '2026-12-01T10:00:00Z'"),
        "{script}"
    );
    assert!(script.contains("--out \"/records/segment-$k\""), "{script}");
    // Each host's token variable comes from the Secret, by reference only.
    let env = pod.containers[0].env.as_ref().unwrap();
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["FAULTLINE_AGENT_TOKEN", "OTHER_TOKEN"]);
    assert!(env.iter().all(|e| e.value.is_none()));
}

#[test]
fn the_merge_job_names_every_segment() {
    let m = render(&config(false));
    let spec = the_job(&m.merge).spec.as_ref().unwrap();
    let command = spec.template.spec.as_ref().unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    assert_eq!(
        command,
        [
            "faultline",
            "merge",
            "/records/segment-1",
            "/records/segment-2",
            "/records/segment-3",
            "--out",
            "/records/report"
        ]
    );
}

#[test]
fn no_container_is_privileged_and_only_the_agent_keeps_a_capability() {
    let m = render(&config(true));
    let yaml = to_yaml("t", &m.drill).unwrap();
    assert!(!yaml.contains("privileged"), "{yaml}");
    let ds = m
        .drill
        .iter()
        .find_map(|o| match o {
            Object::DaemonSet(d) => Some(d),
            _ => None,
        })
        .unwrap();
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.host_pid, Some(true));
    let caps = pod.containers[0]
        .security_context
        .as_ref()
        .unwrap()
        .capabilities
        .as_ref()
        .unwrap();
    assert_eq!(caps.add.as_deref(), Some(&["KILL".to_string()][..]));
    assert_eq!(yaml.matches("- KILL").count(), 1);
}

#[test]
fn names_are_checked_as_kubernetes_names() {
    assert!(check_dns_label("--namespace", "chaos-1").is_ok());
    for bad in ["", "Chaos", "-a", "a-", "a_b", &"a".repeat(64)] {
        let e = check_dns_label("--namespace", bad).unwrap_err();
        assert!(e.contains("--namespace"), "{e}");
    }
}
