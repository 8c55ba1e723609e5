//! One RTP stream of a session (audio or video): its sockets, its I/O thread, and the send path
//! that runs on the caller's thread. Every protocol decision is the pure
//! [`StreamCore`](crate::rtp::stream::StreamCore)'s; this file only moves bytes and time.
//!
//! The core sits behind one mutex. Caller threads lock it to hand over media or a command, take
//! the datagrams that are due at once and send them with `sendmmsg` before unlocking (so nothing
//! the I/O thread sends can overtake them). The I/O thread sleeps in `poll` on the sockets and a
//! wake-up `eventfd` until the core's next timeout, feeds it what `recvmmsg` returns, runs its
//! timers, sends what it produced, and posts its events to the dispatcher after unlocking. The
//! I/O thread publishes the deadline it sleeps until; a caller whose input moved the core's next
//! timeout earlier (a paced picture, a DTMF digit) wakes it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rand::RngCore;

use super::dispatch::Dispatcher;
use super::driven::Driven;
use super::event::{
    dispatch_key, EngineEvent, KeyframeRequest, MediaKind, SessionId, StreamEndReason, StreamEnded,
    StreamInfo,
};
use super::io_pool::{IoPool, PoolSlot};
use super::io_thread::{IoThread, StopSignal};
use super::socket::{poll_readable, MediaSocket, RecvBatch, SendBatch, Wait};
use super::stats::StreamStats;
use super::PortLease;
use crate::error::{Error, Result};
use crate::rtp::config::{CoreConfig, MediaParams, DEFAULT_INACTIVITY_TIMEOUT};
use crate::rtp::rtcp::RtcpInterval;
use crate::rtp::stream::{StreamCore, StreamEvent, Transmit, TransmitKind};

pub use crate::rtp::config::SourcePolicy;

/// Most datagrams taken per receive call (the batch starts smaller and grows to this only when
/// bursts fill it).
const RECV_BATCH: usize = 64;
/// Largest datagram accepted; anything bigger is cut by the kernel and counted as malformed.
const RECV_SLOT: usize = 2048;
/// Longest the I/O thread sleeps with nothing to do; it bounds how late a timer can fire.
pub(super) const MAX_IDLE: Duration = Duration::from_millis(100);
/// Shortest sleep: a timeout that stays in the past must not turn the loop into a spin.
pub(super) const MIN_SLEEP: Duration = Duration::from_micros(50);
/// How often a lingering close looks at the stream again.
const LINGER_STEP: Duration = Duration::from_millis(10);

/// Everything needed to open one stream. Fill in at least `media` and the addresses;
/// `..StreamConfig::default()` supplies the rest.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub media: MediaParams,
    /// Where to bind RTP; port 0 picks one (with rtcp-mux off, one whose next port is also free).
    pub local_addr: SocketAddr,
    /// Where to send RTP.
    pub remote_addr: SocketAddr,
    /// Where to send RTCP; `None` means the RTP address with rtcp-mux, its port + 1 otherwise.
    pub remote_rtcp_addr: Option<SocketAddr>,
    /// RTP and RTCP on one port (RFC 5761).
    pub rtcp_mux: bool,
    pub source_policy: SourcePolicy,
    /// Nominal RTCP report interval (randomised ×0.5–1.5 each time).
    pub rtcp_interval: Duration,
    /// Our SDES CNAME.
    pub cname: String,
    /// The session the stream belongs to (the engine fills it in); its events carry this id.
    pub session: SessionId,
    /// Post [`EngineEvent::StreamEnded`] (inactive) after this long without RTP or RTCP from the
    /// peer; zero turns the check off. Default 30 s, as roomkit.
    pub inactivity_timeout: Duration,
    /// On close, a video sender first keeps answering NACKs until it has been idle (no media
    /// sent, no NACK received) this long, at most four times this long, so that the last pictures
    /// can be repaired. Zero (the default) closes at once.
    pub close_linger: Duration,
    /// SRTP keys: the core protects and unprotects every packet; `None`: plain RTP.
    pub srtp: Option<crate::rtp::srtp::SrtpKeys>,
    /// DTLS-SRTP, with ICE when negotiated: the core runs both on the stream's socket and keys
    /// SRTP from the handshake (see `CoreConfig::ice_dtls`). Needs `rtcp_mux` and no `srtp`.
    pub ice_dtls: Option<crate::webrtc::IceDtlsParams>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        let any: SocketAddr = (std::net::Ipv4Addr::UNSPECIFIED, 0).into();
        StreamConfig {
            media: MediaParams::default(),
            local_addr: any,
            remote_addr: any,
            remote_rtcp_addr: None,
            rtcp_mux: false,
            source_policy: SourcePolicy::RemoteOnly,
            rtcp_interval: RtcpInterval::DEFAULT_NOMINAL,
            cname: "roomkit-media".into(),
            session: SessionId::nil(),
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
            close_linger: Duration::ZERO,
            srtp: None,
            ice_dtls: None,
        }
    }
}

