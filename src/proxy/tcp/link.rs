//! One proxied connection: two pumps (client -> upstream, upstream -> client), each applying
//! the toxics of its stream that are on for this connection. The toxic list is live (a watch
//! channel): a change wakes a pump between reads, so adds, updates and removals act on open
//! connections. With no toxic on, a pump is a plain copy through one large buffer.
//!
//! Every random choice (toxicity, jitter, slice sizes) is drawn from the seeded generator of
//! its toxic for this connection ([`Keys`]), never from the thread's RNG: the same seed and the
//! same sequence of connections make the same decisions, whatever the scheduling.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};

use super::toxic::{Stream, Toxic, ToxicKind};
use crate::fault::decide::{Decider, Draw};

/// Every connection starts with a small buffer, so thousands of chatty connections stay cheap;
/// a read that fills it grows it (x4) up to the large size, and a read shorter than the small
/// size, or a second with nothing to read ([`IDLE_SHRINK`]), drops a grown buffer back to it,
/// so only a transfer that is bulk now holds the memory. The large size is measured (iperf3
/// through the proxy, 2-core machine, side by side): 256 KiB gave 54-60% of direct throughput
/// at 2.7-2.9 s of proxy CPU per 10 GB, 1 MiB 65-73% at 1.8-2.1 s (fewer, larger writes: fewer
/// wake-ups and pushes per byte), 4 MiB little more.
const BUF_START: usize = 16 * 1024;
const BUF_MAX: usize = 1024 * 1024;
/// A grown buffer that waited this long for data is given back: the bulk is over.
const IDLE_SHRINK: Duration = Duration::from_secs(1);
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

/// What names a connection's generators: the proxy's seed and name, and the connection's
/// index in the order the proxy accepted them.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub(crate) seed: u64,
    pub(crate) proxy: Arc<str>,
    pub(crate) connection: u64,
}

impl Keys {
    /// The values toxic `name` draws on this connection, in order of use. Keyed by name, not
    /// revision: revisions count process-wide, names are what the user gave.
    fn draw(&self, name: &str) -> Draw {
        Decider::new(self.seed, &self.proxy, name).draw(self.connection)
    }
}

/// A toxic as one connection sees it: on or off (toxicity, rolled once per revision) plus the
/// state it keeps on this connection.
struct Active {
    toxic: Toxic,
    on: bool,
    /// Bytes passed under `limit_data`.
    passed: u64,
    /// This toxic's random values on this connection; an update rolls again from the same
    /// sequence, so each toxic's draws do not depend on what the other toxics did.
    draw: Draw,
}

/// The toxics of one stream for one connection.
struct Toxics {
    stream: Stream,
    keys: Keys,
    list: Vec<Active>,
}

