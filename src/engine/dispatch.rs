//! Callback dispatch: the threads on which application callbacks run.
//!
//! Socket threads must never wait for application code, so they hand events to a small pool of
//! dispatcher threads through bounded queues and move on. Every event carries a key (the
//! session); one key always maps to the same thread, which keeps a session's events in order while
//! different sessions can run in parallel. A full queue means the application is slower than the
//! network: the event is handed back to the poster, who drops and counts it.
//!
//! Events move in batches: a poster queues all the events one input produced under one lock
//! ([`Dispatcher::post_all`]), and a dispatcher thread takes everything queued at once and runs
//! it outside the lock. A thread is woken only when it sleeps on an empty queue, so a busy one
//! costs its posters no system call, and one wake-up serves every event queued before it runs.
//!
//! A thread that posts for many sessions in one go (a shared I/O thread draining many sockets)
//! can hold its wake-ups ([`hold_wakes`]): each queue it posted to is then woken once, when it
//! is done, instead of once per session whose events found the callback thread asleep.
//!
//! A queue holds `queue_len` events, or [`EVENTS_PER_KEY`] per live key (session) of its thread
//! when that is more ([`Dispatcher::key_added`]): on a loaded machine a callback thread may not
//! run for tens of milliseconds, and the room it needs to lose nothing meanwhile grows with the
//! sessions it serves.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};

use parking_lot::{Condvar, Mutex};

/// Queue length per dispatcher thread when none is configured: a few seconds of 30 fps video plus
/// audio, so that a callback that stalls briefly loses nothing.
pub const DEFAULT_QUEUE_LEN: usize = 512;

/// Room each live key (session) adds to its thread's queue beyond `queue_len`: about 0.2 s of
/// one session's media (30 pictures and 50 audio frames a second), so that events wait at most
/// that long behind a thread that keeps up on average (later ones are dropped and counted).
pub const EVENTS_PER_KEY: usize = 16;

/// The function the dispatcher threads call with each event.
pub type Handler<E> = Arc<dyn Fn(E) + Send + Sync>;

/// One dispatcher thread's queue.
struct Queue<E> {
    state: Mutex<QueueState<E>>,
    /// Signalled when events arrive for a sleeping thread, and when the queue closes.
    ready: Condvar,
    /// Signalled when the thread took a batch and posters wait for room.
    room: Condvar,
    /// Live keys served by this thread (sizes the queue).
    keys: AtomicUsize,
    base_len: usize,
}

struct QueueState<E> {
    events: VecDeque<E>,
    /// The thread waits for events: the next poster wakes it.
    sleeping: bool,
    /// Posters wait in `post_wait` for room.
    waiting_for_room: usize,
    closed: bool,
}

/// A queue whose wake-up a thread holds back (see [`hold_wakes`]).
trait HeldWake: Send + Sync {
    fn wake_now(&self);
}

impl<E: Send> HeldWake for Queue<E> {
    fn wake_now(&self) {
        let mut st = self.state.lock();
        self.wake(&mut st);
    }
}

/// This thread's held wake-ups.
#[derive(Default)]
struct Held {
    /// Inside [`hold_wakes`].
    active: bool,
    /// The queues posted to since (kept allocated between rounds).
    queues: Vec<Arc<dyn HeldWake>>,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::default();
}

/// Runs `f` with this thread's dispatcher wake-ups held back, then wakes every queue `f` posted
/// to, once. Events posted meanwhile wait in their queue until `f` returns, so `f` should be
/// one short round of work (a shared I/O thread's pass over what one wait reported). Nested
/// calls hold until the outermost returns.
pub fn hold_wakes<R>(f: impl FnOnce() -> R) -> R {
    let outer = HELD.with(|h| !std::mem::replace(&mut h.borrow_mut().active, true));
    /// Wakes the held queues, even if `f` unwinds.
    struct Release(bool);
    impl Drop for Release {
        fn drop(&mut self) {
            if self.0 {
                HELD.with(|h| {
                    let mut h = h.borrow_mut();
                    h.active = false;
                    // `wake_now` takes only the queue's lock, never this list.
                    for q in h.queues.drain(..) {
                        q.wake_now();
                    }
                });
            }
        }
    }
    let _release = Release(outer);
    f()
}