/// The core and the scratch space of whoever holds the lock.
struct Locked {
    /// The stream's core, or the bundle whose member it is.
    media: Driven,
    batch: SendBatch,
    out: Vec<Transmit>,
    /// Events with the member they are about.
    events: Vec<(usize, StreamEvent)>,
}

/// The stream state both I/O models drive (see [`run`] and [`super::io_pool`]).
pub(super) struct Shared {
    rtp: MediaSocket,
    rtcp: Option<MediaSocket>,
    core: Mutex<Locked>,
    /// When the I/O thread will next wake by itself, in ns since `origin` (`u64::MAX`: never).
    io_deadline: AtomicU64,
    /// Events the dispatcher could not take (a slow callback).
    slow_callback: AtomicU64,
    /// Datagrams cut by the kernel (larger than a receive slot).
    truncated: AtomicU64,
    origin: Instant,
    dispatcher: Arc<Dispatcher<EngineEvent>>,
    session: SessionId,
    key: u64,
    media: MediaKind,
    /// The kind of each member (one for a stream of its own; audio then video for a bundle).
    members: Vec<MediaKind>,
    /// The pool port of the sockets above; fields drop in order, so it goes back after they close.
    _lease: Option<PortLease>,
}

impl Shared {
    /// Audio or video.
    pub(super) fn media(&self) -> MediaKind {
        self.media
    }

    /// The RTP socket's descriptor, and the RTCP socket's without rtcp-mux.
    pub(super) fn fds(&self) -> (RawFd, Option<RawFd>) {
        (
            self.rtp.as_raw_fd(),
            self.rtcp.as_ref().map(|s| s.as_raw_fd()),
        )
    }

