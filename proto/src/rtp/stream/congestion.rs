//! Congestion control inside a [`StreamCore`]: the transport-wide sequence numbers we stamp and
//! the feedback we receive about them (sender), the arrivals we record and report (receiver),
//! and what the sender does with the estimate: the pacer runs at it, and whole pictures are
//! dropped rather than queued beyond it.
//!
//! Without BUNDLE each stream has its own socket pair, so a stream is a transport of its own:
//! the transport-wide counter, the [`BandwidthEstimator`] and the [`TwccRecorder`] live here, in
//! the stream that sends (video only: an audio stream is too thin to estimate anything from).

use std::time::{Duration, Instant};

use crate::codec::annexb::{is_vcl, nal_type, nal_units, NAL_IDR};
use crate::codec::vp8::is_vp8_keyframe;
use crate::frame::VideoCodec;
use crate::rtp::bwe::probe::ProbeCluster;
use crate::rtp::bwe::remote::{ReceiveEstimator, SendClock};
use crate::rtp::bwe::{BandwidthEstimator, BweStats, RateReason};
use crate::rtp::ccfb::{Ccfb, CcfbRecorder};
use crate::rtp::config::{CcFeedback, CongestionParams};
use crate::rtp::hdrext::{abs_send_time, insert_one_byte, packet_transport_cc_seq, ExtElement};
use crate::rtp::remb;
use crate::rtp::rtx::wrap_rtx;
use crate::rtp::twcc::{TwccFeedback, TwccRecorder};

use super::{queue_rtp, KeyframeRequest, StreamCore, StreamEvent};

/// The picture interval assumed before two pictures have been seen.
const DEFAULT_PICTURE_INTERVAL: Duration = Duration::from_millis(33);
/// Picture intervals measured are kept within these (a pause is not a picture rate).
const PICTURE_INTERVAL_MIN: Duration = Duration::from_millis(5);
const PICTURE_INTERVAL_MAX: Duration = Duration::from_millis(200);
/// The application hears of a new target when it moved by more than this share since the last.
const TARGET_EVENT_SHARE: f64 = 0.05;
/// Feedback packets one timeout may send (each reports up to ~1,100 bytes of statuses).
const MAX_FEEDBACK_PER_TIMEOUT: usize = 8;
/// A probe copies the packets among this many most recent that have left, in turn.
const PROBE_SOURCES: u16 = 16;
/// How far back from the newest packet stored the newest one that has left is looked for (the
/// pacer may hold many).
const PROBE_SCAN: u16 = 1024;
/// Probe packets one call may send (a cluster is ~15 ms: a few at a time as they fall due).
const MAX_PROBE_PACKETS_PER_CALL: usize = 64;

/// A probe cluster being sent: RTX copies of recent packets at the cluster's rate.
#[derive(Debug)]
struct ProbeOut {
    cluster: ProbeCluster,
    bytes: usize,
    packets: u32,
    start: Instant,
    next_at: Instant,
    /// The newest packet that had left when the cluster began, and how far back from it the
    /// next copy is taken.
    anchor: u16,
    back: u16,
}

/// What the sender does with a picture the application hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PictureVerdict {
    Send,
    Drop,
    /// Drop it, and ask the application for a key picture: the queue has room again, but what
    /// follows depends on pictures already dropped.
    DropAndAskKey,
}

/// Congestion control state of one stream; see the module documentation.
#[derive(Debug)]
pub(super) struct Congestion {
    params: CongestionParams,
    codec: VideoCodec,
    /// The next transport-wide sequence number we stamp.
    next_seq: u16,
    pub(super) bwe: BandwidthEstimator,
    recorder: TwccRecorder,
    /// Arrivals recorded since the last feedback.
    unreported: bool,
    next_feedback: Instant,
    /// The smoothed interval between the application's pictures.
    picture_interval: Duration,
    /// Dropping every picture until a key picture fits.
    dropping: bool,
    /// A key picture was asked for during this run of drops.
    asked_key: bool,
    /// The target the application was last told of (the start bitrate before any event).
    announced: u64,
    pub(super) feedback_sent: u64,
    pub(super) feedback_received: u64,
    pub(super) pictures_dropped: u64,
    /// The origin of the abs-send-time we stamp.
    origin: Instant,
    /// With REMB agreed: the receiver's own estimate, which it sends.
    remote: Option<ReceiveEstimator>,
    /// With RFC 8888 agreed: the receiver's record of arrivals by (SSRC, sequence number).
    ccfb: Option<CcfbRecorder>,
    /// The probe cluster being sent, if any.
    probe: Option<ProbeOut>,
}

