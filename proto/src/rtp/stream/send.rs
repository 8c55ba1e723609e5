//! The send half of a [`StreamCore`]: media from the application (pictures, PCM, encoded audio,
//! DTMF) into RTP, the send history and the pacer; and what the peer's feedback asks of a
//! sender (report blocks, NACKs answered from the history, the tail-loss probe).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rtp::pool::BufPool;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::codec::dtmf::{DtmfPacket, TELEPHONE_EVENT_LEN};
use crate::error::{Error, Result};
use crate::rtp::config::VideoParams;
use crate::rtp::history::{RetransmitLimiter, SendHistory};
use crate::rtp::media_tx::{plan_dtmf, VideoTx};
use crate::rtp::pacer::{Class, Pacer};
use crate::rtp::packet::RTP_HEADER_LEN;
use crate::rtp::red::wrap_red;
use crate::rtp::rtcp::{round_trip_time, ReportBlockData};
use crate::rtp::rtx::wrap_rtx;
use crate::rtp::stats::StreamStats;

use super::congestion::Congestion;
use super::fec::FecOut;
use super::{queue_rtp, StreamCore, Transmit};

/// The sender does not re-send one packet twice within this share of the RTT...
const RESEND_GUARD_RTT_SHARE: f64 = 0.5;
/// ...bounded by these.
const RESEND_GUARD_MIN: Duration = Duration::from_millis(5);
const RESEND_GUARD_MAX: Duration = Duration::from_millis(250);
/// Without an RTT measurement the guard only stops duplicates within one burst of NACKs.
const RESEND_GUARD_UNMEASURED: Duration = Duration::from_millis(10);
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

/// A packet in the pacer, by its sequence number in the send history.
#[derive(Debug, Clone, Copy)]
pub(super) enum Paced {
    Media(u16),
    /// An FEC packet numbered behind its picture, built as it leaves.
    Fec(u16),
    Resend(u16),
    /// A tail-loss probe: a resend nobody asked for.
    Probe(u16),
}

/// Our RTX stream.
#[derive(Debug)]
pub(super) struct RtxOut {
    pub(super) payload_type: u8,
    pub(super) ssrc: u32,
    pub(super) seq: u16,
}

/// The send half of a video stream.
pub(super) struct VideoOut {
    pub(super) tx: VideoTx,
    pub(super) history: SendHistory,
    pub(super) pacer: Pacer<Paced>,
    pub(super) limiter: RetransmitLimiter,
    pub(super) rtx: Option<RtxOut>,
    /// Last time media went out or a NACK came in: what a linger waits on.
    pub(super) last_activity: Option<Instant>,
    /// When the last picture was handed over, to tell a pause from the picture rate.
    pub(super) last_picture_at: Option<Instant>,
    /// A tail-loss probe: the last packet sent, to send once more at that time if no picture
    /// follows (see [`TAIL_PROBE_MIN`]).
    pub(super) tail_probe: Option<(Instant, u16)>,
    /// ULPFEC in RED, when on.
    pub(super) fec: Option<FecOut>,
}

/// A DTMF digit being played out.
#[derive(Debug)]
pub(super) struct DtmfPlayback {
    pub(super) packets: Vec<DtmfPacket>,
    pub(super) next: usize,
    pub(super) rtp_ts: u32,
    pub(super) start: Instant,
}

impl VideoOut {
    /// The send half of a video stream. `ssrc` is the media SSRC, which an RTX SSRC drawn from
    /// `rng` must differ from.
    pub(super) fn new(
        v: &VideoParams,
        ssrc: u32,
        now: Instant,
        rng: &mut SmallRng,
    ) -> Result<VideoOut> {
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
        Ok(VideoOut {
            tx: VideoTx::new(v)?,
            history: SendHistory::new(v.history, now),
            pacer: Pacer::new(v.pacer, now),
            limiter: RetransmitLimiter::new(v.retransmit, now),
            rtx,
            last_activity: None,
            last_picture_at: None,
            tail_probe: None,
            fec: v.fec.map(FecOut::new),
        })
    }
}

