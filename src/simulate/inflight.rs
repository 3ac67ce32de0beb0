//! Requests in flight to one upstream of the reference gateway, for load shedding: a ticket is
//! taken before an attempt and given back when the response body to the client ends or is
//! dropped, so "in flight" covers the whole stream, not just the wait for headers.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};

/// The in-flight count of one upstream and its limit.
#[derive(Debug)]
pub(crate) struct InFlight {
    count: Arc<AtomicU32>,
    /// `None`: counted, never limited.
    limit: Option<u32>,
}

/// One request's place in an upstream's count; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Ticket(Arc<AtomicU32>);

impl Drop for Ticket {
    fn drop(&mut self) {
        // Every ticket was counted once when taken, so this never goes below zero; saturate
        // anyway rather than wrap should that ever be wrong.
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

impl InFlight {
    pub(crate) fn new(limit: Option<u32>) -> Self {
        InFlight {
            count: Arc::new(AtomicU32::new(0)),
            limit,
        }
    }

    /// A ticket, or `None` when the upstream is at its limit. Check and increment are one
    /// atomic step, so concurrent requests can never overshoot the limit between them.
    pub(crate) fn try_take(&self) -> Option<Ticket> {
        let limit = self.limit.unwrap_or(u32::MAX);
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then(|| n.saturating_add(1))
            })
            .ok()
            .map(|_| Ticket(self.count.clone()))
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }
}

/// A response body that holds a ticket until the body has been sent to its end, has failed, or
/// is dropped (the client went away).
pub(crate) struct Guarded<B> {
    inner: B,
    ticket: Option<Ticket>,
}

impl<B> Guarded<B> {
    pub(crate) fn new(inner: B, ticket: Ticket) -> Self {
        Guarded {
            inner,
            ticket: Some(ticket),
        }
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // Freed as soon as the last frame is handed over, before the server writes it: a client
        // that reads the end of its answer and sends the next request at once must find the
        // place free already.
        let finished = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if finished {
            this.ticket = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    #[test]
    fn the_limit_holds_and_tickets_come_back() {
        let slots = InFlight::new(Some(2));
        let a = slots.try_take().unwrap();
        let _b = slots.try_take().unwrap();
        assert!(slots.try_take().is_none());
        drop(a);
        assert_eq!(slots.count(), 1);
        assert!(slots.try_take().is_some());
    }

    #[test]
    fn unlimited_still_counts() {
        let slots = InFlight::new(None);
        let tickets: Vec<_> = (0..5).map(|_| slots.try_take().unwrap()).collect();
        assert_eq!(slots.count(), 5);
        drop(tickets);
        assert_eq!(slots.count(), 0);
    }

    #[tokio::test]
    async fn a_body_frees_its_ticket_at_its_end_or_when_dropped() {
        let slots = InFlight::new(Some(1));
        let mut body = Guarded::new(Full::new(Bytes::from("x")), slots.try_take().unwrap());
        assert_eq!(slots.count(), 1);
        let _ = body.frame().await;
        assert_eq!(slots.count(), 0, "freed with the last frame");

        let body = Guarded::new(Full::new(Bytes::from("x")), slots.try_take().unwrap());
        drop(body);
        assert_eq!(slots.count(), 0, "freed when the client went away");
    }
}
