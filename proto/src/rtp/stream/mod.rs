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
//!
//! # Where things are
//!
//! This file holds the core, its contract (the inputs and outputs above, `poll_timeout`,
//! `handle_timeout`, the RTCP dispatcher) and what both directions share: sources and latching,
//! RTCP reports, buffers. `receive.rs` is the receive half (RTP in, NACK/PLI/FIR out),
//! `send.rs` the send half (media in, pacing, answering NACKs), as str0m's
//! `streams/receive.rs` and `streams/send.rs`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::audio_jitter::AudioJitterBuffer;
use super::bwe::RateReason;
use super::config::{CoreConfig, MediaParams, SourcePolicy};
use super::media_tx::AudioTx;
use super::packet::{classify_muxed, MuxedKind};
use super::pool::BufPool;
use super::receiver::ReceiverStats;
use super::rtcp::{
    build_bye, build_report, ntp_from_unix, parse_compound_into, RtcpEvent, RtcpInterval,
};
use super::rtt::RttEstimator;
use super::sender::RtpSender;
use super::srtp::{SrtpError, SrtpKeys, SrtpSession, SrtpSuite};
use super::stats::StreamStats;
use crate::error::{Error, Result};
use crate::frame::{AudioFrame, DtmfEvent, VideoFrame};
use crate::webrtc::{Candidate, IceDtlsTransport, Route, TransportEvent, TransportFailure};

mod congestion;
mod fec;
mod receive;
mod send;

use congestion::Congestion;
use receive::{AudioIn, VideoIn};
use send::{DtmfPlayback, VideoOut};

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
    /// Congestion control moved its estimate by more than 5 % since it last said: the bitrate
    /// the application should now send at (bits per second), and why it changed.
    TargetBitrate { bps: u64, reason: RateReason },
    /// The DTLS-SRTP transport failed for good (a handshake that failed, the peer's
    /// `close_notify`, ICE consent expired): no media leaves any more and the stream is over
    /// (closed, without BYE: there are no keys to protect one, or no path to carry it).
    TransportFailed(TransportFailure),
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

/// Where RTP and RTCP go, and whether the source has been latched.
#[derive(Debug, Clone, Copy)]
struct Remotes {
    rtp: SocketAddr,
    rtcp: SocketAddr,
    rtp_latched: bool,
    rtcp_latched: bool,
}

/// Counts an RTP packet as sent and queues it for `dest`: every RTP packet a core sends goes out
/// through here (media, repairs, probes, DTMF).
fn queue_rtp(
    stats: &mut StreamStats,
    transmits: &mut VecDeque<Transmit>,
    dest: SocketAddr,
    contents: Vec<u8>,
) {
    stats.packets_sent += 1;
    stats.bytes_sent += contents.len() as u64;
    transmits.push_back(Transmit {
        dest,
        kind: TransmitKind::Rtp,
        contents,
    });
}