impl<E: Send + 'static> Queue<E> {
    /// Wakes the thread now, or, while the posting thread holds its wake-ups, when it is done.
    fn wake_or_hold(self: &Arc<Self>, st: &mut QueueState<E>) {
        if !st.sleeping || st.events.is_empty() {
            return;
        }
        let held = HELD.with(|h| {
            let mut h = h.borrow_mut();
            if !h.active {
                return false;
            }
            let me = Arc::as_ptr(self) as *const ();
            if !h.queues.iter().any(|q| Arc::as_ptr(q) as *const () == me) {
                h.queues.push(self.clone());
            }
            true
        });
        if !held {
            self.wake(st);
        }
    }
}

impl<E> Queue<E> {
    fn capacity(&self) -> usize {
        self.base_len
            .max(self.keys.load(Ordering::Relaxed) * EVENTS_PER_KEY)
    }

    /// Wakes the thread if it sleeps (once: it is marked awake until it sleeps again).
    fn wake(&self, st: &mut QueueState<E>) {
        if st.sleeping && !st.events.is_empty() {
            st.sleeping = false;
            self.ready.notify_one();
        }
    }

    /// The thread's loop: take every queued event, run them in order outside the lock, again
    /// until the queue is closed and empty.
    fn serve(&self, handler: &Handler<E>) {
        let mut batch = VecDeque::new();
        loop {
            {
                let mut st = self.state.lock();
                while st.events.is_empty() && !st.closed {
                    st.sleeping = true;
                    self.ready.wait(&mut st);
                }
                st.sleeping = false;
                if st.events.is_empty() {
                    return;
                }
                std::mem::swap(&mut batch, &mut st.events);
                if st.waiting_for_room > 0 {
                    self.room.notify_all();
                }
            }
            for ev in batch.drain(..) {
                let _ = catch_unwind(AssertUnwindSafe(|| handler(ev)));
            }
        }
    }
}

/// A pool of callback threads, each draining its own bounded queue.
pub struct Dispatcher<E: Send + 'static> {
    queues: Vec<Arc<Queue<E>>>,
    threads: Vec<JoinHandle<()>>,
    ids: Vec<ThreadId>,
    handler: Handler<E>,
}