impl Congestion {
    pub(super) fn new(
        params: CongestionParams,
        codec: VideoCodec,
        clock_rate: u32,
        now: Instant,
    ) -> Self {
        let mut bwe = BandwidthEstimator::new(params.bitrate);
        let remote = (params.feedback == CcFeedback::Remb).then(|| {
            bwe.follow_remb();
            let clock = match params.abs_send_time_id {
                Some(id) => SendClock::AbsSendTime(id),
                None => SendClock::RtpTimestamp(clock_rate),
            };
            ReceiveEstimator::new(params.bitrate, clock)
        });
        Congestion {
            params,
            codec,
            next_seq: 0,
            bwe,
            recorder: TwccRecorder::new(),
            unreported: false,
            next_feedback: now + params.feedback_interval,
            picture_interval: DEFAULT_PICTURE_INTERVAL,
            dropping: false,
            asked_key: false,
            announced: params.bitrate.start_bps,
            feedback_sent: 0,
            feedback_received: 0,
            pictures_dropped: 0,
            origin: now,
            remote,
            ccfb: (params.feedback == CcFeedback::Ccfb).then(CcfbRecorder::new),
            probe: None,
        }
    }

    /// The pacer's rate for the current estimate, bytes per second.
    pub(super) fn pacer_rate(&self) -> f64 {
        self.bwe.target_bps() as f64 / 8.0
    }

    /// Stamps what was agreed on an RTP packet leaving at `now`: the next transport-wide
    /// sequence number (told to the estimator) and abs-send-time. While a probe cluster is
    /// being sent, every packet that leaves is part of it (media included, as in libwebrtc: the
    /// cluster's rate is all that goes out).
    pub(super) fn stamp(&mut self, now: Instant, packet: &mut Vec<u8>) {
        let transport_wide = self.params.feedback == CcFeedback::TransportCc;
        let seq = self.next_seq.to_be_bytes();
        let abs = abs_send_time(now.saturating_duration_since(self.origin));
        let mut elements = [ExtElement { id: 0, data: &[] }; 2];
        let mut n = 0;
        if transport_wide {
            elements[n] = ExtElement {
                id: self.params.transport_cc_id,
                data: &seq,
            };
            n += 1;
        }
        if let Some(id) = self.params.abs_send_time_id {
            elements[n] = ExtElement { id, data: &abs };
            n += 1;
        }
        if n > 0 && insert_one_byte(packet, &elements[..n]) && transport_wide {
            match self.probe.as_ref().map(|p| p.cluster.id) {
                Some(id) => {
                    self.bwe.on_probe_sent(now, self.next_seq, packet.len(), id);
                    self.count_probe(packet.len());
                }
                None => self.bwe.on_packet_sent(now, self.next_seq, packet.len()),
            }
            self.next_seq = self.next_seq.wrapping_add(1);
        }
        if self.params.feedback == CcFeedback::Ccfb {
            if let Some((ssrc, seq)) = ssrc_seq(packet) {
                self.bwe.on_rtp_sent(now, ssrc, seq, packet.len());
            }
        }
    }

    /// Counts a packet of `len` bytes stamped into the probe cluster being sent.
    fn count_probe(&mut self, len: usize) {
        if let Some(p) = self.probe.as_mut() {
            p.bytes += len;
            p.packets += 1;
            // The next copy falls due when all the cluster sent matches its rate.
            let secs = p.bytes as f64 * 8.0 / p.cluster.bps.max(1) as f64;
            p.next_at = p.start + Duration::from_secs_f64(secs);
            if p.cluster.is_complete(p.bytes, p.packets) {
                self.probe = None;
            }
        }
    }

    /// When the next probe packet is due, while a cluster is being sent.
    pub(super) fn probe_timeout(&self) -> Option<Instant> {
        self.probe.as_ref().map(|p| p.next_at)
    }