    fn socket(&self, kind: TransmitKind) -> &MediaSocket {
        match kind {
            TransmitKind::Rtp => &self.rtp,
            TransmitKind::Rtcp => self.rtcp.as_ref().unwrap_or(&self.rtp),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// Sends what the core has queued, grouped into one `sendmmsg` per socket and destination,
    /// and takes its events. Returns the first send error.
    fn flush(&self, l: &mut Locked) -> io::Result<()> {
        while let Some(t) = l.media.poll_transmit() {
            l.out.push(t);
        }
        while let Some(e) = l.media.poll_event() {
            l.events.push(e);
        }
        let mut result = Ok(());
        let mut start = 0;
        while start < l.out.len() {
            let (kind, dest) = (l.out[start].kind, l.out[start].dest);
            let end = start
                + l.out[start..]
                    .iter()
                    .take_while(|t| t.kind == kind && t.dest == dest)
                    .count();
            let group = &l.out[start..end];
            if let Err(e) = l.batch.send(
                self.socket(kind),
                dest,
                group.iter().map(|t| std::iter::once(t.contents.as_slice())),
            ) {
                if result.is_ok() {
                    result = Err(e);
                }
            }
            start = end;
        }
        for t in l.out.drain(..) {
            l.media.recycle(t.contents);
        }
        result
    }

    /// Posts events to the callbacks, all at once (one lock, at most one wake-up). Media a full
    /// queue cannot take is dropped and counted; the end of a stream is kept in `keep` to be
    /// posted again later.
    fn post(
        &self,
        events: &mut Vec<(usize, StreamEvent)>,
        keep: Option<&mut VecDeque<EngineEvent>>,
    ) {
        if events.is_empty() {
            return;
        }
        let mut keep = keep;
        let evs = events
            .drain(..)
            .map(|(member, ev)| self.engine_event(member, ev));
        self.dispatcher.post_all(self.key, evs, |ev| {
            match (&mut keep, matches!(ev, EngineEvent::StreamEnded(..))) {
                (Some(k), true) => k.push_back(ev),
                _ => {
                    self.slow_callback.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    fn engine_event(&self, member: usize, ev: StreamEvent) -> EngineEvent {
        let id = self.session;
        let media = self.members.get(member).copied().unwrap_or(self.media);
        let ended = |reason| EngineEvent::StreamEnded(id, StreamEnded { media, reason });
        match ev {
            StreamEvent::Video(f) => EngineEvent::Video(id, f),
            StreamEvent::Audio(f) => EngineEvent::Audio(id, f),
            StreamEvent::Dtmf(d) => EngineEvent::Dtmf(id, d),
            StreamEvent::KeyframeRequested(k) => EngineEvent::KeyframeRequested(id, k),
            StreamEvent::RemoteBye { reason } => ended(StreamEndReason::RemoteBye { reason }),
            StreamEvent::Inactive { silent_for } => ended(StreamEndReason::Inactive { silent_for }),
            StreamEvent::TransportFailed(f) => ended(StreamEndReason::TransportFailed(f)),
            StreamEvent::TargetBitrate { bps, reason } => {
                EngineEvent::TargetBitrate(id, bps, reason)
            }
        }
    }
}

/// An open stream. Dropping it stops and joins its thread (after sending RTCP BYE) and closes its
/// sockets.
pub struct MediaStream {
    shared: Arc<Shared>,
    driver: Arc<Driver>,
    /// Which member of the shared state this stream is (0 unless bundled).
    member: usize,
    /// Whether this stream owns the I/O (a bundle's first member does; closing it ends all).
    owner: bool,
    info: StreamInfo,
    close_linger: Duration,
}

impl std::fmt::Debug for MediaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaStream")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What moves the stream's bytes and time.
enum Driver {
    /// Its own thread (`io_threads` = 0).
    Own {
        thread: Mutex<IoThread>,
        wake: StopSignal,
    },
    /// A place on one of the engine's shared I/O threads.
    Pooled(PoolSlot),
}

impl Driver {
    /// Makes the I/O side look at the core's next timeout again.
    fn wake(&self) {
        match self {
            Driver::Own { wake, .. } => wake.wake(),
            Driver::Pooled(slot) => slot.rearm(),
        }
    }

    /// Asks the stream's own thread to stop without joining it (see
    /// [`IoThread::request_stop`]); a shared thread's slot is removed by [`stop`](Self::stop).
    fn request_stop(&self) {
        if let Driver::Own { thread, .. } = self {
            thread.lock().request_stop();
        }
    }

    /// Stops driving the stream: it sends RTCP BYE, and no event follows. Idempotent.
    fn stop(&self) {
        match self {
            Driver::Own { thread, .. } => thread.lock().stop(),
            Driver::Pooled(slot) => slot.remove(),
        }
    }
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::Io(what, e)
}

/// A stream's sockets: RTP, and RTCP on the next port unless rtcp-mux. They can be bound before
/// the stream opens, so that the ports an SDP offer or answer names are already ours when it is
/// sent (no probe-then-bind race).
#[derive(Debug)]
pub struct RtpSockets {
    /// The RTP socket (RTCP too with rtcp-mux).
    pub rtp: MediaSocket,
    /// The RTCP socket on the RTP port + 1; `None` with rtcp-mux.
    pub rtcp: Option<MediaSocket>,
    /// The pool lease of the port, returned when the sockets (and the stream using them) are
    /// closed, not before.
    lease: Option<PortLease>,
}

impl RtpSockets {
    /// Binds the RTP socket and, without rtcp-mux, the RTCP socket on the next port. Port 0
    /// picks a free port (and, without rtcp-mux, one whose next port is free too).
    pub fn bind(local: SocketAddr, mux: bool) -> Result<RtpSockets> {
        let bind = |a: SocketAddr| MediaSocket::bind(a).map_err(io_err(format!("binding {a}")));
        if mux {
            return Ok(RtpSockets {
                rtp: bind(local)?,
                rtcp: None,
                lease: None,
            });
        }
        if local.port() != 0 {
            let rtp = bind(local)?;
            let rtcp_port = local.port().checked_add(1).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "local port {} leaves no room for RTCP",
                    local.port()
                ))
            })?;
            let rtcp = bind(SocketAddr::new(local.ip(), rtcp_port))?;
            return Ok(RtpSockets {
                rtp,
                rtcp: Some(rtcp),
                lease: None,
            });
        }
        // Port 0: let the kernel choose, then check that the next port is free too; a few
        // attempts find a pair on any machine that is not out of ports.
        let mut last = None;
        for _ in 0..32 {
            let rtp = bind(local)?;
            let Some(next) = rtp.local_addr().port().checked_add(1) else {
                continue;
            };
            match MediaSocket::bind(SocketAddr::new(local.ip(), next)) {
                Ok(rtcp) => {
                    return Ok(RtpSockets {
                        rtp,
                        rtcp: Some(rtcp),
                        lease: None,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Error::Io(
            format!("finding an RTP/RTCP port pair on {}", local.ip()),
            last.unwrap_or_else(|| io::Error::other("no port pair")),
        ))
    }

    /// The RTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.rtp.local_addr()
    }

    /// Ties `lease` (the pool port these sockets are bound on) to the sockets: it goes back to
    /// its pool only once they are closed, by whoever holds them last.
    pub fn hold(mut self, lease: PortLease) -> RtpSockets {
        self.lease = Some(lease);
        self
    }
}

impl MediaStream {
    /// Binds the sockets and starts the I/O thread. Events go to `dispatcher`.
    pub fn open(
        cfg: StreamConfig,
        dispatcher: Arc<Dispatcher<EngineEvent>>,
    ) -> Result<MediaStream> {
        let sockets = RtpSockets::bind(cfg.local_addr, cfg.rtcp_mux)?;
        Self::open_bound(cfg, sockets, dispatcher, None)
    }

    /// Starts the stream on sockets bound beforehand (`cfg.local_addr` is not used): on its own
    /// thread, or on the least loaded thread of `pool`. With rtcp-mux a separate RTCP socket
    /// is closed; without it one is required.
    pub fn open_bound(
        cfg: StreamConfig,
        sockets: RtpSockets,
        dispatcher: Arc<Dispatcher<EngineEvent>>,
        pool: Option<&Arc<IoPool>>,
    ) -> Result<MediaStream> {
        // `lease` is bound first so that, on an early return, it is dropped after the sockets.
        let RtpSockets {
            lease,
            rtp: rtp_sock,
            rtcp: rtcp_sock,
        } = sockets;
        let rtcp_sock = rtcp_sock.filter(|_| !cfg.rtcp_mux);
        if !cfg.rtcp_mux && rtcp_sock.is_none() {
            return Err(Error::InvalidArgument(
                "a stream without rtcp-mux needs its RTCP socket".into(),
            ));
        }
        let local_rtcp = rtcp_sock
            .as_ref()
            .map_or(rtp_sock.local_addr(), |s| s.local_addr());
        let origin = Instant::now();
        let core = new_core(&cfg, origin, true)?;
        let info = stream_info(&cfg, rtp_sock.local_addr(), local_rtcp, core.srtp_suite());
        let mut streams = Self::start(
            Driven::Core(Box::new(core)),
            vec![(info, cfg.close_linger)],
            Io {
                rtp: rtp_sock,
                rtcp: rtcp_sock,
                lease,
                origin,
                session: cfg.session,
            },
            dispatcher,
            pool,
        )?;
        streams
            .pop()
            .ok_or_else(|| Error::State("no stream started".into()))
    }

    /// Starts a BUNDLE group of one session (RFC 9143): `audio` and `video` share `sockets`
    /// (one socket, rtcp-mux), one ICE/DTLS transport run with `params` and one SRTP session
    /// (see `webrtc::Bundle`); `routes` tell their packets apart. The audio stream owns the
    /// I/O: closing it ends both; closing the video stream ends video alone (RTCP BYE).
    #[allow(clippy::too_many_arguments)]
    pub fn open_bundle(
        audio: StreamConfig,
        video: StreamConfig,
        params: &crate::webrtc::IceDtlsParams,
        routes: (crate::webrtc::MemberRoute, crate::webrtc::MemberRoute),
        sockets: RtpSockets,
        dispatcher: Arc<Dispatcher<EngineEvent>>,
        pool: Option<&Arc<IoPool>>,
    ) -> Result<(MediaStream, MediaStream)> {
        // One socket carries everything: a separate RTCP socket closes here.
        let RtpSockets {
            lease,
            rtp: rtp_sock,
            rtcp: _,
        } = sockets;
        let origin = Instant::now();
        let local = rtp_sock.local_addr();
        let mut bundle = crate::webrtc::Bundle::new(params, audio.remote_addr, origin);
        let mut members = Vec::new();
        for (cfg, route) in [(&audio, routes.0), (&video, routes.1)] {
            let core = new_core(cfg, origin, false)?;
            bundle
                .add(core, route)
                .map_err(|e| Error::InvalidArgument(format!("BUNDLE: {e}")))?;
            members.push((stream_info(cfg, local, local, None), cfg.close_linger));
        }
        let mut streams = Self::start(
            Driven::Bundle(Box::new(bundle)),
            members,
            Io {
                rtp: rtp_sock,
                rtcp: None,
                lease,
                origin,
                session: audio.session,
            },
            dispatcher,
            pool,
        )?;
        let v = streams.pop();
        let a = streams.pop();
        match (a, v) {
            (Some(a), Some(v)) => Ok((a, v)),
            _ => Err(Error::State("the bundle's streams did not start".into())),
        }
    }

    /// Puts `driven` behind its lock on an I/O thread (its own or the pool's) and returns one
    /// stream per member (`members`: each one's description and close linger); the first owns
    /// the I/O.
    fn start(
        driven: Driven,
        members: Vec<(StreamInfo, Duration)>,
        io: Io,
        dispatcher: Arc<Dispatcher<EngineEvent>>,
        pool: Option<&Arc<IoPool>>,
    ) -> Result<Vec<MediaStream>> {
        let kinds: Vec<MediaKind> = members
            .iter()
            .map(|(info, _)| match info.codec {
                Some(_) => MediaKind::Video,
                None => MediaKind::Audio,
            })
            .collect();
        let media = kinds.first().copied().unwrap_or(MediaKind::Audio);
        let shared = Arc::new(Shared {
            rtp: io.rtp,
            rtcp: io.rtcp,
            core: Mutex::new(Locked {
                media: driven,
                batch: SendBatch::new(),
                out: Vec::new(),
                events: Vec::new(),
            }),
            io_deadline: AtomicU64::new(0),
            slow_callback: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            origin: io.origin,
            dispatcher,
            session: io.session,
            key: dispatch_key(io.session),
            media,
            members: kinds,
            _lease: io.lease,
        });
        let driver = match pool {
            Some(pool) => Driver::Pooled(
                pool.attach(shared.clone())
                    .map_err(io_err("registering the stream's sockets".into()))?,
            ),
            None => {
                let name = match media {
                    MediaKind::Video => "rkm-video-io",
                    MediaKind::Audio => "rkm-audio-io",
                };
                let io_shared = shared.clone();
                let thread = IoThread::spawn(name.into(), move |stop| run(&io_shared, &stop))
                    .map_err(io_err("starting the stream thread".into()))?;
                Driver::Own {
                    wake: thread.signal(),
                    thread: Mutex::new(thread),
                }
            }
        };
        let driver = Arc::new(driver);
        Ok(members
            .into_iter()
            .enumerate()
            .map(|(member, (info, close_linger))| MediaStream {
                shared: shared.clone(),
                driver: driver.clone(),
                member,
                owner: member == 0,
                info,
                close_linger,
            })
            .collect())
    }

    /// Addresses, payload type and codec of the stream.
    pub fn info(&self) -> StreamInfo {
        let mut info = self.info.clone();
        let l = self.shared.core.lock();
        info.remote_addr = l.media.core(self.member).remote_rtp();
        // DTLS-SRTP keys the stream after it opened (and a re-INVITE may re-key it).
        info.srtp_suite = l.media.srtp_suite(self.member);
        info
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.shared.core.lock().media.core(self.member).ssrc()
    }

    /// Whether the peer has left this stream (RTCP BYE, or silence for the inactivity timeout,
    /// with no RTP since).
    pub fn peer_gone(&self) -> bool {
        self.shared.core.lock().media.core(self.member).peer_gone()
    }

    /// Our RTX SSRC when RTX is configured (for `a=ssrc-group:FID` in SDP).
    pub fn rtx_ssrc(&self) -> Option<u32> {
        self.shared.core.lock().media.core(self.member).rtx_ssrc()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StreamStats {
        let mut s = self.shared.core.lock().media.stats(self.member);
        s.frames_dropped_slow_callback = self.shared.slow_callback.load(Ordering::Relaxed);
        s.malformed += self.shared.truncated.load(Ordering::Relaxed);
        s
    }

    /// One more remote ICE candidate (trickle, RFC 8838); ignored on a stream without ICE.
    pub fn add_remote_candidate(&self, candidate: crate::webrtc::Candidate) -> Result<()> {
        let sh = &*self.shared;
        let mut l = sh.core.lock();
        l.media
            .add_remote_candidate(Instant::now(), self.member, candidate);
        let sent = sh.flush(&mut l);
        if let Some(t) = l.media.poll_timeout() {
            if sh.nanos(t) < sh.io_deadline.load(Ordering::Acquire) {
                self.driver.wake();
            }
        }
        sent.map_err(io_err("sending ICE checks".into()))
    }

    /// Points RTP (and RTCP) at a new remote address, as a re-INVITE does.
    pub fn set_remote(&self, rtp: SocketAddr, rtcp: SocketAddr) {
        let mut l = self.shared.core.lock();
        // In a bundle the ICE-selected pair decides where media goes.
        if !l.media.is_bundle() {
            l.media.core_mut(self.member).set_remote(rtp, rtcp);
        }
    }

    /// Takes the SRTP keys a re-INVITE agreed (see `StreamCore::rekey_srtp`); true when they
    /// changed anything.
    pub fn rekey_srtp(&self, keys: &crate::rtp::srtp::SrtpKeys) -> Result<bool> {
        let mut l = self.shared.core.lock();
        if l.media.is_bundle() {
            return Err(Error::State(
                "a bundled stream is keyed by its DTLS handshake only".into(),
            ));
        }
        l.media
            .core_mut(self.member)
            .rekey_srtp(keys, Instant::now())
            .map_err(|e| Error::InvalidArgument(format!("SRTP keys: {e}")))
    }

    /// Runs `f` on the core at the current time, sends what it queued, wakes the I/O thread if
    /// its next timeout moved earlier, and posts any events. A send error is returned.
    fn with_core<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut StreamCore, Instant) -> Result<T>,
    ) -> Result<T> {
        let sh = &*self.shared;
        let mut events = Vec::new();
        let result = {
            let mut l = sh.core.lock();
            let now = Instant::now();
            let value = f(l.media.core_mut(self.member), now)?;
            let sent = sh.flush(&mut l);
            if let Some(t) = l.media.poll_timeout() {
                if sh.nanos(t) < sh.io_deadline.load(Ordering::Acquire) {
                    self.driver.wake();
                }
            }
            std::mem::swap(&mut events, &mut l.events);
            let dest = l.media.core(self.member).remote_rtp();
            sent.map(|()| value)
                .map_err(io_err(format!("sending {what} to {dest}")))
        };
        sh.post(&mut events, None);
        result
    }

    /// Packetizes one picture and sends the packets the pacer lets go at once in one batched
    /// call; the pacer spreads the rest of a large picture over at most 20 ms (by default), sent
    /// by the stream's thread. `timestamp_ms` is the presentation time; `None` takes the
    /// stream's monotonic clock.
    pub fn send_video(&self, picture: &[u8], timestamp_ms: Option<f64>) -> Result<()> {
        self.with_core("video", |c, now| c.send_video(now, picture, timestamp_ms))
    }

    /// Encodes 16-bit mono PCM at the stream's PCM rate into 20 ms packets of its codec (the
    /// last one padded with silence) and sends them in one batched call. The caller paces: audio handed over in one call leaves at once.
    pub fn send_audio(&self, pcm: &[i16]) -> Result<()> {
        self.send_audio_at(pcm, None)
    }

    /// [`send_audio`](Self::send_audio) of PCM at `rate_hz` (`None`: the stream's PCM rate).
    pub fn send_audio_at(&self, pcm: &[i16], rate_hz: Option<u32>) -> Result<()> {
        self.with_core("audio", |c, now| c.send_audio_at(now, pcm, rate_hz))
    }

    /// Sends one already-encoded audio frame of `duration_ms` as is: payload passthrough for
    /// formats the engine does not encode.
    pub fn send_audio_payload(&self, payload: &[u8], duration_ms: u32) -> Result<()> {
        self.with_core("audio", |c, now| {
            c.send_audio_payload(now, payload, duration_ms)
        })
    }

    /// Queues an RFC 4733 telephone event. The stream's thread paces its packets (one every
    /// 20 ms, then three end packets), so this returns at once.
    pub fn send_dtmf(&self, digit: char, duration_ms: u32) -> Result<()> {
        self.with_core("DTMF", |c, now| c.send_dtmf(now, digit, duration_ms))
    }

    /// Asks the remote sender for a key frame with a PLI or a FIR.
    pub fn request_keyframe(&self, kind: KeyframeRequest) {
        let _ = self.with_core("a keyframe request", |c, now| {
            c.request_keyframe(now, kind);
            Ok(())
        });
    }

    /// Video passthrough on or off, effective for the next packet: every picture delivered,
    /// damaged ones flagged `complete: false`, no keyframe gate.
    pub fn set_video_passthrough(&self, on: bool) {
        let _ = self.with_core("video passthrough", |c, _| {
            c.set_video_passthrough(on);
            Ok(())
        });
    }

    /// Waits until the stream has sent no media and received no NACK for `idle`, or until
    /// `max_wait` has passed; returns whether it went idle. A sender calls it after its last
    /// picture so the receiver can still have lost packets re-sent. Returns at once for a stream
    /// that never sent video.
    pub fn linger(&self, idle: Duration, max_wait: Duration) -> bool {
        let deadline = Instant::now() + max_wait;
        loop {
            let last = self
                .shared
                .core
                .lock()
                .media
                .core(self.member)
                .last_send_activity();
            let now = Instant::now();
            let Some(last) = last else { return true };
            let quiet_at = last + idle;
            if now >= quiet_at {
                return true;
            }
            if now >= deadline {
                return false;
            }
            std::thread::sleep(quiet_at.min(deadline).duration_since(now).min(LINGER_STEP));
        }
    }

    /// The first half of [`close`](Self::close) for a stream with no `close_linger`: its
    /// thread is asked to stop (it sends RTCP BYE on its way out) but not joined, so that a
    /// caller closing many streams lets their threads finish side by side before joining each.
    pub fn begin_close(&self) {
        if self.owner && self.close_linger.is_zero() {
            self.driver.request_stop();
        }
    }

    /// Stops the stream's thread (which sends RTCP BYE on its way out) and joins it; with a
    /// `close_linger`, first lets recent pictures be repaired (see [`Self::linger`]).
    pub fn close(&self) {
        if !self.owner {
            // A bundle member that is not the first ends alone (RTCP BYE); the I/O goes on.
            let sh = &*self.shared;
            let mut l = sh.core.lock();
            l.media.close_member(Instant::now(), self.member);
            let _ = sh.flush(&mut l);
            l.events.clear();
            return;
        }
        if !self.close_linger.is_zero()
            && !self.shared.core.lock().media.core(self.member).is_closed()
        {
            self.linger(self.close_linger, self.close_linger * 4);
        }
        self.driver.stop();
    }
}

impl Drop for MediaStream {
    fn drop(&mut self) {
        self.close();
    }
}

/// The sockets and identity a stream's shared state is built on.
struct Io {
    rtp: MediaSocket,
    rtcp: Option<MediaSocket>,
    lease: Option<PortLease>,
    origin: Instant,
    session: SessionId,
}

/// The core `cfg` describes, started at `origin`; `keyed`: with its SRTP or DTLS-SRTP (a
/// bundle member is plain and rtcp-mux: the bundle keys it).
fn new_core(cfg: &StreamConfig, origin: Instant, keyed: bool) -> Result<StreamCore> {
    let remote_rtcp = cfg.remote_rtcp_addr.unwrap_or_else(|| {
        if cfg.rtcp_mux || !keyed {
            cfg.remote_addr
        } else {
            SocketAddr::new(cfg.remote_addr.ip(), cfg.remote_addr.port().wrapping_add(1))
        }
    });
    StreamCore::new(
        CoreConfig {
            media: cfg.media.clone(),
            remote_rtp: cfg.remote_addr,
            remote_rtcp,
            rtcp_mux: cfg.rtcp_mux || !keyed,
            source_policy: cfg.source_policy,
            rtcp_interval: cfg.rtcp_interval,
            cname: cfg.cname.clone(),
            inactivity_timeout: cfg.inactivity_timeout,
            srtp: cfg.srtp.clone().filter(|_| keyed),
            ice_dtls: cfg.ice_dtls.clone().filter(|_| keyed),
            ..CoreConfig::default()
        },
        origin,
        SystemTime::now(),
        rand::rng().next_u64(),
    )
}

/// What a stream opened with `cfg` on `local` (RTP) and `local_rtcp` says about itself.
fn stream_info(
    cfg: &StreamConfig,
    local: SocketAddr,
    local_rtcp: SocketAddr,
    srtp_suite: Option<crate::rtp::srtp::SrtpSuite>,
) -> StreamInfo {
    let (payload_type, clock_rate, codec, sample_rate) = match &cfg.media {
        MediaParams::Audio(a) => (a.payload_type, a.clock_rate, None, a.pcm_rate()),
        MediaParams::Video(v) => (v.payload_type, v.clock_rate, Some(v.codec), v.clock_rate),
    };
    StreamInfo {
        local_addr: local,
        local_rtcp_addr: local_rtcp,
        remote_addr: cfg.remote_addr,
        payload_type,
        clock_rate,
        codec,
        sample_rate,
        srtp_suite,
    }
}

/// The stream's own I/O thread (`io_threads` = 0): sleep until a datagram, a wake-up or the
/// core's timeout; feed the core; send and post what it produced. Sends RTCP BYE when stopped.
/// The shared threads of [`super::io_pool`] call the same steps ([`arm`], [`drain`],
/// [`run_timers`], [`finish`]) for many streams.
fn run(sh: &Shared, stop: &StopSignal) {
    let mut batch = RecvBatch::new(RECV_BATCH, RECV_SLOT);
    let mut fds = vec![sh.rtp.as_raw_fd()];
    if let Some(r) = &sh.rtcp {
        fds.push(r.as_raw_fd());
    }
    fds.push(stop.wake_fd());
    let mut ready = [false; 3];
    let mut events = Vec::new();
    let mut unposted = VecDeque::new();
    while !stop.is_stopped() {
        let timeout = arm(sh).map_or(MAX_IDLE, |t| {
            t.saturating_duration_since(Instant::now())
                .clamp(MIN_SLEEP, MAX_IDLE)
        });
        if poll_readable(&fds, &mut ready[..fds.len()], timeout).is_err() {
            break;
        }
        if stop.is_stopped() {
            break;
        }
        if ready[fds.len() - 1] {
            stop.reset();
        }
        // `poll` reports a socket as long as it holds datagrams: what a drain leaves comes back.
        if ready[0] {
            let _ = drain(sh, &mut batch, false, &mut events, &mut unposted);
        }
        if sh.rtcp.is_some() && ready[1] {
            let _ = drain(sh, &mut batch, true, &mut events, &mut unposted);
        }
        run_timers(sh, &mut events, &mut unposted);
    }
    finish(sh);
}

/// The core's next timeout, published as the deadline the I/O side sleeps until (a caller
/// whose input moves it earlier wakes the I/O side).
pub(super) fn arm(sh: &Shared) -> Option<Instant> {
    let l = sh.core.lock();
    let next = l.media.poll_timeout();
    sh.io_deadline
        .store(next.map_or(u64::MAX, |t| sh.nanos(t)), Ordering::Release);
    next
}

/// Runs the core's due timers, sends what they produced and posts the events (and those a
/// full queue refused before).
pub(super) fn run_timers(
    sh: &Shared,
    events: &mut Vec<(usize, StreamEvent)>,
    unposted: &mut VecDeque<EngineEvent>,
) {
    {
        let mut l = sh.core.lock();
        l.media.handle_timeout(Instant::now());
        let _ = sh.flush(&mut l);
        std::mem::swap(events, &mut l.events);
    }
    sh.post(events, Some(unposted));
    retry_unposted(sh, unposted);
}

/// The end of I/O for a stream: the core closes (RTCP BYE) and what it queued is sent; its
/// last events are not posted.
pub(super) fn finish(sh: &Shared) {
    let mut l = sh.core.lock();
    l.media.close(Instant::now());
    let _ = sh.flush(&mut l);
    l.events.clear();
}

/// A receive batch sized for media, for an I/O thread to reuse across its streams.
pub(super) fn recv_batch() -> RecvBatch {
    RecvBatch::new(RECV_BATCH, RECV_SLOT)
}

/// Posts again the end-of-stream events a full queue refused.
fn retry_unposted(sh: &Shared, unposted: &mut VecDeque<EngineEvent>) {
    while let Some(ev) = unposted.pop_front() {
        if let Err(ev) = sh.dispatcher.post(sh.key, ev) {
            unposted.push_front(ev);
            return;
        }
    }
}

/// Reads every queued datagram of one socket, in batches, into the core. Returns false when a
/// receive error may have left datagrams behind (the socket should be drained again).
pub(super) fn drain(
    sh: &Shared,
    batch: &mut RecvBatch,
    rtcp_socket: bool,
    events: &mut Vec<(usize, StreamEvent)>,
    unposted: &mut VecDeque<EngineEvent>,
) -> bool {
    let sock = if rtcp_socket {
        sh.socket(TransmitKind::Rtcp)
    } else {
        &sh.rtp
    };
    loop {
        let n = match batch.recv(sock, Wait::No) {
            Ok(n) => n,
            Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
        };
        {
            let mut l = sh.core.lock();
            let now = Instant::now();
            for i in 0..n {
                let d = batch.get(i);
                let Some(from) = d.from else {
                    // An empty datagram from a shut-down socket, or an address family we do not
                    // speak: nothing to use.
                    continue;
                };
                if d.truncated {
                    sh.truncated.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                l.media.handle_datagram(now, from, d.data, rtcp_socket);
            }
            let _ = sh.flush(&mut l);
            std::mem::swap(events, &mut l.events);
        }
        sh.post(events, Some(unposted));
        if !batch.filled() {
            return true;
        }
    }
}
