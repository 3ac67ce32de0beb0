//! The `/metrics` endpoint: the project's listener and hyper, like every server here. It runs on
//! the command's runtime, not the load generator's, so a scrape never queues behind requests
//! being measured; and it outlives the run by a short linger, so the last scrape sees the end.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::Live;
use crate::exit::Failure;
use crate::net::{Connection, Http1, Listener, Serve, ShutdownSignals, Signal};

/// How long the endpoint stays up after the run by default (`--metrics-linger`): a few scrape
/// intervals of Prometheus' usual 5-15 s.
pub const DEFAULT_LINGER: &str = "15s";

/// A scraper that has not sent its request head within this is disconnected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP: Http1 = Http1::new().header_read_timeout(HEADER_TIMEOUT);

const OPENMETRICS: &str = "application/openmetrics-text";
const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The endpoint, serving `live` until [`Exporter::linger`] ends it.
pub struct Exporter {
    live: Arc<Live>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    /// Installed before the run, so a signal during the run is still heard at the linger.
    signals: ShutdownSignals,
}

impl Exporter {
    /// Binds `addr` and starts serving `live` on the current runtime. A taken or forbidden
    /// address fails here, before anything of the run has started.
    pub fn start(addr: SocketAddr, live: Arc<Live>) -> Result<Exporter, Failure> {
        let signals = ShutdownSignals::install()?;
        let listener = Listener::bind(addr, "the metrics endpoint (--metrics)")?;
        let addr = listener.local_addr();
        let (stop, stopped) = oneshot::channel();
        let shared = Arc::clone(&live);
        let server = tokio::spawn(async move {
            let _ = listener
                .serve(Serve::default(), stopped, move |conn| {
                    serve_connection(conn, Arc::clone(&shared))
                })
                .await;
        });
        Ok(Exporter {
            live,
            addr,
            stop: Some(stop),
            server,
            signals,
        })
    }

    /// The address it really listens on (the port, when asked for 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live)
    }

    /// Keeps serving for `linger`, then stops. A SIGINT or SIGTERM ends it at once, and so
    /// does one that came during the run: a run stopped by a signal was asked to end, not to
    /// wait. Returns the signal, if one ended it.
    pub async fn linger(mut self, linger: Duration) -> Option<Signal> {
        let signal = tokio::select! {
            () = tokio::time::sleep(linger) => None,
            sig = self.signals.recv() => Some(sig),
        };
        self.shut().await;
        signal
    }

    async fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve_connection(conn: Connection, live: Arc<Live>) {
    let service = service_fn(move |req| {
        let live = Arc::clone(&live);
        async move { Ok::<_, Infallible>(respond(&req, &live)) }
    });
    conn.serve_http(HTTP, service).await;
}

fn respond(req: &Request<Incoming>, live: &Live) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    // Prometheus asks for OpenMetrics first; a browser or curl gets the classic text format.
    let openmetrics = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(OPENMETRICS));
    let body = live.encode(openmetrics);
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    let kind = if openmetrics {
        OPENMETRICS_TYPE
    } else {
        TEXT_TYPE
    };
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
