//! One RTP stream of a session (audio or video): its sockets, its receive thread, and the send
//! path that runs on the caller's thread.
//!
//! The receive thread owns everything the network drives — source checks, reception statistics,
//! depacketizing, the RTCP schedule, DTMF pacing — so none of that needs a lock. What callers
//! touch from other threads is small and behind short locks: the outgoing RTP state (sequence
//! numbers, timestamps, the reused packet lists), the remote address (latching may move it) and
//! the published counters.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::dispatch::Dispatcher;
use super::event::{dispatch_key, EngineEvent, KeyframeRequest, SessionId, StreamInfo};
use super::io_thread::{IoThread, StopSignal};
use super::media::{plan_dtmf, AudioRx, AudioTx, MediaParams, RxOutput, VideoRx, VideoTx};
use super::socket::{poll_readable, MediaSocket, RecvBatch, SendBatch, Wait};
use super::stats::StreamStats;
use crate::codec::dtmf::TELEPHONE_EVENT_LEN;
use crate::error::{Error, Result};
use crate::rtp::packet::{classify_muxed, parse_rtp, MuxedKind, RTP_HEADER_LEN};
use crate::rtp::receiver::{Arrival, ReceiverStats};
use crate::rtp::rtcp::{
    build_bye, build_fir, build_pli, build_report, ntp_from_system_time, parse_compound_into,
    RtcpEvent, RtcpInterval,
};
use crate::rtp::sender::RtpSender;

/// Datagrams taken per receive call.
const RECV_BATCH: usize = 64;
/// Largest datagram accepted; anything bigger is cut by the kernel and counted as malformed.
const RECV_SLOT: usize = 2048;
/// Longest the receive thread sleeps with nothing to do; it bounds how late a timer can fire.
const MAX_IDLE: Duration = Duration::from_millis(100);
/// At most one PLI per this interval (RFC 4585 asks feedback to be rate-limited).
const PLI_MIN_INTERVAL: Duration = Duration::from_millis(500);

/// Which sources a stream accepts packets from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePolicy {
    /// Only the configured remote address (RTP) and its RTCP address.
    #[default]
    RemoteOnly,
    /// The first source seen becomes the remote address (symmetric RTP, for peers behind NAT);
    /// later packets from elsewhere are dropped.
    LatchFirst,
}

/// Everything needed to open one stream.
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
}

/// Where RTP and RTCP go, and whether the source has been latched.
#[derive(Debug, Clone, Copy)]
struct Remotes {
    rtp: SocketAddr,
    rtcp: SocketAddr,
    rtp_latched: bool,
    rtcp_latched: bool,
}

/// Work the caller hands to the receive thread.
#[derive(Debug)]
enum Command {
    Dtmf { digit: char, duration_ms: u32 },
    RequestKeyframe(KeyframeRequest),
}

/// The outgoing side of the stream, used from caller threads and (for DTMF) the receive thread.
pub(crate) struct SendSide {
    pub(crate) rtp: RtpSender,
    pub(crate) batch: SendBatch,
    pub(crate) headers: Vec<[u8; RTP_HEADER_LEN]>,
    pub(crate) audio: Option<AudioTx>,
    pub(crate) video: Option<VideoTx>,
}

struct Shared {
    rtp: MediaSocket,
    rtcp: Option<MediaSocket>,
    remote: Mutex<Remotes>,
    send: Mutex<SendSide>,
    stats: Mutex<StreamStats>,
    ssrc: u32,
    /// The stream's time origin: plain-bytes video timestamps and audio timestamps count from it.
    origin: Instant,
}

impl Shared {
    fn rtcp_socket(&self) -> &MediaSocket {
        self.rtcp.as_ref().unwrap_or(&self.rtp)
    }

    fn send_rtcp(&self, buf: &[u8]) {
        let dest = self.remote.lock().rtcp;
        if self.rtcp_socket().send_to(buf, dest).is_ok() {
            self.stats.lock().rtcp_sent += 1;
        }
    }
}

