//! Services and proxies: what each service is, and listeners that must not collide.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};

use serde_saphyr::Spanned;

use super::Checker;
use crate::experiment::schema::{
    default_stop_grace, CommandSpec, ExperimentFile, ServiceEntry, ServiceSpec,
};

/// Turns each service entry into exactly one kind of service.
pub(super) fn services(c: &mut Checker, file: &ExperimentFile) -> Vec<(String, ServiceSpec)> {
    let withheld = withheld_env(file);
    let mut out = Vec::new();
    for (name, entry) in &file.services {
        if let Some(spec) = service(c, name, entry, &withheld) {
            out.push((name.clone(), spec));
        }
    }
    out
}

/// The variables holding agents' tokens: the default name and every host's `token_env`. A
/// `command:` service has no business with them, and could log or forward them.
fn withheld_env(file: &ExperimentFile) -> Vec<String> {
    let mut vars = vec![crate::agent::auth::DEFAULT_TOKEN_ENV.to_string()];
    for host in file.hosts.values() {
        if !vars.contains(&host.value.token_env) {
            vars.push(host.value.token_env.clone());
        }
    }
    vars
}

fn service(
    c: &mut Checker,
    name: &str,
    entry: &Spanned<ServiceEntry>,
    withheld: &[String],
) -> Option<ServiceSpec> {
    let e = &entry.value;
    let kinds = [
        e.simulate.is_some(),
        e.gateway.is_some(),
        e.command.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if kinds != 1 {
        c.report(
            entry.referenced,
            format!("service `{name}` needs exactly one of `simulate`, `gateway` or `command`"),
        );
        return None;
    }
    let process_only = e.env.is_empty()
        && e.cwd.is_none()
        && e.ready.is_none()
        && e.stop_grace.is_none()
        && e.listen.is_none();
    if e.command.is_none() && !process_only {
        c.report(entry.referenced, format!("service `{name}`: `env`, `cwd`, `ready`, `stop_grace` and `listen` belong to `command:` services"));
    }
    if let Some(sim) = &e.simulate {
        if !(sim.tokens_per_second.is_finite() && sim.tokens_per_second > 0.0) {
            c.report(
                entry.referenced,
                format!("service `{name}`: tokens_per_second must be above zero"),
            );
        }
        if sim.capacity == Some(0) {
            c.report(
                entry.referenced,
                format!("service `{name}`: capacity must be at least 1"),
            );
        }
        if let Some(label) = &sim.served_by {
            if hyper::header::HeaderValue::from_str(label).is_err() {
                c.report(
                    entry.referenced,
                    format!(
                        "service `{name}`: served_by `{label}` cannot be sent as a header value"
                    ),
                );
            }
        }
        if sim.memory.as_ref().is_some_and(|m| m.kv_tokens == 0) {
            c.report(
                entry.referenced,
                format!("service `{name}`: memory.kv_tokens must be at least 1"),
            );
        }
        return Some(ServiceSpec::Simulate(sim.clone()));
    }
    if let Some(gw) = &e.gateway {
        if gw.upstreams.is_empty() {
            c.report(
                entry.referenced,
                format!("gateway `{name}` needs at least one upstream"),
            );
        }
        if gw.max_in_flight_per_upstream == Some(0) {
            c.report(
                entry.referenced,
                format!("gateway `{name}`: max_in_flight_per_upstream must be at least 1"),
            );
        }
        return Some(ServiceSpec::Gateway(gw.clone()));
    }
    let command = e.command.as_ref()?;
    if command.value.is_empty() || command.value[0].trim().is_empty() {
        c.report(
            command.referenced,
            format!("service `{name}`: `command` needs a program, like [haproxy, -f, haproxy.cfg]"),
        );
    }
    if let Some(ready) = &e.ready {
        let r = &ready.value;
        if r.tcp.is_some() == r.http.is_some() {
            c.report(
                ready.referenced,
                format!("service `{name}`: `ready` takes one of `tcp: ADDRESS` or `http: URL`"),
            );
        }
        // The URL itself was checked as it was read; whether its host resolves is a fact
        // about this machine, checked here so `validate` says so too.
        if let Some(url) = r.http.as_ref().filter(|_| c.looks_up()) {
            let resolves = (url.host(), url.port())
                .to_socket_addrs()
                .is_ok_and(|mut found| found.next().is_some());
            if !resolves {
                c.report(
                    ready.referenced,
                    format!(
                        "service `{name}`: ready.http: `{url}`: cannot resolve host `{}`",
                        url.host()
                    ),
                );
            }
        }
    }
    Some(ServiceSpec::Command(CommandSpec {
        command: command.value.clone(),
        env: e.env.clone(),
        cwd: e.cwd.clone(),
        ready: e.ready.as_ref().map(|r| r.value.clone()),
        stop_grace: e.stop_grace.unwrap_or_else(default_stop_grace),
        listen: e.listen,
        withheld_env: withheld.to_vec(),
    }))
}

/// Two listeners on one address would make the second service fail to start mid-drill.
pub(super) fn listeners(c: &mut Checker, file: &ExperimentFile) {
    let mut seen: HashMap<SocketAddr, String> = HashMap::new();
    let listeners = file
        .services
        .iter()
        .filter_map(|(name, s)| {
            let e = &s.value;
            let addr = e
                .simulate
                .as_ref()
                .map(|x| x.listen)
                .or(e.gateway.as_ref().map(|g| g.listen))
                .or(e.listen)?;
            Some((format!("service `{name}`"), addr, s.referenced))
        })
        .chain(file.proxies.iter().map(|(name, p)| {
            (
                format!("proxy `{name}`"),
                p.value.listen.addr(),
                p.referenced,
            )
        }));
    for (owner, addr, loc) in listeners {
        let clash = seen
            .iter()
            .find(|(other, _)| same_port(**other, addr))
            .map(|(_, o)| o.clone());
        match clash {
            Some(first) => c.report(
                loc,
                format!("{owner} listens on {addr}, which {first} already listens on"),
            ),
            None => {
                seen.insert(addr, owner);
            }
        }
    }
}

/// 0.0.0.0:80 and 127.0.0.1:80 collide too.
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Each host's agent address was read as HOST:PORT; it is never resolved here (a DaemonSet
/// pod's address changes; the run resolves the name when it connects), so only a port no one
/// can connect to is left to refuse.
pub(super) fn hosts(c: &mut Checker, file: &ExperimentFile) {
    for (name, h) in &file.hosts {
        if h.value.agent.port() == 0 {
            c.report(
                h.referenced,
                format!(
                    "host `{name}`: agent `{}`: port 0 cannot be connected to",
                    h.value.agent
                ),
            );
        }
    }
}

/// `driver: toxiproxy` proxies need a server to live on.
pub(super) fn toxiproxy(c: &mut Checker, file: &ExperimentFile) {
    for (name, p) in &file.proxies {
        if p.value.driver == crate::experiment::schema::ProxyDriver::Toxiproxy
            && file.toxiproxy.is_none()
        {
            c.report(p.referenced, format!("proxy `{name}` uses `driver: toxiproxy`, but no server is given: add `toxiproxy: {{ server: \"127.0.0.1:8474\" }}`"));
        }
    }
}

/// Each proxy's upstream: its name resolves now when the file runs here (connections resolve
/// it again), its scheme fits the proxy's mode, and its TLS settings are read.
pub(super) fn proxies(c: &mut Checker, file: &ExperimentFile) -> Vec<crate::experiment::Proxy> {
    use crate::net::{Scheme, Tls};
    let mut proxies = Vec::new();
    for (name, p) in &file.proxies {
        let spec = &p.value;
        let upstream = &spec.upstream;
        let resolved = if c.looks_up() {
            upstream.addr().resolve().map(|_| ())
        } else {
            Ok(())
        };
        if let Err(why) = resolved {
            c.report(
                p.referenced,
                format!("proxy `{name}`: upstream `{upstream}`: {why}"),
            );
        }
        let https = upstream.scheme() == Scheme::Https;
        if spec.takes_toxics() && upstream.is_url() {
            // Bytes are relayed as they come: there is no request to originate TLS for, and
            // the client's own TLS passes through a TCP proxy untouched.
            c.report(
                p.referenced,
                format!(
                    "proxy `{name}` carries bytes (mode: tcp or driver: toxiproxy): its upstream \
                     is host:port, not a URL (`{upstream}`); TLS from the client passes through \
                     it as it is"
                ),
            );
        }
        if spec.upstream_tls.is_some() && !https {
            c.report(
                p.referenced,
                format!(
                    "proxy `{name}`: `upstream_tls` applies to an https:// upstream, and \
                     `{upstream}` is not one"
                ),
            );
        }
        let tls = match &spec.upstream_tls {
            Some(t) => Tls::new(t),
            None => Tls::system(),
        };
        match tls {
            Ok(tls) => proxies.push(crate::experiment::Proxy {
                name: name.clone(),
                spec: spec.clone(),
                tls,
            }),
            Err(why) => c.report(p.referenced, format!("proxy `{name}`, upstream_tls: {why}")),
        }
    }
    proxies
}
