//! One proxied connection: two pumps (client -> upstream, upstream -> client), each applying
//! the toxics of its stream that are on for this connection. The toxic list is live (a watch
//! channel): a change wakes a pump between reads, so adds, updates and removals act on open
//! connections. With no toxic on, a pump is a plain copy through one large buffer.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};

use super::toxic::{Stream, Toxic, ToxicKind};

/// Every connection starts with a small buffer, so thousands of chatty connections stay cheap;
/// a read that fills it grows it (x4) up to the large size, where a bulk copy costs few
/// syscalls per megabyte.
const BUF_START: usize = 16 * 1024;
const BUF_MAX: usize = 256 * 1024;
/// An upstream that does not accept within this is given up on (the client is closed).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type ToxicList = Arc<Vec<Toxic>>;

/// How one direction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The sender closed; the close was passed on (half-close).
    Eof,
    /// A toxic (or an I/O error) ends the whole connection with a FIN.
    Close,
    /// A toxic ends the whole connection with a RST.
    Reset,
}

/// A toxic as one connection sees it: on or off (toxicity, rolled once per revision) plus the
/// state it keeps on this connection.
struct Active {
    toxic: Toxic,
    on: bool,
    /// Bytes passed under `limit_data`.
    passed: u64,
}

/// The toxics of one stream for one connection.
struct Toxics {
    stream: Stream,
    list: Vec<Active>,
}

impl Toxics {
    fn new(stream: Stream) -> Self {
        Toxics {
            stream,
            list: Vec::new(),
        }
    }

    /// Takes the new list, keeping the roll and state of toxics whose revision is unchanged.
    /// Returns false when an active `timeout` toxic went away: Toxiproxy closes the connection
    /// then, and so do we.
    fn refresh(&mut self, all: &[Toxic]) -> bool {
        let mut old = std::mem::take(&mut self.list);
        for t in all.iter().filter(|t| t.stream == self.stream) {
            let kept = old
                .iter()
                .position(|a| a.toxic.name == t.name)
                .map(|i| old.swap_remove(i));
            let active = match kept {
                Some(a) if a.toxic.revision == t.revision => a,
                // Same name, new revision: roll again; limit_data keeps its count (Toxiproxy
                // keeps a stateful toxic's state across updates).
                Some(a) => Active {
                    toxic: t.clone(),
                    on: roll(t.toxicity),
                    passed: a.passed,
                },
                None => Active {
                    toxic: t.clone(),
                    on: roll(t.toxicity),
                    passed: 0,
                },
            };
            self.list.push(active);
        }
        !old.iter()
            .any(|a| a.on && matches!(a.toxic.kind, ToxicKind::Timeout { .. }))
    }

    fn on(&self) -> impl Iterator<Item = &ToxicKind> {
        self.list.iter().filter(|a| a.on).map(|a| &a.toxic.kind)
    }

    fn timeout(&self) -> Option<u64> {
        self.on().find_map(|k| match k {
            ToxicKind::Timeout { timeout } => Some(*timeout),
            _ => None,
        })
    }

    fn reset_after(&self) -> Option<u64> {
        self.on().find_map(|k| match k {
            ToxicKind::ResetPeer { timeout } => Some(*timeout),
            _ => None,
        })
    }
}

fn roll(toxicity: f32) -> bool {
    // Toxiproxy: the toxic acts when a uniform draw in [0, 1) is below its toxicity.
    rand::random::<f32>() < toxicity
}

