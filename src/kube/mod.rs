//! `faultline kube manifests`: the Kubernetes objects a drill needs, built from k8s-openapi's
//! typed API objects (Kubernetes 1.33's API; every object here is a GA `v1` kind that later
//! releases serve unchanged), so every field is one the API has. Nothing here talks to a
//! cluster: the user applies what is rendered.
//!
//! Three sets, applied at three moments: `drill` (everything the run needs, applied first),
//! `merge` (the Job that merges the segments, applied once the drill's Job has completed) and
//! `fetch` (a pod that mounts the records read-only, to `kubectl cp` the report from).

mod agent;
mod drill;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Service, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The port of `faultline run --metrics` in the segment pods (Prometheus' default range).
pub const METRICS_PORT: u16 = 9464;
/// The agent's port in its pods.
pub const AGENT_PORT: u16 = 7070;
/// Where the experiment's ConfigMap is mounted in the segment pods.
pub const CONFIG_DIR: &str = "/etc/faultline";
/// Where the shared records volume is mounted.
pub const RECORDS_DIR: &str = "/records";
/// The Job's deadline counts from its creation, and its pods wait for `--start-at` first: a
/// Job applied longer than this before its start time runs out of time (unless `--start-in`
/// was longer).
pub const MAX_LEAD: Duration = Duration::from_secs(15 * 60);
/// After the timeline's end: the metrics linger, the records are written.
pub const END_MARGIN: Duration = Duration::from_secs(2 * 60);

/// Everything a rendering needs, validated (`commands::kube_manifests` builds it).
#[derive(Clone, Debug)]
pub struct KubeConfig {
    /// The ConfigMap key and the file name in the pods.
    pub file_name: String,
    /// The experiment file as written.
    pub source: String,
    pub experiment_name: String,
    /// When the experiment's timeline ends.
    pub run_length: Duration,
    pub workers: u32,
    pub namespace: String,
    pub create_namespace: bool,
    pub image: String,
    /// RFC 3339, UTC, whole seconds: every segment's time zero.
    pub start_at: String,
    /// How long before `start_at` the drill may be applied (at least `MAX_LEAD`).
    pub lead: Duration,
    pub records: Records,
    /// A Secret whose keys become the segment pods' environment (for `${NAME}` in headers).
    pub env_secret: Option<String>,
    /// The agent's objects, when the experiment declares `hosts:`.
    pub agent: Option<AgentSettings>,
}

#[derive(Clone, Debug)]
pub struct Records {
    pub claim: String,
    /// A Kubernetes quantity, e.g. `1Gi`.
    pub size: String,
    pub storage_class: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub node_selector: (String, String),
    /// The Secret with the agent's token under the key `token`, created by the user.
    pub token_secret: String,
    /// The variables the experiment's hosts read their token from (`token_env`), each set in
    /// the segment pods from the same Secret.
    pub token_envs: Vec<String>,
    pub max_lease_ttl: String,
    pub max_fault_duration: String,
    pub gpu: Gpu,
}

/// How the agent reaches the node's GPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gpu {
    None,
    /// Every GPU of the node through the NVIDIA container runtime, without claiming any: the
    /// ones the inference server holds are the ones to pressure.
    RuntimeClass(String),
    /// `nvidia.com/gpu` from the device plugin: devices given to the agent alone.
    Resource(u32),
}

/// One object of any kind rendered here. Untagged: each k8s-openapi type writes its own
/// `apiVersion` and `kind` and refuses any other when read, so reading back picks the right one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Object {
    Namespace(Box<Namespace>),
    ServiceAccount(Box<ServiceAccount>),
    ConfigMap(Box<ConfigMap>),
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
    Service(Box<Service>),
    DaemonSet(Box<DaemonSet>),
    Job(Box<Job>),
    Pod(Box<Pod>),
}

impl Object {
    /// The object's `kind`, as the Kubernetes API names it.
    pub fn kind(&self) -> &'static str {
        use k8s_openapi::Resource;
        match self {
            Object::Namespace(_) => Namespace::KIND,
            Object::ServiceAccount(_) => ServiceAccount::KIND,
            Object::ConfigMap(_) => ConfigMap::KIND,
            Object::PersistentVolumeClaim(_) => PersistentVolumeClaim::KIND,
            Object::Service(_) => Service::KIND,
            Object::DaemonSet(_) => DaemonSet::KIND,
            Object::Job(_) => Job::KIND,
            Object::Pod(_) => Pod::KIND,
        }
    }
}

/// The three sets of objects, in the order they are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifests {
    pub drill: Vec<Object>,
    pub merge: Vec<Object>,
    pub fetch: Vec<Object>,
}

pub fn render(config: &KubeConfig) -> Manifests {
    let mut objects = Vec::new();
    if config.create_namespace {
        objects.push(Object::Namespace(Box::new(Namespace {
            metadata: ObjectMeta {
                name: Some(config.namespace.clone()),
                labels: Some(labels("namespace")),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        })));
    }
    objects.extend(drill::objects(config));
    if let Some(agent) = &config.agent {
        objects.extend(agent::objects(config, agent));
    }
    Manifests {
        drill: objects,
        merge: vec![drill::merge_job(config)],
        fetch: vec![drill::fetch_pod(config)],
    }
}

/// A multi-document YAML stream, with a comment saying what it is and how it was made.
pub fn to_yaml(what: &str, objects: &[Object]) -> Result<String, String> {
    let body = serde_saphyr::to_string_multiple(objects)
        .map_err(|e| format!("cannot write the manifests as YAML: {e}"))?;
    Ok(format!(
        "# {what}\n# Rendered by `faultline kube manifests` (docs/kubernetes.md).\n---\n{body}"
    ))
}

/// Reads a stream written by `to_yaml` back into typed objects.
pub fn from_yaml(text: &str) -> Result<Vec<Object>, String> {
    serde_saphyr::from_multiple(text).map_err(|e| e.to_string())
}

/// The labels every object carries; `component` tells the drill, merge and agent apart.
fn labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "faultline".into()),
        ("app.kubernetes.io/component".into(), component.into()),
    ])
}

fn meta(config: &KubeConfig, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(config.namespace.clone()),
        labels: Some(labels(component)),
        annotations: Some(BTreeMap::from([(
            "faultline.dev/experiment".into(),
            config.experiment_name.clone(),
        )])),
        ..ObjectMeta::default()
    }
}

/// Why `name` is not a DNS-1123 label (namespaces, Secrets' and claims' names, label values are
/// checked with it before anything is rendered).
pub fn check_dns_label(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{name}` is not a Kubernetes name: 1-63 lowercase letters, digits and `-`, \
             starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests;
