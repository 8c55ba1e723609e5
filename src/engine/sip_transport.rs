//! The SIP socket thread: one blocking UDP socket, a wake-up descriptor and a timer.
//!
//! The signalling logic lives elsewhere (the backend's call core); this thread only turns the
//! outside world into calls on a [`SipHandler`]: datagrams as they arrive, a wake-up when another
//! thread queued work for it, and a timeout when the handler's own `poll_timeout` has passed.
//! Everything the handler wants sent is collected in an [`Outbox`] and sent after each call, so
//! the handler itself never touches the socket.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::io_thread::{IoThread, StopSignal};
use super::socket::{poll_readable, MediaSocket, RecvBatch, Wait};
use crate::sip::{Outbox, SipPeer, SipTransportKind, MAX_MESSAGE_SIZE};

/// Longest the thread sleeps without a timer due; it only bounds how stale `now` can get.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Datagrams taken per `recvmmsg`.
const BATCH: usize = 32;

/// Sends everything `out` holds on `sock`.
fn flush(out: &mut Outbox, sock: &MediaSocket) {
    for (data, dest) in out.drain() {
        match dest.transport {
            // A send error (unreachable peer, full buffer) loses this datagram only; SIP's
            // retransmissions cover it.
            SipTransportKind::Udp => {
                let _ = sock.send_to(&data, dest.addr);
            }
            // This thread has no stream transport yet: nothing can name one here.
            SipTransportKind::Tcp | SipTransportKind::Tls => {}
        }
    }
}

/// What the SIP thread drives. All methods run on the SIP thread, one at a time.
pub trait SipHandler: Send + 'static {
    /// One datagram arrived from `from`.
    fn on_datagram(&mut self, data: &[u8], from: SipPeer, now: Instant, out: &mut Outbox);
    /// Another thread woke the SIP thread: look at the command queue.
    fn on_wake(&mut self, now: Instant, out: &mut Outbox);
    /// Time has reached (or passed) the last `poll_timeout`.
    fn on_timeout(&mut self, now: Instant, out: &mut Outbox);
    /// When `on_timeout` next needs to run; `None` when no timer is pending.
    fn poll_timeout(&mut self) -> Option<Instant>;
    /// The thread is stopping: last words (BYE for live calls, un-REGISTERs) go out before the
    /// socket closes.
    fn on_shutdown(&mut self, now: Instant, out: &mut Outbox);
    /// After `on_shutdown`: true while the handler still awaits answers (an un-REGISTER's),
    /// which keeps the thread serving datagrams and timers for at most [`SHUTDOWN_LINGER`].
    fn is_lingering(&self) -> bool {
        false
    }
}

/// Longest the SIP thread keeps running after a stop while its handler awaits answers.
pub const SHUTDOWN_LINGER: Duration = Duration::from_secs(4);

/// The running SIP thread. Dropping it stops and joins the thread (after `on_shutdown`).
#[derive(Debug)]
pub struct SipTransport {
    thread: IoThread,
    local: SocketAddr,
}

impl SipTransport {
    /// Starts the thread named `name` driving `handler` on the bound socket `sock`.
    pub fn spawn<H: SipHandler>(sock: MediaSocket, name: &str, handler: H) -> io::Result<Self> {
        let local = sock.local_addr();
        let thread = IoThread::spawn(name.to_string(), move |stop| run(sock, handler, stop))?;
        Ok(SipTransport { thread, local })
    }

    /// The address the SIP socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle that wakes the thread (after queueing a command for the handler).
    pub fn signal(&self) -> StopSignal {
        self.thread.signal()
    }

    /// Stops and joins the thread. Idempotent.
    #[cfg(any(test, feature = "_internals"))]
    pub fn stop(&mut self) {
        self.thread.stop();
    }
}

fn run<H: SipHandler>(sock: MediaSocket, mut handler: H, stop: StopSignal) {
    let mut batch = RecvBatch::new(BATCH, MAX_MESSAGE_SIZE + 1);
    let mut out = Outbox::default();
    let fds = [sock.as_raw_fd(), stop.wake_fd()];
    let mut ready = [false; 2];
    // Set once stopped: the handler has said its last words and may wait for answers until then.
    let mut linger_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if let Some(end) = linger_until {
            if !handler.is_lingering() || now >= end {
                return;
            }
        }
        let mut sleep = handler.poll_timeout().map_or(MAX_SLEEP, |t| {
            t.saturating_duration_since(now).min(MAX_SLEEP)
        });
        if let Some(end) = linger_until {
            sleep = sleep.min(end.saturating_duration_since(now));
        }
        if poll_readable(&fds, &mut ready, sleep).is_err() {
            ready = [false; 2];
        }
        let now = Instant::now();
        if ready[1] {
            stop.reset();
            if !stop.is_stopped() {
                handler.on_wake(now, &mut out);
                flush(&mut out, &sock);
            }
        }
        if stop.is_stopped() && linger_until.is_none() {
            handler.on_shutdown(now, &mut out);
            flush(&mut out, &sock);
            linger_until = Some(now + SHUTDOWN_LINGER);
            continue;
        }
        if ready[0] {
            // Drain what is queued, a batch at a time, answering as we go.
            for _ in 0..64 {
                let n = batch.recv(&sock, Wait::No).unwrap_or(0);
                for i in 0..n {
                    let d = batch.get(i);
                    let Some(from) = d.from else { continue };
                    let from = SipPeer::udp(from);
                    if d.truncated {
                        // Bigger than any SIP message we accept: hand over a marker the parser
                        // rejects as oversized rather than a silently cut message.
                        handler.on_datagram(&[0; MAX_MESSAGE_SIZE + 1], from, now, &mut out);
                    } else {
                        handler.on_datagram(d.data, from, now, &mut out);
                    }
                }
                flush(&mut out, &sock);
                if n < BATCH {
                    break;
                }
            }
        }
        let now = Instant::now();
        if handler.poll_timeout().is_some_and(|t| t <= now) {
            handler.on_timeout(now, &mut out);
            flush(&mut out, &sock);
        }
    }
}
