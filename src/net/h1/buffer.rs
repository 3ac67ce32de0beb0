//! What a connection has read and not yet used.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// What each connection reads into. A token event is a few hundred bytes and thousands of
/// streams are open at once; a whole-document answer takes a few more reads instead. A head
/// that does not fit grows it for as long as it is read.
pub(super) const READ_BUFFER: usize = 2048;
/// The most a body's read grows the buffer to (see [`Buffer::poll_refill`]).
pub(super) const BODY_READ_MAX: usize = 256 * 1024;

/// `bytes[pos..filled]` is read and not yet used. The bytes are zeroed once when the buffer is
/// made, so reads go straight into them without `unsafe`.
pub(super) struct Buffer {
    bytes: Vec<u8>,
    pos: usize,
    filled: usize,
}

impl Buffer {
    pub(super) fn new() -> Buffer {
        Buffer {
            bytes: vec![0; READ_BUFFER],
            pos: 0,
            filled: 0,
        }
    }

    /// Where the unread bytes start, for [`Buffer::slice`].
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn unread(&self) -> &[u8] {
        &self.bytes[self.pos..self.filled]
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos == self.filled
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.filled);
    }

    pub(super) fn slice(&self, start: usize, end: usize) -> &[u8] {
        &self.bytes[start..end]
    }

    /// Forgets what was read (all of it used); a buffer a long head grew goes back to the
    /// small one.
    pub(super) fn clear(&mut self) {
        self.pos = 0;
        self.filled = 0;
        if self.bytes.len() > READ_BUFFER {
            self.bytes = vec![0; READ_BUFFER];
        }
    }

    /// One read of a body's bytes into the whole buffer, everything read before used. A read
    /// that fills it grows it (x4, up to [`BODY_READ_MAX`]) for the next, so a large body is
    /// read in large pieces (at 2 KiB a read, a GiB through the proxy took half a million
    /// reads and as many writes) while token events keep the small one: a read that would have
    /// fitted in it gives a grown buffer back, so a stream that fell behind once does not hold
    /// a large one for the rest of its life.
    pub(super) fn poll_refill(
        &mut self,
        io: &mut (impl AsyncRead + Unpin),
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        self.pos = 0;
        self.filled = 0;
        let polled = self.poll_fill(io, cx);
        if let Poll::Ready(Ok(n)) = polled {
            let len = self.bytes.len();
            if n == len && len < BODY_READ_MAX {
                self.bytes.resize((len * 4).min(BODY_READ_MAX), 0);
            } else if n <= READ_BUFFER && len > READ_BUFFER {
                // What was read moves to the small buffer with it.
                let mut small = vec![0; READ_BUFFER];
                small[..n].copy_from_slice(&self.bytes[..n]);
                self.bytes = small;
            }
        }
        polled
    }

    /// One read from `io` after the unread bytes, moving them to the front or growing the
    /// buffer when there is no room after them. `Ok(0)`: the peer closed the connection.
    pub(super) fn poll_fill(
        &mut self,
        io: &mut (impl AsyncRead + Unpin),
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if self.filled == self.bytes.len() {
            if self.pos > 0 {
                self.bytes.copy_within(self.pos..self.filled, 0);
                self.filled -= self.pos;
                self.pos = 0;
            } else {
                self.bytes.resize(self.bytes.len() * 2, 0);
            }
        }
        let mut room = ReadBuf::new(&mut self.bytes[self.filled..]);
        let polled = Pin::new(io).poll_read(cx, &mut room);
        let n = room.filled().len();
        self.filled += n;
        polled.map_ok(|()| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes of successive body reads from `input`, and the buffer's length after each.
    fn refills(buf: &mut Buffer, mut input: &[u8], reads: usize) -> Vec<(usize, usize)> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        (0..reads)
            .map(|_| match buf.poll_refill(&mut input, &mut cx) {
                Poll::Ready(Ok(n)) => (n, buf.bytes.len()),
                other => panic!("a read from a slice gave {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_large_body_is_read_in_growing_pieces_and_a_small_read_gives_the_room_back() {
        let mut buf = Buffer::new();
        let large = vec![7u8; 1 << 20];
        let got = refills(&mut buf, &large, 6);
        let sizes: Vec<usize> = got.iter().map(|(n, _)| *n).collect();
        assert_eq!(sizes, [2048, 8192, 32768, 131072, 262144, 262144]);
        assert_eq!(buf.bytes.len(), BODY_READ_MAX);
        // A read that fits the small buffer moves there, with what it read.
        let got = refills(&mut buf, b"data: small\n\n", 1);
        assert_eq!(got, [(13, READ_BUFFER)]);
        assert_eq!(buf.unread(), b"data: small\n\n");
    }
}
