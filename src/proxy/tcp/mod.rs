//! A TCP fault proxy with Toxiproxy's toxics: listens on one address, forwards every
//! connection to one upstream, and applies a live list of toxics per direction (`upstream` =
//! client -> server bytes, `downstream` = server -> client). Toxics added, updated or removed
//! act on open connections too. Disabling closes every connection and stops listening.
//!
//! Toxicity, jitter and slice sizes are drawn from generators named by the proxy's seed
//! ([`TcpProxy::with_seed`]), its name, the toxic's name and the connection's index (the order
//! in which the proxy accepted it, counted from its creation), so a run is reproducible.
//!
//! Split by concern: `toxic` (types, attributes, JSON shape), `link` (one connection's pumps).

mod link;
pub mod toxic;

#[cfg(test)]
pub(crate) mod tests;

use crate::proxy::lifecycle;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::{oneshot, watch, Mutex};
use tokio::task::JoinHandle;

pub use toxic::{Stream, Toxic, ToxicKind};

use crate::net::{Listener, Serve};
use link::{Keys, ToxicList};

/// The seed of a proxy nobody gave one: the seed of an experiment file without `seed:`.
pub const DEFAULT_SEED: u64 = 0;

/// Why an operation on a proxy failed; the admin API maps these to Toxiproxy's statuses.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TcpError {
    #[error("toxic not found")]
    ToxicNotFound,
    #[error("toxic already exists")]
    ToxicExists,
    #[error("{0}")]
    BadRequest(String),
    /// Listening failed (a taken port, an unresolvable address).
    #[error("{0}")]
    Listen(String),
}

/// A snapshot of a proxy, as the API shows it.
#[derive(Clone, Debug)]
pub struct ProxyInfo {
    pub name: String,
    /// The configured address until it listens, then the real one (port 0 resolved).
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<Toxic>,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct State {
    listen: String,
    upstream: String,
    running: Option<Running>,
}

/// One TCP proxy. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct TcpProxy {
    name: String,
    state: Mutex<State>,
    toxics: watch::Sender<ToxicList>,
    seed: u64,
    /// Connections accepted so far, across restarts: the next one's index.
    accepted: Arc<AtomicU64>,
}

