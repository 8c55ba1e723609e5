//! Shared I/O threads (`io_threads` > 0): N threads, each waiting in `epoll` on the sockets of
//! many streams, instead of one thread per stream.
//!
//! Each thread owns an `epoll` instance, a wake-up `eventfd` (its [`IoThread`]'s) and a binary
//! heap of the deadlines of its streams' cores: one timer structure per thread, not one timer per
//! stream. A new stream goes to the thread with the fewest streams. The thread drives each
//! stream with the very steps the per-stream thread uses (`stream::{arm, drain, run_timers,
//! finish}`): on readiness it drains the socket with `recvmmsg` into that stream's core, after
//! every input it re-reads the core's next timeout and re-arms it in the heap, and it runs the
//! timers that are due. Sends go out as with a stream's own thread, on the thread that produced
//! them.
//!
//! Sockets are registered edge-triggered: a wait reports a socket once when datagrams arrive,
//! and the thread reads it until it is empty, so the next wait need not look at it again (a
//! level-triggered registration costs a second poll of every reported socket). A drain that a
//! receive error stopped early is done once more in the next round (a socket that fails twice
//! running is read again when its next datagram arrives). Heap entries are never updated in place: a stream whose deadline changes
//! gets a new entry, and an entry that no longer matches its stream's armed deadline is skipped
//! when it comes up (the heap is rebuilt if such entries pile up).
//!
//! A thread with many streams (a server's) works in rounds at most [`ROUND`] apart: after a
//! round it lets the next datagrams and deadlines gather before it waits again (a command cuts
//! the pause short), so one wake-up
//! serves every stream that became ready meanwhile, and each callback thread it posts to is
//! woken once per round ([`super::dispatch::hold_wakes`]) rather than once per stream. A thread
//! with few streams waits at once, for the lowest latency.
//!
//! Callers reach a thread through its command list plus its `eventfd`: attach, re-arm (a caller's
//! input moved the core's deadline earlier, as a paced picture does) and detach. A caller
//! removes a stream's sockets from `epoll` itself before asking the thread to detach it, and
//! waits until the thread has closed the core (RTCP BYE): after `detach` returns no event of the
//! stream is posted, and the sockets close when the stream drops them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::event::{EngineEvent, MediaKind};
use super::io_thread::{IoThread, StopSignal};
use super::socket::{poll_readable, Epoll, EpollToken};
use super::stream::{self, Shared, MAX_IDLE, MIN_SLEEP};

/// The token of a thread's own wake-up descriptor.
const WAKE_TOKEN: EpollToken = u64::MAX;
/// Most readiness reports taken per wait.
const READY_BATCH: usize = 256;
/// A thread serving at least this many streams works in rounds (see [`ROUND`]); one with fewer
/// wakes straight into each datagram and timer, as a stream's own thread does.
const ROUNDS_FROM: usize = 16;
/// Shortest time between two rounds of a thread serving many streams: woken sooner after the
/// previous round, it first lets more datagrams and timers come due, so that one wake-up (and
/// one wake-up of each callback thread it posts to) serves many streams instead of one. Media
/// and timers wait at most this much longer.
const ROUND: Duration = Duration::from_millis(1);

/// Work for one I/O thread.
enum Command {
    Attach(u64, Arc<Shared>),
    Rearm(u64),
    Detach(u64, SyncSender<()>),
}

/// What callers share with one I/O thread.
struct Lane {
    epoll: Epoll,
    /// `None` once the thread has ended (stopped, or a panic): commands are then dropped at
    /// once, so a caller waiting for a detach is released instead of blocked for ever.
    commands: Mutex<Option<Vec<Command>>>,
    signal: StopSignal,
    /// Streams attached to the thread, `[audio, video]` (for choosing the least loaded one).
    load: [AtomicUsize; 2],
}

impl Lane {
    fn command(&self, c: Command) {
        if let Some(q) = &mut *self.commands.lock() {
            q.push(c);
        }
        self.signal.wake();
    }