impl Toxics {
    fn new(stream: Stream, keys: Keys) -> Self {
        Toxics {
            stream,
            keys,
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
            let (active, rolled) = match kept {
                Some(a) if a.toxic.revision == t.revision => (a, false),
                // Same name, new revision: roll again; limit_data keeps its count (Toxiproxy
                // keeps a stateful toxic's state across updates).
                Some(mut a) => (
                    Active {
                        toxic: t.clone(),
                        on: a.draw.below(f64::from(t.toxicity)),
                        passed: a.passed,
                        draw: a.draw,
                    },
                    true,
                ),
                None => {
                    let mut draw = self.keys.draw(&t.name);
                    (
                        Active {
                            toxic: t.clone(),
                            on: draw.below(f64::from(t.toxicity)),
                            passed: 0,
                            draw,
                        },
                        true,
                    )
                }
            };
            // Counted once per roll that put the toxic on this connection: the evidence that
            // it was on the path of real traffic.
            if active.on && rolled {
                active.toxic.touched.touch();
            }
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

    /// The delay of the next chunk in ms: every latency toxic on, each plus its own jitter
    /// draw in `[-jitter, jitter]` (the sum may be negative: no delay then).
    fn delay_ms(&mut self) -> i64 {
        let mut delay: i64 = 0;
        for a in self.list.iter_mut().filter(|a| a.on) {
            if let ToxicKind::Latency { latency, jitter } = a.toxic.kind {
                let jitter = i64::try_from(jitter).unwrap_or(i64::MAX);
                let j = if jitter > 0 {
                    a.draw.int_in(-jitter, jitter)
                } else {
                    0
                };
                let latency = i64::try_from(latency).unwrap_or(i64::MAX);
                delay = delay.saturating_add(latency.saturating_add(j));
            }
        }
        delay
    }

    /// The slicer on, if any.
    fn slicer_mut(&mut self) -> Option<&mut Active> {
        self.list
            .iter_mut()
            .find(|a| a.on && matches!(a.toxic.kind, ToxicKind::Slicer { .. }))
    }
}

impl Active {
    /// For a slicer, the next slice: its size, `average_size` ± `size_variation` (the
    /// variation kept below the average, as Toxiproxy does) and at least 1, and the pause
    /// after it (µs). `None` for any other toxic.
    fn next_slice(&mut self) -> Option<(u64, u64)> {
        let ToxicKind::Slicer {
            average_size: avg,
            size_variation: var,
            delay,
        } = self.toxic.kind
        else {
            return None;
        };
        let var = var.min(avg.saturating_sub(1));
        let size = if var > 0 {
            self.draw.uint_in(avg - var, avg.saturating_add(var))
        } else {
            avg
        };
        Some((size.max(1), delay))
    }
}

/// Serves one accepted client: connects upstream, pumps both ways, ends as the toxics say.
pub(crate) async fn handle(
    client: TcpStream,
    upstream: Arc<str>,
    toxics: watch::Receiver<ToxicList>,
    keys: Keys,
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
        // Each toxic acts on one stream, so each generator is drawn by one pump only and the
        // two pumps' interleaving cannot change any value.
        let up = pump(
            &mut cr,
            &mut sw,
            Toxics::new(Stream::Upstream, keys.clone()),
            toxics.clone(),
        );
        let down = pump(
            &mut sr,
            &mut cw,
            Toxics::new(Stream::Downstream, keys),
            toxics,
        );
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
    /// A grown buffer waited [`IDLE_SHRINK`] for data.
    Idle,
    Read(std::io::Result<usize>),
}

/// Copies `r` to `w` until the end, applying this stream's toxics to every chunk.
async fn pump(
    r: &mut OwnedReadHalf,
    w: &mut OwnedWriteHalf,
    mut toxics: Toxics,
    mut rx: watch::Receiver<ToxicList>,
) -> End {
    let mut buf = vec![0u8; BUF_START];
    let initial = rx.borrow_and_update().clone();
    toxics.refresh(&initial);
    // `timeout` closes after this long without data (each chunk restarts it, as in Toxiproxy).
    let mut timeout_deadline = toxics.timeout().map(deadline);
    loop {
        let grown = buf.len() > BUF_START;
        let ev = tokio::select! {
            changed = rx.changed() => Event::Changed(changed.is_ok()),
            _ = sleep_until(timeout_deadline.unwrap_or_else(Instant::now)), if timeout_deadline.is_some() => Event::TimedOut,
            _ = sleep(IDLE_SHRINK), if grown => Event::Idle,
            n = r.read(&mut buf) => Event::Read(n),
        };
        let n = match ev {
            Event::Idle => {
                buf = vec![0u8; BUF_START];
                continue;
            }
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
        let arrived = Instant::now();
        if toxics.list.is_empty() {
            if n == 0 {
                let _ = w.shutdown().await;
                return End::Eof;
            }
            if w.write_all(&buf[..n]).await.is_err() {
                return End::Close;
            }
            fit(&mut buf, n);
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
            Ok(true) => fit(&mut buf, n),
            Ok(false) | Err(_) => return End::Close,
        }
    }
}

/// Sizes the buffer for the next read after one of `n` bytes: a full read says more is
/// waiting (take bigger bites), one shorter than the small size says the bulk is over.
fn fit(buf: &mut Vec<u8>, n: usize) {
    if n == buf.len() && buf.len() < BUF_MAX {
        buf.resize((buf.len() * 4).min(BUF_MAX), 0);
    } else if buf.len() > BUF_START && n < BUF_START {
        *buf = vec![0u8; BUF_START];
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
    let delay_ms = toxics.delay_ms();
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
    let rate = toxics.on().find_map(|k| match *k {
        ToxicKind::Bandwidth { rate } => Some(rate),
        _ => None,
    });
    let mut slicer = toxics.slicer_mut();
    let mut rest = data;
    while !rest.is_empty() {
        let mut take = rest.len();
        let slice = slicer.as_deref_mut().and_then(Active::next_slice);
        if let Some((size, _)) = slice {
            take = take.min(usize::try_from(size).unwrap_or(usize::MAX));
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
        if let Some((_, delay)) = slice {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Toxics as an admin client would add them; built afresh per call, so each proxy's list
    /// has its own revisions, as two proxies' lists would.
    fn toxics() -> Vec<Toxic> {
        let down = |name: &str, kind, toxicity| {
            Toxic::new(name.to_string(), kind, Stream::Downstream, toxicity)
        };
        let mut list = vec![
            down(
                "lat",
                ToxicKind::Latency {
                    latency: 50,
                    jitter: 20,
                },
                1.0,
            ),
            down(
                "slices",
                ToxicKind::Slicer {
                    average_size: 100,
                    size_variation: 50,
                    delay: 0,
                },
                1.0,
            ),
        ];
        for i in 0..8 {
            list.push(down(
                &format!("coin{i}"),
                ToxicKind::LimitData { bytes: 1 << 20 },
                0.5,
            ));
        }
        list
    }

    #[derive(Debug, PartialEq)]
    struct Decisions {
        on: Vec<bool>,
        delays: Vec<i64>,
        slices: Vec<u64>,
    }

    /// What connection `connection` of proxy `p` decides: every toxic's toxicity pick, then
    /// the delays of 20 chunks and the sizes of 20 slices, drawn as `deliver` draws them.
    fn decide(seed: u64, connection: u64) -> Decisions {
        let keys = Keys {
            seed,
            proxy: Arc::from("p"),
            connection,
        };
        let mut t = Toxics::new(Stream::Downstream, keys);
        t.refresh(&toxics());
        let on = t.list.iter().map(|a| a.on).collect();
        let delays = (0..20).map(|_| t.delay_ms()).collect();
        let slices = match t.slicer_mut() {
            Some(a) => (0..20)
                .filter_map(|_| a.next_slice())
                .map(|s| s.0)
                .collect(),
            None => Vec::new(),
        };
        Decisions { on, delays, slices }
    }

    fn run(seed: u64) -> Vec<Decisions> {
        (0..16).map(|c| decide(seed, c)).collect()
    }

    /// Full reads grow the buffer to the large size and no further; a small read in a grown
    /// buffer gives the memory back; a small read in the small buffer changes nothing.
    #[test]
    fn the_buffer_follows_the_transfer() {
        let mut buf = vec![0u8; BUF_START];
        let mut sizes = Vec::new();
        for _ in 0..5 {
            let n = buf.len();
            fit(&mut buf, n);
            sizes.push(buf.len());
        }
        assert_eq!(
            sizes,
            [64 * 1024, 256 * 1024, BUF_MAX, BUF_MAX, BUF_MAX],
            "x4 per full read, capped"
        );
        fit(&mut buf, BUF_START);
        assert_eq!(
            buf.len(),
            BUF_MAX,
            "a read the small buffer could not hold is still bulk"
        );
        fit(&mut buf, 100);
        assert_eq!(buf.len(), BUF_START, "the bulk is over");
        fit(&mut buf, 100);
        assert_eq!(buf.len(), BUF_START);
    }

    #[test]
    fn one_seed_one_set_of_decisions() {
        let (a, b) = (run(7), run(7));
        assert_eq!(a, b);
        // The decisions are not constant, or the equality above would prove nothing.
        let picks: Vec<&Vec<bool>> = a.iter().map(|d| &d.on).collect();
        assert!(picks.windows(2).any(|w| w[0] != w[1]), "{picks:?}");
        for d in &a {
            assert!(d.on[..2].iter().all(|on| *on), "toxicity 1 always acts");
            assert!(d.delays.iter().all(|ms| (30..=70).contains(ms)), "{d:?}");
            assert!(d.slices.iter().all(|n| (50..=150).contains(n)), "{d:?}");
            assert!(d.delays.windows(2).any(|w| w[0] != w[1]), "{d:?}");
            assert!(d.slices.windows(2).any(|w| w[0] != w[1]), "{d:?}");
        }
    }

    #[test]
    fn another_seed_other_decisions() {
        let (a, b) = (run(7), run(8));
        let differ = |f: fn(&Decisions) -> String| a.iter().zip(&b).any(|(x, y)| f(x) != f(y));
        assert!(differ(|d| format!("{:?}", d.on)));
        assert!(differ(|d| format!("{:?}", d.delays)));
        assert!(differ(|d| format!("{:?}", d.slices)));
    }

    #[test]
    fn a_connection_decides_the_same_whenever_it_is_served() {
        let late_first = decide(7, 5);
        let in_order = run(7);
        assert_eq!(late_first, in_order[5]);
        assert_ne!(in_order[0], in_order[5], "connections draw apart");
    }

    #[test]
    fn an_update_rolls_again_from_the_toxics_own_sequence() {
        let keys = Keys {
            seed: 3,
            proxy: Arc::from("p"),
            connection: 0,
        };
        let rolls = || {
            let mut t = Toxics::new(Stream::Downstream, keys.clone());
            let mut seen = Vec::new();
            for _ in 0..32 {
                // A new revision each time, as `update_toxic` makes.
                let coin = Toxic::new(
                    "coin".into(),
                    ToxicKind::LimitData { bytes: 1 },
                    Stream::Downstream,
                    0.5,
                );
                t.refresh(&[coin]);
                seen.push(t.list[0].on);
            }
            seen
        };
        let first = rolls();
        assert_eq!(first, rolls());
        assert!(first.contains(&true) && first.contains(&false), "{first:?}");
    }
}
