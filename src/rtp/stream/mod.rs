//! One RTP stream, both directions, as a pure state machine: [`StreamCore`].
//!
//! The core owns every protocol decision of an audio or video stream: which sources to accept
//! (and latching), reception statistics, the video jitter buffer with NACK and RTX, the audio
//! jitter buffer with concealment, the send history that answers NACKs, the pacer, DTMF pacing,
//! the RTCP schedule and feedback (SR/RR, SDES, NACK, PLI, FIR, BYE), RTT, and liveness. It owns no
//! socket, thread or clock: the caller feeds it inputs with the time and moves the bytes.
//!
//! # Driving it
//!
//! Inputs, each with the current time:
//! - [`StreamCore::handle_datagram`] (or [`StreamCore::handle_rtp`] / [`StreamCore::handle_rtcp`])
//!   for every datagram received on the stream's sockets;
//! - [`StreamCore::handle_timeout`] when the time given by [`StreamCore::poll_timeout`] has come;
//! - the application's commands: [`StreamCore::send_video`], [`StreamCore::send_audio`],
//!   [`StreamCore::send_audio_payload`], [`StreamCore::send_dtmf`],
//!   [`StreamCore::request_keyframe`], [`StreamCore::set_remote`], [`StreamCore::close`].
//!
//! Outputs:
//! - [`StreamCore::poll_transmit`]: datagrams to send now (give their buffers back with
//!   [`StreamCore::recycle`] to keep the core from allocating);
//! - [`StreamCore::poll_event`]: frames, DTMF, keyframe requests, the peer's BYE, inactivity;
//! - [`StreamCore::poll_timeout`]: when to call [`StreamCore::handle_timeout`] next.
//!
//! **After any input, drain the outputs: `poll_transmit` until `None`, `poll_event` until `None`,
//! then `poll_timeout`** — and sleep no later than that time. Inputs may move the timeout earlier
//! (a paced picture, a NACK to send), so a driver on another thread must be woken when they do.
//!
//! # Loss recovery, in short
//!
//! A video receiver holds packets behind a gap in its jitter buffer ([`super::video`]) while the
//! [`super::nack::NackTracker`] asks for the missing ones: first after a 5 ms reorder allowance,
//! again every ~1.25 RTT, given up on after 6 RTT + 30 ms (at most 500 ms by default). Then the
//! picture is dropped and a PLI sent, as without NACK. RTX packets are unwrapped into the same
//! buffer. A video sender keeps its packets in a [`super::history::SendHistory`] and re-sends
//! NACKed ones ahead of new media through the [`super::pacer::Pacer`], as RTX when configured,
//! within a [`super::history::RetransmitLimiter`] budget.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::audio_jitter::{AudioJitterBuffer, AudioJitterConfig, JitterPacket, Playout};
use super::conceal::{decoder_for, AudioDecoder};
use super::config::{AudioParams, CoreConfig, MediaParams, SourcePolicy};
use super::history::{RetransmitLimiter, SendHistory};
use super::media_tx::{plan_dtmf, AudioTx, VideoTx};
use super::nack::{Arrival as NackArrival, NackConfig, NackTracker};
use super::pacer::{Class, Pacer};
use super::packet::{classify_muxed, parse_rtp, MuxedKind, RTP_HEADER_LEN};
use super::receiver::{Arrival, ReceiverStats};
use super::reorder::{PushOutcome, ReorderConfig};
use super::rtcp::{
    build_bye, build_fir, build_nack, build_pli, build_report, ntp_from_unix, parse_compound_into,
    round_trip_time, ReportBlockData, RtcpEvent, RtcpInterval,
};
use super::rtt::RttEstimator;
use super::rtx::{original_meta, unwrap_rtx, wrap_rtx, RtxConfig};
use super::sender::RtpSender;
use super::stats::StreamStats;
use super::video::{VideoReceiver, VideoReceiverConfig};
use super::RtpMeta;
use crate::codec::dtmf::{DtmfPacket, DtmfReceiver, TELEPHONE_EVENT_LEN};
use crate::codec::h264::H264Depacketizer;
use crate::codec::resample::Resampler;
use crate::codec::vp8::Vp8Depacketizer;
use crate::codec::Depacketizer;
use crate::error::{Error, Result};
use crate::frame::{AudioFrame, DtmfEvent, VideoCodec, VideoFrame};

/// Which RTCP message asks a sender for a key frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyframeRequest {
    /// Picture Loss Indication (RFC 4585).
    Pli,
    /// Full Intra Request (RFC 5104).
    Fir,
}

/// Something the stream tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A received picture (or NAL unit).
    Video(VideoFrame),
    /// A received (or concealed) audio frame.
    Audio(AudioFrame),
    /// A received DTMF digit.
    Dtmf(DtmfEvent),
    /// The peer asked us for a key frame.
    KeyframeRequested(KeyframeRequest),
    /// The peer sent RTCP BYE: it is leaving.
    RemoteBye { reason: Option<String> },
    /// Nothing (RTP or RTCP) arrived from the peer for the inactivity timeout. Reported once;
    /// reported again only after traffic resumed and stopped again.
    Inactive { silent_for: Duration },
}

/// Whether a datagram to send is RTP or RTCP (without rtcp-mux they leave from different
/// sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitKind {
    Rtp,
    Rtcp,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub kind: TransmitKind,
    pub contents: Vec<u8>,
}

/// Spare transmit buffers kept.
const POOL_MAX: usize = 512;
/// Automatic PLIs at most this often (RFC 4585 asks feedback to be rate-limited); the
/// application's own requests are not limited.
const PLI_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// The sender does not re-send one packet twice within this share of the RTT...
const RESEND_GUARD_RTT_SHARE: f64 = 0.5;
/// ...bounded by these.
const RESEND_GUARD_MIN: Duration = Duration::from_millis(5);
const RESEND_GUARD_MAX: Duration = Duration::from_millis(250);
/// Without an RTT measurement the guard only stops duplicates within one burst of NACKs.
const RESEND_GUARD_UNMEASURED: Duration = Duration::from_millis(10);
/// The reorder window with NACK: a key picture of a large stream fits.
const NACK_WINDOW: usize = 1024;
/// A first packet that may not open its picture makes the receiver ask for this many before it.
const START_PROBE_PACKETS: u16 = 4;
/// How long it waits for them: two round trips and a margin, at most the NACK deadline.
const START_PROBE_MARGIN: Duration = Duration::from_millis(30);
/// A receiver only learns of a lost packet from a later one, so when the last packets before a
/// pause (or the end of a file) are lost nothing would ever repair them. The sender therefore
/// sends its last packet once more when no picture has followed for two RTTs or two picture
/// intervals, whichever is longer, and at least this long (TCP's tail loss probe is the
/// model): the receiver then has the end of the picture, or learns what is missing and NACKs.
/// While pictures keep coming no probe is sent. Only with RTX: on the media stream itself the
/// probe would be a duplicate in the receiver's loss statistics whenever nothing was lost.
const TAIL_PROBE_MIN: Duration = Duration::from_millis(100);
/// ...and at most this long.
const TAIL_PROBE_MAX: Duration = Duration::from_secs(1);