impl StreamCore {
    // ---- media from the application --------------------------------------------------------

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
        if !self.admit_picture(now, picture) {
            return Ok(());
        }
        let ms = timestamp_ms
            .unwrap_or_else(|| now.saturating_duration_since(self.origin).as_secs_f64() * 1000.0);
        let ts = self.rtp.rtp_timestamp_for_ms(ms);
        let Some(v) = self.video_out.as_mut() else {
            return Err(Error::Unsupported("this stream carries no video".into()));
        };
        v.tx.packetize(picture)?;
        let mut last_seq = None;
        let mut first_seq = None;
        for i in 0..v.tx.payloads.len() {
            // A slot of the history still waiting in the pacer must leave before it is reused.
            while v.pacer.media_len() >= v.history.capacity() {
                let Some((item, waited)) = v.pacer.pop_media_now(now) else {
                    break;
                };
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
            let header = self.rtp.next_header(ts, v.tx.payloads.marker(i));
            let len = v.tx.payloads.payload_len(i);
            self.rtp.count_payload(len);
            let seq = u16::from_be_bytes([header[2], header[3]]);
            let payloads = &v.tx.payloads;
            let wire = v.history.store(seq, now, |buf| {
                buf.extend_from_slice(&header);
                payloads.copy_payload(i, picture, buf);
            });
            // With FEC the packet leaves wrapped in RED: one byte more.
            let wire = wire + usize::from(v.fec.is_some());
            v.pacer.push(now, Paced::Media(seq), wire, Class::Media);
            first_seq.get_or_insert(seq);
            last_seq = Some(seq);
        }
        if let (Some(first), Some(last)) = (first_seq, last_seq) {
            self.protect_picture(now, ts, first, last.wrapping_sub(first).wrapping_add(1));
        }
        let Some(v) = self.video_out.as_mut() else {
            return Ok(());
        };
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

    /// Encodes 16-bit mono PCM at the stream's PCM rate
    /// ([`AudioParams::pcm_rate`](crate::rtp::config::AudioParams::pcm_rate)) into 20 ms packets
    /// of its codec (PCMU, PCMA, G.722 or Opus; the last padded with silence), ready at once. The
    /// caller paces: audio handed over in one call leaves at once.
    pub fn send_audio(&mut self, now: Instant, pcm: &[i16]) -> Result<()> {
        self.send_audio_at(now, pcm, None)
    }

    /// [`send_audio`](Self::send_audio) of PCM at `rate_hz` (8, 12, 16, 24, 32 or 48 kHz; `None`:
    /// the stream's PCM rate), converted to the codec's rate: an application whose audio comes
    /// at several rates (TTS at 24 kHz, a prompt at 8 kHz) hands each over as it is.
    pub fn send_audio_at(&mut self, now: Instant, pcm: &[i16], rate_hz: Option<u32>) -> Result<()> {
        self.check_open()?;
        let since = now.saturating_duration_since(self.origin);
        let Some(a) = self.audio_tx.as_mut() else {
            return Err(Error::Unsupported("this stream carries no audio".into()));
        };
        a.encode(pcm, rate_hz, since, &self.rtp)?;
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
            let mut buf = self.pool.take();
            buf.clear();
            buf.extend_from_slice(&header);
            buf.extend_from_slice(a.payload(i));
            queue_rtp(&mut self.stats, &mut self.transmits, self.remotes.rtp, buf);
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

    // ---- pacing and the transmit queue -----------------------------------------------------

    /// Moves the packets the pacer allows at `now` to the transmit queue.
    pub(super) fn release(&mut self, now: Instant) {
        let Some(v) = self.video_out.as_mut() else {
            return;
        };
        v.history.expire(now);
        while let Some((item, waited)) = v.pacer.pop(now) {
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

    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit_paced(
        v: &mut VideoOut,
        mut cc: Option<&mut Congestion>,
        item: Paced,
        waited: Duration,
        now: Instant,
        pool: &mut BufPool,
        transmits: &mut VecDeque<Transmit>,
        stats: &mut StreamStats,
        dest: SocketAddr,
    ) {
        let (seq, resend) = match item {
            Paced::Media(s) | Paced::Fec(s) => (s, false),
            Paced::Resend(s) | Paced::Probe(s) => (s, true),
        };
        if let Paced::Fec(s) = item {
            if !Self::build_fec(v, s, now) {
                return;
            }
            stats.fec_sent += 1;
        }
        let Some(bytes) = v.history.get(seq) else {
            return;
        };
        let mut buf = pool.take();
        buf.clear();
        // An FEC packet asked for again goes as it went, in RED on the media's sequence
        // numbers (RTX would turn it into media at the receiver).
        let fec_resend = resend
            && v.fec.as_ref().is_some_and(|f| {
                bytes
                    .get(1)
                    .is_some_and(|b| b & 0x7f == f.cfg.ulpfec_payload_type)
            });
        match (&mut v.rtx, resend) {
            _ if fec_resend => {
                let red_pt = v.fec.as_ref().map_or(0, |f| f.cfg.red_payload_type);
                if wrap_red(bytes, red_pt, &mut buf).is_err() {
                    return;
                }
            }
            (Some(rtx), true) => {
                if wrap_rtx(bytes, rtx.payload_type, rtx.ssrc, rtx.seq, &mut buf).is_err() {
                    return;
                }
                rtx.seq = rtx.seq.wrapping_add(1);
            }
            (_, false) if v.fec.is_some() => {
                // The number goes on the packet inside RED (the outer header is its copy), and
                // FEC protects the packet with it: what the receiver unwraps is what was protected.
                let mut inner = pool.take();
                inner.clear();
                inner.extend_from_slice(bytes);
                if let Some(cc) = cc.take() {
                    cc.stamp(now, &mut inner);
                }
                let f = v.fec.as_mut();
                if let (Some(f), Paced::Media(_)) = (f, item) {
                    f.on_media_out(&inner);
                }
                let red_pt = v.fec.as_ref().map_or(0, |f| f.cfg.red_payload_type);
                let wrapped = wrap_red(&inner, red_pt, &mut buf);
                pool.give(inner);
                if wrapped.is_err() {
                    pool.give(buf);
                    return;
                }
            }
            _ => buf.extend_from_slice(bytes),
        }
        // The transport-wide number goes on as the packet leaves: RTX and probes get their own.
        if let Some(cc) = cc {
            cc.stamp(now, &mut buf);
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
        queue_rtp(stats, transmits, dest, buf);
    }

    /// Builds reserved FEC packet `seq` from what its picture sent and stores it in the
    /// history; false when nothing was built for it (a protected packet was no longer in the
    /// history), and the number then goes unused.
    fn build_fec(v: &mut VideoOut, seq: u16, now: Instant) -> bool {
        let Some((header, payload)) = v.fec.as_mut().and_then(|f| f.next_fec(seq)) else {
            return false;
        };
        v.history.store(seq, now, |buf| {
            buf.extend_from_slice(&header);
            buf.extend_from_slice(&payload);
        });
        true
    }

    /// Sends the DTMF packets that are due, starting the next queued digit when one finishes.
    pub(super) fn pump_dtmf(&mut self, now: Instant) {
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
                let mut buf = self.pool.take();
                buf.clear();
                buf.reserve(RTP_HEADER_LEN + TELEPHONE_EVENT_LEN);
                buf.extend_from_slice(&h);
                buf.extend_from_slice(&pkt.payload);
                queue_rtp(&mut self.stats, &mut self.transmits, self.remotes.rtp, buf);
                p.next += 1;
            }
            self.dtmf_playing = None;
            self.stats.dtmf_sent += 1;
        }
    }

    // ---- what the peer's feedback asks of us -----------------------------------------------

    /// Report blocks about our stream: the peer's view of loss and jitter, and the RTT.
    pub(super) fn on_report_blocks(&mut self, now: Instant, blocks: &[ReportBlockData]) {
        for b in blocks.iter().filter(|b| b.ssrc == self.ssrc) {
            self.stats.remote_fraction_lost = f64::from(b.fraction_lost) / 256.0;
            if let Some(f) = self.video_out.as_mut().and_then(|v| v.fec.as_mut()) {
                f.on_report(now, b.cumulative_lost, b.ext_highest_seq);
            }
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

    /// Queues NACKed packet `seq` for a resend, unless a limit says no.
    pub(super) fn resend(&mut self, now: Instant, seq: u16) {
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
        let copies =
            if v.history.resends(seq) > 0 || v.history.nacked_share() >= limits.copy_first_above {
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

    /// Queues the tail-loss probe for `seq` (see [`TAIL_PROBE_MIN`]) if the packet is still in
    /// the history and the retransmission budget allows it.
    pub(super) fn probe_tail(&mut self, now: Instant, seq: u16) {
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
}
