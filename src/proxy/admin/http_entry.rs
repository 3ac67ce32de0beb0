//! An `http` proxy of the admin API: faultline's HTTP fault proxy (`proxy::start`), whose
//! "toxics" are the HTTP faults, given as `{"type": "http_error", "attributes": {...}}` with
//! the attributes an experiment file would use. The running proxy forgets its faults when it
//! stops, so the applied toxics are kept here and put in force again on every start.

use crate::proxy::lifecycle;
use std::net::SocketAddr;

use hyper::StatusCode;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use super::model::{opt_f32, opt_object, opt_str, ApiError};
use crate::experiment::schema::{ProxyDriver, ProxyMode, ProxySpec};
use crate::fault::{FaultScope, FaultSpec};
use crate::proxy::RunningProxy;

/// One applied fault, as the API shows it back.
#[derive(Clone)]
struct HttpToxic {
    name: String,
    kind: String,
    attributes: Map<String, Value>,
    spec: FaultSpec,
}

impl HttpToxic {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "stream": "downstream",
            "toxicity": 1.0,
            "attributes": self.attributes,
        })
    }
}

struct State {
    listen: String,
    upstream: String,
    running: Option<RunningProxy>,
    toxics: Vec<HttpToxic>,
}

/// One HTTP fault proxy; every method takes `&self` so it can be shared behind an `Arc`.
pub struct HttpProxy {
    name: String,
    state: Mutex<State>,
    /// Every seeded decision of the proxy is reproducible run to run (`--seed`).
    seed: u64,
}

impl HttpProxy {
    /// A proxy that is not listening yet, deciding from `seed`; call `start`.
    pub fn new(name: &str, listen: &str, upstream: &str, seed: u64) -> Self {
        HttpProxy {
            name: name.to_string(),
            state: Mutex::new(State {
                listen: listen.to_string(),
                upstream: upstream.to_string(),
                running: None,
                toxics: Vec::new(),
            }),
            seed,
        }
    }

    /// Starts listening (no-op when listening). Port 0 is resolved and kept, so a
    /// disable/enable cycle comes back on the same address.
    pub async fn start(&self) -> Result<(), ApiError> {
        let mut st = self.state.lock().await;
        self.start_locked(&mut st).await
    }

    pub async fn stop(&self) {
        let mut st = self.state.lock().await;
        stop_locked(&mut st).await;
    }

    pub async fn json(&self) -> Value {
        let st = self.state.lock().await;
        json!({
            "name": self.name,
            "listen": st.listen,
            "upstream": st.upstream,
            "enabled": st.running.is_some(),
            "mode": "http",
            "toxics": st.toxics.iter().map(HttpToxic::to_json).collect::<Vec<_>>(),
        })
    }

    /// Same rules as the TCP proxies: a new address or upstream restarts a listening proxy,
    /// and a failed restart leaves it as it was.
    pub async fn update(
        &self,
        listen: Option<&str>,
        upstream: Option<&str>,
        enabled: Option<bool>,
    ) -> Result<Value, ApiError> {
        {
            let mut st = self.state.lock().await;
            lifecycle::update(
                &mut Locked {
                    proxy: self,
                    st: &mut st,
                },
                listen,
                upstream,
                enabled,
            )
            .await?;
        }
        Ok(self.json().await)
    }

    pub async fn toxics(&self) -> Vec<Value> {
        let st = self.state.lock().await;
        st.toxics.iter().map(HttpToxic::to_json).collect()
    }

    pub async fn toxic(&self, name: &str) -> Result<Value, ApiError> {
        let st = self.state.lock().await;
        find(&st, name).map(|i| st.toxics[i].to_json())
    }

    /// `POST /proxies/{name}/toxics`: the request is checked whole before anything changes.
    pub async fn add_toxic(&self, m: &Map<String, Value>) -> Result<Value, ApiError> {
        let kind = opt_str(m, "type")?.unwrap_or_default();
        match opt_str(m, "stream")?.as_deref() {
            None | Some("downstream") => {}
            Some(_) => {
                return Err(ApiError::bad(
                    "stream must be downstream: HTTP faults act on the answers",
                ))
            }
        }
        check_toxicity(m)?;
        let attributes = opt_object(m, "attributes")?.cloned().unwrap_or_default();
        let spec = build(&kind, &attributes)?;
        let name = opt_str(m, "name")?
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{kind}_downstream"));
        let mut st = self.state.lock().await;
        if st.toxics.iter().any(|t| t.name == name) {
            return Err(ApiError::new(StatusCode::CONFLICT, "toxic already exists"));
        }
        let t = HttpToxic {
            name,
            kind,
            attributes,
            spec,
        };
        if let Some(r) = &st.running {
            r.faults().inject(&t.name, t.spec.clone());
        }
        st.toxics.push(t.clone());
        Ok(t.to_json())
    }

