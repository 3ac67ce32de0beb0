//! A client connection the proxy can end on purpose: with a clean FIN, or with a TCP RST.
//!
//! Faults that end a connection (`reset`, `truncate_stream` with `close` or `reset`) ask the
//! connection's server to hang up ([`Hangup`]); it does so once every byte handed to it before
//! the ask is written, so a cut falls exactly after the last allowed byte.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::net::h1::server::{Hangup, HangupSignal};

/// Shared between one connection's server and the requests it serves.
#[derive(Debug, Default)]
pub(crate) struct ConnControl {
    /// Close with SO_LINGER 0, so the kernel sends RST instead of FIN.
    reset: AtomicBool,
    hangup: Notify,
}

impl ConnControl {
    /// Ends the connection once what was handed to the server so far is written: from a
    /// handler, before any answer; from a body, after the frame it returns now (the server
    /// writes a frame a body returned before it looks at this again).
    pub(crate) fn hang_up(&self, how: Hangup) {
        if how == Hangup::Reset {
            self.reset.store(true, Ordering::SeqCst);
        }
        self.hangup.notify_one();
    }

    /// What the server watches. An ask made before it first looks is kept (a `Notify`
    /// permit), so it cannot be missed.
    pub(crate) fn signal(self: Arc<Self>) -> HangupSignal {
        Box::pin(async move {
            self.hangup.notified().await;
            if self.reset.load(Ordering::SeqCst) {
                Hangup::Reset
            } else {
                Hangup::Fin
            }
        })
    }
}