impl<E: Send + 'static> std::fmt::Debug for Dispatcher<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl<E: Send + 'static> Dispatcher<E> {
    /// Starts `threads` (at least 1) threads named `name-N`, each with a queue of `queue_len`
    /// events (more with many live keys, see [`Dispatcher::key_added`]), all calling `handler`.
    /// A panicking handler is caught so the thread keeps serving.
    pub fn new(
        threads: usize,
        queue_len: usize,
        name: &str,
        handler: Handler<E>,
    ) -> io::Result<Dispatcher<E>> {
        let mut d = Dispatcher {
            queues: Vec::new(),
            threads: Vec::new(),
            ids: Vec::new(),
            handler,
        };
        for i in 0..threads.max(1) {
            let q = Arc::new(Queue {
                state: Mutex::new(QueueState {
                    events: VecDeque::new(),
                    sleeping: false,
                    waiting_for_room: 0,
                    closed: false,
                }),
                ready: Condvar::new(),
                room: Condvar::new(),
                keys: AtomicUsize::new(0),
                base_len: queue_len.max(1),
            });
            let (q2, h) = (q.clone(), d.handler.clone());
            // On a spawn failure `d` is dropped, which closes and joins the threads already started.
            let jh = thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || q2.serve(&h))?;
            d.ids.push(jh.thread().id());
            d.queues.push(q);
            d.threads.push(jh);
        }
        Ok(d)
    }

    /// Number of dispatcher threads.
    pub fn thread_count(&self) -> usize {
        self.queues.len()
    }

    fn slot(&self, key: u64) -> usize {
        (key % self.queues.len() as u64) as usize
    }

    /// A key (session) came to life: its thread's queue may hold [`EVENTS_PER_KEY`] more.
    pub fn key_added(&self, key: u64) {
        self.queues[self.slot(key)]
            .keys
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A key added with [`Dispatcher::key_added`] ended.
    pub fn key_removed(&self, key: u64) {
        let _ = self.queues[self.slot(key)].keys.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |n| n.checked_sub(1),
        );
    }

    /// Queues `ev` for the thread that owns `key` without waiting. When that queue is full the
    /// event comes back as `Err` so the caller can count the drop.
    pub fn post(&self, key: u64, ev: E) -> Result<(), E> {
        let mut back = None;
        self.post_all(key, std::iter::once(ev), |ev| back = Some(ev));
        back.map_or(Ok(()), Err)
    }

    /// Queues `events`, in order, for the thread that owns `key`, under one lock and with at
    /// most one wake-up, without waiting. Those a full queue cannot take go to `refused`, in
    /// order (called with the queue locked: it must not post).
    pub fn post_all(&self, key: u64, events: impl IntoIterator<Item = E>, refused: impl FnMut(E)) {
        let q = &self.queues[self.slot(key)];
        let cap = q.capacity();
        let mut refused = refused;
        let mut st = q.state.lock();
        for ev in events {
            if st.closed || st.events.len() >= cap {
                refused(ev);
            } else {
                st.events.push_back(ev);
            }
        }
        q.wake_or_hold(&mut st);
    }

    /// Queues `ev`, waiting for room: for events that must not be lost (session ready,
    /// disconnected) and are posted from application threads, never from socket threads. When
    /// called from the very dispatcher thread that owns `key` (a callback that disconnects), a
    /// full queue could never drain, so the event then runs inline instead.
    pub fn post_wait(&self, key: u64, ev: E) {
        let slot = self.slot(key);
        let q = &self.queues[slot];
        let own_thread = self.ids[slot] == thread::current().id();
        let mut st = q.state.lock();
        while !st.closed && st.events.len() >= q.capacity() {
            if own_thread {
                drop(st);
                let _ = catch_unwind(AssertUnwindSafe(|| (self.handler)(ev)));
                return;
            }
            st.waiting_for_room += 1;
            q.room.wait(&mut st);
            st.waiting_for_room -= 1;
        }
        if !st.closed {
            st.events.push_back(ev);
            q.wake(&mut st);
        }
    }

    /// True when the calling thread is one of this dispatcher's threads.
    pub fn is_dispatcher_thread(&self) -> bool {
        let me = thread::current().id();
        self.ids.contains(&me)
    }
}

