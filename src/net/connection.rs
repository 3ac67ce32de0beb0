//! One accepted connection and how a server speaks HTTP/1 on it: the one connection type
//! every server shares, and the one place hyper's server builder is configured.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How a server speaks HTTP/1. The one place hyper's server builder is configured; what
/// differs between servers is a field here.
#[derive(Clone, Copy, Debug)]
pub struct Http1 {
    /// Serve several requests on one connection.
    pub keep_alive: bool,
    /// A client that has not sent a whole request head within this is disconnected, so a
    /// trickling client cannot hold a connection (and its task) for ever. `None`: no limit.
    pub header_read_timeout: Option<Duration>,
}

impl Http1 {
    /// Keep-alive, no header read limit.
    pub const fn new() -> Http1 {
        Http1 {
            keep_alive: true,
            header_read_timeout: None,
        }
    }

    pub const fn header_read_timeout(self, limit: Duration) -> Http1 {
        Http1 {
            header_read_timeout: Some(limit),
            ..self
        }
    }

    fn builder(&self) -> http1::Builder {
        let mut b = http1::Builder::new();
        // A timer is what makes hyper enforce the header read timeout at all.
        b.timer(TokioTimer::new())
            .keep_alive(self.keep_alive)
            .header_read_timeout(self.header_read_timeout);
        b
    }
}

impl Default for Http1 {
    fn default() -> Self {
        Http1::new()
    }
}

/// One accepted connection, handed to the server's handler.
#[derive(Debug)]
pub struct Connection {
    socket: Socket,
    peer: SocketAddr,
    /// Which of the listener's cores runs it (0 without cores).
    core: usize,
    /// Turns true when the listener stops with a grace period.
    draining: watch::Receiver<bool>,
}

/// An accepted socket: registered with the accepting runtime's poller, or not yet with any,
/// when it is to run on a core (`net::cores`) and is registered by its own task there.
#[derive(Debug)]
pub(super) enum Socket {
    Registered(TcpStream),
    Unregistered(std::net::TcpStream),
}

impl Socket {
    /// Registered with the runtime this is called on, if it was not yet.
    fn registered(self) -> io::Result<TcpStream> {
        match self {
            Socket::Registered(stream) => Ok(stream),
            Socket::Unregistered(stream) => TcpStream::from_std(stream),
        }
    }
}

impl Connection {
    pub(super) fn new(
        socket: Socket,
        peer: SocketAddr,
        core: usize,
        draining: watch::Receiver<bool>,
    ) -> Connection {
        Connection {
            socket,
            peer,
            core,
            draining,
        }
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The index of the core it runs on, for a server that keeps one of something per core
    /// ([`super::cores::PerCore`]); 0 when the listener has no cores.
    pub fn core(&self) -> usize {
        self.core
    }

    /// The address the client reached (what a legitimate Host header names).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.socket {
            Socket::Registered(stream) => stream.local_addr(),
            Socket::Unregistered(stream) => stream.local_addr(),
        }
    }

    /// The raw socket, for servers that do not speak HTTP (the TCP fault proxy), registered
    /// with the runtime this is called on. A grace period does not reach it: it ends when its
    /// task is cut. Fails only when that runtime cannot watch one more socket.
    pub fn into_stream(self) -> io::Result<TcpStream> {
        self.socket.registered()
    }

    /// Serves HTTP/1 with `service` until the client leaves or the listener stops.
    pub async fn serve_http<S>(self, http: Http1, service: S)
    where
        S: HttpService<Incoming>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        S::ResBody: 'static,
        <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Connection {
            socket,
            mut draining,
            ..
        } = self;
        // A socket the runtime cannot watch closes, as after a failed accept.
        let Ok(stream) = socket.registered() else {
            return;
        };
        let conn = http
            .builder()
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        // Errors from the connection are the client going away or speaking bad HTTP; hyper has
        // already answered what could be answered, and the connection is over either way.
        tokio::select! {
            _ = conn.as_mut() => return,
            // A closed channel means the listener is gone and this task about to be cut.
            _ = draining.wait_for(|d| *d) => {}
        }
        // Answers the request in flight, then closes; an idle keep-alive connection closes now.
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }

    /// Serves HTTP/1.1 with faultline's own server ([`super::h1::server`]): `handler` gets each
    /// request with its body read whole. Until the client leaves, the listener stops (a grace
    /// period lets the answer in flight finish) or `hangup` ends the connection (the fault
    /// proxy's cuts).
    pub async fn serve_h1<F, Fut, B>(
        self,
        server: super::h1::server::Server,
        hangup: Option<super::h1::server::HangupSignal>,
        handler: F,
    ) where
        F: FnMut(hyper::Request<super::h1::server::Upload>) -> Fut,
        Fut: Future<Output = hyper::Response<B>>,
        B: Body<Data = bytes::Bytes>,
    {
        let Connection {
            socket, draining, ..
        } = self;
        // A socket the runtime cannot watch closes, as after a failed accept.
        let Ok(stream) = socket.registered() else {
            return;
        };
        super::h1::server::serve(stream, server, draining, hangup, handler).await;
    }
}