    /// Replaces the fault with one built from the old attributes overlaid with the new.
    pub async fn update_toxic(
        &self,
        name: &str,
        m: &Map<String, Value>,
    ) -> Result<Value, ApiError> {
        check_toxicity(m)?;
        let new_attrs = opt_object(m, "attributes")?;
        let mut st = self.state.lock().await;
        let i = find(&st, name)?;
        let mut t = st.toxics[i].clone();
        if let Some(a) = new_attrs {
            t.attributes.extend(a.clone());
        }
        t.spec = build(&t.kind, &t.attributes)?;
        if let Some(r) = &st.running {
            r.faults().lift(name);
            r.faults().inject(name, t.spec.clone());
        }
        st.toxics[i] = t.clone();
        Ok(t.to_json())
    }

    pub async fn remove_toxic(&self, name: &str) -> Result<(), ApiError> {
        let mut st = self.state.lock().await;
        let i = find(&st, name)?;
        st.toxics.remove(i);
        if let Some(r) = &st.running {
            r.faults().lift(name);
        }
        Ok(())
    }

    pub async fn remove_all_toxics(&self) {
        let mut st = self.state.lock().await;
        st.toxics.clear();
        if let Some(r) = &st.running {
            r.faults().lift_all();
        }
    }

    async fn start_locked(&self, st: &mut State) -> Result<(), ApiError> {
        if st.running.is_some() {
            return Ok(());
        }
        // The upstream is resolved here only to refuse a name that resolves to nothing; the
        // proxy resolves it again at each connection.
        resolve("upstream", &st.upstream).await?;
        let spec = ProxySpec {
            listen: resolve("listen", &st.listen).await?.into(),
            upstream: st
                .upstream
                .parse()
                .map_err(|e: String| ApiError::new(StatusCode::BAD_REQUEST, e))?,
            upstream_tls: None,
            // As a Toxiproxy proxy (which relays bytes) leaves the client's Host alone.
            preserve_host: true,
            mode: ProxyMode::Http,
            driver: ProxyDriver::Builtin,
        };
        // A taken port is a 500 with the OS's reason, as for the TCP proxies.
        let running = crate::proxy::start(&self.name, &spec, self.seed)
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        st.listen = running.addr().to_string();
        for t in &st.toxics {
            running.faults().inject(&t.name, t.spec.clone());
        }
        st.running = Some(running);
        Ok(())
    }
}

async fn stop_locked(st: &mut State) {
    if let Some(r) = st.running.take() {
        r.stop().await;
    }
}

fn find(st: &State, name: &str) -> Result<usize, ApiError> {
    st.toxics
        .iter()
        .position(|t| t.name == name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "toxic not found"))
}

/// The HTTP faults carry their own `probability`; a second, Toxiproxy-style dice would
/// make the effective rate a product nobody asked for.
fn check_toxicity(m: &Map<String, Value>) -> Result<(), ApiError> {
    match opt_f32(m, "toxicity")? {
        None | Some(1.0) => Ok(()),
        Some(_) => Err(ApiError::bad(
            "toxicity must be 1 on an http proxy: use the fault's `probability` attribute",
        )),
    }
}

/// Builds the fault exactly as an experiment file would, so the attributes, their units and
/// the refusal of unknown ones are the same in both places.
fn build(kind: &str, attributes: &Map<String, Value>) -> Result<FaultSpec, ApiError> {
    // Toxiproxy's TCP toxic names are not HTTP faults (`latency` is both and is the HTTP one).
    const HTTP_KINDS: [&str; 6] = [
        "latency",
        "http_error",
        "truncate_stream",
        "stream_error",
        "reset",
        "blackhole",
    ];
    if !HTTP_KINDS.contains(&kind) {
        return Err(ApiError::bad("invalid toxic type"));
    }
    let mut doc = Map::new();
    doc.insert(kind.to_string(), Value::Object(attributes.clone()));
    let spec: FaultSpec = serde_json::from_value(Value::Object(doc))
        .map_err(|e| ApiError::bad(format!("bad attributes for {kind}: {e}")))?;
    // Defence in depth: the list above and the fault's own scope must agree.
    if spec.acts_on() != FaultScope::Traffic {
        return Err(ApiError::bad("invalid toxic type"));
    }
    Ok(spec)
}

async fn resolve(field: &str, addr: &str) -> Result<SocketAddr, ApiError> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    let unresolved = || {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot resolve {field} address `{addr}`"),
        )
    };
    tokio::net::lookup_host(addr)
        .await
        .map_err(|_| unresolved())?
        .next()
        .ok_or_else(unresolved)
}

/// A proxy with its state locked, for the shared update rules.
struct Locked<'a> {
    proxy: &'a HttpProxy,
    st: &'a mut State,
}

impl lifecycle::Relisten for Locked<'_> {
    type Error = ApiError;
    fn listen_mut(&mut self) -> &mut String {
        &mut self.st.listen
    }
    fn upstream_mut(&mut self) -> &mut String {
        &mut self.st.upstream
    }
    fn is_running(&self) -> bool {
        self.st.running.is_some()
    }
    async fn start(&mut self) -> Result<(), ApiError> {
        self.proxy.start_locked(self.st).await
    }
    async fn stop(&mut self) {
        stop_locked(self.st).await
    }
}