impl TcpProxy {
    /// A proxy that is not listening yet, drawing from [`DEFAULT_SEED`]; call `start`.
    pub fn new(name: &str, listen: &str, upstream: &str) -> Self {
        TcpProxy {
            name: name.to_string(),
            state: Mutex::new(State {
                listen: listen.to_string(),
                upstream: upstream.to_string(),
                running: None,
            }),
            toxics: watch::Sender::new(Arc::new(Vec::new())),
            seed: DEFAULT_SEED,
            accepted: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The seed every random choice of its toxics is drawn from (a run's seed).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts listening (no-op when already listening). Port 0 picks a free port, which is
    /// then kept, so a disable/enable cycle listens on the same address again.
    pub async fn start(&self) -> Result<SocketAddr, TcpError> {
        let mut st = self.state.lock().await;
        self.start_locked(&mut st).await
    }

    /// Closes every connection and stops listening (no-op when stopped).
    pub async fn stop(&self) {
        let mut st = self.state.lock().await;
        stop_locked(&mut st).await;
    }

    pub async fn info(&self) -> ProxyInfo {
        let st = self.state.lock().await;
        ProxyInfo {
            name: self.name.clone(),
            listen: st.listen.clone(),
            upstream: st.upstream.clone(),
            enabled: st.running.is_some(),
            toxics: self.toxics(),
        }
    }

    /// Changes the address, the upstream and/or the enabled state. A new address or upstream
    /// restarts a listening proxy (its connections close), as Toxiproxy does.
    pub async fn update(
        &self,
        listen: Option<&str>,
        upstream: Option<&str>,
        enabled: Option<bool>,
    ) -> Result<ProxyInfo, TcpError> {
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
        Ok(self.info().await)
    }

    async fn start_locked(&self, st: &mut State) -> Result<SocketAddr, TcpError> {
        if let Some(r) = &st.running {
            if !r.task.is_finished() {
                return resolve(&st.listen).await;
            }
        }
        let addr = resolve(&st.listen).await?;
        let listener = crate::net::Listener::bind(addr, &format!("proxy `{}`", self.name))
            .map_err(|e| TcpError::Listen(e.to_string()))?;
        let real = listener.local_addr();
        st.listen = real.to_string();
        let (stop, stopped) = oneshot::channel();
        let upstream: Arc<str> = Arc::from(st.upstream.as_str());
        let keys = Keys {
            seed: self.seed,
            proxy: Arc::from(self.name.as_str()),
            connection: 0,
        };
        let task = tokio::spawn(serve(
            listener,
            upstream,
            self.toxics.subscribe(),
            keys,
            Arc::clone(&self.accepted),
            stopped,
        ));
        st.running = Some(Running { stop, task });
        Ok(real)
    }

    /// The toxics in the order they were added.
    /// Connections toxic `name` acted on so far; `None` if there is no such toxic.
    pub fn touched(&self, name: &str) -> Option<u64> {
        self.toxics
            .borrow()
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.touched.count())
    }

    pub fn toxics(&self) -> Vec<Toxic> {
        self.toxics.borrow().as_ref().clone()
    }

    pub fn toxic(&self, name: &str) -> Option<Toxic> {
        self.toxics
            .borrow()
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }

    /// Adds a toxic; its name must be new on this proxy.
    pub fn add_toxic(&self, toxic: Toxic) -> Result<Toxic, TcpError> {
        validate_toxicity(toxic.toxicity)?;
        let mut result = Err(TcpError::ToxicExists);
        self.toxics.send_if_modified(|list| {
            if list.iter().any(|t| t.name == toxic.name) {
                return false;
            }
            Arc::make_mut(list).push(toxic.clone());
            result = Ok(toxic.clone());
            true
        });
        result
    }

    /// Updates a toxic's attributes (those given; the rest keep their values) and toxicity.
    pub fn update_toxic(
        &self,
        name: &str,
        attributes: Option<&Map<String, Value>>,
        toxicity: Option<f32>,
    ) -> Result<Toxic, TcpError> {
        if let Some(t) = toxicity {
            validate_toxicity(t)?;
        }
        let mut result = Err(TcpError::ToxicNotFound);
        self.toxics.send_if_modified(|list| {
            let Some(i) = list.iter().position(|t| t.name == name) else {
                return false;
            };
            let old = &list[i];
            let kind = match attributes {
                Some(a) => {
                    match ToxicKind::from_attributes(old.kind.type_name(), a, Some(&old.kind)) {
                        Ok(k) => k,
                        Err(e) => {
                            result = Err(TcpError::BadRequest(e));
                            return false;
                        }
                    }
                }
                None => old.kind.clone(),
            };
            let new = Toxic::new(
                old.name.clone(),
                kind,
                old.stream,
                toxicity.unwrap_or(old.toxicity),
            );
            Arc::make_mut(list)[i] = new.clone();
            result = Ok(new);
            true
        });
        result
    }

    pub fn remove_toxic(&self, name: &str) -> Result<(), TcpError> {
        let mut found = false;
        self.toxics.send_if_modified(|list| {
            found = list.iter().any(|t| t.name == name);
            if found {
                Arc::make_mut(list).retain(|t| t.name != name);
            }
            found
        });
        if found {
            Ok(())
        } else {
            Err(TcpError::ToxicNotFound)
        }
    }

    pub fn remove_all_toxics(&self) {
        self.toxics.send_if_modified(|list| {
            let had = !list.is_empty();
            *list = Arc::new(Vec::new());
            had
        });
    }
}

fn validate_toxicity(t: f32) -> Result<(), TcpError> {
    if (0.0..=1.0).contains(&t) {
        Ok(())
    } else {
        Err(TcpError::BadRequest(format!(
            "toxicity must be between 0 and 1, got {t}"
        )))
    }
}

async fn stop_locked(st: &mut State) {
    if let Some(r) = st.running.take() {
        let _ = r.stop.send(());
        // The accept loop only ends by this signal and cannot panic.
        let _ = r.task.await;
    }
}

/// Resolves `host:port` (Toxiproxy accepts names such as `localhost:0`) to its first address.
async fn resolve(addr: &str) -> Result<SocketAddr, TcpError> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| TcpError::Listen(format!("cannot resolve listen address `{addr}`: {e}")))?
        .next()
        .ok_or_else(|| TcpError::Listen(format!("listen address `{addr}` resolves to nothing")))
}

/// Accepts until stopped; every connection is a task of the listener, so stopping closes them
/// all. Raw TCP: the link copies bytes, it does not speak HTTP.
async fn serve(
    listener: Listener,
    upstream: Arc<str>,
    toxics: watch::Receiver<ToxicList>,
    keys: Keys,
    next_index: Arc<AtomicU64>,
    stopped: oneshot::Receiver<()>,
) {
    let opts = Serve {
        // A client gone before accept is common under toxics; retry soon.
        backoff: std::time::Duration::from_millis(10),
        grace: std::time::Duration::ZERO,
    };
    // A stop and a dropped sender (the owner gone) both end it.
    let _ = listener
        .serve(opts, stopped, move |conn| {
            // Numbered here, in accept order, not when its task first runs.
            let keys = Keys {
                connection: next_index.fetch_add(1, Ordering::Relaxed),
                ..keys.clone()
            };
            let (upstream, toxics) = (upstream.clone(), toxics.clone());
            async move {
                // Its listener has no cores, so the socket is already registered: this fails
                // only if it could not be, and then the connection closes like a failed accept.
                if let Ok(stream) = conn.into_stream() {
                    link::handle(stream, upstream, toxics, keys).await;
                }
            }
        })
        .await;
}

/// A proxy with its state locked, for the shared update rules.
struct Locked<'a> {
    proxy: &'a TcpProxy,
    st: &'a mut State,
}

impl lifecycle::Relisten for Locked<'_> {
    type Error = TcpError;
    fn listen_mut(&mut self) -> &mut String {
        &mut self.st.listen
    }
    fn upstream_mut(&mut self) -> &mut String {
        &mut self.st.upstream
    }
    fn is_running(&self) -> bool {
        self.st.running.is_some()
    }
    async fn start(&mut self) -> Result<(), TcpError> {
        self.proxy.start_locked(self.st).await.map(|_| ())
    }
    async fn stop(&mut self) {
        stop_locked(self.st).await
    }
}