/// An open stream. Dropping it stops and joins its thread (after sending RTCP BYE) and closes its
/// sockets.
pub struct MediaStream {
    shared: Arc<Shared>,
    cmds: Sender<Command>,
    thread: Mutex<IoThread>,
    wake: StopSignal,
    info: StreamInfo,
    dtmf_enabled: bool,
}

impl std::fmt::Debug for MediaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaStream")
            .field("info", &self.info)
            .finish_non_exhaustive()
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
}

/// Two addresses are the same endpoint, treating IPv4 and IPv4-mapped IPv6 as equal.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    let norm = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && norm(a.ip()) == norm(b.ip())
}

impl MediaStream {
    /// Binds the sockets and starts the receive thread. Events go to `dispatcher`.
    pub fn open(
        cfg: StreamConfig,
        dispatcher: Arc<Dispatcher<EngineEvent>>,
    ) -> Result<MediaStream> {
        let sockets = RtpSockets::bind(cfg.local_addr, cfg.rtcp_mux)?;
        Self::open_bound(cfg, sockets, dispatcher)
    }

    /// Starts the receive thread on sockets bound beforehand (`cfg.local_addr` is not used).
    /// With rtcp-mux a separate RTCP socket is closed; without it one is required.
    pub fn open_bound(
        cfg: StreamConfig,
        sockets: RtpSockets,
        dispatcher: Arc<Dispatcher<EngineEvent>>,
    ) -> Result<MediaStream> {
        let RtpSockets {
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
        let remote_rtcp = cfg.remote_rtcp_addr.unwrap_or_else(|| {
            if cfg.rtcp_mux {
                cfg.remote_addr
            } else {
                SocketAddr::new(cfg.remote_addr.ip(), cfg.remote_addr.port().wrapping_add(1))
            }
        });
        let mut rng = SmallRng::from_os_rng();
        let (pt, clock_rate, codec) = match &cfg.media {
            MediaParams::Audio(a) => (a.payload_type, a.clock_rate, None),
            MediaParams::Video(v) => (v.payload_type, v.clock_rate, Some(v.codec)),
        };
        let rtp = RtpSender::new(pt, clock_rate, &mut rng);
        let ssrc = rtp.ssrc();
        let (audio_tx, video_tx) = match &cfg.media {
            MediaParams::Audio(a) => (Some(AudioTx::new(a)), None),
            MediaParams::Video(v) => (None, Some(VideoTx::new(v)?)),
        };
        let info = StreamInfo {
            local_addr: rtp_sock.local_addr(),
            local_rtcp_addr: local_rtcp,
            remote_addr: cfg.remote_addr,
            payload_type: pt,
            clock_rate,
            codec,
        };
        let shared = Arc::new(Shared {
            rtp: rtp_sock,
            rtcp: rtcp_sock,
            remote: Mutex::new(Remotes {
                rtp: cfg.remote_addr,
                rtcp: remote_rtcp,
                rtp_latched: false,
                rtcp_latched: false,
            }),
            send: Mutex::new(SendSide {
                rtp,
                batch: SendBatch::new(),
                headers: Vec::new(),
                audio: audio_tx,
                video: video_tx,
            }),
            stats: Mutex::new(StreamStats::default()),
            ssrc,
            origin: Instant::now(),
        });
        let dtmf_enabled = matches!(
            &cfg.media,
            MediaParams::Audio(a) if a.dtmf_payload_type.is_some()
        );
        let (tx, rx) = unbounded();
        let name = match codec {
            Some(_) => "rkm-video-rx",
            None => "rkm-audio-rx",
        };
        let mut receiver = StreamReceiver::new(&cfg, shared.clone(), rx, dispatcher, rng)?;
        let thread = IoThread::spawn(name.into(), move |stop| receiver.run(stop))
            .map_err(io_err("starting the receive thread".into()))?;
        Ok(MediaStream {
            shared,
            cmds: tx,
            wake: thread.signal(),
            thread: Mutex::new(thread),
            info,
            dtmf_enabled,
        })
    }

    /// Addresses, payload type and codec of the stream.
    pub fn info(&self) -> StreamInfo {
        let mut info = self.info.clone();
        info.remote_addr = self.shared.remote.lock().rtp;
        info
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.shared.ssrc
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StreamStats {
        self.shared.stats.lock().clone()
    }

    /// Points RTP (and RTCP) at a new remote address, as a re-INVITE does.
    pub fn set_remote(&self, rtp: SocketAddr, rtcp: SocketAddr) {
        let mut r = self.shared.remote.lock();
        r.rtp = rtp;
        r.rtcp = rtcp;
    }

    /// Time since the stream opened, in milliseconds: the timestamp of media the caller gives no
    /// time for.
    fn now_ms(&self) -> f64 {
        self.shared.origin.elapsed().as_secs_f64() * 1000.0
    }

    /// Packetizes one picture and sends all its packets in one batched call. `timestamp_ms` is the
    /// presentation time; `None` takes the stream's monotonic clock.
    pub fn send_video(&self, picture: &[u8], timestamp_ms: Option<f64>) -> Result<()> {
        let ms = timestamp_ms.unwrap_or_else(|| self.now_ms());
        let dest = self.shared.remote.lock().rtp;
        let mut guard = self.shared.send.lock();
        let s = &mut *guard;
        let video = s
            .video
            .as_mut()
            .ok_or_else(|| Error::Unsupported("this stream carries no video".into()))?;
        video.packetize(picture)?;
        let ts = s.rtp.rtp_timestamp_for_ms(ms);
        let list = &video.payloads;
        s.headers.clear();
        let mut bytes = 0u64;
        for i in 0..list.len() {
            s.headers.push(s.rtp.next_header(ts, list.marker(i)));
            s.rtp.count_payload(list.payload_len(i));
            bytes += (RTP_HEADER_LEN + list.payload_len(i)) as u64;
        }
        let headers = &s.headers;
        let sent = s
            .batch
            .send(
                &self.shared.rtp,
                dest,
                (0..list.len())
                    .map(|i| std::iter::once(&headers[i][..]).chain(list.segments(i, picture))),
            )
            .map_err(io_err(format!("sending video to {dest}")))?;
        drop(guard);
        let mut st = self.shared.stats.lock();
        st.packets_sent += sent as u64;
        st.bytes_sent += bytes;
        Ok(())
    }

    /// Encodes 16-bit PCM into 20 ms G.711 packets (the last one padded with silence) and sends
    /// them in one batched call. The caller paces: audio handed over in one call leaves at once.
    pub fn send_audio(&self, pcm: &[i16]) -> Result<()> {
        self.send_audio_with(|audio, now, rtp| audio.encode(pcm, now, rtp))
    }

    /// Sends one already-encoded audio frame of `duration_ms` as is: payload passthrough for
    /// formats the engine does not encode.
    pub fn send_audio_payload(&self, payload: &[u8], duration_ms: u32) -> Result<()> {
        self.send_audio_with(|audio, now, rtp| audio.passthrough(payload, duration_ms, now, rtp))
    }

    /// Lets `prepare` fill the audio sender's packets, then sends them in one batch.
    fn send_audio_with(
        &self,
        prepare: impl FnOnce(&mut AudioTx, Duration, &RtpSender) -> Result<()>,
    ) -> Result<()> {
        let dest = self.shared.remote.lock().rtp;
        let now = self.shared.origin.elapsed();
        let mut guard = self.shared.send.lock();
        let s = &mut *guard;
        let audio = s
            .audio
            .as_mut()
            .ok_or_else(|| Error::Unsupported("this stream carries no audio".into()))?;
        prepare(audio, now, &s.rtp)?;
        s.headers.clear();
        let mut bytes = 0u64;
        for (ts, marker, len) in audio.packets() {
            s.headers.push(s.rtp.next_header(ts, marker));
            s.rtp.count_payload(len);
            bytes += (RTP_HEADER_LEN + len) as u64;
        }
        let headers = &s.headers;
        let audio = &*audio;
        let sent = s
            .batch
            .send(
                &self.shared.rtp,
                dest,
                (0..headers.len()).map(|i| [&headers[i][..], audio.payload(i)].into_iter()),
            )
            .map_err(io_err(format!("sending audio to {dest}")))?;
        drop(guard);
        let mut st = self.shared.stats.lock();
        st.packets_sent += sent as u64;
        st.bytes_sent += bytes;
        Ok(())
    }

    /// Queues an RFC 4733 telephone event. The receive thread paces its packets (one every
    /// 20 ms, then three end packets), so this returns at once.
    pub fn send_dtmf(&self, digit: char, duration_ms: u32) -> Result<()> {
        if self.info.codec.is_some() {
            return Err(Error::Unsupported("DTMF goes on the audio stream".into()));
        }
        if !self.dtmf_enabled {
            return Err(Error::Unsupported(
                "DTMF is disabled (no dtmf_payload_type)".into(),
            ));
        }
        // Checks digit and duration now, so the caller hears about a bad request.
        plan_dtmf(digit, duration_ms, self.info.clock_rate)?;
        let _ = self.cmds.send(Command::Dtmf { digit, duration_ms });
        self.wake.wake();
        Ok(())
    }

    /// Asks the remote sender for a key frame with a PLI or a FIR.
    pub fn request_keyframe(&self, kind: KeyframeRequest) {
        let _ = self.cmds.send(Command::RequestKeyframe(kind));
        self.wake.wake();
    }

    /// Stops the receive thread (which sends RTCP BYE on its way out) and joins it.
    pub fn close(&self) {
        self.thread.lock().stop();
    }
}

impl Drop for MediaStream {
    fn drop(&mut self) {
        self.close();
    }
}

/// A DTMF digit being played out.
struct DtmfPlayback {
    packets: Vec<crate::codec::dtmf::DtmfPacket>,
    next: usize,
    rtp_ts: u32,
    start: Instant,
}

/// Receive-side state, owned by the receive thread.
struct StreamReceiver {
    shared: Arc<Shared>,
    cmds: Receiver<Command>,
    dispatcher: Arc<Dispatcher<EngineEvent>>,
    session: SessionId,
    key: u64,
    source_policy: SourcePolicy,
    mux: bool,
    cname: String,
    clock_rate: u32,
    audio: Option<AudioRx>,
    video: Option<VideoRx>,
    rx_stats: Option<ReceiverStats>,
    interval: RtcpInterval,
    rng: SmallRng,
    last_pli: Option<Instant>,
    fir_seq: u8,
    last_fir_in: Option<u8>,
    dtmf_queue: VecDeque<(char, u32)>,
    dtmf: Option<DtmfPlayback>,
    dtmf_pt: Option<u8>,
    rtcp_buf: Vec<u8>,
    rtcp_events: Vec<RtcpEvent>,
    out: RxOutput,
    local: StreamStats,
    payload_malformed: u64,
}

impl StreamReceiver {
    fn new(
        cfg: &StreamConfig,
        shared: Arc<Shared>,
        cmds: Receiver<Command>,
        dispatcher: Arc<Dispatcher<EngineEvent>>,
        mut rng: SmallRng,
    ) -> Result<StreamReceiver> {
        let (audio, video, clock_rate, dtmf_pt) = match &cfg.media {
            MediaParams::Audio(a) => (
                Some(AudioRx::new(a, cfg.session)),
                None,
                a.clock_rate,
                a.dtmf_payload_type,
            ),
            MediaParams::Video(v) => (None, Some(VideoRx::new(v, cfg.session)), v.clock_rate, None),
        };
        let interval = RtcpInterval::new(cfg.rtcp_interval, Instant::now(), &mut rng);
        Ok(StreamReceiver {
            shared,
            cmds,
            dispatcher,
            session: cfg.session,
            key: dispatch_key(cfg.session),
            source_policy: cfg.source_policy,
            mux: cfg.rtcp_mux,
            cname: cfg.cname.clone(),
            clock_rate,
            audio,
            video,
            rx_stats: None,
            interval,
            rng,
            last_pli: None,
            fir_seq: 0,
            last_fir_in: None,
            dtmf_queue: VecDeque::new(),
            dtmf: None,
            dtmf_pt,
            rtcp_buf: Vec::with_capacity(512),
            rtcp_events: Vec::new(),
            out: RxOutput::default(),
            local: StreamStats::default(),
            payload_malformed: 0,
        })
    }

    fn run(&mut self, stop: StopSignal) {
        let mut batch = RecvBatch::new(RECV_BATCH, RECV_SLOT);
        let shared = self.shared.clone();
        let mut fds = vec![shared.rtp.as_raw_fd()];
        if let Some(r) = &shared.rtcp {
            fds.push(r.as_raw_fd());
        }
        fds.push(stop.wake_fd());
        let mut ready = [false; 3];
        while !stop.is_stopped() {
            // At least 1 ms: a deadline that stays in the past (a timer that could not make
            // progress) must not turn this loop into a spin.
            let timeout = self.next_deadline().map_or(MAX_IDLE, |d| {
                d.saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), MAX_IDLE)
            });
            if poll_readable(&fds, &mut ready[..fds.len()], timeout).is_err() {
                break;
            }
            if stop.is_stopped() {
                break;
            }
            if ready[fds.len() - 1] {
                stop.reset();
                self.take_commands();
            }
            if ready[0] {
                self.drain(&mut batch, false);
            }
            if shared.rtcp.is_some() && ready[1] {
                self.drain(&mut batch, true);
            }
            self.on_timers(Instant::now());
            self.publish();
        }
        self.send_bye();
        self.publish();
    }

