//! An I/O thread that can always be stopped promptly.
//!
//! Teardown must never wait on a blocked receive. Each I/O thread sleeps in `poll` on its sockets
//! plus an `eventfd`; stopping sets a flag and signals the eventfd, so the thread wakes within one
//! system call return, sees the flag and exits, and the owner joins it. Dropping the handle stops
//! the thread too, so no path can leave one running.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::socket::Waker;

/// What an I/O thread checks to know it should exit, and the descriptor it polls to be woken.
#[derive(Debug, Clone)]
pub struct StopSignal {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopSignal {
    /// True once the owner asked the thread to exit.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The descriptor to include in `poll`: readable when the thread has been woken.
    pub fn wake_fd(&self) -> RawFd {
        self.waker.as_raw_fd()
    }

    /// Clears a wake-up that was not a stop (a command was queued for the thread).
    pub fn reset(&self) {
        self.waker.reset();
    }

    /// Wakes the thread without stopping it, so it looks at its command queue.
    pub fn wake(&self) {
        self.waker.wake();
    }
}

/// The owner's handle to a running I/O thread.
#[derive(Debug)]
pub struct IoThread {
    signal: StopSignal,
    handle: Option<JoinHandle<()>>,
}

impl IoThread {
    /// Starts `body` on a new thread named `name`; `body` must return soon after
    /// [`StopSignal::is_stopped`] turns true.
    pub fn spawn<F>(name: String, body: F) -> io::Result<IoThread>
    where
        F: FnOnce(StopSignal) + Send + 'static,
    {
        let signal = StopSignal {
            stop: Arc::new(AtomicBool::new(false)),
            waker: Arc::new(Waker::new()?),
        };
        let s = signal.clone();
        let handle = thread::Builder::new().name(name).spawn(move || body(s))?;
        Ok(IoThread {
            signal,
            handle: Some(handle),
        })
    }

    /// A handle other threads can use to wake this one for queued commands.
    pub fn signal(&self) -> StopSignal {
        self.signal.clone()
    }

    /// Asks the thread to exit and wakes it, without waiting: an owner closing many threads
    /// asks them all first, so they wind down side by side, and [`stop`](Self::stop) then
    /// finds each one finished or nearly.
    pub fn request_stop(&self) {
        self.signal.stop.store(true, Ordering::Release);
        self.signal.waker.wake();
    }

    /// Asks the thread to exit, wakes it and joins it. Idempotent.
    pub fn stop(&mut self) {
        self.request_stop();
        if let Some(h) = self.handle.take() {
            if h.thread().id() != thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        self.stop();
    }
}