/// Where RTP and RTCP go, and whether the source has been latched.
#[derive(Debug, Clone, Copy)]
struct Remotes {
    rtp: SocketAddr,
    rtcp: SocketAddr,
    rtp_latched: bool,
    rtcp_latched: bool,
}

/// Two addresses are the same endpoint, treating IPv4 and IPv4-mapped IPv6 as equal.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    let norm = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && norm(a.ip()) == norm(b.ip())
}

/// A packet in the pacer, by its sequence number in the send history.
#[derive(Debug, Clone, Copy)]
enum Paced {
    Media(u16),
    Resend(u16),
    /// A tail-loss probe: a resend nobody asked for.
    Probe(u16),
}

/// Our RTX stream.
#[derive(Debug)]
struct RtxOut {
    payload_type: u8,
    ssrc: u32,
    seq: u16,
}

/// The send half of a video stream.
struct VideoOut {
    tx: VideoTx,
    history: SendHistory,
    pacer: Pacer<Paced>,
    limiter: RetransmitLimiter,
    rtx: Option<RtxOut>,
    /// Last time media went out or a NACK came in: what a linger waits on.
    last_activity: Option<Instant>,
    /// When the last picture was handed over, to tell a pause from the picture rate.
    last_picture_at: Option<Instant>,
    /// A tail-loss probe: the last packet sent, to send once more at that time if no picture
    /// follows (see [`TAIL_PROBE_MIN`]).
    tail_probe: Option<(Instant, u16)>,
}

/// The receive half of a video stream.
struct VideoIn {
    rx: VideoReceiver,
    nack: Option<NackTracker>,
    nack_cfg: NackConfig,
    rtx: Option<RtxConfig>,
    frames: Vec<VideoFrame>,
}

/// The receive half of an audio stream.
struct AudioIn {
    payload_type: u8,
    dtmf_pt: Option<u8>,
    rx: AudioRx,
    jitter: Option<AudioJitterBuffer>,
    dtmf: DtmfReceiver,
}

/// Decoding to the application's PCM rate: the codec's decoder, then a converter when the
/// decoder runs at another rate.
struct AudioRx {
    decoder: Box<dyn AudioDecoder>,
    resampler: Option<Resampler>,
    /// The rate of the PCM handed out (the clock rate for passed-through formats).
    pcm_rate: u32,
    /// Decoded PCM before conversion (reused).
    scratch: Vec<i16>,
}

impl AudioIn {
    fn new(a: &AudioParams, clock_rate: u32) -> Result<AudioIn> {
        let codec = a.voice_codec();
        let pcm_rate = a.pcm_rate();
        let mut resampler = None;
        let mut coding_rate = pcm_rate;
        if let Some(c) = codec {
            a.app_rate.validate().map_err(Error::InvalidArgument)?;
            coding_rate = c.coding_rate(pcm_rate);
            if coding_rate != pcm_rate {
                resampler = Some(
                    Resampler::new(coding_rate, pcm_rate)
                        .map_err(|e| Error::InvalidArgument(e.to_string()))?,
                );
            }
        }
        let jitter = (a.audio_jitter_ms > 0).then(|| {
            AudioJitterBuffer::new(AudioJitterConfig::new(
                clock_rate,
                a.audio_jitter_ms,
                a.audio_jitter_max_ms,
            ))
        });
        Ok(AudioIn {
            payload_type: a.payload_type,
            dtmf_pt: a.dtmf_payload_type,
            rx: AudioRx {
                decoder: decoder_for(codec, coding_rate),
                resampler,
                pcm_rate,
                scratch: Vec::new(),
            },
            jitter,
            dtmf: DtmfReceiver::new(clock_rate),
        })
    }
}

impl AudioRx {
    /// Decodes a payload to PCM at the application's rate.
    fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        let mut pcm = Vec::new();
        match self.resampler.as_mut() {
            None => self.decoder.decode(payload, &mut pcm),
            Some(r) => {
                self.scratch.clear();
                self.decoder.decode(payload, &mut self.scratch);
                r.process(&self.scratch, &mut pcm);
            }
        }
        pcm
    }

    /// Stands in for `ticks` of RTP clock that never arrived, at the application's rate.
    /// `next` is the packet right behind the gap, when buffered.
    fn conceal(&mut self, ticks: usize, next: Option<&[u8]>) -> Vec<i16> {
        let mut pcm = Vec::new();
        match self.resampler.as_mut() {
            None => {
                self.decoder.conceal(ticks, next, &mut pcm);
            }
            Some(r) => {
                self.scratch.clear();
                self.decoder.conceal(ticks, next, &mut self.scratch);
                r.process(&self.scratch, &mut pcm);
            }
        }
        pcm
    }
}

/// A DTMF digit being played out.
#[derive(Debug)]
struct DtmfPlayback {
    packets: Vec<DtmfPacket>,
    next: usize,
    rtp_ts: u32,
    start: Instant,
}

/// One audio or video RTP stream; see the module documentation.
pub struct StreamCore {
    cname: String,
    mux: bool,
    source_policy: SourcePolicy,
    inactivity_timeout: Duration,
    ssrc: u32,
    clock_rate: u32,
    origin: Instant,
    /// Wall-clock time at `origin`, since the Unix epoch (for NTP timestamps).
    wall_origin: Duration,
    rng: SmallRng,
    remotes: Remotes,
    rtp: RtpSender,
    audio_tx: Option<AudioTx>,
    video_out: Option<VideoOut>,
    dtmf_pt: Option<u8>,
    dtmf_queue: VecDeque<(char, u32)>,
    dtmf_playing: Option<DtmfPlayback>,
    rx_stats: Option<ReceiverStats>,
    video_in: Option<VideoIn>,
    audio_in: Option<AudioIn>,
    rtt: RttEstimator,
    interval: RtcpInterval,
    last_pli: Option<Instant>,
    fir_seq: u8,
    last_fir_in: Option<u8>,
    rtcp_events: Vec<RtcpEvent>,
    nack_list: Vec<u16>,
    last_heard: Instant,
    inactive_reported: bool,
    bye_reported: bool,
    /// The peer said BYE or went silent, and nothing came since.
    peer_gone: bool,
    closed: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<StreamEvent>,
    pool: Vec<Vec<u8>>,
    stats: StreamStats,
}

