//! Callback dispatch: the threads on which application callbacks run.
//!
//! Socket threads must never wait for application code, so they hand events to a small pool of
//! dispatcher threads through bounded channels and move on. Every event carries a key (the
//! session); one key always maps to the same thread, which keeps a session's events in order while
//! different sessions can run in parallel. A full queue means the application is slower than the
//! network: the event is handed back to the poster, who drops and counts it.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle, ThreadId};

use crossbeam_channel::{bounded, Sender, TrySendError};

/// Queue length per dispatcher thread when none is configured: a few seconds of 30 fps video plus
/// audio, so that a callback that stalls briefly loses nothing.
pub const DEFAULT_QUEUE_LEN: usize = 512;

/// The function the dispatcher threads call with each event.
pub type Handler<E> = Arc<dyn Fn(E) + Send + Sync>;

/// A pool of callback threads, each draining its own bounded queue.
pub struct Dispatcher<E: Send + 'static> {
    txs: Vec<Sender<E>>,
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
    /// events, all calling `handler`. A panicking handler is caught so the thread keeps serving.
    pub fn new(
        threads: usize,
        queue_len: usize,
        name: &str,
        handler: Handler<E>,
    ) -> io::Result<Dispatcher<E>> {
        let mut d = Dispatcher {
            txs: Vec::new(),
            threads: Vec::new(),
            ids: Vec::new(),
            handler,
        };
        for i in 0..threads.max(1) {
            let (tx, rx) = bounded::<E>(queue_len.max(1));
            let h = d.handler.clone();
            // On a spawn failure `d` is dropped, which closes and joins the threads already started.
            let jh = thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    for ev in rx {
                        let _ = catch_unwind(AssertUnwindSafe(|| h(ev)));
                    }
                })?;
            d.ids.push(jh.thread().id());
            d.txs.push(tx);
            d.threads.push(jh);
        }
        Ok(d)
    }

    /// Number of dispatcher threads.
    pub fn thread_count(&self) -> usize {
        self.txs.len()
    }

    fn slot(&self, key: u64) -> usize {
        (key % self.txs.len() as u64) as usize
    }

    /// Queues `ev` for the thread that owns `key` without waiting. When that queue is full the
    /// event comes back as `Err` so the caller can count the drop.
    pub fn post(&self, key: u64, ev: E) -> Result<(), E> {
        match self.txs[self.slot(key)].try_send(ev) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(ev)) | Err(TrySendError::Disconnected(ev)) => Err(ev),
        }
    }

    /// Queues `ev`, waiting for room: for events that must not be lost (session ready,
    /// disconnected) and are posted from application threads, never from socket threads. When
    /// called from the very dispatcher thread that owns `key` (a callback that disconnects), a
    /// full queue could never drain, so the event then runs inline instead.
    pub fn post_wait(&self, key: u64, ev: E) {
        let slot = self.slot(key);
        if self.ids[slot] == thread::current().id() {
            if let Err(TrySendError::Full(ev)) = self.txs[slot].try_send(ev) {
                let _ = catch_unwind(AssertUnwindSafe(|| (self.handler)(ev)));
            }
            return;
        }
        let _ = self.txs[slot].send(ev);
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
        self.txs.clear();
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
}
