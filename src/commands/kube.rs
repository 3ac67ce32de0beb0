//! `faultline kube manifests`: flags and experiment -> a validated `KubeConfig` -> YAML.

use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::cli::{GpuArg, KubeCommand, ManifestsArgs, PartArg};
use crate::exit::{ExitCode, Failure};
use crate::experiment::{self, Lookups};
use crate::kube::{self, AgentSettings, Gpu, KubeConfig, Records};

/// Kubernetes' own limit on an Indexed Job's completions and parallelism.
const MAX_WORKERS: u32 = 100_000;
/// A ConfigMap holds at most 1 MiB.
const MAX_CONFIG_MAP: usize = 1024 * 1024;

pub(super) fn dispatch(command: KubeCommand) -> anyhow::Result<ExitCode> {
    match command {
        KubeCommand::Manifests(args) => manifests(&args),
    }
}

fn manifests(args: &ManifestsArgs) -> anyhow::Result<ExitCode> {
    let config = config(args, SystemTime::now())?;
    let rendered = kube::render(&config);
    let sets = [
        (
            PartArg::Drill,
            "drill.yaml",
            "The drill: apply it first (kubectl apply -f drill.yaml).",
            &rendered.drill,
        ),
        (
            PartArg::Merge,
            "merge.yaml",
            "The merge: apply it once job/faultline-drill has completed.",
            &rendered.merge,
        ),
        (
            PartArg::Fetch,
            "fetch.yaml",
            "A pod holding the records read-only, to kubectl cp the report from.",
            &rendered.fetch,
        ),
    ];
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (_, file, what, objects) in sets {
                let path = dir.join(file);
                let text = kube::to_yaml(what, objects).map_err(Failure::Environment)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            let part = args.part.unwrap_or(PartArg::Drill);
            let (_, _, what, objects) = sets
                .into_iter()
                .find(|(p, ..)| std::mem::discriminant(p) == std::mem::discriminant(&part))
                .context("no such part")?;
            let text = kube::to_yaml(what, objects).map_err(Failure::Environment)?;
            std::io::stdout()
                .write_all(text.as_bytes())
                .context("cannot write the manifests to stdout")?;
        }
    }
    Ok(ExitCode::Success)
}

/// Every flag checked and the experiment read (its names not resolved: they are the
/// cluster's), before anything is written.
pub(crate) fn config(args: &ManifestsArgs, now: SystemTime) -> anyhow::Result<KubeConfig> {
    let usage = |m: String| anyhow::Error::from(Failure::Usage(m));
    if args.workers == 0 || args.workers > MAX_WORKERS {
        return Err(usage(format!(
            "--workers must be between 1 and {MAX_WORKERS} (an Indexed Job's limit); found {}",
            args.workers
        )));
    }
    kube::check_dns_label("--namespace", &args.namespace).map_err(usage)?;
    kube::check_dns_label("--records-claim", &args.records_claim).map_err(usage)?;
    kube::check_dns_label("--agent-token-secret", &args.agent_token_secret).map_err(usage)?;
    if let Some(name) = &args.env_secret {
        kube::check_dns_label("--env-secret", name).map_err(usage)?;
    }
    if let Some(class) = &args.storage_class {
        check_subdomain("--storage-class", class).map_err(usage)?;
    }
    check_subdomain("--gpu-runtime-class", &args.gpu_runtime_class).map_err(usage)?;
    if args.image.trim().is_empty() || args.image.contains(char::is_whitespace) {
        return Err(usage(format!(
            "--image `{}` is not an image reference, like registry.example/faultline:0.1.0",
            args.image
        )));
    }
    let (start_at, lead) = start(args, now).map_err(usage)?;
    let size = quantity(args.records_size.0).map_err(usage)?;
    let node_selector = selector(&args.agent_node_selector).map_err(usage)?;
    let max_lease_ttl = super::agent_limit("agent-max-lease-ttl", args.agent_max_lease_ttl.0)?;
    let max_fault_duration =
        super::agent_limit("agent-max-fault-duration", args.agent_max_fault_duration.0)?;
    let gpu = match args.gpu {
        GpuArg::None => Gpu::None,
        GpuArg::RuntimeClass => Gpu::RuntimeClass(args.gpu_runtime_class.clone()),
        GpuArg::Resource if args.gpu_count == 0 => {
            return Err(usage("--gpu-count must be at least 1".into()))
        }
        GpuArg::Resource => Gpu::Resource(args.gpu_count),
    };

    let exp = experiment::load_with(&args.file, Lookups::Elsewhere).map_err(Failure::from)?;
    shippable(&exp).map_err(usage)?;
    let file_name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        })
        .ok_or_else(|| {
            usage(format!(
                "{}: the file's name becomes a ConfigMap key: letters, digits, `-`, `_`, `.` only",
                args.file.display()
            ))
        })?
        .to_string();
    if exp.source.len() > MAX_CONFIG_MAP {
        return Err(usage(format!(
            "{}: {} bytes, more than a ConfigMap holds (1 MiB)",
            args.file.display(),
            exp.source.len()
        )));
    }
    let mut token_envs: Vec<String> = Vec::new();
    for (_, host) in &exp.hosts {
        if !token_envs.contains(&host.token_env) {
            token_envs.push(host.token_env.clone());
        }
    }
    let agent = (!exp.hosts.is_empty()).then(|| AgentSettings {
        node_selector,
        token_secret: args.agent_token_secret.clone(),
        token_envs,
        max_lease_ttl: whole(max_lease_ttl),
        max_fault_duration: whole(max_fault_duration),
        gpu,
    });
    Ok(KubeConfig {
        file_name,
        source: exp.source.clone(),
        experiment_name: exp.name.clone(),
        run_length: exp.end,
        workers: args.workers,
        namespace: args.namespace.clone(),
        create_namespace: args.create_namespace,
        image: args.image.clone(),
        start_at,
        lead,
        records: Records {
            claim: args.records_claim.clone(),
            size,
            storage_class: args.storage_class.clone(),
        },
        env_secret: args.env_secret.clone(),
        agent,
    })
}

