//! The agent on the chosen nodes: a DaemonSet, the headless Service that gives its pods one
//! DNS name for `hosts:` (`faultline-agent.<namespace>.svc.cluster.local:7070`), and its
//! ServiceAccount.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HostPathVolumeSource, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, TCPSocketAction,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{labels, meta, AgentSettings, Gpu, KubeConfig, Object, AGENT_PORT};

pub const AGENT: &str = "faultline-agent";
const TOKEN_DIR: &str = "/etc/faultline-agent";
/// On the node, so the agent that replaces a killed one reads its journal and undoes what it
/// left (pauses, GPU hogs).
const STATE_DIR: &str = "/var/lib/faultline";

pub(super) fn objects(config: &KubeConfig, agent: &AgentSettings) -> Vec<Object> {
    vec![
        Object::ServiceAccount(Box::new(ServiceAccount {
            metadata: meta(config, AGENT, "agent"),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        })),
        Object::Service(Box::new(Service {
            metadata: meta(config, AGENT, "agent"),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                selector: Some(labels("agent")),
                ports: Some(vec![ServicePort {
                    name: Some("api".into()),
                    port: AGENT_PORT.into(),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        })),
        Object::DaemonSet(Box::new(daemon_set(config, agent))),
    ]
}

fn daemon_set(config: &KubeConfig, agent: &AgentSettings) -> DaemonSet {
    let command = vec![
        "faultline".to_string(),
        "agent".into(),
        "--listen".into(),
        format!("0.0.0.0:{AGENT_PORT}"),
        "--token-file".into(),
        format!("{TOKEN_DIR}/token"),
        "--state-dir".into(),
        STATE_DIR.into(),
        "--max-lease-ttl".into(),
        agent.max_lease_ttl.clone(),
        "--max-fault-duration".into(),
        agent.max_fault_duration.clone(),
    ];
    let (runtime_class, gpu_env, gpu_limits) = match &agent.gpu {
        Gpu::None => (None, None, None),
        Gpu::RuntimeClass(class) => (
            Some(class.clone()),
            Some(vec![
                env("NVIDIA_VISIBLE_DEVICES", "all"),
                env("NVIDIA_DRIVER_CAPABILITIES", "compute,utility"),
            ]),
            None,
        ),
        Gpu::Resource(n) => (
            None,
            None,
            Some(BTreeMap::from([(
                "nvidia.com/gpu".to_string(),
                Quantity(n.to_string()),
            )])),
        ),
    };
    let container = Container {
        name: "agent".into(),
        image: Some(config.image.clone()),
        command: Some(command),
        env: gpu_env,
        ports: Some(vec![ContainerPort {
            name: Some("api".into()),
            container_port: AGENT_PORT.into(),
            ..ContainerPort::default()
        }]),
        // Every request to the agent, /status included, needs the bearer token, and a probe's
        // headers would put it in the manifest: a TCP probe says the agent listens, which it
        // does only once it has undone what a predecessor left.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("api".into()),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("50m".into())),
                ("memory".into(), Quantity("64Mi".into())),
            ])),
            limits: gpu_limits,
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "token".into(),
                mount_path: TOKEN_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "state".into(),
                mount_path: STATE_DIR.into(),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(agent_security()),
        ..Container::default()
    };
    let (key, value) = &agent.node_selector;
    let tolerations = (agent.gpu != Gpu::None).then(|| {
        // GPU nodes are commonly tainted so that only GPU work lands there.
        vec![Toleration {
            key: Some("nvidia.com/gpu".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }]
    });
    DaemonSet {
        metadata: meta(config, AGENT, "agent"),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels("agent")),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels("agent")),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(AGENT.into()),
                    automount_service_account_token: Some(false),
                    // The processes to pause or kill are the node's, not the pod's.
                    host_pid: Some(true),
                    node_selector: Some(BTreeMap::from([(key.clone(), value.clone())])),
                    runtime_class_name: runtime_class,
                    tolerations,
                    // On SIGTERM the agent lifts every fault before it exits.
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "token".into(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(agent.token_secret.clone()),
                                default_mode: Some(0o400),
                                ..SecretVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "state".into(),
                            host_path: Some(HostPathVolumeSource {
                                path: STATE_DIR.into(),
                                type_: Some("DirectoryOrCreate".into()),
                            }),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    }
}

/// Root, for signals to the node's processes (any user's) and the node's state directory, but
/// not privileged: every capability dropped except KILL, which SIGSTOP, SIGCONT and SIGKILL to
/// other users' processes need. GPUs come through the NVIDIA runtime or device plugin, not
/// through `privileged`.
fn agent_security() -> SecurityContext {
    SecurityContext {
        run_as_user: Some(0),
        run_as_group: Some(0),
        run_as_non_root: Some(false),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: Some(vec!["KILL".into()]),
        }),
        ..SecurityContext::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}