    /// Reads every queued datagram of one socket, in batches.
    fn drain(&mut self, batch: &mut RecvBatch, rtcp_socket: bool) {
        let shared = self.shared.clone();
        let sock = if rtcp_socket {
            shared.rtcp_socket()
        } else {
            &shared.rtp
        };
        loop {
            let n = match batch.recv(sock, Wait::No) {
                Ok(n) => n,
                Err(_) => return,
            };
            let now = Instant::now();
            for i in 0..n {
                let d = batch.get(i);
                let Some(from) = d.from else {
                    // An empty datagram from a shut-down socket, or an address family we do not
                    // speak: nothing to use.
                    continue;
                };
                if d.truncated {
                    self.local.malformed += 1;
                    continue;
                }
                let is_rtcp = rtcp_socket || classify_muxed(d.data) == MuxedKind::Rtcp;
                if !self.accept_source(from, is_rtcp) {
                    self.local.unexpected_source += 1;
                    continue;
                }
                if is_rtcp {
                    self.on_rtcp(d.data);
                } else {
                    self.on_rtp(d.data, now);
                }
            }
            self.flush_events();
            if n < RECV_BATCH {
                return;
            }
        }
    }

    fn accept_source(&mut self, from: SocketAddr, is_rtcp: bool) -> bool {
        let mut r = self.shared.remote.lock();
        let (expected, latched) = if is_rtcp {
            (r.rtcp, r.rtcp_latched)
        } else {
            (r.rtp, r.rtp_latched)
        };
        if same_endpoint(from, expected) {
            return true;
        }
        // With rtcp-mux the peer may send RTCP from its RTP address.
        if self.mux && is_rtcp && same_endpoint(from, r.rtp) {
            return true;
        }
        if self.source_policy == SourcePolicy::LatchFirst && !latched {
            if is_rtcp {
                r.rtcp = from;
                r.rtcp_latched = true;
            } else {
                r.rtp = from;
                r.rtp_latched = true;
                if self.mux && !r.rtcp_latched {
                    r.rtcp = from;
                }
            }
            return true;
        }
        false
    }