/// The ConfigMap carries the experiment file alone: a file it reads beside it would be missing
/// in the pods.
fn shippable(exp: &experiment::Experiment) -> Result<(), String> {
    let path = exp.path.display();
    for s in &exp.streams {
        if s.spec.request.prompts.is_some() {
            return Err(format!(
                "{path}: load stream `{}` reads a prompts file, which the manifests do not carry \
                 into the pods; use `prompt_tokens` (or bake the file into the image and name \
                 its absolute path)",
                s.name
            ));
        }
        if s.spec
            .tls
            .as_ref()
            .is_some_and(|t| t.value.ca_file.is_some())
        {
            return Err(format!(
                "{path}: load stream `{}` reads a CA file, which the manifests do not carry into \
                 the pods; bake it into the image and name its absolute path",
                s.name
            ));
        }
    }
    for p in &exp.proxies {
        if p.spec
            .upstream_tls
            .as_ref()
            .is_some_and(|t| t.ca_file.is_some())
        {
            return Err(format!(
                "{path}: proxy `{}` reads a CA file, which the manifests do not carry into the \
                 pods; bake it into the image and name its absolute path",
                p.name
            ));
        }
    }
    Ok(())
}

/// The start time as the segments receive it (RFC 3339, UTC, whole seconds), and how long
/// before it the drill may be applied.
fn start(args: &ManifestsArgs, now: SystemTime) -> Result<(String, Duration), String> {
    let (at, lead) = match (args.start.start_at, args.start.start_in) {
        (Some(at), _) => (at.time(), kube::MAX_LEAD),
        (None, Some(d)) => {
            if d.0.is_zero() {
                return Err("--start-in must be above zero".into());
            }
            let at = now + d.0;
            (at, d.0.max(kube::MAX_LEAD))
        }
        (None, None) => return Err("give --start-at TIME or --start-in DURATION".into()),
    };
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| "the start time is before 1970".to_string())?;
    // Rounded up: a start a fraction of a second later than asked is never too early.
    let whole = SystemTime::UNIX_EPOCH
        + Duration::from_secs(since.as_secs() + u64::from(since.subsec_nanos() > 0));
    Ok((humantime::format_rfc3339_seconds(whole).to_string(), lead))
}

/// A size as a Kubernetes quantity, in the largest binary unit that divides it.
fn quantity(bytes: u64) -> Result<String, String> {
    if bytes == 0 {
        return Err("--records-size must be above zero".into());
    }
    for (unit, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes % (1u64 << shift) == 0 {
            return Ok(format!("{}{unit}", bytes >> shift));
        }
    }
    Ok(bytes.to_string())
}

/// `key=value`, as a nodeSelector takes it: a key with an optional `prefix/`, a value of at
/// most 63 characters.
fn selector(text: &str) -> Result<(String, String), String> {
    let bad = || {
        format!(
            "--agent-node-selector `{text}` is not KEY=VALUE, like faultline.dev/agent=true \
             (a label key, optionally prefix/name; a value of letters, digits, `-`, `_`, `.`)"
        )
    };
    let (key, value) = text.split_once('=').ok_or_else(bad)?;
    let name = key.rsplit_once('/').map_or(key, |(prefix, name)| {
        if check_subdomain("prefix", prefix).is_err() {
            ""
        } else {
            name
        }
    });
    let label_text = |t: &str| {
        t.len() <= 63
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && t.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
            && t.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
    };
    if name.is_empty() || !label_text(name) || !label_text(value) {
        return Err(bad());
    }
    Ok((key.to_string(), value.to_string()))
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
fn check_subdomain(what: &str, name: &str) -> Result<(), String> {
    if name.len() > 253
        || name
            .split('.')
            .any(|l| kube::check_dns_label(what, l).is_err())
    {
        return Err(format!(
            "{what} `{name}` is not a Kubernetes name: lowercase letters, digits, `-` and `.`"
        ));
    }
    Ok(())
}

/// A duration as the agent's flags read it back exactly.
fn whole(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_become_quantities_in_their_largest_unit() {
        assert_eq!(quantity(1 << 30).unwrap(), "1Gi");
        assert_eq!(quantity(3 << 20).unwrap(), "3Mi");
        assert_eq!(quantity(1500).unwrap(), "1500");
        assert!(quantity(0).is_err());
    }

    #[test]
    fn node_selectors_are_label_pairs() {
        assert_eq!(
            selector("faultline.dev/agent=true").unwrap(),
            ("faultline.dev/agent".into(), "true".into())
        );
        assert_eq!(selector("gpu=").unwrap(), ("gpu".into(), "".into()));
        for bad in ["gpu", "=x", "Bad_Prefix!/x=y", "a=b c", "a=-x", "x/=y"] {
            assert!(selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_written_back_exactly() {
        assert_eq!(whole(Duration::from_secs(60)), "60s");
        assert_eq!(whole(Duration::from_millis(1500)), "1500ms");
    }
}
