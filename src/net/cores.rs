//! One single-threaded runtime per CPU, for a server whose connections do little work per
//! wake-up: the HTTP fault proxy, where a token event is one read upstream and one write to
//! the client, and the simulated host, where most of a plain request's cost was wake-ups. On
//! tokio's multi-threaded runtime such a wake-up often unparks an idle worker to steal work
//! that is not there, and that wake-up was most of what the proxy's added latency had beyond
//! nginx's (docs/benchmarks.md). Here a connection lives on one core's runtime from accept to
//! close, with the sockets it opens upstream registered on that same runtime, so an event is
//! handled by the thread that epoll woke and no other thread hears of it.
//!
//! The listener accepts on its own runtime and hands each connection to a core in turn
//! (`Listener::spread`); a server that keeps per-connection resources keeps one set per core
//! ([`PerCore`]), indexed by [`Connection::core`](super::Connection::core). The servers share
//! one set of cores ([`Cores::shared`]), however many come and go; a stop ends a listener's
//! connections because they are its tasks, not by stopping the cores. The load generator
//! starts a set of its own ([`Cores::start_with`]), so that what it measures never queues
//! behind the services it measures.

use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The cores' runtimes. Dropping the last handle to it stops them: each thread drops its
/// runtime, and with it every task still on it (their sockets close), without the dropper
/// waiting.
#[derive(Debug)]
pub struct Cores {
    cores: Vec<Core>,
    next: AtomicUsize,
}

#[derive(Debug)]
struct Core {
    runtime: Handle,
    /// Dropped with the core: the thread's `block_on` ends and it drops its runtime.
    _stop: oneshot::Sender<()>,
}

/// The process's one set, shared by every server that spreads its connections: proxies come
/// and go (the admin API creates and deletes them), their threads need not.
static SHARED: Mutex<Option<Arc<Cores>>> = Mutex::new(None);

impl Cores {
    /// The process's cores, started on first use: as many as this process may run on (its CPU
    /// affinity and cgroup quota count). A failure to start them is returned, and the next
    /// call tries again.
    pub fn shared() -> io::Result<Arc<Cores>> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cores) = shared.as_ref() {
            return Ok(Arc::clone(cores));
        }
        let cores = Arc::new(Cores::start("faultline-core", Cores::per_cpu())?);
        *shared = Some(Arc::clone(&cores));
        Ok(cores)
    }

    /// How many cores a set has when it has one per CPU: as many as this process may run on
    /// (its CPU affinity and cgroup quota count), at least one.
    pub fn per_cpu() -> NonZeroUsize {
        std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
    }

    /// `count` threads named `{name}-{i}`, each running a current-thread runtime with I/O and
    /// timers.
    pub fn start(name: &str, count: NonZeroUsize) -> io::Result<Cores> {
        Cores::start_with(name, count, Arc::new(|| {}))
    }

    /// [`Cores::start`], with `on_start` run first on each core's thread (to ask the kernel
    /// for its scheduling, say).
    pub fn start_with(
        name: &str,
        count: NonZeroUsize,
        on_start: Arc<dyn Fn() + Send + Sync>,
    ) -> io::Result<Cores> {
        let mut cores = Vec::with_capacity(count.get());
        for i in 0..count.get() {
            let on_start = Arc::clone(&on_start);
            let (stop, stopped) = oneshot::channel::<()>();
            let (ready, handle) = std::sync::mpsc::sync_channel(1);
            // The runtime is built on its own thread and never leaves it: were it built here
            // and the spawn failed, it would be dropped here, inside the caller's runtime,
            // which tokio refuses with a panic.
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    on_start();
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    if ready.send(Ok(runtime.handle().clone())).is_err() {
                        return;
                    }
                    // Ends when the sender is dropped; the runtime is dropped outside any async
                    // context, as tokio requires.
                    let _ = runtime.block_on(stopped);
                    drop(runtime);
                })
                .map_err(|e| with_count(e, count))?;
            let runtime = handle
                .recv()
                .map_err(|_| io::Error::other("a core's thread ended before its runtime was up"))?
                .map_err(|e| with_count(e, count))?;
            cores.push(Core {
                runtime,
                _stop: stop,
            });
        }
        Ok(Cores {
            cores,
            next: AtomicUsize::new(0),
        })
    }

    /// How many there are (at least one).
    pub fn len(&self) -> NonZeroUsize {
        NonZeroUsize::new(self.cores.len()).unwrap_or(NonZeroUsize::MIN)
    }

    /// The next core in turn: its index and its runtime. Round robin, because a connection's
    /// cost is not known when it is accepted, and clients that keep connections alive spread
    /// evenly this way.
    pub(crate) fn pick(&self) -> (usize, &Handle) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.cores.len();
        (i, &self.cores[i].runtime)
    }
}

/// What a failed start says: how many threads were asked for and what usually limits them.
fn with_count(e: io::Error, count: NonZeroUsize) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot start {count} runtime threads ({e}); the process may be at its thread limit \
             (`ulimit -u`, or the container's pids.max)"
        ),
    )
}

/// One `T` per core, so that what a connection uses (a connection pool, whose idle sockets are
/// registered with one runtime) belongs to the core it runs on.
#[derive(Debug)]
pub struct PerCore<T> {
    items: Vec<T>,
}

impl<T> PerCore<T> {
    /// `make(i)` for each of `count` cores.
    pub fn new<E>(count: NonZeroUsize, make: impl FnMut(usize) -> Result<T, E>) -> Result<Self, E> {
        let items = (0..count.get()).map(make).collect::<Result<Vec<_>, E>>()?;
        Ok(PerCore { items })
    }

    /// Core `core`'s; a connection accepted without cores is core 0.
    pub fn get(&self, core: usize) -> &T {
        // Never empty (`count` is at least one), so the modulo is defined.
        &self.items[core % self.items.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn tasks_run_on_their_core_and_stop_with_it() {
        let cores = Cores::start("test-core", NonZeroUsize::new(2).unwrap()).unwrap();
        assert_eq!(cores.len().get(), 2);
        let mut names = Vec::new();
        for _ in 0..4 {
            let (i, runtime) = cores.pick();
            let task = runtime.spawn(async { std::thread::current().name().map(str::to_string) });
            let name = tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("the core never ran the task")
                .unwrap();
            names.push((i, name));
        }
        assert_eq!(
            names,
            [0, 1, 0, 1].map(|i| (i, Some(format!("test-core-{i}")))),
            "round robin, each task on its core's thread"
        );
        // A task left running is dropped when the cores are: its side of the channel closes.
        let (held, released) = oneshot::channel::<()>();
        cores.pick().1.spawn(async move {
            let _held = held;
            std::future::pending::<()>().await
        });
        drop(cores);
        let closed = tokio::time::timeout(Duration::from_secs(5), released).await;
        assert!(
            matches!(closed, Ok(Err(_))),
            "the task outlived its cores: {closed:?}"
        );
    }

    #[tokio::test]
    async fn the_shared_cores_are_one_set_for_the_process() {
        let a = Cores::shared().unwrap();
        let b = Cores::shared().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.len(), Cores::per_cpu());
    }

    #[test]
    fn per_core_items_are_indexed_by_core() {
        let items = PerCore::new(NonZeroUsize::new(3).unwrap(), |i| Ok::<_, ()>(i * 10)).unwrap();
        assert_eq!((*items.get(0), *items.get(2), *items.get(4)), (0, 20, 10));
    }
}