impl std::fmt::Debug for StreamCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCore")
            .field("ssrc", &self.ssrc)
            .field("remote", &self.remotes.rtp)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl StreamCore {
    /// A stream starting at `now`. `wall_clock` is the wall-clock time of `now` (RTCP carries
    /// NTP timestamps); `seed` seeds the SSRC, sequence number, timestamp and RTCP jitter draws,
    /// so a test gets the same stream every run.
    pub fn new(cfg: CoreConfig, now: Instant, wall_clock: SystemTime, seed: u64) -> Result<Self> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let pt = cfg.media.payload_type();
        let clock_rate = cfg.media.clock_rate().max(1);
        let mut rtp = RtpSender::new(pt, clock_rate, &mut rng);
        if cfg.ssrc.is_some() || cfg.initial_seq.is_some() {
            rtp = RtpSender::with_initial(
                cfg.ssrc.unwrap_or(rtp.ssrc()),
                pt,
                clock_rate,
                cfg.initial_seq.unwrap_or(rtp.next_sequence()),
                rtp.timestamp_offset(),
            );
        }
        let ssrc = rtp.ssrc();
        let (mut audio_tx, mut video_out, mut video_in, mut audio_in, mut dtmf_pt) =
            (None, None, None, None, None);
        match &cfg.media {
            MediaParams::Audio(a) => {
                audio_tx = Some(AudioTx::new(a)?);
                dtmf_pt = a.dtmf_payload_type;
                audio_in = Some(AudioIn::new(a, clock_rate)?);
            }
            MediaParams::Video(v) => {
                let rtx = v.rtx.map(|r| RtxOut {
                    payload_type: r.payload_type,
                    ssrc: r.ssrc.unwrap_or_else(|| loop {
                        let s: u32 = rng.random();
                        if s != ssrc {
                            break s;
                        }
                    }),
                    seq: rng.random(),
                });
                video_out = Some(VideoOut {
                    tx: VideoTx::new(v)?,
                    history: SendHistory::new(v.history, now),
                    pacer: Pacer::new(v.pacer, now),
                    limiter: RetransmitLimiter::new(v.retransmit, now),
                    rtx,
                    last_activity: None,
                    last_picture_at: None,
                    tail_probe: None,
                });
                let rtt = RttEstimator::default();
                let reorder = if v.nack.enabled {
                    ReorderConfig {
                        window: NACK_WINDOW,
                        max_delay: v.nack.give_up_after(rtt.rtt_high()),
                    }
                } else {
                    ReorderConfig::default()
                };
                let rcfg = VideoReceiverConfig {
                    clock_rate,
                    delivery: v.delivery,
                    deliver_incomplete: v.deliver_incomplete,
                    wait_for_keyframe: v.wait_for_keyframe,
                    reorder,
                    ..VideoReceiverConfig::default()
                };
                let depack: Box<dyn Depacketizer> = match v.codec {
                    VideoCodec::H264 => Box::new(H264Depacketizer::new()),
                    VideoCodec::Vp8 => Box::new(Vp8Depacketizer::new()),
                };
                video_in = Some(VideoIn {
                    rx: VideoReceiver::new(rcfg, depack),
                    nack: v.nack.enabled.then(|| NackTracker::new(v.nack)),
                    nack_cfg: v.nack,
                    rtx: v.rtx,
                    frames: Vec::new(),
                });
            }
        }
        let interval = RtcpInterval::new(cfg.rtcp_interval, now, &mut rng);
        Ok(StreamCore {
            cname: cfg.cname,
            mux: cfg.rtcp_mux,
            source_policy: cfg.source_policy,
            inactivity_timeout: cfg.inactivity_timeout,
            ssrc,
            clock_rate,
            origin: now,
            wall_origin: wall_clock.duration_since(UNIX_EPOCH).unwrap_or_default(),
            rng,
            remotes: Remotes {
                rtp: cfg.remote_rtp,
                rtcp: cfg.remote_rtcp,
                rtp_latched: false,
                rtcp_latched: false,
            },
            rtp,
            audio_tx,
            video_out,
            dtmf_pt,
            dtmf_queue: VecDeque::new(),
            dtmf_playing: None,
            rx_stats: None,
            video_in,
            audio_in,
            rtt: RttEstimator::default(),
            interval,
            last_pli: None,
            fir_seq: 0,
            last_fir_in: None,
            rtcp_events: Vec::new(),
            nack_list: Vec::new(),
            last_heard: now,
            inactive_reported: false,
            bye_reported: false,
            peer_gone: false,
            closed: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            pool: Vec::new(),
            stats: StreamStats::default(),
        })
    }

    // ---- accessors -------------------------------------------------------------------------

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Our RTX SSRC, when RTX is configured.
    pub fn rtx_ssrc(&self) -> Option<u32> {
        self.video_out.as_ref()?.rtx.as_ref().map(|r| r.ssrc)
    }

    /// Where RTP goes now (latching may have moved it).
    pub fn remote_rtp(&self) -> SocketAddr {
        self.remotes.rtp
    }

    /// Where RTCP goes now.
    pub fn remote_rtcp(&self) -> SocketAddr {
        self.remotes.rtcp
    }

    /// The stream's time origin: timestamps of media given no time count from it.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The round-trip time estimate, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.is_measured().then(|| self.rtt.rtt())
    }

    /// Whether the peer has left this stream: it sent RTCP BYE, or nothing for the inactivity
    /// timeout, and no RTP came after that (RTCP alone after a BYE does not bring it back).
    pub fn peer_gone(&self) -> bool {
        self.peer_gone
    }

    /// Whether [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The last time video media left or the peer sent a NACK (`None` before either). A sender
    /// that wants its last pictures recovered keeps the stream open until this is a linger
    /// (a second or so) in the past.
    pub fn last_send_activity(&self) -> Option<Instant> {
        self.video_out.as_ref()?.last_activity
    }

    /// The counters, with current values filled in.
    pub fn stats(&self) -> StreamStats {
        let mut s = self.stats.clone();
        if let Some(r) = &self.rx_stats {
            s.lost = r.cumulative_lost();
            s.reordered = r.reordered();
            s.duplicates = r.duplicates();
            s.jitter_ms = r.jitter() * 1000.0 / f64::from(self.clock_rate);
        }
        if let Some(v) = &self.video_in {
            let vs = v.rx.stats();
            s.frames = vs.frames;
            s.keyframes = vs.keyframes;
            s.frames_dropped_incomplete = vs.incomplete_dropped;
            s.frames_dropped_gated = vs.gated_dropped;
            s.malformed += vs.depacketizer.malformed + vs.depacketizer.unsupported;
            s.late = vs.reorder.late;
            if let Some(n) = &v.nack {
                s.nack_sent = n.stats().requested;
                s.recovered = n.stats().recovered;
            }
        }
        if let Some(j) = self.audio_in.as_ref().and_then(|a| a.jitter.as_ref()) {
            let js = j.stats();
            s.audio_late = js.late;
            s.audio_dropped = js.dropped;
            s.audio_jitter_depth_ms = j.target_depth().as_secs_f64() * 1000.0;
        }
        if self.rtt.is_measured() {
            s.rtt_ms = self.rtt.rtt().as_secs_f64() * 1000.0;
        }
        if let Some(v) = &self.video_out {
            s.pacer_queued = v.pacer.len() as u64;
        }
        s
    }

    // ---- outputs ---------------------------------------------------------------------------

    /// The next datagram to send now.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Gives a transmit buffer back for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < POOL_MAX && buf.capacity() > 0 {
            buf.clear();
            self.pool.push(buf);
        }
    }

    /// When [`Self::handle_timeout`] should next be called; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut t = self.interval.next_due();
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                t = t.min(d);
            }
        };
        if let Some(v) = &self.video_out {
            consider(v.pacer.poll_timeout());
            consider(v.tail_probe.map(|(at, _)| at));
        }
        if let Some(v) = &self.video_in {
            consider(v.rx.next_deadline());
            consider(v.nack.as_ref().and_then(|n| n.poll_timeout(&self.rtt)));
        }
        if let Some(a) = &self.audio_in {
            consider(a.jitter.as_ref().and_then(AudioJitterBuffer::poll_timeout));
            consider(
                a.dtmf
                    .poll_timeout()
                    .map(|ms| self.origin + Duration::from_millis(ms)),
            );
        }
        if let Some(p) = &self.dtmf_playing {
            consider(
                p.packets
                    .get(p.next)
                    .map(|pkt| p.start + Duration::from_millis(u64::from(pkt.send_offset_ms))),
            );
        }
        if !self.inactivity_timeout.is_zero() && !self.inactive_reported {
            consider(Some(self.last_heard + self.inactivity_timeout));
        }
        Some(t)
    }

    // ---- inputs from the network -----------------------------------------------------------

    /// A datagram that arrived at `now` from `from`; `on_rtcp_socket` when it came in on the
    /// separate RTCP socket (without rtcp-mux). RTP and RTCP sharing a port are told apart here.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        on_rtcp_socket: bool,
    ) {
        if on_rtcp_socket || classify_muxed(data) == MuxedKind::Rtcp {
            self.handle_rtcp(now, from, data);
        } else {
            self.handle_rtp(now, from, data);
        }
    }

    /// An RTP packet that arrived at `now` from `from`.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.closed {
            return;
        }
        if !self.accept_source(from, false) {
            self.stats.unexpected_source += 1;
            return;
        }
        let Ok((meta, range)) = parse_rtp(data) else {
            self.stats.malformed += 1;
            return;
        };
        self.heard(now);
        self.peer_gone = false;
        let payload = &data[range];
        let is_rtx = self
            .video_in
            .as_ref()
            .and_then(|v| v.rtx)
            .is_some_and(|r| r.payload_type == meta.payload_type);
        if is_rtx {
            self.on_rtx(now, &meta, payload, data.len());
            return;
        }
        let known = match (&self.audio_in, &self.video_in) {
            (Some(a), _) => {
                meta.payload_type == a.payload_type || Some(meta.payload_type) == a.dtmf_pt
            }
            (_, Some(_)) => meta.payload_type == self.rtp.payload_type(),
            _ => false,
        };
        if !known {
            self.stats.unknown_payload_type += 1;
            return;
        }
        // A new SSRC is a new source: its statistics and loss tracking start again (the video
        // receiver notices the change itself and resets its picture state).
        let new_source = self.rx_stats.as_ref().is_none_or(|s| s.ssrc() != meta.ssrc);
        if new_source {
            self.rx_stats = Some(ReceiverStats::new(meta.ssrc));
            if let Some(n) = self.video_in.as_mut().and_then(|v| v.nack.as_mut()) {
                n.reset();
            }
            if let Some(j) = self.audio_in.as_mut().and_then(|a| a.jitter.as_mut()) {
                j.reset();
            }
        }
        // A packet we NACKed that now arrives is most likely the retransmission: it says
        // nothing about the path, so it stays out of the RFC 3550 statistics.
        let nack_arrival = self.note_for_nack(now, meta.sequence, meta.marker);
        let recovered = matches!(
            nack_arrival,
            Some(NackArrival::Recovered { nacks, .. } | NackArrival::Late { nacks, .. }) if nacks > 0
        );
        let verdict = if recovered {
            None
        } else {
            let arrival = ReceiverStats::arrival_in_clock_units(
                now.saturating_duration_since(self.origin),
                self.clock_rate,
            );
            self.rx_stats
                .as_mut()
                .map(|s| s.on_packet(meta.sequence, meta.timestamp, arrival, payload.len()))
        };
        if let Some(
            NackArrival::Recovered {
                nacks: 1,
                first_nack: Some(t),
            }
            | NackArrival::Late {
                nacks: 1,
                first_nack: Some(t),
            },
        ) = nack_arrival
        {
            // Ambiguous (a late original looks the same); the estimator's median copes.
            self.rtt
                .on_ambiguous_sample(now.saturating_duration_since(t));
        }
        if self.audio_in.is_some() && matches!(verdict, Some(Arrival::Duplicate | Arrival::Jump)) {
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += data.len() as u64;
        if self.audio_in.is_some() {
            self.on_audio_rtp(now, &meta, payload);
        } else {
            self.on_video_rtp(now, meta, payload, false);
        }
    }

    /// Tells the NACK tracker about a packet of the media source.
    fn note_for_nack(&mut self, now: Instant, seq: u16, marker: bool) -> Option<NackArrival> {
        let v = self.video_in.as_mut()?;
        let n = v.nack.as_mut()?;
        let arrival = n.on_packet(seq, now, &self.rtt);
        n.note_marker(seq, marker, now);
        Some(arrival)
    }

    /// An RTX packet: unwrapped, it joins the media in the jitter buffer.
    fn on_rtx(&mut self, now: Instant, meta: &RtpMeta, payload: &[u8], len: usize) {
        let Some(media_ssrc) = self.rx_stats.as_ref().map(ReceiverStats::ssrc) else {
            // A retransmission of a stream we have not seen: nothing to repair.
            self.stats.unknown_payload_type += 1;
            return;
        };
        let Some((osn, original)) = unwrap_rtx(payload) else {
            // Padding-only RTX (bandwidth probes) carries no OSN.
            self.stats.malformed += 1;
            return;
        };
        let apt = self
            .video_in
            .as_ref()
            .and_then(|v| v.rtx)
            .map_or(self.rtp.payload_type(), |r| r.apt);
        let orig = original_meta(meta, osn, media_ssrc, apt);
        self.stats.rtx_received += 1;
        self.stats.packets_received += 1;
        self.stats.bytes_received += len as u64;
        if let Some(
            NackArrival::Recovered {
                nacks: 1,
                first_nack: Some(t),
            }
            | NackArrival::Late {
                nacks: 1,
                first_nack: Some(t),
            },
        ) = self.note_for_nack(now, osn, orig.marker)
        {
            // Unambiguous: an RTX packet answers a NACK, and only one was sent.
            self.rtt.on_sample(now.saturating_duration_since(t));
        }
        self.on_video_rtp(now, orig, original, true);
    }

    fn on_video_rtp(&mut self, now: Instant, meta: RtpMeta, payload: &[u8], is_rtx: bool) {
        let Some(v) = self.video_in.as_mut() else {
            return;
        };
        let give_up = v.nack_cfg.give_up_after(self.rtt.rtt_high());
        let probe_wait = (self.rtt.rtt_high() * 2 + START_PROBE_MARGIN).min(give_up);
        if v.nack.is_some() {
            v.rx.set_max_delay(give_up);
            v.rx.set_start_probe(START_PROBE_PACKETS, probe_wait);
        }
        let outcome = v.rx.push(meta, payload, now, &mut v.frames);
        if is_rtx && outcome == PushOutcome::Duplicate {
            self.stats.rtx_duplicates += 1;
        }
        if let (Some((first, count)), Some(n)) = (v.rx.take_start_probe(), v.nack.as_mut()) {
            n.expect_before(first, count, now, now + probe_wait);
        }
        self.after_video(now);
    }

    /// Posts the pictures the video receiver finished, sends the PLI it wants, and lets the NACK
    /// tracker forget what the jitter buffer has moved past.
    fn after_video(&mut self, now: Instant) {
        let Some(v) = self.video_in.as_mut() else {
            return;
        };
        for f in v.frames.drain(..) {
            self.events.push_back(StreamEvent::Video(f));
        }
        if let (Some(n), Some(next)) = (v.nack.as_mut(), v.rx.next_expected_seq()) {
            n.forget_before(next);
        }
        if v.rx.take_keyframe_request(now) {
            self.send_pli(now, false);
        }
    }

    fn on_audio_rtp(&mut self, now: Instant, meta: &RtpMeta, payload: &[u8]) {
        let now_ms = self.ms_since_origin(now);
        let Some(a) = self.audio_in.as_mut() else {
            return;
        };
        if Some(meta.payload_type) == a.dtmf_pt {
            match a.dtmf.feed(meta.timestamp, payload, now_ms) {
                Ok(first) => {
                    let mut next = first;
                    while let Some(ev) = next {
                        self.stats.dtmf_received += 1;
                        self.events.push_back(StreamEvent::Dtmf(ev));
                        next = a.dtmf.poll(now_ms);
                    }
                }
                Err(_) => self.stats.malformed += 1,
            }
            return;
        }
        if let Some(j) = a.jitter.as_mut() {
            j.push(
                now,
                JitterPacket {
                    timestamp: meta.timestamp,
                    sequence: meta.sequence,
                    payload_type: meta.payload_type,
                    marker: meta.marker,
                    payload: payload.to_vec(),
                    samples: a.rx.decoder.samples_in(payload).map(|s| s as u32),
                },
            );
            self.play_audio(now);
            return;
        }
        let pcm = a.rx.decode(payload);
        self.stats.frames += 1;
        self.events.push_back(StreamEvent::Audio(AudioFrame {
            pcm,
            sample_rate: a.rx.pcm_rate,
            channels: 1,
            rtp_timestamp: meta.timestamp,
            payload_type: meta.payload_type,
            payload: payload.to_vec(),
            concealed: false,
        }));
    }

    /// Hands out the audio frames whose turn has come.
    fn play_audio(&mut self, now: Instant) {
        let Some(a) = self.audio_in.as_mut() else {
            return;
        };
        let Some(j) = a.jitter.as_mut() else {
            return;
        };
        while let Some(item) = j.poll(now) {
            let frame = match item {
                Playout::Packet(p) => {
                    let pcm = a.rx.decode(&p.payload);
                    self.stats.frames += 1;
                    AudioFrame {
                        pcm,
                        sample_rate: a.rx.pcm_rate,
                        channels: 1,
                        rtp_timestamp: p.timestamp,
                        payload_type: p.payload_type,
                        payload: p.payload,
                        concealed: false,
                    }
                }
                Playout::Lost {
                    timestamp, samples, ..
                } => {
                    let pcm = a.rx.conceal(
                        samples as usize,
                        j.next_payload_at(timestamp.wrapping_add(samples)),
                    );
                    self.stats.audio_concealed += 1;
                    AudioFrame {
                        pcm,
                        sample_rate: a.rx.pcm_rate,
                        channels: 1,
                        rtp_timestamp: timestamp,
                        payload_type: a.payload_type,
                        payload: Vec::new(),
                        concealed: true,
                    }
                }
            };
            self.events.push_back(StreamEvent::Audio(frame));
        }
    }

    /// An RTCP compound that arrived at `now` from `from`.
    pub fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.closed {
            return;
        }
        if !self.accept_source(from, true) {
            self.stats.unexpected_source += 1;
            return;
        }
        let mut events = std::mem::take(&mut self.rtcp_events);
        events.clear();
        if parse_compound_into(data, &mut events).is_err() {
            self.stats.malformed += 1;
            self.rtcp_events = events;
            return;
        }
        self.stats.rtcp_received += 1;
        self.heard(now);
        // Reports bring a silent peer back; after its BYE only media does.
        if !self.bye_reported {
            self.peer_gone = false;
        }
        let ours = self.ssrc;
        for ev in &events {
            match ev {
                RtcpEvent::SenderReport {
                    ssrc, ntp, reports, ..
                } => {
                    let arrival = self.ntp_at(now);
                    if let Some(s) = self.rx_stats.as_mut().filter(|s| s.ssrc() == *ssrc) {
                        s.on_sender_report(*ntp, arrival);
                    }
                    self.on_report_blocks(now, reports);
                }
                RtcpEvent::ReceiverReport { reports, .. } => self.on_report_blocks(now, reports),
                RtcpEvent::Pli { media_ssrc, .. } if *media_ssrc == ours => {
                    self.stats.pli_received += 1;
                    self.events
                        .push_back(StreamEvent::KeyframeRequested(KeyframeRequest::Pli));
                }
                RtcpEvent::Fir { requests, .. } => {
                    for r in requests.iter().filter(|r| r.ssrc == ours) {
                        // A repeated command sequence number is a retransmission of the same
                        // request (RFC 5104 §4.3.1.2).
                        if self.last_fir_in == Some(r.seq) {
                            continue;
                        }
                        self.last_fir_in = Some(r.seq);
                        self.stats.fir_received += 1;
                        self.events
                            .push_back(StreamEvent::KeyframeRequested(KeyframeRequest::Fir));
                    }
                }
                RtcpEvent::Nack {
                    media_ssrc, lost, ..
                } if *media_ssrc == ours => {
                    self.stats.nack_received += lost.len() as u64;
                    for &seq in lost {
                        self.resend(now, seq);
                    }
                }
                // Our own BYE reflected back (a stream pointed at itself) is not the peer's.
                RtcpEvent::Bye { ssrcs, reason } if ssrcs.iter().any(|&s| s != ours) => {
                    self.stats.bye_received += 1;
                    self.peer_gone = true;
                    if !self.bye_reported {
                        self.bye_reported = true;
                        self.events.push_back(StreamEvent::RemoteBye {
                            reason: reason.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        self.rtcp_events = events;
        self.release(now);
    }

    /// Report blocks about our stream: the peer's view of loss and jitter, and the RTT.
    fn on_report_blocks(&mut self, now: Instant, blocks: &[ReportBlockData]) {
        for b in blocks.iter().filter(|b| b.ssrc == self.ssrc) {
            self.stats.remote_fraction_lost = f64::from(b.fraction_lost) / 256.0;
            if let Some(a) = self.audio_tx.as_mut() {
                if let Some(p) = a.on_reported_loss(self.stats.remote_fraction_lost) {
                    self.stats.audio_expected_loss_pct = u32::from(p);
                }
            }
            self.stats.remote_cumulative_lost = i64::from(b.cumulative_lost);
            self.stats.remote_jitter_ms = f64::from(b.jitter) * 1000.0 / f64::from(self.clock_rate);
            if let Some(rtt) = round_trip_time(b, self.ntp_at(now)) {
                self.rtt.on_sample(rtt);
            }
        }
    }

    /// Queues the tail-loss probe for `seq` (see [`TAIL_PROBE_MIN`]) if the packet is still in
    /// the history and the retransmission budget allows it.
    fn probe_tail(&mut self, now: Instant, seq: u16) {
        let Some(v) = self.video_out.as_mut() else {
            return;
        };
        let Ok(len) = v.history.check_resend(seq, now, RESEND_GUARD_MIN) else {
            return;
        };
        let rate = v.pacer.media_rate(now);
        if !v.limiter.try_take(now, len, rate) {
            return;
        }
        let wire_len = len + if v.rtx.is_some() { 2 } else { 0 };
        v.pacer
            .push(now, Paced::Probe(seq), wire_len, Class::Retransmission);
    }

    /// Queues NACKed packet `seq` for a resend, unless a limit says no.
    fn resend(&mut self, now: Instant, seq: u16) {
        let guard = if self.rtt.is_measured() {
            self.rtt
                .rtt()
                .mul_f64(RESEND_GUARD_RTT_SHARE)
                .clamp(RESEND_GUARD_MIN, RESEND_GUARD_MAX)
        } else {
            RESEND_GUARD_UNMEASURED
        };
        let Some(v) = self.video_out.as_mut() else {
            self.stats.retransmit_refused += 1;
            return;
        };
        v.last_activity = Some(now);
        let len = match v.history.check_resend(seq, now, guard) {
            Ok(len) => len,
            Err(_) => {
                self.stats.retransmit_refused += 1;
                return;
            }
        };
        let rate = v.pacer.media_rate(now);
        if !v.limiter.try_take(now, len, rate) {
            self.stats.retransmit_refused += 1;
            return;
        }
        let limits = v.limiter.limits();
        let copies = if v.history.resends(seq) > 0
            || v.history.nacked_share() >= limits.copy_first_above
        {
            limits.repeat_copies.max(1)
        } else {
            1
        };
        v.history.mark_resent(seq, now);
        let wire_len = len + if v.rtx.is_some() { 2 } else { 0 };
        for copy in 0..copies {
            // Extra copies only as far as the budget allows.
            if copy > 0 && !v.limiter.try_take(now, len, rate) {
                break;
            }
            v.pacer
                .push(now, Paced::Resend(seq), wire_len, Class::Retransmission);
        }
    }

    // ---- timers ----------------------------------------------------------------------------

    /// The time from [`Self::poll_timeout`] has come (calling it early or late is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let probe = self
            .video_out
            .as_mut()
            .and_then(|v| v.tail_probe.take_if(|(at, _)| *at <= now));
        if let Some((_, seq)) = probe {
            self.probe_tail(now, seq);
        }
        self.release(now);
        if let Some(v) = self.video_in.as_mut() {
            v.rx.poll(now, &mut v.frames);
            self.after_video(now);
        }
        self.send_nacks(now);
        self.play_audio(now);
        let now_ms = self.ms_since_origin(now);
        if let Some(a) = self.audio_in.as_mut() {
            while let Some(ev) = a.dtmf.poll(now_ms) {
                self.stats.dtmf_received += 1;
                self.events.push_back(StreamEvent::Dtmf(ev));
            }
        }
        self.pump_dtmf(now);
        if self.interval.poll(now, &mut self.rng) {
            self.send_report(now, None);
        }
        if !self.inactivity_timeout.is_zero()
            && !self.inactive_reported
            && now.saturating_duration_since(self.last_heard) >= self.inactivity_timeout
        {
            self.inactive_reported = true;
            self.peer_gone = true;
            self.stats.inactivity_events += 1;
            self.events.push_back(StreamEvent::Inactive {
                silent_for: now.saturating_duration_since(self.last_heard),
            });
        }
    }

    fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.inactive_reported = false;
    }

    // ---- application commands --------------------------------------------------------------

    /// Packetizes one picture into the send history and the pacer; the packets due at once are
    /// ready in [`Self::poll_transmit`], the rest leave at later timeouts. `timestamp_ms` is the
    /// presentation time; `None` takes the time since the stream's origin.
    pub fn send_video(
        &mut self,
        now: Instant,
        picture: &[u8],
        timestamp_ms: Option<f64>,
    ) -> Result<()> {
        self.check_open()?;
        let ms = timestamp_ms
            .unwrap_or_else(|| now.saturating_duration_since(self.origin).as_secs_f64() * 1000.0);
        let ts = self.rtp.rtp_timestamp_for_ms(ms);
        let Some(v) = self.video_out.as_mut() else {
            return Err(Error::Unsupported("this stream carries no video".into()));
        };
        v.tx.packetize(picture)?;
        let mut last_seq = None;
        for i in 0..v.tx.payloads.len() {
            // A slot of the history still waiting in the pacer must leave before it is reused.
            while v.pacer.media_len() >= v.history.capacity() {
                let Some((item, waited)) = v.pacer.pop_media_now(now) else {
                    break;
                };
                Self::emit_paced(
                    v,
                    item,
                    waited,
                    now,
                    &mut self.pool,
                    &mut self.transmits,
                    &mut self.stats,
                    self.remotes.rtp,
                );
            }
            let header = self.rtp.next_header(ts, v.tx.payloads.marker(i));
            let len = v.tx.payloads.payload_len(i);
            self.rtp.count_payload(len);
            let seq = u16::from_be_bytes([header[2], header[3]]);
            let buf = v.history.store(seq, now);
            buf.extend_from_slice(&header);
            v.tx.payloads.copy_payload(i, picture, buf);
            let wire = buf.len();
            v.pacer.push(now, Paced::Media(seq), wire, Class::Media);
            last_seq = Some(seq);
        }
        let interval = v
            .last_picture_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let probe_after = (self.rtt.rtt_high() * 2)
            .max(interval * 2)
            .clamp(TAIL_PROBE_MIN, TAIL_PROBE_MAX);
        v.tail_probe = last_seq
            .filter(|_| v.rtx.is_some())
            .map(|seq| (now + probe_after, seq));
        v.last_picture_at = Some(now);
        v.last_activity = Some(now);
        self.release(now);
        Ok(())
    }

    /// Encodes 16-bit mono PCM at the stream's PCM rate ([`AudioParams::pcm_rate`]) into 20 ms
    /// packets of its codec (PCMU, PCMA, G.722 or Opus; the last padded with silence), ready at
    /// once. The caller paces: audio handed over in one call leaves at once.
    pub fn send_audio(&mut self, now: Instant, pcm: &[i16]) -> Result<()> {
        self.check_open()?;
        let since = now.saturating_duration_since(self.origin);
        let Some(a) = self.audio_tx.as_mut() else {
            return Err(Error::Unsupported("this stream carries no audio".into()));
        };
        a.encode(pcm, since, &self.rtp)?;
        self.queue_audio();
        Ok(())
    }

    /// Sends one already-encoded audio frame of `duration_ms` as is: payload passthrough for
    /// formats the engine does not encode.
    pub fn send_audio_payload(
        &mut self,
        now: Instant,
        payload: &[u8],
        duration_ms: u32,
    ) -> Result<()> {
        self.check_open()?;
        let since = now.saturating_duration_since(self.origin);
        let Some(a) = self.audio_tx.as_mut() else {
            return Err(Error::Unsupported("this stream carries no audio".into()));
        };
        a.passthrough(payload, duration_ms, since, &self.rtp)?;
        self.queue_audio();
        Ok(())
    }

    fn queue_audio(&mut self) {
        let Some(a) = self.audio_tx.as_ref() else {
            return;
        };
        for (i, (ts, marker, len)) in a.packets().enumerate() {
            let header = self.rtp.next_header(ts, marker);
            self.rtp.count_payload(len);
            let mut buf = self.pool.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(&header);
            buf.extend_from_slice(a.payload(i));
            self.stats.packets_sent += 1;
            self.stats.bytes_sent += buf.len() as u64;
            self.transmits.push_back(Transmit {
                dest: self.remotes.rtp,
                kind: TransmitKind::Rtp,
                contents: buf,
            });
        }
    }

    /// Queues an RFC 4733 telephone event; its packets leave one every 20 ms (then three end
    /// packets) at the following timeouts. The digit and duration are checked now.
    pub fn send_dtmf(&mut self, now: Instant, digit: char, duration_ms: u32) -> Result<()> {
        self.check_open()?;
        if self.audio_tx.is_none() {
            return Err(Error::Unsupported("DTMF goes on the audio stream".into()));
        }
        if self.dtmf_pt.is_none() {
            return Err(Error::Unsupported(
                "DTMF is disabled (no dtmf_payload_type)".into(),
            ));
        }
        plan_dtmf(digit, duration_ms, self.clock_rate)?;
        self.dtmf_queue.push_back((digit, duration_ms));
        self.pump_dtmf(now);
        Ok(())
    }

    /// Asks the remote sender for a key frame at once (not rate-limited: the application knows
    /// why it asks).
    pub fn request_keyframe(&mut self, now: Instant, kind: KeyframeRequest) {
        if self.closed {
            return;
        }
        match kind {
            KeyframeRequest::Pli => self.send_pli(now, true),
            KeyframeRequest::Fir => self.send_fir(now),
        }
    }

    /// Points RTP and RTCP at new remote addresses, as a re-INVITE does.
    pub fn set_remote(&mut self, rtp: SocketAddr, rtcp: SocketAddr) {
        self.remotes.rtp = rtp;
        self.remotes.rtcp = rtcp;
    }

    /// Ends the stream: paced packets still queued leave at once, then a report with RTCP BYE.
    /// Afterwards inputs are ignored and there are no timeouts.
    pub fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Some(v) = self.video_out.as_mut() {
            while let Some((item, waited)) = v.pacer.pop_media_now(now) {
                Self::emit_paced(
                    v,
                    item,
                    waited,
                    now,
                    &mut self.pool,
                    &mut self.transmits,
                    &mut self.stats,
                    self.remotes.rtp,
                );
            }
        }
        self.send_report(now, Some("session closed"));
        self.closed = true;
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(Error::State("the stream is closed".into()))
        } else {
            Ok(())
        }
    }

    // ---- sending helpers -------------------------------------------------------------------

    /// Moves the packets the pacer allows at `now` to the transmit queue.
    fn release(&mut self, now: Instant) {
        let Some(v) = self.video_out.as_mut() else {
            return;
        };
        while let Some((item, waited)) = v.pacer.pop(now) {
            Self::emit_paced(
                v,
                item,
                waited,
                now,
                &mut self.pool,
                &mut self.transmits,
                &mut self.stats,
                self.remotes.rtp,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_paced(
        v: &mut VideoOut,
        item: Paced,
        waited: Duration,
        now: Instant,
        pool: &mut Vec<Vec<u8>>,
        transmits: &mut VecDeque<Transmit>,
        stats: &mut StreamStats,
        dest: SocketAddr,
    ) {
        let (seq, resend) = match item {
            Paced::Media(s) => (s, false),
            Paced::Resend(s) | Paced::Probe(s) => (s, true),
        };
        let Some(bytes) = v.history.get(seq) else {
            return;
        };
        let mut buf = pool.pop().unwrap_or_default();
        buf.clear();
        match (&mut v.rtx, resend) {
            (Some(rtx), true) => {
                if wrap_rtx(bytes, rtx.payload_type, rtx.ssrc, rtx.seq, &mut buf).is_err() {
                    return;
                }
                rtx.seq = rtx.seq.wrapping_add(1);
            }
            _ => buf.extend_from_slice(bytes),
        }
        if matches!(item, Paced::Probe(_)) {
            stats.tail_probes += 1;
        } else if resend {
            stats.retransmitted += 1;
        } else {
            let marker = bytes.get(1).is_some_and(|b| b & 0x80 != 0);
            v.history.mark_sent(seq, now);
            v.last_activity = Some(now);
            if marker {
                let ms = waited.as_secs_f64() * 1000.0;
                stats.pacer_delay_ms = ms;
                stats.pacer_delay_max_ms = stats.pacer_delay_max_ms.max(ms);
            }
        }
        stats.packets_sent += 1;
        stats.bytes_sent += buf.len() as u64;
        transmits.push_back(Transmit {
            dest,
            kind: TransmitKind::Rtp,
            contents: buf,
        });
    }

    /// Sends the NACKs that are due.
    fn send_nacks(&mut self, now: Instant) {
        let Some(v) = self.video_in.as_mut() else {
            return;
        };
        let Some(n) = v.nack.as_mut() else {
            return;
        };
        let mut list = std::mem::take(&mut self.nack_list);
        list.clear();
        n.poll(now, &self.rtt, &mut list);
        if let (false, Some(media)) = (list.is_empty(), self.rx_stats.as_ref().map(|s| s.ssrc())) {
            let copies = v.nack.as_ref().map_or(1, |n| n.config().copies.max(1));
            for _ in 0..copies {
                let mut buf = self.buffer();
                if self.build_report_into(now, &mut buf).is_ok()
                    && build_nack(&mut buf, self.ssrc, media, &list).is_ok()
                {
                    self.push_rtcp(buf);
                } else {
                    self.recycle(buf);
                }
            }
        }
        self.nack_list = list;
    }

    /// Sends a PLI unless one went out less than 500 ms ago (`forced` skips that check).
    fn send_pli(&mut self, now: Instant, forced: bool) {
        if !forced
            && self
                .last_pli
                .is_some_and(|t| now.saturating_duration_since(t) < PLI_MIN_INTERVAL)
        {
            return;
        }
        let Some(media) = self.rx_stats.as_ref().map(|s| s.ssrc()) else {
            return;
        };
        self.last_pli = Some(now);
        let mut buf = self.buffer();
        if self.build_report_into(now, &mut buf).is_ok()
            && build_pli(&mut buf, self.ssrc, media).is_ok()
        {
            self.stats.pli_sent += 1;
            self.push_rtcp(buf);
        } else {
            self.recycle(buf);
        }
    }

    /// Sends a FIR with a new command sequence number (RFC 5104).
    fn send_fir(&mut self, now: Instant) {
        let Some(media) = self.rx_stats.as_ref().map(|s| s.ssrc()) else {
            return;
        };
        self.fir_seq = self.fir_seq.wrapping_add(1);
        let mut buf = self.buffer();
        if self.build_report_into(now, &mut buf).is_ok()
            && build_fir(&mut buf, self.ssrc, media, self.fir_seq).is_ok()
        {
            self.stats.fir_sent += 1;
            self.push_rtcp(buf);
        } else {
            self.recycle(buf);
        }
    }

    /// A regular report (SR or RR, SDES), with BYE when `bye` is given.
    fn send_report(&mut self, now: Instant, bye: Option<&str>) {
        let mut buf = self.buffer();
        let mut ok = self.build_report_into(now, &mut buf).is_ok();
        if let Some(reason) = bye {
            ok = ok && build_bye(&mut buf, self.ssrc, Some(reason)).is_ok();
        }
        if ok {
            self.push_rtcp(buf);
        } else {
            self.recycle(buf);
        }
    }

    /// Appends SR (if we sent media) or RR, and SDES CNAME.
    fn build_report_into(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> std::result::Result<(), ()> {
        let ntp = self.ntp_at(now);
        let block = self.rx_stats.as_mut().map(|s| s.report_block(ntp));
        let blocks: &[_] = match &block {
            Some(b) => std::slice::from_ref(b),
            None => &[],
        };
        let since = now.saturating_duration_since(self.origin).as_secs_f64() * 1000.0;
        let sender = self.rtp.has_sent().then(|| {
            self.rtp
                .sender_info(ntp, self.rtp.rtp_timestamp_for_ms(since))
        });
        build_report(buf, self.ssrc, sender.as_ref(), blocks, &self.cname)
            .map(drop)
            .map_err(drop)
    }

    fn push_rtcp(&mut self, buf: Vec<u8>) {
        self.stats.rtcp_sent += 1;
        self.transmits.push_back(Transmit {
            dest: self.remotes.rtcp,
            kind: TransmitKind::Rtcp,
            contents: buf,
        });
    }

    fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.pool.pop().unwrap_or_default();
        b.clear();
        b
    }

    /// Sends the DTMF packets that are due, starting the next queued digit when one finishes.
    fn pump_dtmf(&mut self, now: Instant) {
        let Some(pt) = self.dtmf_pt else {
            self.dtmf_queue.clear();
            return;
        };
        loop {
            if self.dtmf_playing.is_none() {
                let Some((digit, duration_ms)) = self.dtmf_queue.pop_front() else {
                    return;
                };
                let Ok(packets) = plan_dtmf(digit, duration_ms, self.clock_rate) else {
                    continue;
                };
                let since = now.saturating_duration_since(self.origin);
                let rtp_ts = match &self.audio_tx {
                    Some(a) => a.event_timestamp(since, &self.rtp),
                    None => self.rtp.rtp_timestamp_for_ms(since.as_secs_f64() * 1000.0),
                };
                self.dtmf_playing = Some(DtmfPlayback {
                    packets,
                    next: 0,
                    rtp_ts,
                    start: now,
                });
            }
            let Some(p) = &mut self.dtmf_playing else {
                return;
            };
            while let Some(pkt) = p.packets.get(p.next) {
                if p.start + Duration::from_millis(u64::from(pkt.send_offset_ms)) > now {
                    return;
                }
                let normal = self.rtp.payload_type();
                self.rtp.set_payload_type(pt);
                let h = self
                    .rtp
                    .next_header(p.rtp_ts.wrapping_add(pkt.timestamp_offset), pkt.marker);
                self.rtp.set_payload_type(normal);
                self.rtp.count_payload(pkt.payload.len());
                let mut buf = self.pool.pop().unwrap_or_default();
                buf.clear();
                buf.reserve(RTP_HEADER_LEN + TELEPHONE_EVENT_LEN);
                buf.extend_from_slice(&h);
                buf.extend_from_slice(&pkt.payload);
                self.stats.packets_sent += 1;
                self.stats.bytes_sent += buf.len() as u64;
                self.transmits.push_back(Transmit {
                    dest: self.remotes.rtp,
                    kind: TransmitKind::Rtp,
                    contents: buf,
                });
                p.next += 1;
            }
            self.dtmf_playing = None;
            self.stats.dtmf_sent += 1;
        }
    }

    // ---- sources and time ------------------------------------------------------------------

    fn accept_source(&mut self, from: SocketAddr, is_rtcp: bool) -> bool {
        let r = &mut self.remotes;
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
                // Until the peer's own RTCP shows its RTCP address, assume the usual one (the RTP
                // port with rtcp-mux, the next port otherwise), so feedback (NACK, PLI) reaches
                // it from the first packet on.
                if !r.rtcp_latched {
                    r.rtcp = if self.mux {
                        from
                    } else {
                        SocketAddr::new(from.ip(), from.port().wrapping_add(1))
                    };
                }
            }
            return true;
        }
        false
    }

    fn ms_since_origin(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// 64-bit NTP time at `now`, from the wall clock given at creation.
    fn ntp_at(&self, now: Instant) -> u64 {
        ntp_from_unix(self.wall_origin + now.saturating_duration_since(self.origin))
    }
}