    /// Records the arrival of an RTP packet (a whole, unprotected one) at `now`.
    pub(super) fn on_rtp(&mut self, now: Instant, packet: &[u8]) {
        if let Some(r) = self.remote.as_mut() {
            r.on_packet(now, packet);
            self.unreported |= r.has_pending();
        } else if let Some(r) = self.ccfb.as_mut() {
            if let Some((ssrc, seq)) = ssrc_seq(packet) {
                r.on_packet(now, ssrc, seq);
                self.unreported = true;
            }
        } else if let Some(seq) = packet_transport_cc_seq(packet, self.params.transport_cc_id) {
            self.recorder.on_packet(now, seq);
            self.unreported = true;
        }
    }

    /// When feedback is next due, if there is anything to report.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.unreported.then_some(self.next_feedback)
    }

    /// Judges a picture handed over at `now`, with `queued_bytes` waiting in the pacer and
    /// `since_last` since the previous picture.
    pub(super) fn judge_picture(
        &mut self,
        picture: &[u8],
        queued_bytes: usize,
        since_last: Option<Duration>,
    ) -> PictureVerdict {
        if let Some(d) = since_last {
            let d = d.clamp(PICTURE_INTERVAL_MIN, PICTURE_INTERVAL_MAX);
            self.picture_interval = (self.picture_interval * 7 + d) / 8;
        }
        let bound = self.picture_interval * self.params.max_queue_pictures.max(1);
        let drain = Duration::from_secs_f64(queued_bytes as f64 / self.pacer_rate().max(1.0));
        let over = drain > bound;
        let (key, non_reference) = self.kind_of(picture);
        let verdict = if self.dropping {
            if !over && key {
                self.dropping = false;
                PictureVerdict::Send
            } else if !over && !self.asked_key {
                self.asked_key = true;
                PictureVerdict::DropAndAskKey
            } else {
                PictureVerdict::Drop
            }
        } else if !over {
            PictureVerdict::Send
        } else {
            // A picture nothing refers to goes alone; any other takes what follows with it.
            if !non_reference {
                self.dropping = true;
                self.asked_key = false;
            }
            PictureVerdict::Drop
        };
        if verdict != PictureVerdict::Send {
            self.pictures_dropped += 1;
        }
        verdict
    }

    /// Whether `picture` is a key picture, and whether no other picture refers to it.
    fn kind_of(&self, picture: &[u8]) -> (bool, bool) {
        match self.codec {
            VideoCodec::H264 => {
                let (mut key, mut any_vcl, mut referenced) = (false, false, false);
                for r in nal_units(picture) {
                    let Some(&h) = picture.get(r.start) else {
                        continue;
                    };
                    let t = nal_type(h);
                    key |= t == NAL_IDR;
                    if is_vcl(t) {
                        any_vcl = true;
                        referenced |= h & 0x60 != 0;
                    }
                }
                (key, any_vcl && !referenced)
            }
            VideoCodec::Vp8 => (is_vp8_keyframe(picture), false),
        }
    }
}

/// The SSRC and sequence number of a whole RTP packet.
fn ssrc_seq(packet: &[u8]) -> Option<(u32, u16)> {
    let h = packet.get(..12)?;
    Some((
        u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        u16::from_be_bytes([h[2], h[3]]),
    ))
}

impl StreamCore {
    /// Feedback from the peer about the packets we stamped.
    pub(super) fn on_transport_feedback(&mut self, now: Instant, fb: &TwccFeedback) {
        let Some(cc) = self.cc.as_mut() else {
            return;
        };
        if self.rtt.is_measured() {
            cc.bwe.on_rtt(self.rtt.rtt());
        }
        let before = cc.bwe.stats().feedback;
        cc.bwe.on_transport_feedback(now, fb);
        if cc.bwe.stats().feedback > before {
            cc.feedback_received += 1;
        }
        self.apply_estimate(now);
        self.send_probes(now);
    }