    fn on_rtp(&mut self, data: &[u8], now: Instant) {
        let Ok((meta, payload)) = parse_rtp(data) else {
            self.local.malformed += 1;
            return;
        };
        let payload = &data[payload];
        let known = match (&self.audio, &self.video) {
            (Some(a), _) => {
                meta.payload_type == a.payload_type() || Some(meta.payload_type) == self.dtmf_pt
            }
            (_, Some(v)) => meta.payload_type == v.payload_type(),
            _ => false,
        };
        if !known {
            self.local.unknown_payload_type += 1;
            return;
        }
        // A new SSRC is a new source: its statistics start again (the video receiver notices
        // the change itself and resets its picture state).
        let stats = match &mut self.rx_stats {
            Some(s) if s.ssrc() == meta.ssrc => s,
            slot => slot.insert(ReceiverStats::new(meta.ssrc)),
        };
        let arrival = ReceiverStats::arrival_in_clock_units(
            now.saturating_duration_since(self.shared.origin),
            self.clock_rate,
        );
        let verdict = stats.on_packet(meta.sequence, meta.timestamp, arrival, payload.len());
        // Audio has no reorder buffer: duplicates and stray jumps are dropped here. Video hands
        // every packet to its receiver, whose reorder window makes the same decisions in order.
        if self.audio.is_some() && matches!(verdict, Arrival::Duplicate | Arrival::Jump) {
            return;
        }
        self.local.packets_received += 1;
        self.local.bytes_received += data.len() as u64;
        if let Some(a) = &mut self.audio {
            let is_dtmf = Some(meta.payload_type) == self.dtmf_pt;
            a.on_rtp(&meta, payload, is_dtmf, now, &mut self.out);
        } else if let Some(v) = &mut self.video {
            v.on_rtp(&meta, payload, now, &mut self.out);
        }
    }

