//! The drill's own objects: the experiment's ConfigMap, the shared records volume, the Indexed
//! Job whose pods are the segments, the headless Service that names them, and, for later, the
//! merge Job and the pod to fetch the report from.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretEnvSource, SecretKeySelector, SecurityContext,
    Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{labels, meta, KubeConfig, Object, CONFIG_DIR, END_MARGIN, METRICS_PORT, RECORDS_DIR};

pub const DRILL_JOB: &str = "faultline-drill";
pub const MERGE_JOB: &str = "faultline-merge";
pub const FETCH_POD: &str = "faultline-fetch";
pub const SEGMENTS_SERVICE: &str = "faultline-segments";
pub const CONFIG_MAP: &str = "faultline-experiment";
/// The drill's pods' account: it reads no API, so it is given no token and no role.
pub const DRILL_ACCOUNT: &str = "faultline-drill";
/// The image's unprivileged user (the Dockerfile's `faultline`); the records volume is made
/// writable for it with `fsGroup`.
pub const RUN_AS: i64 = 10001;
const MERGE_DEADLINE_SECONDS: i64 = 600;
const FETCH_SECONDS: i64 = 3600;

pub(super) fn objects(config: &KubeConfig) -> Vec<Object> {
    vec![
        Object::ServiceAccount(Box::new(ServiceAccount {
            metadata: meta(config, DRILL_ACCOUNT, "drill"),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        })),
        Object::ConfigMap(Box::new(ConfigMap {
            metadata: meta(config, CONFIG_MAP, "drill"),
            data: Some(BTreeMap::from([(
                config.file_name.clone(),
                config.source.clone(),
            )])),
            ..ConfigMap::default()
        })),
        Object::PersistentVolumeClaim(Box::new(records_claim(config))),
        Object::Service(Box::new(segments_service(config))),
        Object::Job(Box::new(drill_job(config))),
    ]
}

