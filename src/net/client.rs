//! The one builder of hyper clients: the gateway's upstream client, the REST clients (agent,
//! Toxiproxy) and the readiness probe get theirs here, with what differs between them (connect
//! bound, pool) as parameters. The load generator and the fault proxy's upstream hop use
//! [`crate::net::h1`], which reads each answer in the request's own task.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// A pooled HTTP/1 client over plain TCP.
pub type HttpClient<B = Full<Bytes>> = Client<HttpConnector, B>;

/// What differs between faultline's clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// One connect attempt fails after this; a silent address must not take a whole timeout.
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this; `None`: hyper's default (90 s).
    pub pool_idle_timeout: Option<Duration>,
    /// Idle connections kept per host; `None`: no limit. Zero opens a fresh connection for
    /// every request.
    pub pool_max_idle_per_host: Option<usize>,
}

impl ClientConfig {
    /// Keep-alive with hyper's pool defaults and `connect_timeout` on each connect.
    pub const fn new(connect_timeout: Duration) -> ClientConfig {
        ClientConfig {
            connect_timeout,
            pool_idle_timeout: None,
            pool_max_idle_per_host: None,
        }
    }

    pub const fn pool_idle_timeout(self, idle: Duration) -> ClientConfig {
        ClientConfig {
            pool_idle_timeout: Some(idle),
            ..self
        }
    }

    pub const fn pool_max_idle_per_host(self, max: usize) -> ClientConfig {
        ClientConfig {
            pool_max_idle_per_host: Some(max),
            ..self
        }
    }
}

/// A keep-alive client with TCP_NODELAY (token streams are many small writes) and a bound on
/// each connect attempt.
pub fn http_client<B>(config: ClientConfig) -> HttpClient<B>
where
    B: Body + Send,
    B::Data: Send,
{
    builder(config).build(tcp_connector(config))
}

fn tcp_connector(config: ClientConfig) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector
}

fn builder(config: ClientConfig) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    // With a timer the pool also closes idle connections in the background, not only when
    // it next looks at them.
    builder.pool_timer(TokioTimer::new());
    if let Some(idle) = config.pool_idle_timeout {
        builder.pool_idle_timeout(idle);
    }
    if let Some(max) = config.pool_max_idle_per_host {
        builder.pool_max_idle_per_host(max);
    }
    builder
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use tokio::sync::oneshot;

    use super::*;
    use crate::net::{Http1, Listener, Serve};

    const DEADLINE: Duration = Duration::from_secs(5);

    /// A server that counts the connections it accepted.
    fn server() -> (SocketAddr, Arc<AtomicUsize>, oneshot::Sender<()>) {
        let listener = Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), "the test").unwrap();
        let addr = listener.local_addr();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(listener.serve(Serve::default(), stopped, move |conn| {
            count.fetch_add(1, Ordering::SeqCst);
            let service = service_fn(|_req| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
            });
            conn.serve_http(Http1::new(), service)
        }));
        (addr, accepted, stop)
    }

    async fn get(client: &HttpClient, addr: SocketAddr) -> Bytes {
        let req = Request::get(format!("http://{addr}/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let exchange = async {
            let resp = client.request(req).await.unwrap();
            resp.into_body().collect().await.unwrap().to_bytes()
        };
        tokio::time::timeout(DEADLINE, exchange).await.unwrap()
    }

    #[tokio::test]
    async fn pooled_clients_reuse_one_connection() {
        let (addr, accepted, _stop) = server();
        let client = http_client(ClientConfig::new(DEADLINE));
        for _ in 0..3 {
            assert_eq!(get(&client, addr).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn no_idle_connections_means_a_fresh_one_per_request() {
        let (addr, accepted, _stop) = server();
        let client = http_client(ClientConfig::new(DEADLINE).pool_max_idle_per_host(0));
        for _ in 0..3 {
            assert_eq!(get(&client, addr).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_builders_set_what_they_say() {
        let c = ClientConfig::new(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8);
        assert_eq!(
            c,
            ClientConfig {
                connect_timeout: Duration::from_secs(2),
                pool_idle_timeout: Some(Duration::from_secs(30)),
                pool_max_idle_per_host: Some(8),
            }
        );
    }
}
