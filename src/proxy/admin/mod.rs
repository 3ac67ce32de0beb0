//! `faultline proxy`: a standalone server of TCP fault proxies whose admin API speaks
//! Toxiproxy's (routes, JSON shapes, defaults, status codes, error body), so Toxiproxy's
//! clients drive it unchanged. A proxy created with `"mode": "http"` is faultline's HTTP fault
//! proxy instead, its toxics the HTTP faults. Split: `routes` (one function per route),
//! `entry` (a proxy of either kind), `http_entry` (the http kind), `model` (JSON and errors),
//! `guard` (refusing browsers and DNS rebinding); this file serves HTTP.

mod entry;
mod guard;
mod http_entry;
mod model;
mod routes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use indexmap::IndexMap;
use tokio::sync::{Mutex, MutexGuard};

use crate::exit::{ExitCode, Failure};
use crate::net::{Connection, Http1, Serve};
use entry::Entry;
use guard::Guard;
use model::ApiError;

/// Every proxy by name, in creation order, and the seed they all draw from.
pub struct Collection {
    proxies: Mutex<IndexMap<String, Entry>>,
    seed: u64,
}

impl Collection {
    fn new(seed: u64) -> Self {
        Collection {
            proxies: Mutex::new(IndexMap::new()),
            seed,
        }
    }

    pub async fn lock(&self) -> MutexGuard<'_, IndexMap<String, Entry>> {
        self.proxies.lock().await
    }

    /// The seed of `faultline proxy --seed`, given to every proxy created.
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

/// Request bodies are small JSON documents; bigger is a mistake.
const MAX_BODY: usize = 1024 * 1024;
/// A client trickling its request must not hold a connection for ever.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin API on `listen` until SIGTERM or Ctrl-C, then stops every proxy.
/// `allowed_hosts`: names accepted in the Host header besides the address and localhost. Every
/// proxy created draws its random choices from `seed`.
pub async fn run(
    listen: SocketAddr,
    allowed_hosts: &[String],
    seed: u64,
) -> Result<ExitCode, Failure> {
    let allowed_hosts: Arc<[String]> = allowed_hosts
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let listener = crate::net::Listener::bind(listen, "the proxy admin API")?;
    let addr = listener.local_addr();
    // Installed before the address is announced: a script that read the line may signal at once.
    let mut signals = crate::net::ShutdownSignals::install()?;
    // Tests and scripts read this line to learn the real port when asked for port 0.
    eprintln!("faultline proxy: admin API listening on http://{addr}");
    let coll = Arc::new(Collection::new(seed));
    let serving = Arc::clone(&coll);
    listener
        .serve(Serve::default(), signals.recv(), move |conn| {
            serve(conn, Arc::clone(&serving), Arc::clone(&allowed_hosts))
        })
        .await;
    let proxies: Vec<Entry> = coll.lock().await.values().cloned().collect();
    for p in proxies {
        p.stop().await;
    }
    eprintln!("faultline proxy: stopped");
    Ok(ExitCode::Success)
}

/// A client trickling its request head must not hold a connection for ever.
const HTTP: Http1 = Http1::new().header_read_timeout(READ_TIMEOUT);

async fn serve(conn: Connection, coll: Arc<Collection>, allowed: Arc<[String]>) {
    // The address this client reached is what a legitimate Host header names.
    let Ok(local) = conn.local_addr() else {
        return;
    };
    let guard = Arc::new(Guard {
        local,
        allowed_hosts: allowed.to_vec(),
    });
    let service = service_fn(move |req| {
        let coll = Arc::clone(&coll);
        let guard = Arc::clone(&guard);
        async move { Ok::<_, Infallible>(handle(req, &coll, &guard).await) }
    });
    conn.serve_http(HTTP, service).await;
}

async fn handle(req: Request<Incoming>, coll: &Collection, guard: &Guard) -> Response<Full<Bytes>> {
    // Before the body is read: a refused request gets nothing, not even a 400.
    if let Some(refusal) = guard.refusal(req.headers()) {
        return error(&refusal);
    }
    let method = req.method().clone();
    let path = req.uri().path().trim_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').collect();
    let body = match tokio::time::timeout(
        READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => return error(&ApiError::bad(format!("bad request body: {e}"))),
        Err(_) => return error(&ApiError::bad("bad request body: not sent in time")),
    };
    match routes::route(coll, &method, &segments, &body).await {
        Ok((status, Some(v))) => respond(status, Bytes::from(v.to_string())),
        Ok((status, None)) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = status;
            r
        }
        Err(e) => error(&e),
    }
}

fn error(e: &ApiError) -> Response<Full<Bytes>> {
    respond(e.status, Bytes::from(e.body().to_string()))
}

fn respond(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::tcp::tests::{echo, limit_picks};
    use hyper::Method;
    use serde_json::json;

    /// The picks of a toxicity-0.5 toxic over 16 connections through a proxy created by the
    /// admin API of a server started with `seed`.
    async fn picks(seed: u64) -> Vec<bool> {
        let coll = Collection::new(seed);
        let create = json!({"name": "p", "upstream": echo().await.to_string()}).to_string();
        let post = |segments: &'static [&'static str], body: String| {
            let coll = &coll;
            async move {
                routes::route(coll, &Method::POST, segments, body.as_bytes())
                    .await
                    .map_err(|e| e.body())
            }
        };
        let (_, created) = post(&["proxies"], create).await.unwrap();
        let toxic = json!({"type": "limit_data", "toxicity": 0.5, "attributes": {"bytes": 1}});
        post(&["proxies", "p", "toxics"], toxic.to_string())
            .await
            .unwrap();
        let listen = created.and_then(|c| c["listen"].as_str().map(str::to_string));
        let addr = listen.and_then(|l| l.parse().ok()).unwrap();
        let out = limit_picks(addr, 16).await;
        for p in coll.lock().await.values() {
            p.stop().await;
        }
        out
    }

    #[tokio::test]
    async fn the_seed_reaches_the_proxies_the_api_creates() {
        let a = picks(11).await;
        assert!(a.contains(&true) && a.contains(&false), "{a:?}");
        assert_eq!(a, picks(11).await);
        assert_ne!(a, picks(12).await);
    }
}