/// Two addresses are the same endpoint, treating IPv4 and IPv4-mapped IPv6 as equal.
pub(crate) fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    let norm = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && norm(a.ip()) == norm(b.ip())
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
    audio_tx: Option<Box<AudioTx>>,
    video_out: Option<Box<VideoOut>>,
    dtmf_pt: Option<u8>,
    dtmf_queue: VecDeque<(char, u32)>,
    dtmf_playing: Option<DtmfPlayback>,
    rx_stats: Option<ReceiverStats>,
    video_in: Option<Box<VideoIn>>,
    audio_in: Option<Box<AudioIn>>,
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
    pool: BufPool,
    stats: StreamStats,
    /// SRTP contexts, when the stream is secured: applied in `poll_transmit` and on entry to
    /// `handle_rtp`/`handle_rtcp`, so nothing in between sees a protected packet.
    srtp: Option<Box<SrtpSession>>,
    /// Congestion control, when configured (video only).
    cc: Option<Box<Congestion>>,
    /// ICE and DTLS-SRTP, when configured (`CoreConfig::ice_dtls`): STUN and DTLS go to it,
    /// media waits for its keys and follows its selected remote.
    transport: Option<Box<IceDtlsTransport>>,
    /// The transport's next timeout, as of its last input (its agent's poll needs `&mut`).
    transport_timeout: Option<Instant>,
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
        let mut cc = None;
        match &cfg.media {
            MediaParams::Audio(a) => {
                audio_tx = Some(Box::new(AudioTx::new(a)?));
                dtmf_pt = a.dtmf_payload_type;
                audio_in = Some(Box::new(AudioIn::new(a, clock_rate)?));
            }
            MediaParams::Video(v) => {
                let mut out = Box::new(VideoOut::new(v, ssrc, now, &mut rng)?);
                // With FEC too: FEC packets are built as the protected packets leave, numbers
                // stamped (stream/fec.rs), and go through the pacer at the estimate themselves.
                if v.congestion.enabled {
                    let c = Box::new(Congestion::new(v.congestion, v.codec, clock_rate, now));
                    out.pacer.set_target_rate(now, Some(c.pacer_rate()));
                    cc = Some(c);
                }
                video_out = Some(out);
                video_in = Some(Box::new(VideoIn::new(v, clock_rate)));
            }
        }
        let interval = RtcpInterval::new(cfg.rtcp_interval, now, &mut rng);
        let transport =
            match &cfg.ice_dtls {
                None => None,
                Some(_) if !cfg.rtcp_mux => return Err(Error::InvalidArgument(
                    "DTLS-SRTP (ice_dtls) needs rtcp-mux: STUN, DTLS, RTP and RTCP share one port"
                        .into(),
                )),
                Some(_) if cfg.srtp.is_some() => {
                    return Err(Error::InvalidArgument(
                        "DTLS-SRTP (ice_dtls) makes its own SRTP keys: srtp must be None".into(),
                    ))
                }
                Some(p) => Some(Box::new(IceDtlsTransport::new(
                    p,
                    cfg.remote_rtp,
                    cfg.source_policy == SourcePolicy::LatchFirst,
                    now,
                ))),
            };
        let srtp = match &cfg.srtp {
            Some(keys) => Some(Box::new(
                SrtpSession::new(keys).map_err(|e| Error::InvalidArgument(e.to_string()))?,
            )),
            None => None,
        };
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
            pool: BufPool::new(POOL_MAX),
            stats: StreamStats::default(),
            srtp,
            cc,
            transport,
            transport_timeout: None,
        }
        .with_transport_started(now))
    }

    /// Takes what the transport did at creation (a client's ClientHello without ICE).
    fn with_transport_started(mut self, now: Instant) -> Self {
        self.pump_transport(now);
        self
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
    #[cfg(any(test, feature = "_internals"))]
    pub fn remote_rtcp(&self) -> SocketAddr {
        self.remotes.rtcp
    }

    /// The stream's time origin: timestamps of media given no time count from it.
    #[cfg(any(test, feature = "_internals"))]
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The round-trip time estimate, once measured.
    #[cfg(any(test, feature = "_internals"))]
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
            s.cc_pacer_rate_bps = v.pacer.target_rate().map_or(0, |r| (r * 8.0) as u64);
        }
        if let Some(cc) = &self.cc {
            s.cc_target_bps = cc.bwe.target_bps();
            s.cc_pictures_dropped = cc.pictures_dropped;
            s.cc_feedback_sent = cc.feedback_sent;
            s.cc_feedback_received = cc.feedback_received;
        }
        if let Some(t) = &self.transport {
            t.stats().fill(&mut s);
        }
        s
    }

    // ---- outputs ---------------------------------------------------------------------------

    /// The SRTP suite protecting the stream; `None`: plain RTP.
    pub fn srtp_suite(&self) -> Option<SrtpSuite> {
        self.srtp.as_ref().map(|s| s.suite())
    }

    /// The next datagram to send now. On a secured stream it is already SRTP or SRTCP: every
    /// packet the core makes (media, RTX, paced, retransmitted, RTCP) leaves through here.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        // STUN and DTLS first, as they are (never SRTP); on the way out the BYE goes before
        // DTLS's close_notify.
        if !self.closed {
            if let Some(t) = self.poll_transport_transmit() {
                return Some(t);
            }
        }
        if let Some(t) = self.poll_media_transmit() {
            return Some(t);
        }
        self.poll_transport_transmit()
    }

    /// The transport's next STUN or DTLS datagram (from the muxed socket).
    fn poll_transport_transmit(&mut self) -> Option<Transmit> {
        let (dest, contents) = self.transport.as_mut()?.poll_transmit()?;
        Some(Transmit {
            dest,
            kind: TransmitKind::Rtp,
            contents,
        })
    }

    /// The next RTP or RTCP datagram, protected on a secured stream.
    fn poll_media_transmit(&mut self) -> Option<Transmit> {
        if let Some(tr) = self.transport.as_ref() {
            if !tr.may_send_media() || self.srtp.is_none() {
                // No keys yet (or no consent): what the core made never leaves, least of all
                // in the clear.
                self.drop_unkeyed();
                return None;
            }
        }
        loop {
            let mut t = self.transmits.pop_front()?;
            let Some(srtp) = self.srtp.as_mut() else {
                return Some(t);
            };
            let protected = match t.kind {
                TransmitKind::Rtp => srtp.tx.protect_rtp(&t.contents),
                TransmitKind::Rtcp => srtp.tx.protect_rtcp(&t.contents),
            };
            match protected {
                Ok(p) => {
                    let plain = std::mem::replace(&mut t.contents, p);
                    self.recycle(plain);
                    let Some(tr) = self.transport.as_mut() else {
                        return Some(t);
                    };
                    // Through our TURN relay when the selected pair starts there.
                    if let Some((dest, contents)) = tr.route_media(t.dest, t.contents) {
                        t.dest = dest;
                        t.contents = contents;
                        return Some(t);
                    }
                }
                // Only a packet we built wrongly, or a key past its 2^48 packets: never sent
                // in the clear.
                Err(_) => {
                    self.stats.malformed += 1;
                }
            }
        }
    }

    /// Counts a packet SRTP refused.
    fn srtp_dropped(&mut self, e: SrtpError) {
        match e {
            SrtpError::Auth => self.stats.srtp_auth_failed += 1,
            SrtpError::Replay => self.stats.srtp_replayed += 1,
            _ => self.stats.malformed += 1,
        }
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Gives a transmit buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    /// When [`Self::handle_timeout`] should next be called; `None` once closed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut t = self.interval.next_due();
        if let Some(d) = self.transport_timeout {
            t = t.min(d);
        }
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                t = t.min(d);
            }
        };
        if let Some(v) = &self.video_out {
            consider(v.pacer.poll_timeout());
            consider(v.tail_probe.map(|(at, _)| at));
        }
        if let Some(c) = &self.cc {
            consider(c.poll_timeout());
            consider(c.probe_timeout());
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
        if let Some(tr) = self.transport.as_mut() {
            if self.closed {
                return;
            }
            match tr.handle_datagram(now, from, data) {
                Route::Media {
                    kind: MuxedKind::Rtcp,
                    from,
                    data,
                } => self.handle_rtcp(now, from, data),
                Route::Media { from, data, .. } => self.handle_rtp(now, from, data),
                Route::Done => self.pump_transport(now),
            }
            return;
        }
        if on_rtcp_socket || classify_muxed(data) == MuxedKind::Rtcp {
            self.handle_rtcp(now, from, data);
        } else {
            self.handle_rtp(now, from, data);
        }
    }

    /// An RTCP compound (SRTCP on a secured stream) that arrived at `now` from `from`.
    pub fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.closed || self.unkeyed() {
            return;
        }
        match self.srtp.as_mut().map(|s| s.unprotect_rtcp(data, now)) {
            None => self.handle_plain_rtcp(now, from, data),
            Some(Ok(plain)) => self.handle_plain_rtcp(now, from, &plain),
            Some(Err(e)) => self.srtp_dropped(e),
        }
    }

    fn handle_plain_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
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
                RtcpEvent::TransportCc(fb) => self.on_transport_feedback(now, fb),
                RtcpEvent::Ccfb(fb) => self.on_ccfb(now, fb),
                RtcpEvent::Remb(r) if r.ssrcs.is_empty() || r.ssrcs.contains(&ours) => {
                    self.on_remb(now, r.bitrate_bps)
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

    // ---- timers ----------------------------------------------------------------------------

    /// The time from [`Self::poll_timeout`] has come (calling it early or late is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Some(tr) = self.transport.as_mut() {
            if self.transport_timeout.is_some_and(|t| t <= now) {
                tr.handle_timeout(now);
                self.pump_transport(now);
                if self.closed {
                    return;
                }
            }
        }
        let probe = self
            .video_out
            .as_mut()
            .and_then(|v| v.tail_probe.take_if(|(at, _)| *at <= now));
        if let Some((_, seq)) = probe {
            self.probe_tail(now, seq);
        }
        self.release(now);
        self.pool.trim(now);
        if let Some(v) = self.video_in.as_mut() {
            v.rx.poll(now, &mut v.frames);
            self.after_video(now);
        }
        self.send_nacks(now);
        self.send_transport_feedback(now);
        self.send_probes(now);
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

    // ---- the remote and the end ------------------------------------------------------------

    /// Points RTP and RTCP at new remote addresses, as a re-INVITE does.
    pub fn set_remote(&mut self, rtp: SocketAddr, rtcp: SocketAddr) {
        self.remotes.rtp = rtp;
        self.remotes.rtcp = rtcp;
        if let Some(tr) = self.transport.as_mut() {
            // Without ICE the transport's peer moves; with ICE the selected pair rules.
            tr.set_remote(rtp);
            if let Some(r) = tr.media_remote() {
                self.remotes.rtp = r;
                self.remotes.rtcp = r;
            }
        }
    }

    /// One more remote ICE candidate (trickle, RFC 8838), at `now`; ignored without ICE.
    pub fn add_remote_candidate(&mut self, now: Instant, candidate: Candidate) {
        if self.closed {
            return;
        }
        if let Some(tr) = self.transport.as_mut() {
            tr.add_remote_candidate(now, candidate);
            self.pump_transport(now);
        }
    }

    /// The DTLS-SRTP transport's state and counters, when the stream has one (also in
    /// [`Self::stats`]).
    pub fn transport_stats(&self) -> Option<crate::webrtc::TransportStats> {
        self.transport.as_ref().map(|t| t.stats())
    }

    /// On a DTLS-SRTP stream: true until the handshake keyed SRTP (nothing may be taken in
    /// plain before that).
    fn unkeyed(&self) -> bool {
        self.transport.is_some() && self.srtp.is_none()
    }

    /// Takes the transport's events (keys, failure), follows its selected remote and notes its
    /// next timeout.
    fn pump_transport(&mut self, now: Instant) {
        let Some(tr) = self.transport.as_mut() else {
            return;
        };
        let (mut keys, mut failure) = (None, None);
        while let Some(e) = tr.poll_event() {
            match e {
                TransportEvent::Keys(k) => keys = Some(k),
                TransportEvent::Failed(f) => failure = Some(f),
            }
        }
        // Media follows the ICE-selected pair (or the DTLS peer without ICE); no latching.
        if let Some(r) = tr.media_remote() {
            self.remotes = Remotes {
                rtp: r,
                rtcp: r,
                rtp_latched: true,
                rtcp_latched: true,
            };
        }
        self.transport_timeout = tr.poll_timeout();
        if let Some(k) = keys {
            match self.rekey_srtp(&k, now) {
                // A video sender's first picture must be one the peer can decode from.
                Ok(_) if self.video_out.is_some() => self
                    .events
                    .push_back(StreamEvent::KeyframeRequested(KeyframeRequest::Pli)),
                Ok(_) => {}
                Err(_) => {
                    failure.get_or_insert(TransportFailure::Dtls(
                        crate::webrtc::DtlsError::Incomplete,
                    ));
                }
            }
        }
        if let Some(f) = failure {
            // The stream is over: nothing is sent or taken any more, no timers run.
            self.peer_gone = true;
            self.closed = true;
            self.transport_timeout = None;
            self.drop_unkeyed();
            self.events.push_back(StreamEvent::TransportFailed(f));
        }
    }

    /// Drops (and counts) every datagram queued to leave: a transport without keys, or a dead
    /// one, sends no media.
    fn drop_unkeyed(&mut self) {
        while let Some(t) = self.transmits.pop_front() {
            self.stats.media_dropped_unkeyed += 1;
            self.recycle(t.contents);
        }
    }

    /// Takes the SRTP keys an offer/answer in the call agreed at `now` (RFC 4568 §7.1.4
    /// re-keying): new contexts for the keys that changed, the previous receive key still
    /// accepted for [`REKEY_GRACE`](super::srtp::REKEY_GRACE); on a plain stream, SRTP from now
    /// on. Returns whether anything changed; a key that cannot be used changes nothing.
    pub fn rekey_srtp(
        &mut self,
        keys: &SrtpKeys,
        now: Instant,
    ) -> std::result::Result<bool, SrtpError> {
        match self.srtp.as_mut() {
            Some(s) => s.rekey(keys, now),
            None => {
                self.srtp = Some(Box::new(SrtpSession::new(keys)?));
                Ok(true)
            }
        }
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
                    self.cc.as_deref_mut(),
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
        if let Some(tr) = self.transport.as_mut() {
            // close_notify, after the BYE (see `poll_transmit`).
            tr.close(now);
        }
        self.closed = true;
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(Error::State("the stream is closed".into()))
        } else {
            Ok(())
        }
    }

    // ---- RTCP reports and buffers, used by both halves -------------------------------------

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
        let mut b = self.pool.take();
        b.clear();
        b
    }

    // ---- sources and time ------------------------------------------------------------------

    fn accept_source(&mut self, from: SocketAddr, is_rtcp: bool) -> bool {
        // With ICE/DTLS the transport decides who the peer is (and latches without ICE).
        if let Some(tr) = self.transport.as_ref() {
            return tr.media_source_ok(from);
        }
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
