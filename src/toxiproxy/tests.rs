//! The client against a small in-test server that mimics Toxiproxy's routes with canned JSON
//! and records what it was sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::*;

/// One request as the mock saw it.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    method: Method,
    path: String,
    content_type: Option<String>,
    /// `Null` when the request had no body.
    body: Value,
}

/// A canned answer.
struct Canned {
    status: StatusCode,
    body: String,
    delay: Duration,
}

fn answer(status: StatusCode, body: impl Into<String>) -> Canned {
    Canned {
        status,
        body: body.into(),
        delay: Duration::ZERO,
    }
}

fn api_error(status: StatusCode, message: &str) -> Canned {
    // As Toxiproxy writes it, through Go's http.Error: JSON plus a newline.
    let body = format!(
        "{}\n",
        json!({ "error": message, "status": status.as_u16() })
    );
    answer(status, body)
}

type Route = dyn Fn(&Seen) -> Canned + Send + Sync;

struct Mock {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Mock {
    async fn start(route: impl Fn(&Seen) -> Canned + Send + Sync + 'static) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(route);
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let route = Arc::clone(&route);
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let route = Arc::clone(&route);
                        let log = Arc::clone(&log);
                        async move {
                            let seen = read(req).await;
                            log.lock().unwrap().push(seen.clone());
                            let canned = route(&seen);
                            tokio::time::sleep(canned.delay).await;
                            let mut resp = Response::new(Full::new(Bytes::from(canned.body)));
                            *resp.status_mut() = canned.status;
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Mock { addr, seen, task }
    }

    fn client(&self) -> ToxiproxyClient {
        ToxiproxyClient::new(self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read(req: Request<Incoming>) -> Seen {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Seen {
        method,
        path,
        content_type,
        body,
    }
}

fn seen(method: Method, path: &str) -> Seen {
    Seen {
        method,
        path: path.into(),
        content_type: None,
        body: Value::Null,
    }
}

fn sent_json(method: Method, path: &str, body: Value) -> Seen {
    Seen {
        method,
        path: path.into(),
        content_type: Some("application/json".into()),
        body,
    }
}

fn latency_toxic_json() -> Value {
    json!({
        "name": "latency_downstream", "type": "latency", "stream": "downstream",
        "toxicity": 1.0, "attributes": { "latency": 100, "jitter": 0 }
    })
}

#[tokio::test]
async fn version_json_and_plain_text() {
    let mock = Mock::start(|_| answer(StatusCode::OK, "{\"version\": \"2.9.0\"}\n")).await;
    assert_eq!(mock.client().version().await.unwrap(), "2.9.0");
    assert_eq!(mock.seen(), vec![seen(Method::GET, "/version")]);

    // Servers before 2.2 answer the bare text.
    let old = Mock::start(|_| answer(StatusCode::OK, "2.1.4")).await;
    assert_eq!(old.client().version().await.unwrap(), "2.1.4");

    let html = Mock::start(|_| answer(StatusCode::OK, "<html> not a version </html>")).await;
    let err = html.client().version().await.unwrap_err();
    assert!(matches!(err, ToxiproxyError::BadAnswer { .. }), "{err}");
}

#[tokio::test]
async fn proxies_are_listed_with_their_toxics() {
    let mock = Mock::start(|_| {
        let body = json!({
            "redis": {
                "name": "redis", "listen": "127.0.0.1:26379", "upstream": "127.0.0.1:6379",
                "enabled": true, "toxics": [latency_toxic_json()]
            },
            // An older server's shape: no `toxics`.
            "api": {
                "name": "api", "listen": "[::]:8001", "upstream": "api:80", "enabled": false
            }
        });
        answer(StatusCode::OK, body.to_string())
    })
    .await;
    let proxies = mock.client().proxies().await.unwrap();
    assert_eq!(mock.seen(), vec![seen(Method::GET, "/proxies")]);
    assert_eq!(proxies.keys().collect::<Vec<_>>(), ["api", "redis"]);
    let redis = &proxies["redis"];
    assert!(redis.enabled);
    assert_eq!(redis.upstream, "127.0.0.1:6379");
    assert_eq!(redis.toxics.len(), 1);
    let t = &redis.toxics[0];
    assert_eq!(
        (t.name.as_str(), t.kind.as_str(), t.stream.as_str()),
        ("latency_downstream", "latency", "downstream")
    );
    assert_eq!(t.toxicity, 1.0);
    assert_eq!(t.attributes["latency"], json!(100));
    assert!(!proxies["api"].enabled);
    assert!(proxies["api"].toxics.is_empty());
}

#[tokio::test]
async fn create_proxy_sends_the_proxy_and_reads_the_answer() {
    let mock = Mock::start(|seen| {
        let mut created = seen.body.clone();
        created["toxics"] = json!([]);
        answer(StatusCode::CREATED, created.to_string())
    })
    .await;
    let new = NewProxy {
        name: "redis".into(),
        listen: "127.0.0.1:26379".into(),
        upstream: "127.0.0.1:6379".into(),
        enabled: true,
    };
    let proxy = mock.client().create_proxy(&new).await.unwrap();
    assert_eq!(
        mock.seen(),
        vec![sent_json(
            Method::POST,
            "/proxies",
            json!({
                "name": "redis", "listen": "127.0.0.1:26379",
                "upstream": "127.0.0.1:6379", "enabled": true
            })
        )]
    );
    assert_eq!(
        proxy,
        Proxy {
            name: "redis".into(),
            listen: "127.0.0.1:26379".into(),
            upstream: "127.0.0.1:6379".into(),
            enabled: true,
            toxics: vec![],
        }
    );
}

#[tokio::test]
async fn an_existing_proxy_is_a_conflict() {
    let mock = Mock::start(|_| api_error(StatusCode::CONFLICT, "proxy already exists")).await;
    let new = NewProxy {
        name: "redis".into(),
        listen: "127.0.0.1:0".into(),
        upstream: "127.0.0.1:6379".into(),
        enabled: true,
    };
    let err = mock.client().create_proxy(&new).await.unwrap_err();
    let ToxiproxyError::Conflict {
        addr,
        what,
        message,
    } = &err
    else {
        panic!("a conflict: {err}")
    };
    assert_eq!(*addr, mock.addr);
    assert_eq!(what, "proxy `redis`");
    assert_eq!(message, "proxy already exists");
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    let text = err.to_string();
    assert!(text.contains(&mock.addr.to_string()), "{text}");
    assert!(text.contains("409"), "{text}");
}

#[tokio::test]
async fn delete_proxy_and_a_missing_one() {
    let mock = Mock::start(|seen| match seen.path.as_str() {
        "/proxies/redis" => answer(StatusCode::NO_CONTENT, ""),
        _ => api_error(StatusCode::NOT_FOUND, "proxy not found"),
    })
    .await;
    let client = mock.client();
    client.delete_proxy("redis").await.unwrap();
    let err = client.delete_proxy("gone").await.unwrap_err();
    assert_eq!(
        mock.seen(),
        vec![
            seen(Method::DELETE, "/proxies/redis"),
            seen(Method::DELETE, "/proxies/gone")
        ]
    );
    let ToxiproxyError::NotFound { what, message, .. } = &err else {
        panic!("not found: {err}")
    };
    assert_eq!(what, "proxy `gone`");
    assert_eq!(message, "proxy not found");
    assert!(err.to_string().contains(&mock.addr.to_string()));
}

#[tokio::test]
async fn add_toxic_sends_only_what_is_set() {
    let mock = Mock::start(|_| answer(StatusCode::OK, latency_toxic_json().to_string())).await;
    let mut attributes = serde_json::Map::new();
    attributes.insert("latency".into(), json!(100));
    let new = NewToxic {
        name: None,
        kind: "latency".into(),
        stream: None,
        toxicity: None,
        attributes,
    };
    let toxic = mock.client().add_toxic("redis", &new).await.unwrap();
    assert_eq!(toxic.name, "latency_downstream");
    assert_eq!(toxic.kind, "latency");

    let full = NewToxic {
        name: Some("slow.up".into()),
        stream: Some("upstream".into()),
        toxicity: Some(0.5),
        ..new
    };
    mock.client().add_toxic("redis", &full).await.unwrap();
    assert_eq!(
        mock.seen(),
        vec![
            sent_json(
                Method::POST,
                "/proxies/redis/toxics",
                json!({ "type": "latency", "attributes": { "latency": 100 } })
            ),
            sent_json(
                Method::POST,
                "/proxies/redis/toxics",
                json!({
                    "name": "slow.up", "type": "latency", "stream": "upstream",
                    "toxicity": 0.5, "attributes": { "latency": 100 }
                })
            ),
        ]
    );
}

#[tokio::test]
async fn add_toxic_errors_carry_the_servers_message() {
    let mock = Mock::start(|seen| match seen.body["type"].as_str() {
        Some("latency") => api_error(StatusCode::CONFLICT, "toxic already exists"),
        _ => api_error(StatusCode::BAD_REQUEST, "invalid toxic type"),
    })
    .await;
    let client = mock.client();
    let mut toxic = NewToxic {
        name: Some("lat".into()),
        kind: "latency".into(),
        stream: None,
        toxicity: None,
        attributes: serde_json::Map::new(),
    };
    let err = client.add_toxic("redis", &toxic).await.unwrap_err();
    let ToxiproxyError::Conflict { what, message, .. } = &err else {
        panic!("a conflict: {err}")
    };
    assert_eq!(what, "toxic `lat` on proxy `redis`");
    assert_eq!(message, "toxic already exists");

    toxic.kind = "sparkles".into();
    let err = client.add_toxic("redis", &toxic).await.unwrap_err();
    let ToxiproxyError::Rejected {
        addr,
        status,
        message,
    } = &err
    else {
        panic!("rejected: {err}")
    };
    assert_eq!(
        (*addr, *status, message.as_str()),
        (mock.addr, StatusCode::BAD_REQUEST, "invalid toxic type")
    );
    assert!(err.to_string().contains("400 Bad Request"), "{err}");
}

#[tokio::test]
async fn remove_toxic_and_a_missing_one() {
    let mock = Mock::start(|seen| match seen.path.as_str() {
        "/proxies/redis/toxics/lat" => answer(StatusCode::NO_CONTENT, ""),
        _ => api_error(StatusCode::NOT_FOUND, "toxic not found"),
    })
    .await;
    let client = mock.client();
    client.remove_toxic("redis", "lat").await.unwrap();
    let err = client.remove_toxic("redis", "nope").await.unwrap_err();
    assert_eq!(
        mock.seen(),
        vec![
            seen(Method::DELETE, "/proxies/redis/toxics/lat"),
            seen(Method::DELETE, "/proxies/redis/toxics/nope")
        ]
    );
    let ToxiproxyError::NotFound { what, message, .. } = &err else {
        panic!("not found: {err}")
    };
    assert_eq!(what, "toxic `nope` on proxy `redis`");
    assert_eq!(message, "toxic not found");
}

#[tokio::test]
async fn reset_posts_to_reset() {
    let mock = Mock::start(|_| answer(StatusCode::NO_CONTENT, "")).await;
    mock.client().reset().await.unwrap();
    assert_eq!(mock.seen(), vec![seen(Method::POST, "/reset")]);
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let mock = Mock::start(|_| Canned {
        status: StatusCode::OK,
        body: "{}".into(),
        delay: Duration::from_secs(30),
    })
    .await;
    let timeout = Duration::from_millis(200);
    let client = mock.client().with_timeout(timeout);
    let started = Instant::now();
    let err = client.proxies().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let ToxiproxyError::Timeout { addr, timeout: t } = &err else {
        panic!("a timeout: {err}")
    };
    assert_eq!((*addr, *t), (mock.addr, timeout));
    assert!(err.to_string().contains("200ms"), "{err}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    // A port that was just free: bound, read, released.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = ToxiproxyClient::new(addr).reset().await.unwrap_err();
    let ToxiproxyError::Unreachable { addr: a, reason } = &err else {
        panic!("unreachable: {err}")
    };
    assert_eq!(*a, addr);
    // The cause chain, not just hyper's "client error (Connect)".
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert!(err.to_string().contains(&addr.to_string()));
}

#[tokio::test]
async fn malformed_answers_are_bad_answers() {
    let mock = Mock::start(|seen| match seen.path.as_str() {
        "/proxies" => answer(StatusCode::OK, "{\"redis\": {\"name\": "),
        "/proxies/redis/toxics" => answer(StatusCode::OK, "[1, 2, 3]"),
        _ => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "upstream connect error\n",
        ),
    })
    .await;
    let client = mock.client();
    let err = client.proxies().await.unwrap_err();
    assert!(
        matches!(&err, ToxiproxyError::BadAnswer { addr, .. } if *addr == mock.addr),
        "{err}"
    );
    let toxic = NewToxic {
        name: None,
        kind: "timeout".into(),
        stream: None,
        toxicity: None,
        attributes: serde_json::Map::new(),
    };
    let err = client.add_toxic("redis", &toxic).await.unwrap_err();
    assert!(matches!(err, ToxiproxyError::BadAnswer { .. }), "{err}");

    // An error that is not Toxiproxy's JSON: the body itself is the message.
    let err = client.reset().await.unwrap_err();
    let ToxiproxyError::Rejected {
        status, message, ..
    } = &err
    else {
        panic!("rejected: {err}")
    };
    assert_eq!(*status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(message, "upstream connect error");
}

#[tokio::test]
async fn names_that_need_escaping_are_refused_before_sending() {
    let mock = Mock::start(|_| answer(StatusCode::NO_CONTENT, "")).await;
    let client = mock.client();
    for bad in ["", ".", "..", "a/b", "a b", "a%2Fb", "é", "a?b", "a#b"] {
        let err = client.delete_proxy(bad).await.unwrap_err();
        assert!(
            matches!(&err, ToxiproxyError::InvalidRequest { message, .. } if message.contains("proxy name")),
            "{bad:?}: {err}"
        );
        let err = client.remove_toxic("redis", bad).await.unwrap_err();
        assert!(
            matches!(&err, ToxiproxyError::InvalidRequest { message, .. } if message.contains("toxic name")),
            "{bad:?}: {err}"
        );
    }
    let new = NewProxy {
        name: "a/b".into(),
        listen: "127.0.0.1:0".into(),
        upstream: "127.0.0.1:1".into(),
        enabled: true,
    };
    let err = client.create_proxy(&new).await.unwrap_err();
    assert!(
        matches!(err, ToxiproxyError::InvalidRequest { .. }),
        "{err}"
    );
    let toxic = NewToxic {
        name: None,
        kind: "latency".into(),
        stream: None,
        toxicity: Some(f32::NAN),
        attributes: serde_json::Map::new(),
    };
    let err = client.add_toxic("redis", &toxic).await.unwrap_err();
    assert!(
        matches!(err, ToxiproxyError::InvalidRequest { .. }),
        "{err}"
    );
    assert!(mock.seen().is_empty(), "{:?}", mock.seen());

    // Every allowed character goes through as is.
    client.delete_proxy("Redis-1_primary.v2").await.unwrap();
    assert_eq!(
        mock.seen(),
        vec![seen(Method::DELETE, "/proxies/Redis-1_primary.v2")]
    );
}

#[test]
fn debug_is_small() {
    let client = ToxiproxyClient::new("127.0.0.1:8474".parse().unwrap());
    let text = format!("{client:?}");
    assert_eq!(
        text,
        "ToxiproxyClient { addr: 127.0.0.1:8474, timeout: 5s }"
    );
}