/// Serves one accepted client: connects upstream, pumps both ways, ends as the toxics say.
pub(crate) async fn handle(
    client: TcpStream,
    upstream: Arc<str>,
    toxics: watch::Receiver<ToxicList>,
) {
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&*upstream)).await {
        Ok(Ok(s)) => s,
        // Toxiproxy closes the client when the upstream cannot be reached.
        _ => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let end = {
        let up = pump(&mut cr, &mut sw, Stream::Upstream, toxics.clone());
        let down = pump(&mut sr, &mut cw, Stream::Downstream, toxics);
        tokio::pin!(up, down);
        tokio::select! {
            e = &mut up => if e == End::Eof { down.await } else { e },
            e = &mut down => if e == End::Eof { up.await } else { e },
        }
    };
    if end == End::Reset {
        // Whole sockets again: a dropped write half would send a FIN before the RST.
        for (r, w) in [(cr, cw), (sr, sw)] {
            if let Ok(stream) = r.reunite(w) {
                // SO_LINGER 0 makes the drop a RST.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
        }
    }
}

enum Event {
    Changed(bool),
    TimedOut,
    Read(std::io::Result<usize>),
}

/// Copies `r` to `w` until the end, applying this stream's toxics to every chunk.
async fn pump(
    r: &mut OwnedReadHalf,
    w: &mut OwnedWriteHalf,
    stream: Stream,
    mut rx: watch::Receiver<ToxicList>,
) -> End {
    let mut buf = vec![0u8; BUF_START];
    let mut toxics = Toxics::new(stream);
    let initial = rx.borrow_and_update().clone();
    toxics.refresh(&initial);
    // `timeout` closes after this long without data (each chunk restarts it, as in Toxiproxy).
    let mut timeout_deadline = toxics.timeout().map(deadline);
    loop {
        let ev = tokio::select! {
            changed = rx.changed() => Event::Changed(changed.is_ok()),
            _ = sleep_until(timeout_deadline.unwrap_or_else(Instant::now)), if timeout_deadline.is_some() => Event::TimedOut,
            n = r.read(&mut buf) => Event::Read(n),
        };
        let n = match ev {
            // The proxy is gone; its connections go with it.
            Event::Changed(false) | Event::TimedOut => return End::Close,
            Event::Changed(true) => {
                let list = rx.borrow_and_update().clone();
                if !toxics.refresh(&list) {
                    return End::Close;
                }
                timeout_deadline = toxics.timeout().map(deadline);
                continue;
            }
            Event::Read(Err(_)) => return End::Close,
            Event::Read(Ok(n)) => n,
        };
        let full = n == buf.len();
        let arrived = Instant::now();
        if toxics.list.is_empty() {
            if n == 0 {
                let _ = w.shutdown().await;
                return End::Eof;
            }
            if w.write_all(&buf[..n]).await.is_err() {
                return End::Close;
            }
            grow(&mut buf, full);
            continue;
        }
        if let Some(ms) = toxics.reset_after() {
            sleep(Duration::from_millis(ms)).await;
            return End::Reset;
        }
        if toxics.timeout().is_some() {
            if n == 0 {
                return End::Close;
            }
            // Swallowed: a timed-out connection passes nothing.
            timeout_deadline = toxics.timeout().map(deadline);
            continue;
        }
        if n == 0 {
            let delay: u64 = toxics
                .on()
                .map(|k| match k {
                    ToxicKind::SlowClose { delay } => *delay,
                    _ => 0,
                })
                .sum();
            sleep(Duration::from_millis(delay)).await;
            let _ = w.shutdown().await;
            return End::Eof;
        }
        match deliver(&mut toxics, &buf[..n], arrived, w).await {
            Ok(true) => grow(&mut buf, full),
            Ok(false) | Err(_) => return End::Close,
        }
    }
}

/// A read that filled the buffer says more is waiting: take bigger bites.
fn grow(buf: &mut Vec<u8>, full: bool) {
    if full && buf.len() < BUF_MAX {
        buf.resize((buf.len() * 4).min(BUF_MAX), 0);
    }
}

fn deadline(ms: u64) -> Instant {
    // `timeout: 0` means never; a far deadline keeps the select simple.
    let d = if ms == 0 {
        FAR
    } else {
        Duration::from_millis(ms)
    };
    later(Instant::now(), d)
}

/// A year: "never" for timers, and the cap on any delay a toxic asks for.
const FAR: Duration = Duration::from_secs(86_400 * 365);

/// `at + d`, capped, so an absurd attribute cannot overflow the clock.
fn later(at: Instant, d: Duration) -> Instant {
    at + d.min(FAR)
}

/// Passes one chunk through latency, limit_data, slicer and bandwidth, in that order.
/// Returns false when the connection must close (limit reached).
async fn deliver(
    toxics: &mut Toxics,
    chunk: &[u8],
    arrived: Instant,
    w: &mut OwnedWriteHalf,
) -> std::io::Result<bool> {
    let mut delay_ms: i64 = 0;
    for k in toxics.on() {
        if let ToxicKind::Latency { latency, jitter } = *k {
            let jitter = jitter.min(i64::MAX as u64) as i64;
            let j = if jitter > 0 {
                rand::random_range(-jitter..=jitter)
            } else {
                0
            };
            delay_ms =
                delay_ms.saturating_add((latency.min(i64::MAX as u64) as i64).saturating_add(j));
        }
    }
    if delay_ms > 0 {
        // Measured from arrival, so time spent reading does not add to the delay asked for.
        sleep_precise(later(arrived, Duration::from_millis(delay_ms as u64))).await;
    }
    let mut data = chunk;
    let mut limit_hit = false;
    for a in toxics.list.iter_mut().filter(|a| a.on) {
        if let ToxicKind::LimitData { bytes } = a.toxic.kind {
            let remaining = bytes.saturating_sub(a.passed);
            if (data.len() as u64) >= remaining {
                data = &data[..remaining as usize];
                limit_hit = true;
            }
        }
    }
    for a in toxics.list.iter_mut().filter(|a| a.on) {
        if matches!(a.toxic.kind, ToxicKind::LimitData { .. }) {
            a.passed += data.len() as u64;
        }
    }
    let slicer = toxics.on().find_map(|k| match *k {
        ToxicKind::Slicer {
            average_size,
            size_variation,
            delay,
        } => Some((average_size, size_variation, delay)),
        _ => None,
    });
    let rate = toxics.on().find_map(|k| match *k {
        ToxicKind::Bandwidth { rate } => Some(rate),
        _ => None,
    });
    let mut rest = data;
    while !rest.is_empty() {
        let mut take = rest.len();
        if let Some((avg, var, _)) = slicer {
            let var = var.min(avg.saturating_sub(1));
            let size = if var > 0 {
                rand::random_range(avg - var..=avg.saturating_add(var))
            } else {
                avg
            };
            take = take.min(size.max(1) as usize);
        }
        if let Some(rate) = rate {
            // At most 100 ms worth per write, so the pace is smooth; rate 0 passes at once.
            if rate > 0 {
                take = take.min((rate.saturating_mul(100)).max(1) as usize);
            }
        }
        let (piece, tail) = rest.split_at(take);
        w.write_all(piece).await?;
        rest = tail;
        if let Some(rate) = rate.filter(|r| *r > 0) {
            // rate KB/s = rate bytes per ms.
            let micros = (piece.len() as u64).saturating_mul(1000) / rate;
            sleep(Duration::from_micros(micros)).await;
        }
        if let Some((_, _, delay)) = slicer {
            if !rest.is_empty() {
                sleep(Duration::from_micros(delay)).await;
            }
        }
    }
    Ok(!limit_hit)
}

/// tokio's timer ticks in whole milliseconds and rounds up, so a 10 ms latency would land near
/// 11 ms. Sleep to within a millisecond of the deadline, then yield until it: at most about
/// 1 ms of polling per delayed chunk buys sub-millisecond accuracy.
async fn sleep_precise(deadline: Instant) {
    if let Some(coarse) = deadline.checked_sub(Duration::from_millis(1)) {
        if coarse > Instant::now() {
            sleep_until(coarse).await;
        }
    }
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}