    /// Sends what is due at `now` of a probe cluster the estimator asks for: RTX copies of the
    /// packets that left last (the receiver keeps one it lost, drops the others as duplicates),
    /// at the cluster's rate and outside the pacer, which runs at the estimate the probe is to
    /// test. Only with RTX: a copy on the media stream would be a duplicate in the receiver's
    /// loss statistics.
    pub(super) fn send_probes(&mut self, now: Instant) {
        let (Some(cc), Some(v)) = (self.cc.as_mut(), self.video_out.as_mut()) else {
            return;
        };
        // Only transport-wide feedback reports each probe packet.
        if v.rtx.is_none() || cc.params.feedback != CcFeedback::TransportCc {
            return;
        }
        let newest = self.rtp.next_sequence().wrapping_sub(1);
        let media_pt = self.rtp.payload_type();
        let Some(rtx) = v.rtx.as_mut() else {
            return;
        };
        let usable = |seq: u16| {
            v.history.is_sent(seq)
                && v.history.check_resend(seq, now, Duration::ZERO).is_ok()
                && v.history.get(seq).and_then(|b| b.get(1)).map(|b| b & 0x7f) == Some(media_pt)
        };
        for _ in 0..MAX_PROBE_PACKETS_PER_CALL {
            if cc.probe.is_none() {
                if !cc.bwe.probe_due(now) {
                    return;
                }
                // Nothing has left yet to copy: the estimator keeps its reasons to probe.
                let Some(anchor) = (0..PROBE_SCAN)
                    .map(|k| newest.wrapping_sub(k))
                    .find(|&s| usable(s))
                else {
                    return;
                };
                cc.probe = cc.bwe.poll_probe(now).map(|cluster| ProbeOut {
                    cluster,
                    bytes: 0,
                    packets: 0,
                    start: now,
                    next_at: now,
                    anchor,
                    back: 0,
                });
            }
            let Some(p) = cc.probe.as_mut() else {
                return;
            };
            if p.next_at > now {
                return;
            }
            let source = (0..PROBE_SOURCES)
                .map(|k| p.anchor.wrapping_sub((p.back + k) % PROBE_SOURCES))
                .find(|&s| usable(s));
            let Some((seq, bytes)) = source.and_then(|s| Some((s, v.history.get(s)?))) else {
                // The history moved on: the cluster lapses (the estimator gives up on it).
                cc.probe = None;
                return;
            };
            p.back = p.anchor.wrapping_sub(seq).wrapping_add(1) % PROBE_SOURCES;
            let mut buf = self.pool.take();
            buf.clear();
            if wrap_rtx(bytes, rtx.payload_type, rtx.ssrc, rtx.seq, &mut buf).is_err() {
                self.pool.give(buf);
                cc.probe = None;
                return;
            }
            rtx.seq = rtx.seq.wrapping_add(1);
            cc.stamp(now, &mut buf);
            queue_rtp(&mut self.stats, &mut self.transmits, self.remotes.rtp, buf);
        }
    }

    /// RFC 8888 feedback from the peer about the packets we sent.
    pub(super) fn on_ccfb(&mut self, now: Instant, fb: &Ccfb) {
        let Some(cc) = self.cc.as_mut() else {
            return;
        };
        if cc.params.feedback != CcFeedback::Ccfb {
            return;
        }
        if self.rtt.is_measured() {
            cc.bwe.on_rtt(self.rtt.rtt());
        }
        let before = cc.bwe.stats().feedback;
        cc.bwe.on_ccfb(now, fb);
        if cc.bwe.stats().feedback > before {
            cc.feedback_received += 1;
        }
        self.apply_estimate(now);
    }

    /// A REMB from the peer covering our SSRC: a cap on the estimate.
    pub(super) fn on_remb(&mut self, now: Instant, bps: u64) {
        let Some(cc) = self.cc.as_mut() else {
            return;
        };
        cc.feedback_received += 1;
        cc.bwe.on_remb(bps);
        self.apply_estimate(now);
    }

    /// Points the pacer at the current estimate, and tells the application when it moved by more
    /// than [`TARGET_EVENT_SHARE`].
    pub(super) fn apply_estimate(&mut self, now: Instant) {
        let Some(cc) = self.cc.as_mut() else {
            return;
        };
        if let Some(v) = self.video_out.as_mut() {
            v.pacer.set_target_rate(now, Some(cc.pacer_rate()));
        }
        let target = cc.bwe.target_bps();
        let moved = target.abs_diff(cc.announced) as f64;
        if moved > cc.announced as f64 * TARGET_EVENT_SHARE {
            cc.announced = target;
            self.events.push_back(StreamEvent::TargetBitrate {
                bps: target,
                reason: cc.bwe.reason(),
            });
        }
    }

