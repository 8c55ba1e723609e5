//! The SIP socket thread: one UDP socket, a wake-up descriptor, a timer, and the TCP/TLS
//! listeners and connections of [`StreamTransports`] when the backend has them, all in one
//! `ppoll`.
//!
//! The signalling logic lives elsewhere (the backend's call core); this thread only turns the
//! outside world into calls on a [`SipHandler`]: datagrams as they arrive, a wake-up when another
//! thread queued work for it, and a timeout when the handler's own `poll_timeout` has passed.
//! Everything the handler wants sent is collected in an [`Outbox`] and sent after each call, so
//! the handler itself never touches the socket.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::io_thread::{IoThread, StopSignal};
use super::sip_stream::{StreamCounters, StreamFd, StreamTransports};
use super::socket::{poll_fds, MediaSocket, RecvBatch, Wait};
use crate::sip::{Outbox, SipPeer, SipTransportKind, MAX_MESSAGE_SIZE};

/// Longest the thread sleeps without a timer due; it only bounds how stale `now` can get.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// A `ppoll` that took at least this long blocked: the receive queue was empty meanwhile.
const SLEPT: Duration = Duration::from_millis(1);
/// Datagrams taken per `recvmmsg`.
const BATCH: usize = 32;

/// Sends everything `out` holds: datagrams on `sock`, the rest on the stream connections.
fn flush(out: &mut Outbox, sock: &MediaSocket, streams: &mut Option<StreamTransports>) {
    let now = Instant::now();
    for (data, dest) in out.drain() {
        match dest.transport {
            // A send error (unreachable peer, full buffer) loses this datagram only; SIP's
            // retransmissions cover it.
            SipTransportKind::Udp => {
                let _ = sock.send_to(&data, dest.addr);
            }
            SipTransportKind::Tcp | SipTransportKind::Tls => {
                if let Some(s) = streams.as_mut() {
                    s.send(&data, dest, now);
                }
            }
        }
    }
}

/// What the SIP thread drives. All methods run on the SIP thread, one at a time.
pub trait SipHandler: Send + 'static {
    /// One datagram arrived from `from`.
    fn on_datagram(&mut self, data: &[u8], from: SipPeer, now: Instant, out: &mut Outbox);
    /// How long the datagrams about to be handed over waited in the socket's receive queue:
    /// the oldest one's age from its kernel arrival stamp (`SO_TIMESTAMPNS`), or where the
    /// kernel gives none, the time since that queue was last seen empty (an upper bound). The
    /// thread's backlog, for overload control. Called before each batch.
    fn set_backlog(&mut self, backlog: Duration) {
        let _ = backlog;
    }
    /// Another thread woke the SIP thread: look at the command queue.
    fn on_wake(&mut self, now: Instant, out: &mut Outbox);
    /// Time has reached (or passed) the last `poll_timeout`.
    fn on_timeout(&mut self, now: Instant, out: &mut Outbox);
    /// Messages to `dest` (TCP/TLS; with the connection, when one was open) could not be
    /// carried: its connection was refused, failed its handshake, was reset or closed, or left
    /// a keep-alive unanswered. `reason` says which, for the user.
    fn on_transport_error(&mut self, dest: SipPeer, reason: &str, now: Instant, out: &mut Outbox) {
        let _ = (dest, reason, now, out);
    }
    /// When `on_timeout` next needs to run; `None` when no timer is pending.
    #[must_use]
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
    tcp: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    counters: Option<Arc<StreamCounters>>,
}

impl SipTransport {
    /// Starts the thread named `name` driving `handler` on the bound socket `sock`.
    #[cfg(any(test, feature = "_internals"))]
    pub fn spawn<H: SipHandler>(sock: MediaSocket, name: &str, handler: H) -> io::Result<Self> {
        Self::spawn_with_streams(sock, None, name, handler)
    }

