//! A client connection the proxy can end on purpose: with a clean FIN, or with a TCP RST.
//!
//! Faults that end a connection (`reset`, `truncate_stream` with `close` or `reset`) cannot ask
//! hyper to do it: hyper either finishes the message properly (a terminating chunk) or tears the
//! connection down before writing what it still buffers. So the connection task owns the socket
//! and drops it when asked, and the socket's wrapper decides how the drop looks on the wire.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Shared between one connection's task, its socket wrapper and the requests it serves.
#[derive(Debug, Default)]
pub(crate) struct ConnControl {
    /// Close with SO_LINGER 0, so the kernel sends RST instead of FIN.
    reset: AtomicBool,
    /// Close as soon as everything hyper has buffered so far reached the socket.
    close_after_flush: AtomicBool,
    closing: Notify,
}

impl ConnControl {
    /// Ends the connection now, before anything else is written.
    pub(crate) fn close_now(&self, reset: bool) {
        if reset {
            self.reset.store(true, Ordering::SeqCst);
        }
        self.closing.notify_one();
    }

    /// Ends the connection once the bytes already handed to hyper are on the wire. A body calls
    /// this as it returns its last frame: hyper buffers that frame synchronously and flushes its
    /// whole buffer before it flushes the socket, so the socket's next successful flush marks
    /// the moment every allowed byte was written.
    pub(crate) fn close_after_flush(&self, reset: bool) {
        if reset {
            self.reset.store(true, Ordering::SeqCst);
        }
        self.close_after_flush.store(true, Ordering::SeqCst);
    }

    /// Resolves when a fault asked for the connection to end. A request made before anyone
    /// waits is kept (a `Notify` permit), so it cannot be missed.
    pub(crate) async fn closing(&self) {
        self.closing.notified().await;
    }

    fn flushed(&self) {
        if self.close_after_flush.load(Ordering::SeqCst) {
            self.closing.notify_one();
        }
    }

    fn wants_reset(&self) -> bool {
        self.reset.load(Ordering::SeqCst)
    }
}

/// The accepted socket, reporting flushes to its `ConnControl` and resetting on drop if asked.
pub(crate) struct FaultIo {
    stream: TcpStream,
    control: Arc<ConnControl>,
}

impl FaultIo {
    pub(crate) fn new(stream: TcpStream, control: Arc<ConnControl>) -> Self {
        FaultIo { stream, control }
    }
}

impl Drop for FaultIo {
    fn drop(&mut self) {
        if self.control.wants_reset() {
            // If this fails the socket still closes, only with a FIN; nothing better to do.
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for FaultIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.control.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