/// ReadWriteMany: the N segment pods may run on N nodes, each writing its own directory.
fn records_claim(config: &KubeConfig) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(config, &config.records.claim, "drill"),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteMany".into()]),
            storage_class_name: config.records.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(config.records.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Headless: it gives each segment pod a DNS name (`faultline-drill-0.faultline-segments.<ns>
/// .svc`, the leader, where the experiment's own services and proxies listen) and Prometheus
/// Operator's ServiceMonitors a port named `metrics` to select.
fn segments_service(config: &KubeConfig) -> Service {
    Service {
        metadata: meta(config, SEGMENTS_SERVICE, "drill"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(labels("drill")),
            ports: Some(vec![ServicePort {
                name: Some("metrics".into()),
                port: METRICS_PORT.into(),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The segments: pod K (index K-1) runs segment K of N. A shell does the index arithmetic
/// (JOB_COMPLETION_INDEX is set by the Job controller, 0-based). Never retried: a drill run
/// twice is a different drill, and a retried segment would start after `--start-at`.
fn drill_job(config: &KubeConfig) -> Job {
    let n = config.workers;
    let file = format!("{CONFIG_DIR}/{}", config.file_name);
    let script = format!(
        "k=$((JOB_COMPLETION_INDEX + 1))\n\
         exec faultline run '{file}' --segment \"$k/{n}\" --start-at '{}' \
         --out \"{RECORDS_DIR}/segment-$k\" --metrics 0.0.0.0:{METRICS_PORT}\n",
        config.start_at
    );
    let deadline = config.lead + config.run_length + END_MARGIN;
    let mut env: Vec<EnvVar> = Vec::new();
    if let Some(agent) = &config.agent {
        for var in &agent.token_envs {
            env.push(EnvVar {
                name: var.clone(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: agent.token_secret.clone(),
                        key: "token".into(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
        }
    }
    let container = Container {
        name: "segment".into(),
        image: Some(config.image.clone()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), script]),
        env: (!env.is_empty()).then_some(env),
        env_from: config.env_secret.as_ref().map(|name| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: name.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]
        }),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT.into(),
            ..ContainerPort::default()
        }]),
        // A CPU request and no CPU limit: throttling would show up as send lag, not as the
        // system under test's latency.
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("1".into())),
                ("memory".into(), Quantity("256Mi".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(vec![
            mount("experiment", CONFIG_DIR, true),
            mount("records", RECORDS_DIR, false),
            mount("tmp", "/tmp", false),
        ]),
        security_context: Some(unprivileged()),
        ..Container::default()
    };
    let mut annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".into(), METRICS_PORT.to_string()),
        ("prometheus.io/path".into(), "/metrics".into()),
    ]);
    annotations.insert(
        "faultline.dev/experiment".into(),
        config.experiment_name.clone(),
    );
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    Job {
        metadata: meta(config, DRILL_JOB, "drill"),
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".into()),
            completions: Some(n),
            parallelism: Some(n),
            backoff_limit: Some(0),
            active_deadline_seconds: Some(seconds(deadline)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels("drill")),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    subdomain: Some(SEGMENTS_SERVICE.into()),
                    containers: vec![container],
                    volumes: Some(vec![
                        config_volume(),
                        records_volume(config, false),
                        tmp_volume(),
                    ]),
                    ..unprivileged_pod()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// Applied once the drill's Job has completed: one report from every segment's records. The
/// segments are named one by one, so a missing one is an error that names it.
pub(super) fn merge_job(config: &KubeConfig) -> Object {
    let mut command = vec!["faultline".to_string(), "merge".to_string()];
    command.extend((1..=config.workers).map(|k| format!("{RECORDS_DIR}/segment-{k}")));
    command.extend(["--out".to_string(), format!("{RECORDS_DIR}/report")]);
    let container = Container {
        name: "merge".into(),
        image: Some(config.image.clone()),
        command: Some(command),
        volume_mounts: Some(vec![
            mount("records", RECORDS_DIR, false),
            mount("tmp", "/tmp", false),
        ]),
        security_context: Some(unprivileged()),
        ..Container::default()
    };
    Object::Job(Box::new(Job {
        metadata: meta(config, MERGE_JOB, "merge"),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(MERGE_DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels("merge")),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![records_volume(config, false), tmp_volume()]),
                    ..unprivileged_pod()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }))
}

/// A pod that holds the records read-only for an hour, for `kubectl cp` (a completed Job's
/// pod cannot be copied from).
pub(super) fn fetch_pod(config: &KubeConfig) -> Object {
    Object::Pod(Box::new(Pod {
        metadata: meta(config, FETCH_POD, "fetch"),
        spec: Some(PodSpec {
            active_deadline_seconds: Some(FETCH_SECONDS),
            containers: vec![Container {
                name: "fetch".into(),
                image: Some(config.image.clone()),
                command: Some(vec!["sleep".into(), FETCH_SECONDS.to_string()]),
                volume_mounts: Some(vec![mount("records", RECORDS_DIR, true)]),
                security_context: Some(unprivileged()),
                ..Container::default()
            }],
            volumes: Some(vec![records_volume(config, true)]),
            ..unprivileged_pod()
        }),
        ..Pod::default()
    }))
}

/// Scratch space: the root file system is read-only.
fn tmp_volume() -> Volume {
    Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn config_volume() -> Volume {
    Volume {
        name: "experiment".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: CONFIG_MAP.into(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn records_volume(config: &KubeConfig, read_only: bool) -> Volume {
    Volume {
        name: "records".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: config.records.claim.clone(),
            read_only: read_only.then_some(true),
        }),
        ..Volume::default()
    }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The drill's pods need no privilege at all: they send HTTP, serve metrics and write files.
fn unprivileged() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn unprivileged_pod() -> PodSpec {
    PodSpec {
        service_account_name: Some(DRILL_ACCOUNT.into()),
        automount_service_account_token: Some(false),
        restart_policy: Some("Never".into()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    }
}

/// Whole seconds, rounded up (a deadline is never shorter than asked).
pub(super) fn seconds(d: std::time::Duration) -> i64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s).unwrap_or(i64::MAX)
}