    fn on_rtcp(&mut self, data: &[u8]) {
        let mut events = std::mem::take(&mut self.rtcp_events);
        events.clear();
        if parse_compound_into(data, &mut events).is_err() {
            self.local.malformed += 1;
            self.rtcp_events = events;
            return;
        }
        self.local.rtcp_received += 1;
        let ours = self.shared.ssrc;
        for ev in &events {
            match ev {
                RtcpEvent::SenderReport { ssrc, ntp, .. } => {
                    if let Some(s) = self.rx_stats.as_mut().filter(|s| s.ssrc() == *ssrc) {
                        s.on_sender_report(*ntp, ntp_from_system_time(SystemTime::now()));
                    }
                }
                RtcpEvent::Pli { media_ssrc, .. } if *media_ssrc == ours => {
                    self.local.pli_received += 1;
                    self.out.events.push(EngineEvent::KeyframeRequested(
                        self.session,
                        KeyframeRequest::Pli,
                    ));
                }
                RtcpEvent::Fir { requests, .. } => {
                    for r in requests.iter().filter(|r| r.ssrc == ours) {
                        // A repeated command sequence number is a retransmission of the same
                        // request (RFC 5104 §4.3.1.2).
                        if self.last_fir_in == Some(r.seq) {
                            continue;
                        }
                        self.last_fir_in = Some(r.seq);
                        self.local.fir_received += 1;
                        self.out.events.push(EngineEvent::KeyframeRequested(
                            self.session,
                            KeyframeRequest::Fir,
                        ));
                    }
                }
                _ => {}
            }
        }
        self.rtcp_events = events;
    }