    /// Takes the queued commands.
    fn take_commands(&self) -> Vec<Command> {
        self.commands
            .lock()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}

/// The engine's shared I/O threads. Dropping the last reference (the engine's and every
/// stream's) stops and joins them.
pub struct IoPool {
    lanes: Vec<Arc<Lane>>,
    threads: Vec<IoThread>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for IoPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoPool")
            .field("threads", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl IoPool {
    /// Starts `threads` I/O threads (at least 1).
    pub fn new(threads: usize) -> io::Result<Arc<IoPool>> {
        let mut lanes = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let epoll = Epoll::new()?;
            // The thread needs its lane, and the lane needs the thread's wake-up signal: the
            // thread first waits for the lane to be handed over (or for the sender to go).
            let (tx, rx) = sync_channel::<Arc<Lane>>(1);
            let thread = IoThread::spawn(format!("rkm-io-{i}"), move |stop| {
                if let Ok(lane) = rx.recv() {
                    // A panic (a bug: input never panics) ends this thread like a stream's own
                    // thread would end; its streams get no more I/O, and closing them still
                    // returns.
                    let _ = catch_unwind(AssertUnwindSafe(|| serve(&lane, &stop)));
                    *lane.commands.lock() = None;
                }
            })?;
            let lane = Arc::new(Lane {
                epoll,
                commands: Mutex::new(Some(Vec::new())),
                signal: thread.signal(),
                load: Default::default(),
            });
            lane.epoll.add(lane.signal.wake_fd(), WAKE_TOKEN)?;
            let _ = tx.send(lane.clone());
            lanes.push(lane);
            handles.push(thread);
        }
        Ok(Arc::new(IoPool {
            lanes,
            threads: handles,
            next_id: AtomicU64::new(0),
        }))
    }

    /// How many I/O threads the pool runs.
    pub fn threads(&self) -> usize {
        self.lanes.len()
    }

    /// Puts a stream on the least loaded thread: the one with the fewest streams of its kind
    /// (a video stream costs several audio streams), then the fewest in all. Its sockets are
    /// watched from now on.
    pub(super) fn attach(self: &Arc<Self>, sh: Arc<Shared>) -> io::Result<PoolSlot> {
        let kind = kind_index(sh.media());
        let (lane_idx, lane) = self
            .lanes
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| {
                let (a, v) = (
                    l.load[0].load(Ordering::Relaxed),
                    l.load[1].load(Ordering::Relaxed),
                );
                (if kind == 0 { a } else { v }, a + v)
            })
            .expect("a pool has at least one thread");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (rtp, rtcp) = sh.fds();
        // The thread learns of the stream before epoll can report its sockets (it takes its
        // commands before looking at what a wait reported).
        lane.command(Command::Attach(id, sh));
        let registered = lane
            .epoll
            .add_edge(rtp, token(id, false))
            .and_then(|()| match rtcp {
                Some(fd) => lane.epoll.add_edge(fd, token(id, true)).inspect_err(|_| {
                    let _ = lane.epoll.remove(rtp);
                }),
                None => Ok(()),
            });
        lane.load[kind].fetch_add(1, Ordering::Relaxed);
        let slot = PoolSlot {
            pool: self.clone(),
            lane: lane_idx,
            kind,
            id,
            fds: (rtp, rtcp),
            detached: Mutex::new(false),
        };
        match registered {
            Ok(()) => Ok(slot),
            Err(e) => {
                slot.remove();
                Err(e)
            }
        }
    }
}

impl Drop for IoPool {
    fn drop(&mut self) {
        for t in &mut self.threads {
            t.stop();
        }
    }
}

fn kind_index(m: MediaKind) -> usize {
    match m {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

fn token(id: u64, rtcp: bool) -> EpollToken {
    (id << 1) | u64::from(rtcp)
}

/// A stream's place on a shared I/O thread.
pub(super) struct PoolSlot {
    pool: Arc<IoPool>,
    lane: usize,
    /// `Lane::load` index.
    kind: usize,
    id: u64,
    fds: (std::os::fd::RawFd, Option<std::os::fd::RawFd>),
    detached: Mutex<bool>,
}

impl PoolSlot {
    /// The core's next deadline moved earlier: the thread re-reads it.
    pub(super) fn rearm(&self) {
        self.pool.lanes[self.lane].command(Command::Rearm(self.id));
    }

    /// Takes the stream off its thread and waits until the thread has closed its core (RTCP
    /// BYE sent); no event of the stream follows. Idempotent.
    pub(super) fn remove(&self) {
        let mut detached = self.detached.lock();
        if *detached {
            return;
        }
        *detached = true;
        let lane = &self.pool.lanes[self.lane];
        let _ = lane.epoll.remove(self.fds.0);
        if let Some(fd) = self.fds.1 {
            let _ = lane.epoll.remove(fd);
        }
        let (tx, rx) = sync_channel(1);
        lane.command(Command::Detach(self.id, tx));
        // An error means the thread is gone (it cannot be while this slot holds the pool, but
        // a panic would end it): nothing is left to wait for.
        let _ = rx.recv();
        lane.load[self.kind].fetch_sub(1, Ordering::Relaxed);
    }
}

/// One stream on a thread.
struct Entry {
    sh: Arc<Shared>,
    /// The deadline the heap holds for it, if any.
    armed: Option<Instant>,
    /// End-of-stream events a full queue refused, posted again later.
    unposted: VecDeque<EngineEvent>,
}

/// One I/O thread's state.
struct Worker {
    streams: HashMap<u64, Entry>,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    batch: super::socket::RecvBatch,
    events: Vec<(usize, crate::rtp::stream::StreamEvent)>,
}

impl Worker {
    /// Re-reads the stream's next timeout and puts it in the heap if it changed. A stream
    /// with events still to post is looked at again within `MAX_IDLE`.
    fn rearm(&mut self, id: u64) {
        let Some(e) = self.streams.get_mut(&id) else {
            return;
        };
        let mut next = stream::arm(&e.sh);
        if !e.unposted.is_empty() {
            let retry = Instant::now() + MAX_IDLE;
            next = Some(next.map_or(retry, |t| t.min(retry)));
        }
        if next != e.armed {
            if let Some(t) = next {
                self.heap.push(Reverse((t, id)));
            }
            e.armed = next;
        }
        if self.heap.len() > 4 * self.streams.len() + 64 {
            self.heap = self
                .streams
                .iter()
                .filter_map(|(&id, e)| e.armed.map(|t| Reverse((t, id))))
                .collect();
        }
    }

    fn run_command(&mut self, c: Command) {
        match c {
            Command::Attach(id, sh) => {
                self.streams.insert(
                    id,
                    Entry {
                        sh,
                        armed: None,
                        unposted: VecDeque::new(),
                    },
                );
                self.rearm(id);
            }
            Command::Rearm(id) => self.rearm(id),
            Command::Detach(id, done) => {
                if let Some(e) = self.streams.remove(&id) {
                    stream::finish(&e.sh);
                }
                let _ = done.send(());
            }
        }
    }

    /// Runs the timers that are due, re-arming each stream after.
    fn run_due(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            let Some(e) = self.streams.get_mut(&id) else {
                continue;
            };
            if e.armed != Some(t) {
                continue;
            }
            e.armed = None;
            stream::run_timers(&e.sh, &mut self.events, &mut e.unposted);
            self.rearm(id);
        }
    }
}

/// The body of one shared I/O thread. Detaches (closes) whatever is still attached when stopped.
fn serve(lane: &Lane, stop: &StopSignal) {
    let mut w = Worker {
        streams: HashMap::new(),
        heap: BinaryHeap::new(),
        batch: stream::recv_batch(),
        events: Vec::new(),
    };
    let mut ready = Vec::with_capacity(READY_BATCH);
    let mut touched = Vec::new();
    // Sockets whose drain a receive error cut short: read again next round.
    let mut again = Vec::new();
    // When the last round began, if the thread then served enough streams to work in rounds.
    let mut round_began: Option<Instant> = None;
    while !stop.is_stopped() {
        if let Some(began) = round_began {
            // A full batch means more readiness is waiting already: no pause then.
            let next = began + ROUND;
            let now = Instant::now();
            if ready.len() < READY_BATCH && now < next {
                // The pause ends early on a command (attach, re-arm, detach, stop): a caller
                // waiting for its stream to be closed is not held up by the round.
                let mut woken = [false];
                if poll_readable(&[lane.signal.wake_fd()], &mut woken, next - now).is_err() {
                    std::thread::sleep(next - now);
                }
            }
        }
        let timeout = if again.is_empty() {
            w.heap.peek().map_or(MAX_IDLE, |Reverse((t, _))| {
                t.saturating_duration_since(Instant::now())
                    .clamp(MIN_SLEEP, MAX_IDLE)
            })
        } else {
            MIN_SLEEP
        };
        // A wait can only fail on a broken instance; the thread then ends like a stopped one.
        if lane.epoll.wait(&mut ready, timeout).is_err() {
            break;
        }
        if stop.is_stopped() {
            break;
        }
        round_began = (w.streams.len() >= ROUNDS_FROM).then(Instant::now);
        super::dispatch::hold_wakes(|| {
            if ready.contains(&WAKE_TOKEN) {
                stop.reset();
            }
            for c in lane.take_commands() {
                w.run_command(c);
            }
            touched.clear();
            let retry = std::mem::take(&mut again);
            for (&t, first) in ready
                .iter()
                .map(|t| (t, true))
                .chain(retry.iter().map(|t| (t, false)))
            {
                if t == WAKE_TOKEN {
                    continue;
                }
                let id = t >> 1;
                let Some(e) = w.streams.get_mut(&id) else {
                    continue;
                };
                let emptied = stream::drain(
                    &e.sh,
                    &mut w.batch,
                    t & 1 == 1,
                    &mut w.events,
                    &mut e.unposted,
                );
                if !emptied && first {
                    again.push(t);
                }
                touched.push(id);
            }
            for &id in &touched {
                w.rearm(id);
            }
            w.run_due();
        });
    }
    for c in lane.take_commands() {
        w.run_command(c);
    }
    for (_, e) in w.streams.drain() {
        stream::finish(&e.sh);
    }
}
