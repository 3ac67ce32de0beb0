//! The server against a raw client on loopback: the bytes it writes (`exchanges`), and how and
//! when a connection or an answer ends (`ends`).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::server::{serve, Hangup, HangupSignal, Server, TooLarge, Upload};

mod ends;
mod exchanges;

const DEADLINE: Duration = Duration::from_secs(5);

/// The head limit is far beyond [`DEADLINE`], so no test passes by the server timing out a
/// connection it should have closed itself.
const SERVER: Server = Server {
    header_read_timeout: Some(Duration::from_secs(60)),
    body_read_timeout: Some(Duration::from_secs(60)),
    max_body: 64,
};

type Boxed = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn full(text: &str) -> Boxed {
    Full::new(Bytes::from(text.to_string()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A body of `frames`, each after `gap`; `Err` items fail it there.
fn paced(frames: Vec<Result<&'static str, ()>>, gap: Duration) -> Boxed {
    let stream = futures_util::stream::iter(frames).then(move |item| async move {
        tokio::time::sleep(gap).await;
        item.map(|text| Frame::data(Bytes::from_static(text.as_bytes())))
            .map_err(|()| std::io::Error::other("the body failed"))
    });
    StreamBody::new(stream).boxed_unsync()
}

/// Serves one connection on a loopback port with `handler`; returns the client's socket and
/// the drain switch.
async fn connect<F, Fut>(server: Server, handler: F) -> (TcpStream, watch::Sender<bool>)
where
    F: FnMut(Request<Upload>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Response<Boxed>> + Send,
{
    connect_hanging_up(server, None, handler).await
}

/// [`connect`], with `hangup` as the connection's hangup signal.
async fn connect_hanging_up<F, Fut>(
    server: Server,
    hangup: Option<HangupSignal>,
    handler: F,
) -> (TcpStream, watch::Sender<bool>)
where
    F: FnMut(Request<Upload>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Response<Boxed>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, draining) = watch::channel(false);
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        serve(stream, server, draining, hangup, handler).await;
    });
    (TcpStream::connect(addr).await.unwrap(), drain)
}

/// What the server writes until it closes the connection.
async fn read_to_close(client: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(DEADLINE, client.read_to_end(&mut all))
        .await
        .expect("the server closed the connection")
        .unwrap();
    String::from_utf8(all).unwrap()
}

/// Reads until `all` ends with `end`.
async fn read_until(client: &mut TcpStream, end: &str) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while !all.ends_with(end.as_bytes()) {
        let n = tokio::time::timeout(DEADLINE, client.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {end:?} after {:?}", String::from_utf8_lossy(&all)))
            .unwrap();
        assert!(
            n > 0,
            "closed before {end:?}: {:?}",
            String::from_utf8_lossy(&all)
        );
        all.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(all).unwrap()
}

/// Sends `GET path`, with nothing else to say.
async fn get(client: &mut TcpStream, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
}

/// Writes `wire` (a server may stop reading it once it has answered: failed writes are its to
/// drop), then the end of it, while reading the answer to the close: what arrived, and how the
/// read ended.
async fn write_while_reading(
    client: &mut TcpStream,
    wire: &[u8],
) -> (Vec<u8>, std::io::Result<()>) {
    let (mut reader, mut writer) = client.split();
    let write = async {
        let _ = writer.write_all(wire).await;
        let _ = writer.shutdown().await;
    };
    let read = async {
        let mut all = Vec::new();
        let ended = reader.read_to_end(&mut all).await.map(|_| ());
        (all, ended)
    };
    let ((), read) = tokio::time::timeout(DEADLINE, async { tokio::join!(write, read) })
        .await
        .expect("the server closed the connection");
    read
}

/// Echoes the method, path and body, or says the body was too large.
async fn echo(req: Request<Upload>) -> Response<Boxed> {
    let text = match req.body() {
        Ok(body) => format!(
            "{} {} {}",
            req.method(),
            req.uri().path(),
            String::from_utf8_lossy(body)
        ),
        Err(too_large) => format!("refused: {too_large}"),
    };
    Response::new(full(&text))
}