    /// The estimator's own counters (feedback used, packets reported received and lost), when
    /// congestion control runs.
    pub fn congestion_stats(&self) -> Option<BweStats> {
        self.cc.as_ref().map(|cc| cc.bwe.stats())
    }

    /// What the estimator last decided and why.
    pub fn target_bitrate(&self) -> Option<(u64, RateReason)> {
        let cc = self.cc.as_ref()?;
        Some((cc.bwe.target_bps(), cc.bwe.reason()))
    }

    /// Whether the picture handed over at `now` may be sent; counts and acts on a drop.
    pub(super) fn admit_picture(&mut self, now: Instant, picture: &[u8]) -> bool {
        let (Some(cc), Some(v)) = (self.cc.as_mut(), self.video_out.as_mut()) else {
            return true;
        };
        let since_last = v.last_picture_at.map(|t| now.saturating_duration_since(t));
        let verdict = cc.judge_picture(picture, v.pacer.queued_bytes(), since_last);
        if verdict == PictureVerdict::Send {
            return true;
        }
        v.last_picture_at = Some(now);
        if verdict == PictureVerdict::DropAndAskKey {
            self.events
                .push_back(StreamEvent::KeyframeRequested(KeyframeRequest::Pli));
        }
        false
    }

    /// Sends transport-wide feedback when it is due.
    pub(super) fn send_transport_feedback(&mut self, now: Instant) {
        let due = self
            .cc
            .as_ref()
            .and_then(|cc| cc.poll_timeout())
            .is_some_and(|t| t <= now);
        if !due {
            return;
        }
        let media = self.rx_stats.as_ref().map_or(0, |s| s.ssrc());
        if self.cc.as_ref().is_some_and(|cc| cc.remote.is_some()) {
            self.send_remb(now, media);
            return;
        }
        for _ in 0..MAX_FEEDBACK_PER_TIMEOUT {
            let mut buf = self.buffer();
            // A compound starts with a report (RFC 3550 §6.1); the feedback follows it.
            let reported = self.build_report_into(now, &mut buf).is_ok();
            let Some(cc) = self.cc.as_mut() else {
                self.recycle(buf);
                return;
            };
            let built = match (reported, cc.ccfb.as_mut()) {
                (false, _) => None,
                (true, Some(r)) => r.poll_feedback(now, &mut buf, self.ssrc),
                (true, None) => cc.recorder.poll_feedback(&mut buf, self.ssrc, media),
            };
            if reported && built.is_some() {
                cc.feedback_sent += 1;
                self.push_rtcp(buf);
            } else {
                self.recycle(buf);
                break;
            }
        }
        if let Some(cc) = self.cc.as_mut() {
            cc.unreported = false;
            cc.next_feedback = now + cc.params.feedback_interval;
        }
    }

    /// With REMB agreed: feeds the arrivals to the receiver's estimate and sends a REMB about
    /// the peer's `media` source when one is due.
    fn send_remb(&mut self, now: Instant, media: u32) {
        let rtt = self.rtt.is_measured().then(|| self.rtt.rtt());
        let Some(cc) = self.cc.as_mut() else {
            return;
        };
        cc.unreported = false;
        cc.next_feedback = now + cc.params.feedback_interval;
        let Some(r) = cc.remote.as_mut() else {
            return;
        };
        if let Some(rtt) = rtt {
            r.on_rtt(rtt);
        }
        let Some(bps) = r.poll(now) else {
            return;
        };
        let mut buf = self.buffer();
        // A compound starts with a report (RFC 3550 §6.1); the REMB follows it.
        if self.build_report_into(now, &mut buf).is_ok()
            && remb::build(&mut buf, self.ssrc, bps, &[media]).is_ok()
        {
            if let Some(cc) = self.cc.as_mut() {
                cc.feedback_sent += 1;
            }
            self.push_rtcp(buf);
        } else {
            self.recycle(buf);
        }
    }

    /// The receiver's own estimate, when REMB was agreed (what its REMBs say).
    pub fn remb_estimate(&self) -> Option<u64> {
        let r = self.cc.as_ref()?.remote.as_ref()?;
        Some(r.estimate_bps())
    }
}