impl<E: Send + 'static> Drop for Dispatcher<E> {
    /// Closes the queues (events already queued are still delivered) and joins the threads. A
    /// thread cannot join itself: when the last owner is dropped inside a callback, that one
    /// thread is detached and exits as soon as the callback returns.
    fn drop(&mut self) {
        for q in &self.queues {
            q.state.lock().closed = true;
            q.ready.notify_all();
            q.room.notify_all();
        }
        let me = thread::current().id();
        for jh in self.threads.drain(..) {
            if jh.thread().id() != me {
                let _ = jh.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::time::Duration;

    #[test]
    fn order_is_kept_per_key_and_threads_are_joined() {
        let seen: Arc<Mutex<Vec<(u64, u32)>>> = Arc::default();
        let s = seen.clone();
        let d = Dispatcher::new(
            3,
            1000,
            "t-disp",
            Arc::new(move |(k, v): (u64, u32)| s.lock().push((k, v))),
        )
        .unwrap();
        assert_eq!(d.thread_count(), 3);
        for v in 0..300u32 {
            d.post(u64::from(v % 5), (u64::from(v % 5), v)).unwrap();
        }
        drop(d);
        let seen = seen.lock();
        assert_eq!(seen.len(), 300);
        for k in 0..5u64 {
            let vs: Vec<u32> = seen.iter().filter(|e| e.0 == k).map(|e| e.1).collect();
            assert!(vs.windows(2).all(|w| w[0] < w[1]), "key {k} out of order");
        }
    }

    #[test]
    fn full_queue_hands_the_event_back() {
        let d = Dispatcher::new(
            1,
            2,
            "t-slow",
            Arc::new(|_: u32| thread::sleep(Duration::from_millis(50))),
        )
        .unwrap();
        let mut dropped = 0;
        for v in 0..20 {
            if d.post(0, v).is_err() {
                dropped += 1;
            }
        }
        assert!(dropped >= 15, "dropped {dropped}");
    }

    #[test]
    fn panicking_handler_does_not_kill_the_thread() {
        let count = Arc::new(Mutex::new(0));
        let c = count.clone();
        let d = Dispatcher::new(
            1,
            10,
            "t-panic",
            Arc::new(move |v: u32| {
                if v == 0 {
                    panic!("callback failure");
                }
                *c.lock() += 1;
            }),
        )
        .unwrap();
        d.post(0, 0).unwrap();
        d.post(0, 1).unwrap();
        drop(d);
        assert_eq!(*count.lock(), 1);
    }

    /// A handler that blocks until `gate` opens, so a test can fill a queue.
    fn gated(gate: &Arc<Mutex<()>>, seen: &Arc<Mutex<Vec<u32>>>) -> Handler<u32> {
        let (g, s) = (gate.clone(), seen.clone());
        Arc::new(move |v: u32| {
            drop(g.lock());
            s.lock().push(v);
        })
    }

    #[test]
    fn post_all_queues_in_order_and_refuses_past_capacity() {
        let gate = Arc::new(Mutex::new(()));
        let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
        let closed = gate.lock();
        let d = Dispatcher::new(1, 4, "t-batch", gated(&gate, &seen)).unwrap();
        // The thread takes the first event and blocks in it; then 4 fit, the rest come back.
        d.post(0, 0).unwrap();
        assert!(wait(|| d.queues[0].state.lock().events.is_empty()));
        let mut refused = Vec::new();
        d.post_all(0, 1..=10, |v| refused.push(v));
        assert_eq!(refused, vec![5, 6, 7, 8, 9, 10]);
        drop(closed);
        drop(d);
        assert_eq!(*seen.lock(), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn live_keys_make_room_and_post_wait_waits_for_it() {
        let gate = Arc::new(Mutex::new(()));
        let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
        let closed = gate.lock();
        let d = Arc::new(Dispatcher::new(1, 1, "t-keys", gated(&gate, &seen)).unwrap());
        d.post(0, 0).unwrap();
        assert!(wait(|| d.queues[0].state.lock().events.is_empty()));
        d.post(0, 1).unwrap();
        assert!(d.post(0, 2).is_err(), "a queue of 1 is full");
        d.key_added(7);
        d.key_added(8);
        // Two live keys: room for 2 * EVENTS_PER_KEY.
        let mut refused = 0;
        d.post_all(0, 0..2 * EVENTS_PER_KEY as u32, |_| refused += 1);
        assert_eq!(refused, 1);
        d.key_removed(7);
        d.key_removed(8);
        d.key_removed(8); // one too many is ignored
                          // Full: post_wait returns once the thread takes the queue.
        let d2 = d.clone();
        let waiter = thread::spawn(move || d2.post_wait(0, 1000));
        thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "post_wait waits for room");
        drop(closed);
        waiter.join().unwrap();
        drop(d);
        let seen = seen.lock();
        assert_eq!(seen.len(), 2 + 2 * EVENTS_PER_KEY);
        assert_eq!(seen.last(), Some(&1000));
    }

    #[test]
    fn held_wakes_wake_each_queue_once_when_the_round_ends() {
        let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
        let s = seen.clone();
        let d =
            Dispatcher::new(2, 100, "t-hold", Arc::new(move |v: u32| s.lock().push(v))).unwrap();
        assert!(wait(|| d.queues.iter().all(|q| q.state.lock().sleeping)));
        hold_wakes(|| {
            for v in 0..10 {
                d.post(u64::from(v % 2), v).unwrap();
            }
            // Nested holds release with the outermost.
            hold_wakes(|| d.post(0, 10).unwrap());
            thread::sleep(Duration::from_millis(30));
            assert!(
                seen.lock().is_empty(),
                "nothing runs while the wake-ups are held"
            );
            assert!(d.queues.iter().all(|q| q.state.lock().sleeping));
        });
        assert!(wait(|| seen.lock().len() == 11));
        // Outside a hold, a post wakes at once again.
        d.post(1, 11).unwrap();
        assert!(wait(|| seen.lock().len() == 12));
        drop(d);
    }

    fn wait(mut cond: impl FnMut() -> bool) -> bool {
        for _ in 0..500 {
            if cond() {
                return true;
            }
            thread::sleep(Duration::from_millis(2));
        }
        false
    }
}
