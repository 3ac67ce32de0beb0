//! What a connection has read and not yet used.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// What each connection reads into. A token event is a few hundred bytes and thousands of
/// streams are open at once; a whole-document answer takes a few more reads instead. A head
/// that does not fit grows it for as long as it is read.
pub(super) const READ_BUFFER: usize = 2048;

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