    fn take_commands(&mut self) {
        while let Ok(cmd) = self.cmds.try_recv() {
            match cmd {
                Command::Dtmf { digit, duration_ms } => {
                    self.dtmf_queue.push_back((digit, duration_ms))
                }
                Command::RequestKeyframe(KeyframeRequest::Pli) => {
                    self.send_pli(Instant::now(), true)
                }
                Command::RequestKeyframe(KeyframeRequest::Fir) => self.send_fir(),
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d = self.interval.next_due();
        if let Some(p) = &self.dtmf {
            if let Some(pkt) = p.packets.get(p.next) {
                d = d.min(p.start + Duration::from_millis(u64::from(pkt.send_offset_ms)));
            }
        } else if !self.dtmf_queue.is_empty() {
            d = Instant::now();
        }
        if let Some(vd) = self.video.as_ref().and_then(VideoRx::next_deadline) {
            d = d.min(vd);
        }
        if let Some(ad) = self.audio.as_ref().and_then(AudioRx::next_deadline) {
            d = d.min(ad);
        }
        Some(d)
    }

    fn on_timers(&mut self, now: Instant) {
        if let Some(v) = &mut self.video {
            v.poll(now, &mut self.out);
        }
        if let Some(a) = &mut self.audio {
            a.poll(now, &mut self.out);
        }
        if self.out.want_keyframe {
            self.out.want_keyframe = false;
            self.send_pli(now, false);
        }
        self.flush_events();
        self.pump_dtmf(now);
        if self.interval.poll(now, &mut self.rng) {
            self.send_report(None);
        }
    }

    /// Posts the events produced so far; a full callback queue drops them, counted.
    fn flush_events(&mut self) {
        let c = &self.out.counters;
        self.local.frames = c.frames;
        self.local.keyframes = c.keyframes;
        self.local.frames_dropped_incomplete = c.dropped_incomplete;
        self.local.frames_dropped_gated = c.dropped_gated;
        self.local.dtmf_received = c.dtmf;
        self.payload_malformed = c.malformed;
        if self.out.events.is_empty() {
            return;
        }
        // Counters first, so that a callback reading the stats sees the event it is handling.
        self.publish();
        let before = self.local.frames_dropped_slow_callback;
        for ev in self.out.events.drain(..) {
            if self.dispatcher.post(self.key, ev).is_err() {
                self.local.frames_dropped_slow_callback += 1;
            }
        }
        if self.local.frames_dropped_slow_callback != before {
            self.publish();
        }
    }

    /// Sends a PLI unless one went out less than 500 ms ago. The application's own requests
    /// (`forced`) are not rate-limited: it knows why it asks.
    fn send_pli(&mut self, now: Instant, forced: bool) {
        if !forced
            && self
                .last_pli
                .is_some_and(|t| now.duration_since(t) < PLI_MIN_INTERVAL)
        {
            return;
        }
        let Some(media) = self.rx_stats.as_ref().map(|s| s.ssrc()) else {
            return;
        };
        self.last_pli = Some(now);
        let mut buf = std::mem::take(&mut self.rtcp_buf);
        buf.clear();
        if self.build_report_into(&mut buf).is_ok()
            && build_pli(&mut buf, self.shared.ssrc, media).is_ok()
        {
            self.shared.send_rtcp(&buf);
            self.local.pli_sent += 1;
        }
        self.rtcp_buf = buf;
    }

    /// Sends a FIR with a new command sequence number (RFC 5104).
    fn send_fir(&mut self) {
        let Some(media) = self.rx_stats.as_ref().map(|s| s.ssrc()) else {
            return;
        };
        self.fir_seq = self.fir_seq.wrapping_add(1);
        let mut buf = std::mem::take(&mut self.rtcp_buf);
        buf.clear();
        if self.build_report_into(&mut buf).is_ok()
            && build_fir(&mut buf, self.shared.ssrc, media, self.fir_seq).is_ok()
        {
            self.shared.send_rtcp(&buf);
            self.local.fir_sent += 1;
        }
        self.rtcp_buf = buf;
    }

    /// Appends SR (if we sent media) or RR, and SDES CNAME.
    fn build_report_into(&mut self, buf: &mut Vec<u8>) -> std::result::Result<usize, ()> {
        let wall = SystemTime::now();
        let ntp = ntp_from_system_time(wall);
        let block = self.rx_stats.as_mut().map(|s| s.report_block(ntp));
        let blocks: &[_] = match &block {
            Some(b) => std::slice::from_ref(b),
            None => &[],
        };
        let since = self.shared.origin.elapsed().as_secs_f64() * 1000.0;
        let sender = {
            let s = self.shared.send.lock();
            s.rtp
                .has_sent()
                .then(|| s.rtp.sender_info(ntp, s.rtp.rtp_timestamp_for_ms(since)))
        };
        build_report(buf, self.shared.ssrc, sender.as_ref(), blocks, &self.cname).map_err(|_| ())
    }

    fn send_report(&mut self, bye: Option<&str>) {
        let mut buf = std::mem::take(&mut self.rtcp_buf);
        buf.clear();
        let mut ok = self.build_report_into(&mut buf).is_ok();
        if let Some(reason) = bye {
            ok = ok && build_bye(&mut buf, self.shared.ssrc, Some(reason)).is_ok();
        }
        if ok {
            self.shared.send_rtcp(&buf);
        }
        self.rtcp_buf = buf;
    }

    fn send_bye(&mut self) {
        self.send_report(Some("session closed"));
    }

    /// Sends the DTMF packets that are due, starting the next queued digit when one finishes.
    fn pump_dtmf(&mut self, now: Instant) {
        let Some(pt) = self.dtmf_pt else {
            self.dtmf_queue.clear();
            return;
        };
        loop {
            if self.dtmf.is_none() {
                let Some((digit, duration_ms)) = self.dtmf_queue.pop_front() else {
                    return;
                };
                let Ok(packets) = plan_dtmf(digit, duration_ms, self.clock_rate) else {
                    continue;
                };
                let since = self.shared.origin.elapsed();
                let rtp_ts = {
                    let s = self.shared.send.lock();
                    match &s.audio {
                        Some(a) => a.event_timestamp(since, &s.rtp),
                        None => s.rtp.rtp_timestamp_for_ms(since.as_secs_f64() * 1000.0),
                    }
                };
                self.dtmf = Some(DtmfPlayback {
                    packets,
                    next: 0,
                    rtp_ts,
                    start: now,
                });
            }
            let Some(p) = &mut self.dtmf else { return };
            while let Some(pkt) = p.packets.get(p.next) {
                if p.start + Duration::from_millis(u64::from(pkt.send_offset_ms)) > now {
                    return;
                }
                let dest = self.shared.remote.lock().rtp;
                let mut s = self.shared.send.lock();
                let normal = s.rtp.payload_type();
                s.rtp.set_payload_type(pt);
                let h = s
                    .rtp
                    .next_header(p.rtp_ts.wrapping_add(pkt.timestamp_offset), pkt.marker);
                s.rtp.set_payload_type(normal);
                s.rtp.count_payload(pkt.payload.len());
                drop(s);
                let mut dgram = [0u8; RTP_HEADER_LEN + TELEPHONE_EVENT_LEN];
                dgram[..RTP_HEADER_LEN].copy_from_slice(&h);
                dgram[RTP_HEADER_LEN..].copy_from_slice(&pkt.payload);
                if self.shared.rtp.send_to(&dgram, dest).is_ok() {
                    let mut st = self.shared.stats.lock();
                    st.packets_sent += 1;
                    st.bytes_sent += dgram.len() as u64;
                }
                p.next += 1;
            }
            self.dtmf = None;
            self.shared.stats.lock().dtmf_sent += 1;
        }
    }

    /// Copies the receive-side counters into the shared snapshot.
    fn publish(&mut self) {
        if let Some(s) = &self.rx_stats {
            self.local.lost = s.cumulative_lost();
            self.local.reordered = s.reordered();
            self.local.duplicates = s.duplicates();
            self.local.jitter_ms = s.jitter() * 1000.0 / f64::from(self.clock_rate.max(1));
        }
        let l = &self.local;
        let mut st = self.shared.stats.lock();
        st.packets_received = l.packets_received;
        st.bytes_received = l.bytes_received;
        st.lost = l.lost;
        st.reordered = l.reordered;
        st.duplicates = l.duplicates;
        st.jitter_ms = l.jitter_ms;
        st.frames = l.frames;
        st.keyframes = l.keyframes;
        st.frames_dropped_incomplete = l.frames_dropped_incomplete;
        st.frames_dropped_gated = l.frames_dropped_gated;
        st.frames_dropped_slow_callback = l.frames_dropped_slow_callback;
        st.pli_sent = l.pli_sent;
        st.pli_received = l.pli_received;
        st.fir_sent = l.fir_sent;
        st.fir_received = l.fir_received;
        st.rtcp_received = l.rtcp_received;
        st.unexpected_source = l.unexpected_source;
        st.malformed = l.malformed + self.payload_malformed;
        st.unknown_payload_type = l.unknown_payload_type;
        st.dtmf_received = l.dtmf_received;
    }
}