    /// [`spawn`](Self::spawn), with TCP/TLS listeners and connections as well.
    pub fn spawn_with_streams<H: SipHandler>(
        sock: MediaSocket,
        streams: Option<StreamTransports>,
        name: &str,
        handler: H,
    ) -> io::Result<Self> {
        let local = sock.local_addr();
        let tcp = streams
            .as_ref()
            .and_then(|s| s.local_addr(SipTransportKind::Tcp));
        let tls = streams
            .as_ref()
            .and_then(|s| s.local_addr(SipTransportKind::Tls));
        let counters = streams.as_ref().map(StreamTransports::counters);
        let thread = IoThread::spawn(name.to_string(), move |stop| {
            run(sock, streams, handler, stop)
        })?;
        Ok(SipTransport {
            thread,
            local,
            tcp,
            tls,
            counters,
        })
    }

    /// The address the SIP socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Where the TCP or TLS listener is bound, when there is one.
    pub fn stream_addr(&self, kind: SipTransportKind) -> Option<SocketAddr> {
        match kind {
            SipTransportKind::Tcp => self.tcp,
            SipTransportKind::Tls => self.tls,
            _ => None,
        }
    }

    /// The TCP/TLS counters, when the thread has stream transports.
    pub fn stream_counters(&self) -> Option<Arc<StreamCounters>> {
        self.counters.clone()
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

fn run<H: SipHandler>(
    sock: MediaSocket,
    mut streams: Option<StreamTransports>,
    mut handler: H,
    stop: StopSignal,
) {
    // Arrival stamps give each batch's exact wait in the queue; without them (an old kernel),
    // the time since the queue was last seen empty bounds it from above.
    let stamped = sock.set_rx_timestamps().is_ok();
    let mut batch = RecvBatch::new(BATCH, MAX_MESSAGE_SIZE + 1);
    if stamped {
        batch = batch.with_timestamps();
    }
    let mut out = Outbox::default();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut what: Vec<StreamFd> = Vec::new();
    // Set once stopped: the handler has said its last words and may wait for answers until then.
    let mut linger_until: Option<Instant> = None;
    // The backlog measure: when the UDP receive queue was last known to be empty, and whether
    // the last drain emptied it (else the thread is behind and the queue never was empty).
    let mut empty_at = Instant::now();
    let mut drained = true;
    loop {
        let now = Instant::now();
        if let Some(end) = linger_until {
            if !handler.is_lingering() || now >= end {
                return;
            }
        }
        let due = [
            handler.poll_timeout(),
            streams.as_ref().and_then(StreamTransports::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut sleep = due.map_or(MAX_SLEEP, |t| {
            t.saturating_duration_since(now).min(MAX_SLEEP)
        });
        if let Some(end) = linger_until {
            sleep = sleep.min(end.saturating_duration_since(now));
        }
        fds.clear();
        what.clear();
        fds.push(pollfd(sock.as_raw_fd()));
        fds.push(pollfd(stop.wake_fd()));
        if let Some(s) = &streams {
            s.poll_fds(&mut fds, &mut what);
        }
        let slept_at = Instant::now();
        if poll_fds(&mut fds, sleep).is_err() {
            for f in &mut fds {
                f.revents = 0;
            }
        }
        let now = Instant::now();
        if drained && now.saturating_duration_since(slept_at) >= SLEPT {
            // The queue was empty when the thread went to sleep, and it slept: whatever is
            // queued now woke it, nothing waited longer than the wake-up. (A poll that
            // returned at once keeps `empty_at`: datagrams may have come in while the thread
            // was busy since.)
            empty_at = now;
        }
        if fds[1].revents != 0 {
            stop.reset();
            if !stop.is_stopped() {
                handler.on_wake(now, &mut out);
                flush(&mut out, &sock, &mut streams);
            }
        }
        if stop.is_stopped() && linger_until.is_none() {
            handler.on_shutdown(now, &mut out);
            flush(&mut out, &sock, &mut streams);
            linger_until = Some(now + SHUTDOWN_LINGER);
            continue;
        }
        if fds[0].revents != 0 {
            // Drain what is queued, a batch at a time, answering as we go.
            drained = false;
            for _ in 0..64 {
                let n = batch.recv(&sock, Wait::No).unwrap_or(0);
                let now = Instant::now();
                // The first datagram of the batch is its oldest.
                let waited = (n > 0)
                    .then(|| batch.get(0).received)
                    .flatten()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                handler.set_backlog(waited.unwrap_or(now.saturating_duration_since(empty_at)));
                if n < BATCH {
                    // Fewer than asked for: the queue is empty now.
                    drained = true;
                    empty_at = now;
                }
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
                flush(&mut out, &sock, &mut streams);
                if !batch.filled() {
                    break;
                }
            }
        }
        for (f, w) in fds[2..].iter().zip(&what) {
            let Some(s) = streams.as_mut().filter(|_| f.revents != 0) else {
                continue;
            };
            s.on_ready(*w, f.revents, now, &mut |data, from| {
                handler.on_datagram(data, from, now, &mut out);
            });
            // Answers go out before the next connection is read.
            flush(&mut out, &sock, &mut streams);
        }
        // Due times are asked for before the clock is read: a handler may answer "now" with a
        // fresh reading of its own, which must count as reached (read the other way round, it
        // never is, and the loop spins without serving it).
        let streams_due = streams.as_mut().and_then(|s| s.poll_timeout());
        let handler_due = handler.poll_timeout();
        let now = Instant::now();
        if let Some(s) = streams.as_mut() {
            if streams_due.is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        if handler_due.is_some_and(|t| t <= now) {
            handler.on_timeout(now, &mut out);
            flush(&mut out, &sock, &mut streams);
        }
        // Peers the stream side could not reach: their transactions fail now. What the handler
        // sends in answer may fail too; a few rounds settle it.
        for _ in 0..4 {
            let failed = streams
                .as_mut()
                .map(StreamTransports::take_failures)
                .unwrap_or_default();
            if failed.is_empty() {
                break;
            }
            for (dest, reason) in failed {
                handler.on_transport_error(dest, &reason, Instant::now(), &mut out);
            }
            flush(&mut out, &sock, &mut streams);
        }
    }
}

fn pollfd(fd: std::os::fd::RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{bounded, Sender};

    /// Asks for a timeout "now", read from the clock inside `poll_timeout`, after each wake-up.
    struct DueNow {
        pending: bool,
        fired: Sender<()>,
    }

    impl SipHandler for DueNow {
        fn on_datagram(&mut self, _: &[u8], _: SipPeer, _: Instant, _: &mut Outbox) {}
        fn on_wake(&mut self, _: Instant, _: &mut Outbox) {
            self.pending = true;
        }
        fn on_timeout(&mut self, _: Instant, _: &mut Outbox) {
            self.pending = false;
            let _ = self.fired.send(());
        }
        fn poll_timeout(&mut self) -> Option<Instant> {
            self.pending.then(Instant::now)
        }
        fn on_shutdown(&mut self, _: Instant, _: &mut Outbox) {}
    }

    /// The loop's contract with a handler: a due time no later than a clock reading taken
    /// when the handler is asked is served on that turn, without another wake-up — even one
    /// the handler read from the clock itself (the loop used to read first and compare a
    /// later due time, spinning until something else woke it).
    #[test]
    fn a_timeout_due_now_is_served_without_another_wake() {
        let sock = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (tx, rx) = bounded(16);
        let handler = DueNow {
            pending: false,
            fired: tx,
        };
        let mut t = SipTransport::spawn(sock, "rkm-test-sip", handler).unwrap();
        for round in 0..3 {
            t.signal().wake();
            assert!(
                rx.recv_timeout(Duration::from_secs(10)).is_ok(),
                "round {round}: on_timeout did not run"
            );
        }
        t.stop();
    }
}
