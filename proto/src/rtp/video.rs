//! The receive pipeline of one video stream: RTP packets in, [`VideoFrame`]s out.
//!
//! Packets are put back in order, fed to the codec's depacketizer, and grouped into pictures by
//! RTP timestamp. A picture is whole only if its marker packet arrived and nothing before it went
//! missing; anything else is dropped (or flagged, on request), because a decoder fed a broken
//! picture shows garbage until the next keyframe anyway. After a loss the receiver asks for a
//! keyframe (at most once per `pli_interval`) and, by default, holds back pictures until one comes.
//!
//! The codec is behind [`Depacketizer`], so the same pipeline serves H.264 and VP8. Pure: time is
//! passed in, and [`VideoReceiver::next_deadline`] says when to call [`VideoReceiver::poll`].

use std::time::{Duration, Instant};

use super::pool::BufPool;
use super::reorder::{PushOutcome, ReorderBuffer, ReorderConfig, ReorderStats};
use super::RtpMeta;
use crate::codec::annexb::{nal_type, NAL_IDR, NAL_PPS, NAL_SPS};
#[cfg(any(test, feature = "_internals"))]
use crate::codec::h264::H264Depacketizer;
use crate::codec::{Depacketizer, DepacketizerStats, PictureBuf};
use crate::frame::{Delivery, VideoCodec, VideoFrame};

/// How a [`VideoReceiver`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoReceiverConfig {
    /// RTP clock rate of the stream (90000 for every common video payload format).
    pub clock_rate: u32,
    /// One frame per picture or one per NAL unit (H.264 only; VP8 is always one per picture).
    pub delivery: Delivery,
    /// Deliver pictures that lost packets, flagged `complete: false`, instead of dropping them.
    /// Pictures held back by the keyframe gate stay held back either way.
    pub deliver_incomplete: bool,
    /// After a loss (and at the start), drop pictures until a complete keyframe arrives, so a
    /// decoder is never fed pictures that refer to ones it does not have.
    pub wait_for_keyframe: bool,
    /// The shortest time between two keyframe requests.
    pub pli_interval: Duration,
    /// How long and how far to wait for packets that arrive out of order.
    pub reorder: ReorderConfig,
}

impl Default for VideoReceiverConfig {
    fn default() -> Self {
        VideoReceiverConfig {
            clock_rate: 90_000,
            delivery: Delivery::AccessUnit,
            deliver_incomplete: false,
            wait_for_keyframe: true,
            pli_interval: Duration::from_millis(500),
            reorder: ReorderConfig::default(),
        }
    }
}

/// Counters of a [`VideoReceiver`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VideoReceiverStats {
    /// RTP packets offered.
    pub packets: u64,
    /// Frames delivered (pictures, or NAL units with `Delivery::NalUnit`).
    pub frames: u64,
    /// Delivered frames flagged as keyframes.
    pub keyframes: u64,
    /// Pictures dropped because packets of them were lost or unusable.
    pub incomplete_dropped: u64,
    /// Whole pictures dropped while waiting for a keyframe.
    pub gated_dropped: u64,
    /// Keyframe requests handed out by [`VideoReceiver::take_keyframe_request`].
    pub keyframe_requests: u64,
    /// Times the sender's SSRC changed and the stream started over.
    pub ssrc_changes: u64,
    pub reorder: ReorderStats,
    pub depacketizer: DepacketizerStats,
}

/// A packet waiting in the reorder window. `payload` is `None` only for a packet going straight
/// through, whose bytes are still the caller's.
struct Held {
    meta: RtpMeta,
    payload: Option<Vec<u8>>,
    /// A sequence number of the stream that carries no media (an FEC packet): it fills its
    /// place in the order and is then skipped.
    filler: bool,
}

/// Keeps this many spare payload buffers for packets that have to wait, so reordering does not
/// allocate once warmed up (up to a key picture's worth; a bigger backlog allocates).
const POOL_MAX: usize = 256;

/// The receive pipeline of one video stream (see the module documentation).
pub struct VideoReceiver {
    cfg: VideoReceiverConfig,
    depack: Box<dyn Depacketizer>,
    reorder: ReorderBuffer<Held>,
    pic: PictureBuf,
    pool: BufPool,
    ssrc: Option<u32>,
    /// RTP timestamp of the picture being assembled.
    cur_ts: Option<u32>,
    cur_ms: f64,
    /// Last RTP timestamp seen and its unwrapped value relative to the stream's first one.
    unwrap: Option<(u32, i64)>,
    /// Where `timestamp_ms` of a new SSRC starts, so time keeps running across a sender restart.
    ms_offset: f64,
    sequence: u64,
    gate_closed: bool,
    want_keyframe: bool,
    last_request: Option<Instant>,
    /// Look back this many packets for the start of the first picture, for this long (see
    /// [`VideoReceiver::set_start_probe`]).
    start_probe: Option<(u16, Duration)>,
    /// The first packet of the source (sequence number, timestamp) while packets before it may
    /// still come out of the jitter buffer.
    prestart: Option<(u16, u32)>,
    /// A start probe begun and not yet taken by [`VideoReceiver::take_start_probe`].
    probe_begun: Option<(u16, u16)>,
    stats: VideoReceiverStats,
    /// A loss found before a filler, carried to the next media packet.
    carry_loss: bool,
    /// Passthrough ([`VideoReceiver::set_passthrough`]): no keyframe gate, damaged pictures
    /// delivered, whatever `cfg` says.
    passthrough: bool,
}

impl std::fmt::Debug for VideoReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoReceiver")
            .field("codec", &self.depack.codec())
            .field("cfg", &self.cfg)
            .field("ssrc", &self.ssrc)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl VideoReceiver {
    /// A receiver for the codec of `depack`.
    pub fn new(cfg: VideoReceiverConfig, depack: Box<dyn Depacketizer>) -> Self {
        VideoReceiver {
            reorder: ReorderBuffer::new(cfg.reorder),
            depack,
            pic: PictureBuf::default(),
            pool: BufPool::new(POOL_MAX.min(cfg.reorder.window + 4)),
            ssrc: None,
            cur_ts: None,
            cur_ms: 0.0,
            unwrap: None,
            ms_offset: 0.0,
            sequence: 0,
            gate_closed: cfg.wait_for_keyframe,
            want_keyframe: false,
            last_request: None,
            start_probe: None,
            prestart: None,
            probe_begun: None,
            stats: VideoReceiverStats::default(),
            carry_loss: false,
            passthrough: false,
            cfg,
        }
    }

    /// Turns passthrough on or off, at once (roomkit's `set_video_passthrough`): while it is
    /// on, every picture assembled is delivered, damaged ones flagged `complete: false`, with no
    /// wait for a keyframe (as if `deliver_incomplete` were on and `wait_for_keyframe` off).
    /// Off brings back the configured behaviour from the next loss on.
    pub fn set_passthrough(&mut self, on: bool) {
        self.passthrough = on;
        if on {
            self.gate_closed = false;
        }
    }

    /// Whether passthrough is on.
    #[must_use]
    pub fn passthrough(&self) -> bool {
        self.passthrough
    }

    fn waits_for_keyframe(&self) -> bool {
        self.cfg.wait_for_keyframe && !self.passthrough
    }

    fn delivers_incomplete(&self) -> bool {
        self.cfg.deliver_incomplete || self.passthrough
    }

    /// When a source's first packet does not certainly begin a picture (the depacketizer cannot
    /// tell, e.g. an H.264 IDR slice without parameter sets before it), wait up to `wait` for the
    /// `count` packets before it: packets of the same picture may have been lost. They are asked
    /// for with NACKs ([`Self::take_start_probe`]); ones that arrive with another timestamp
    /// belong to an earlier picture and are dropped quietly. Without this, losing the first
    /// packet of a stream would deliver its first picture without its start.
    pub fn set_start_probe(&mut self, count: u16, wait: Duration) {
        self.start_probe = (count > 0).then_some((count, wait));
    }

    /// The start probe begun by the last packet, if any: the first packet's sequence number and
    /// how many before it to ask for.
    pub fn take_start_probe(&mut self) -> Option<(u16, u16)> {
        self.probe_begun.take()
    }

    /// An H.264 receiver.
    #[cfg(any(test, feature = "_internals"))]
    pub fn h264(cfg: VideoReceiverConfig) -> Self {
        Self::new(cfg, Box::new(H264Depacketizer::new()))
    }

    /// The codec received.
    #[cfg(any(test, feature = "_internals"))]
    pub fn codec(&self) -> VideoCodec {
        self.depack.codec()
    }

    /// The configuration in use.
    #[cfg(any(test, feature = "_internals"))]
    pub fn config(&self) -> &VideoReceiverConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> VideoReceiverStats {
        VideoReceiverStats {
            reorder: self.reorder.stats(),
            depacketizer: self.depack.stats(),
            ..self.stats
        }
    }

    /// Feeds one RTP packet that arrived at `now`; finished frames are appended to `out`. A packet
    /// that arrives in order is depacketized straight from `payload`; one that has to wait is copied.
    /// Says whether the packet was taken, or dropped as a duplicate or as late.
    pub fn push(
        &mut self,
        meta: RtpMeta,
        payload: &[u8],
        now: Instant,
        out: &mut Vec<VideoFrame>,
    ) -> PushOutcome {
        self.stats.packets += 1;
        self.check_ssrc(meta.ssrc, now, out);
        self.maybe_probe_start(&meta, payload, now);
        let outcome = if self.reorder.is_next(meta.sequence) {
            self.pass_through(meta, payload, now, out)
        } else {
            let mut buf = self.pool.take();
            buf.clear();
            buf.extend_from_slice(payload);
            self.hold(meta, buf, now)
        };
        self.drain(now, out);
        outcome
    }

    /// Takes the place of sequence number `meta.sequence` without media (an FEC packet on the
    /// media's sequence numbers), so the jitter buffer sees no gap there.
    pub fn push_filler(
        &mut self,
        meta: RtpMeta,
        now: Instant,
        out: &mut Vec<VideoFrame>,
    ) -> PushOutcome {
        self.check_ssrc(meta.ssrc, now, out);
        let outcome = self.reorder.push(
            meta.sequence,
            Held {
                meta,
                payload: None,
                filler: true,
            },
            now,
        );
        self.drain(now, out);
        outcome
    }

    /// Changes how long pictures behind a gap are held (the NACK deadline, which follows the RTT).
    pub fn set_max_delay(&mut self, max_delay: Duration) {
        self.reorder.set_max_delay(max_delay);
    }

    /// The sequence number the receiver expects next: every packet before it was used or given
    /// up on.
    pub fn next_expected_seq(&self) -> Option<u16> {
        self.reorder.next_seq()
    }

    /// The media source being received.
    #[cfg(any(test, feature = "_internals"))]
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Like [`Self::push`], for a payload the caller already owns: a packet that has to wait keeps
    /// it instead of a copy.
    #[cfg(any(test, feature = "_internals"))]
    pub fn push_owned(
        &mut self,
        meta: RtpMeta,
        payload: Vec<u8>,
        now: Instant,
        out: &mut Vec<VideoFrame>,
    ) -> PushOutcome {
        self.stats.packets += 1;
        self.check_ssrc(meta.ssrc, now, out);
        self.maybe_probe_start(&meta, &payload, now);
        let outcome = if self.reorder.is_next(meta.sequence) {
            let o = self.pass_through(meta, &payload, now, out);
            self.recycle(payload);
            o
        } else {
            self.hold(meta, payload, now)
        };
        self.drain(now, out);
        outcome
    }

    /// Gives up on gaps whose time is up and delivers what that releases. Call it at
    /// [`Self::next_deadline`].
    pub fn poll(&mut self, now: Instant, out: &mut Vec<VideoFrame>) {
        self.drain(now, out);
        self.pool.trim(now);
    }

    /// The stream has ended: gives up on every gap and closes the picture in progress (incomplete
    /// if its marker packet never came).
    pub fn flush(&mut self, now: Instant, out: &mut Vec<VideoFrame>) {
        self.reorder.flush();
        self.drain(now, out);
        self.finish_picture(false, out);
    }

    /// When [`Self::poll`] or [`Self::take_keyframe_request`] next has something to do without
    /// new packets: a gap to give up on, or a rate-limited keyframe request coming due. A request
    /// that is due at once is not a deadline; check [`Self::take_keyframe_request`] after every
    /// push and poll.
    pub fn next_deadline(&self) -> Option<Instant> {
        let retry = if self.want_keyframe {
            self.last_request.map(|t| t + self.cfg.pli_interval)
        } else {
            None
        };
        match (self.reorder.next_deadline(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a keyframe should be requested from the sender now (a PLI). True at most once per
    /// `pli_interval`; a request that was rate-limited stays pending until it is allowed.
    pub fn take_keyframe_request(&mut self, now: Instant) -> bool {
        if !self.want_keyframe {
            return false;
        }
        if let Some(last) = self.last_request {
            if now < last + self.cfg.pli_interval {
                return false;
            }
        }
        self.last_request = Some(now);
        self.want_keyframe = false;
        self.stats.keyframe_requests += 1;
        true
    }

    /// Whether a keyframe is wanted (a request is pending, possibly rate-limited).
    #[cfg(any(test, feature = "_internals"))]
    pub fn keyframe_wanted(&self) -> bool {
        self.want_keyframe
    }

    /// Whether pictures are being held back until a keyframe arrives.
    #[cfg(any(test, feature = "_internals"))]
    pub fn waiting_for_keyframe(&self) -> bool {
        self.gate_closed
    }

    /// At a source's first packet, starts the jitter buffer a few packets early when the packet
    /// may not open its picture.
    fn maybe_probe_start(&mut self, meta: &RtpMeta, payload: &[u8], now: Instant) {
        let Some((count, wait)) = self.start_probe else {
            return;
        };
        if let Some((first_seq, first_ts)) = self.prestart {
            // A packet from before the first one that shows where the first picture begins: its
            // start, or the end of the picture before it. No need to wait any longer.
            if (meta.sequence.wrapping_sub(first_seq) as i16) < 0 {
                if self.depack.starts_picture(payload) {
                    self.reorder.settle_start(meta.sequence, now);
                } else if meta.timestamp != first_ts && meta.marker {
                    self.reorder
                        .settle_start(meta.sequence.wrapping_add(1), now);
                }
            }
            return;
        }
        if self.reorder.next_seq().is_some() || self.depack.starts_picture(payload) {
            return;
        }
        self.reorder.start_before(meta.sequence, count, now + wait);
        self.prestart = Some((meta.sequence, meta.timestamp));
        self.probe_begun = Some((meta.sequence, count));
    }

    fn check_ssrc(&mut self, ssrc: u32, now: Instant, out: &mut Vec<VideoFrame>) {
        match self.ssrc {
            Some(s) if s != ssrc => {
                // Deliver what the old stream still had, then start over.
                self.flush(now, out);
                self.reorder.reset();
                self.ms_offset = self.cur_ms;
                self.unwrap = None;
                self.gate_closed = self.waits_for_keyframe();
                self.prestart = None;
                self.stats.ssrc_changes += 1;
                self.ssrc = Some(ssrc);
            }
            Some(_) => {}
            None => self.ssrc = Some(ssrc),
        }
    }

    fn pass_through(
        &mut self,
        meta: RtpMeta,
        payload: &[u8],
        now: Instant,
        out: &mut Vec<VideoFrame>,
    ) -> PushOutcome {
        let outcome = self.reorder.push(
            meta.sequence,
            Held {
                meta,
                payload: None,
                filler: false,
            },
            now,
        );
        // Nothing was waiting, so what comes out is the packet just pushed.
        if let Some((held, lost)) = self.reorder.pop(now) {
            match held.payload {
                Some(buf) => {
                    self.process(held.meta, &buf, lost, out);
                    self.recycle(buf);
                }
                None => self.process(held.meta, payload, lost, out),
            }
        }
        outcome
    }

    fn hold(&mut self, meta: RtpMeta, payload: Vec<u8>, now: Instant) -> PushOutcome {
        self.reorder.push(
            meta.sequence,
            Held {
                meta,
                payload: Some(payload),
                filler: false,
            },
            now,
        )
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<VideoFrame>) {
        while let Some((held, lost)) = self.reorder.pop(now) {
            if held.filler {
                self.carry_loss |= lost;
                continue;
            }
            let buf = held.payload.unwrap_or_default();
            self.process(held.meta, &buf, lost, out);
            self.recycle(buf);
        }
    }

    /// One packet, in sequence order.
    fn process(
        &mut self,
        meta: RtpMeta,
        payload: &[u8],
        lost_before: bool,
        out: &mut Vec<VideoFrame>,
    ) {
        let lost_before = lost_before || std::mem::take(&mut self.carry_loss);
        if let Some((first_seq, first_ts)) = self.prestart {
            if (meta.sequence.wrapping_sub(first_seq) as i16) >= 0 {
                // The first packet or anything after it: the tentative start is over.
                self.prestart = None;
            } else if meta.timestamp != first_ts {
                // Before the first packet and of another picture: the tail of a picture we never
                // had the start of, not part of the stream we deliver.
                return;
            }
        }
        if lost_before {
            self.note_loss();
        }
        if self.cur_ts.is_some_and(|ts| ts != meta.timestamp) {
            // The timestamp moved on without a marker: the previous picture lost its end.
            self.finish_picture(false, out);
        }
        if self.cur_ts.is_none() {
            self.begin_picture(meta.timestamp);
        }
        // Missing packets may have belonged to this picture's start, so it counts as damaged even
        // when it is the first packet of the picture.
        self.depack.push(payload, lost_before, &mut self.pic);
        if meta.marker {
            self.finish_picture(true, out);
        }
    }

    fn begin_picture(&mut self, ts: u32) {
        let ext = match self.unwrap {
            None => 0,
            Some((last, ext)) => ext + i64::from(ts.wrapping_sub(last) as i32),
        };
        self.unwrap = Some((ts, ext));
        self.cur_ts = Some(ts);
        self.cur_ms = self.ms_offset + ext as f64 * 1000.0 / f64::from(self.cfg.clock_rate.max(1));
    }

    fn note_loss(&mut self) {
        self.want_keyframe = true;
        if self.waits_for_keyframe() {
            self.gate_closed = true;
        }
    }

    fn finish_picture(&mut self, marker_seen: bool, out: &mut Vec<VideoFrame>) {
        let Some(ts) = self.cur_ts.take() else {
            return;
        };
        self.depack.finish(&mut self.pic);
        if !marker_seen {
            self.pic.damaged = true;
        }
        let complete = !self.pic.damaged;
        let deliver = if !complete {
            self.note_loss();
            if self.delivers_incomplete() && !self.gate_closed && !self.pic.units.is_empty() {
                true
            } else {
                self.stats.incomplete_dropped += 1;
                false
            }
        } else if self.pic.units.is_empty() {
            false
        } else if self.pic.keyframe {
            self.gate_closed = false;
            self.want_keyframe = false;
            true
        } else if self.gate_closed {
            self.stats.gated_dropped += 1;
            self.want_keyframe = true;
            false
        } else {
            true
        };
        if deliver {
            self.emit(ts, complete, out);
        }
        self.pic.clear();
    }

    fn emit(&mut self, ts: u32, complete: bool, out: &mut Vec<VideoFrame>) {
        let codec = self.depack.codec();
        let per_nal = codec == VideoCodec::H264 && self.cfg.delivery == Delivery::NalUnit;
        if per_nal {
            for r in &self.pic.units {
                let nal = &self.pic.data[r.clone()];
                let keyframe = matches!(nal_type(nal[0]), NAL_IDR | NAL_SPS | NAL_PPS);
                out.push(VideoFrame {
                    data: nal.to_vec(),
                    codec,
                    timestamp_ms: self.cur_ms,
                    rtp_timestamp: ts,
                    keyframe,
                    sequence: self.sequence,
                    complete,
                });
                self.sequence += 1;
                self.stats.frames += 1;
                self.stats.keyframes += u64::from(keyframe);
            }
        } else {
            // The picture's buffer becomes the frame; the next picture gets a fresh one of the same
            // size, so the bytes are never copied.
            let size = self.pic.data.len();
            let data = std::mem::replace(&mut self.pic.data, Vec::with_capacity(size));
            let keyframe = self.pic.keyframe;
            out.push(VideoFrame {
                data,
                codec,
                timestamp_ms: self.cur_ms,
                rtp_timestamp: ts,
                keyframe,
                sequence: self.sequence,
                complete,
            });
            self.sequence += 1;
            self.stats.frames += 1;
            self.stats.keyframes += u64::from(keyframe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::h264::{H264Packetizer, PacketizationMode};
    use crate::codec::testclip::h264_picture;
    use crate::codec::{Packetizer, PayloadList};

    const SSRC: u32 = 0x1234_5678;

    struct Sender {
        pk: H264Packetizer,
        seq: u16,
        ssrc: u32,
    }

    impl Sender {
        fn new(seq: u16, mtu: usize) -> Self {
            Sender {
                pk: H264Packetizer::new(mtu, PacketizationMode::NonInterleaved),
                seq,
                ssrc: SSRC,
            }
        }

        fn picture(&mut self, pic: &[u8], ts: u32) -> Vec<(RtpMeta, Vec<u8>)> {
            let mut list = PayloadList::new();
            self.pk.packetize(pic, &mut list).unwrap();
            (0..list.len())
                .map(|i| {
                    let meta = RtpMeta {
                        payload_type: 96,
                        marker: list.marker(i),
                        sequence: self.seq,
                        timestamp: ts,
                        ssrc: self.ssrc,
                    };
                    self.seq = self.seq.wrapping_add(1);
                    (meta, list.payload(i, pic))
                })
                .collect()
        }
    }

    /// A NAL unit of `len` bytes, for the pictures whose make-up is the point of a test.
    fn nal(kind: u8, len: usize, fill: u8) -> Vec<u8> {
        let mut v = vec![0x60 | kind];
        v.resize(len, fill | 1);
        v
    }

    fn annexb(nals: &[Vec<u8>]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
            .collect()
    }

    /// SPS, PPS and an IDR slice of 3000 bytes (its NAL unit starts at byte 24).
    fn idr_picture() -> Vec<u8> {
        h264_picture(true, 24 + 3000, 0x30)
    }

    /// One P slice of `len` bytes.
    fn p_slice(len: usize, seed: u8) -> Vec<u8> {
        h264_picture(false, 4 + len, seed.into())
    }

    fn p_picture(seed: u8) -> Vec<u8> {
        p_slice(700, seed)
    }

    fn feed(rx: &mut VideoReceiver, pkts: &[(RtpMeta, Vec<u8>)], now: Instant) -> Vec<VideoFrame> {
        let mut out = Vec::new();
        for (m, p) in pkts {
            rx.push(*m, p, now, &mut out);
        }
        out
    }

    fn cfg() -> VideoReceiverConfig {
        VideoReceiverConfig::default()
    }

    #[test]
    fn whole_pictures_as_access_units() {
        let mut tx = Sender::new(100, 1200);
        let mut rx = VideoReceiver::h264(cfg());
        let now = Instant::now();
        let idr = idr_picture();
        let p = p_picture(0x40);
        let mut out = feed(&mut rx, &tx.picture(&idr, 9000), now);
        out.extend(feed(&mut rx, &tx.picture(&p, 12000), now));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, idr);
        assert!(out[0].keyframe && out[0].complete);
        assert_eq!(out[0].sequence, 0);
        assert_eq!(out[0].timestamp_ms, 0.0);
        assert_eq!(out[0].rtp_timestamp, 9000);
        assert_eq!(out[1].data, p);
        assert!(!out[1].keyframe);
        assert_eq!(out[1].sequence, 1);
        assert!((out[1].timestamp_ms - 1000.0 / 30.0).abs() < 1e-9);
        assert_eq!(out[0].codec, VideoCodec::H264);
        let s = rx.stats();
        assert_eq!((s.frames, s.keyframes, s.packets), (2, 1, 5));
        assert!(!rx.take_keyframe_request(now));
    }

    #[test]
    fn nal_unit_delivery() {
        let mut tx = Sender::new(0, 1200);
        let mut rx = VideoReceiver::h264(VideoReceiverConfig {
            delivery: Delivery::NalUnit,
            ..cfg()
        });
        let now = Instant::now();
        let mut out = feed(&mut rx, &tx.picture(&idr_picture(), 0), now);
        out.extend(feed(&mut rx, &tx.picture(&p_picture(0x40), 3000), now));
        let kinds: Vec<(u8, bool, u64)> = out
            .iter()
            .map(|f| (nal_type(f.data[0]), f.keyframe, f.sequence))
            .collect();
        assert_eq!(
            kinds,
            vec![(7, true, 0), (8, true, 1), (5, true, 2), (1, false, 3)]
        );
        assert_eq!(out[2].data, idr_picture()[24..]);
        assert_eq!(out[3].timestamp_ms, out[3].rtp_timestamp as f64 / 90.0);
    }

    #[test]
    fn timestamp_wraps_at_2_pow_32() {
        let mut tx = Sender::new(65534, 1200);
        let mut rx = VideoReceiver::h264(cfg());
        let now = Instant::now();
        let ts0 = u32::MAX - 2999;
        let mut out = feed(&mut rx, &tx.picture(&idr_picture(), ts0), now);
        out.extend(feed(
            &mut rx,
            &tx.picture(&p_picture(2), ts0.wrapping_add(3000)),
            now,
        ));
        out.extend(feed(
            &mut rx,
            &tx.picture(&p_picture(4), ts0.wrapping_add(6000)),
            now,
        ));
        let ms: Vec<f64> = out.iter().map(|f| f.timestamp_ms).collect();
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].rtp_timestamp, 0);
        for (i, m) in ms.iter().enumerate() {
            assert!((m - i as f64 * 1000.0 / 30.0).abs() < 1e-6, "{ms:?}");
        }
    }

    #[test]
    fn loss_drops_the_picture_requests_a_keyframe_and_gates() {
        let mut tx = Sender::new(10, 1200);
        let mut rx = VideoReceiver::h264(cfg());
        let t = Instant::now();
        let out = feed(&mut rx, &tx.picture(&idr_picture(), 0), t);
        assert_eq!(out.len(), 1);
        // Second picture: IDR-sized, lose its middle fragment.
        let mut pkts = tx.picture(&p_slice(3000, 8), 3000);
        pkts.remove(1);
        let mut out = feed(&mut rx, &pkts, t);
        // Third picture is whole but not a keyframe: held back.
        out.extend(feed(&mut rx, &tx.picture(&p_picture(6), 6000), t));
        // The gap is only given up on after max_delay.
        rx.poll(t + Duration::from_millis(31), &mut out);
        assert!(out.is_empty());
        let s = rx.stats();
        assert_eq!((s.incomplete_dropped, s.gated_dropped), (1, 1));
        assert_eq!(s.reorder.lost, 1);
        assert!(rx.waiting_for_keyframe());
        let later = t + Duration::from_millis(40);
        assert!(rx.take_keyframe_request(later));
        assert!(!rx.take_keyframe_request(later));
        // Another gated picture: the request is pending but rate-limited.
        feed(&mut rx, &tx.picture(&p_picture(8), 9000), later);
        assert!(rx.keyframe_wanted());
        assert_eq!(rx.next_deadline(), Some(later + Duration::from_millis(500)));
        assert!(!rx.take_keyframe_request(later + Duration::from_millis(499)));
        assert!(rx.take_keyframe_request(later + Duration::from_millis(500)));
        // A keyframe opens the gate.
        let out = feed(&mut rx, &tx.picture(&idr_picture(), 12000), later);
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert_eq!(out[0].sequence, 1);
        let out = feed(&mut rx, &tx.picture(&p_picture(10), 15000), later);
        assert_eq!(out.len(), 1);
        assert_eq!(rx.stats().keyframe_requests, 2);
    }

    #[test]
    fn stream_starting_without_keyframe_is_gated() {
        let mut tx = Sender::new(0, 1200);
        let mut rx = VideoReceiver::h264(cfg());
        let t = Instant::now();
        assert!(feed(&mut rx, &tx.picture(&p_picture(1), 0), t).is_empty());
        assert!(rx.take_keyframe_request(t));
        let mut rx = VideoReceiver::h264(VideoReceiverConfig {
            wait_for_keyframe: false,
            ..cfg()
        });
        let mut tx = Sender::new(0, 1200);
        assert_eq!(feed(&mut rx, &tx.picture(&p_picture(1), 0), t).len(), 1);
    }

    #[test]
    fn incomplete_pictures_delivered_on_request() {
        let mut tx = Sender::new(0, 500);
        let mut rx = VideoReceiver::h264(VideoReceiverConfig {
            deliver_incomplete: true,
            wait_for_keyframe: false,
            ..cfg()
        });
        let t = Instant::now();
        let sps = nal(7, 8, 2);
        let mut pkts = tx.picture(&annexb(&[sps.clone(), nal(5, 2000, 4)]), 0);
        pkts.remove(2);
        let mut out = feed(&mut rx, &pkts, t);
        rx.poll(t + Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].complete && !out[0].keyframe);
        // Only the whole SPS survives.
        assert_eq!(out[0].data, annexb(&[sps]));
        assert!(rx.take_keyframe_request(t));
    }

    #[test]
    fn passthrough_toggles_gate_and_damaged_delivery_live() {
        let mut tx = Sender::new(0, 500);
        let mut rx = VideoReceiver::h264(cfg());
        let t = Instant::now();
        // Default: a stream starting without a keyframe is gated.
        assert!(feed(&mut rx, &tx.picture(&p_picture(1), 0), t).is_empty());
        assert!(rx.waiting_for_keyframe());
        // Passthrough on: the gate opens at once, and a damaged picture is delivered, flagged.
        rx.set_passthrough(true);
        assert!(rx.passthrough() && !rx.waiting_for_keyframe());
        assert_eq!(feed(&mut rx, &tx.picture(&p_picture(2), 3000), t).len(), 1);
        // Two slices, the second losing a fragment: the first is delivered.
        let damaged = |seed| annexb(&[nal(1, 300, seed), nal(1, 3000, seed + 1)]);
        let mut pkts = tx.picture(&damaged(8), 6000);
        pkts.remove(2);
        let mut out = feed(&mut rx, &pkts, t);
        rx.poll(t + Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), 1);
        assert!(!out[0].complete);
        let t = t + Duration::from_secs(1);
        assert!(!rx.waiting_for_keyframe(), "a loss does not close the gate");
        // Off: the next loss closes the gate and damaged pictures are dropped again.
        rx.set_passthrough(false);
        let mut pkts = tx.picture(&damaged(10), 9000);
        pkts.remove(2);
        let mut out = feed(&mut rx, &pkts, t);
        rx.poll(t + Duration::from_secs(1), &mut out);
        out.extend(feed(
            &mut rx,
            &tx.picture(&p_picture(3), 12000),
            t + Duration::from_secs(1),
        ));
        assert!(out.is_empty());
        assert!(rx.waiting_for_keyframe());
        assert_eq!(rx.stats().incomplete_dropped, 1);
    }

    #[test]
    fn missing_marker_makes_the_picture_incomplete() {
        let mut tx = Sender::new(0, 1200);
        let mut rx = VideoReceiver::h264(VideoReceiverConfig {
            wait_for_keyframe: false,
            ..cfg()
        });
        let t = Instant::now();
        let mut pkts = tx.picture(&p_picture(1), 0);
        pkts[0].0.marker = false;
        let mut out = feed(&mut rx, &pkts, t);
        out.extend(feed(&mut rx, &tx.picture(&p_picture(2), 3000), t));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rtp_timestamp, 3000);
        assert_eq!(rx.stats().incomplete_dropped, 1);
    }

    #[test]
    fn reordered_packets_make_whole_pictures() {
        let mut tx = Sender::new(65530, 400);
        let mut rx = VideoReceiver::h264(cfg());
        let t = Instant::now();
        let idr = idr_picture();
        // The first packet to arrive starts the stream, so the first picture comes in order.
        assert_eq!(feed(&mut rx, &tx.picture(&idr, 0), t).len(), 1);
        let mut pkts = tx.picture(&idr, 3000);
        pkts.reverse();
        let out = feed(&mut rx, &pkts, t);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, idr);
        assert!(rx.stats().reorder.reordered > 0);
        assert_eq!(rx.stats().reorder.lost, 0);
    }

    #[test]
    fn owned_payloads_and_duplicates() {
        let mut tx = Sender::new(7, 300);
        let mut rx = VideoReceiver::h264(cfg());
        let t = Instant::now();
        let idr = idr_picture();
        let first = tx.picture(&idr, 0);
        let pkts = tx.picture(&idr, 3000);
        let mut out = Vec::new();
        for (m, p) in first.iter().chain(pkts.iter().rev()).chain(pkts.iter()) {
            rx.push_owned(*m, p.clone(), t, &mut out);
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].data, idr);
        assert_eq!(rx.stats().reorder.duplicates, pkts.len() as u64);
    }

    #[test]
    fn ssrc_change_starts_over() {
        let mut tx = Sender::new(0, 1200);
        let mut rx = VideoReceiver::h264(cfg());
        let t = Instant::now();
        let mut out = feed(&mut rx, &tx.picture(&idr_picture(), 0), t);
        out.extend(feed(&mut rx, &tx.picture(&p_picture(1), 3000), t));
        let mut tx2 = Sender::new(40000, 1200);
        tx2.ssrc = 99;
        // The new stream needs a keyframe before its pictures are delivered.
        out.extend(feed(&mut rx, &tx2.picture(&p_picture(2), 777), t));
        out.extend(feed(&mut rx, &tx2.picture(&idr_picture(), 3777), t));
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].sequence, 2);
        assert_eq!(out[2].rtp_timestamp, 3777);
        // Time continues from the old stream rather than jumping back.
        assert!((out[2].timestamp_ms - 2000.0 / 30.0).abs() < 1e-6);
        let s = rx.stats();
        assert_eq!((s.ssrc_changes, s.gated_dropped), (1, 1));
    }

    #[test]
    fn a_lost_first_packet_is_waited_for() {
        let cfg = || {
            let mut rx = VideoReceiver::h264(cfg());
            rx.set_start_probe(4, Duration::from_millis(100));
            rx
        };
        let t = Instant::now();
        let idr = idr_picture();
        let mut tx = Sender::new(50, 1200);
        let pkts = tx.picture(&idr, 0);
        // The parameter sets (first packet) come second: the picture waits for them and is
        // whole, delivered as soon as they show where it begins.
        let mut rx = cfg();
        let mut out = feed(&mut rx, &pkts[1..], t);
        assert!(out.is_empty());
        assert_eq!(rx.take_start_probe(), Some((51, 4)));
        assert_eq!(rx.next_deadline(), Some(t + Duration::from_millis(100)));
        out.extend(feed(&mut rx, &pkts[..1], t + Duration::from_millis(40)));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, idr);
        assert_eq!(rx.stats().reorder.lost, 0);
        // Nothing comes before it: the start of the picture is unknown (its parameter sets may
        // be what was lost, or they travel out of band), so it is not taken as whole: dropped,
        // and a keyframe asked for. A picture delivered as complete without its start would
        // leave the application with an undecodable stream and no request for a new one.
        let mut rx = cfg();
        let mut out = feed(&mut rx, &pkts[1..], t);
        rx.poll(t + Duration::from_millis(99), &mut out);
        assert!(out.is_empty());
        rx.poll(t + Duration::from_millis(100), &mut out);
        assert!(out.is_empty());
        assert_eq!(rx.stats().incomplete_dropped, 1);
        assert_eq!(rx.stats().reorder.uncertain_starts, 1);
        assert!(rx.take_keyframe_request(t + Duration::from_millis(100)));
        tx.picture(&p_picture(3), 3000);
        // A stream that starts with its parameter sets needs no wait.
        let mut rx = cfg();
        assert_eq!(feed(&mut rx, &pkts, t).len(), 1);
        assert_eq!(rx.take_start_probe(), None);
        // Joining mid-stream: the end of the previous picture comes back and is dropped quietly.
        let prev = tx.picture(&p_slice(3000, 9), 6000);
        let next = tx.picture(&idr, 9000);
        let mut rx = cfg();
        let mut out = feed(&mut rx, &next[1..], t);
        out.extend(feed(&mut rx, &prev[prev.len() - 2..], t));
        out.extend(feed(&mut rx, &next[..1], t));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, idr);
        assert_eq!(rx.stats().incomplete_dropped, 0);
    }

    #[test]
    fn garbage_payloads_are_counted_not_delivered() {
        let mut rx = VideoReceiver::h264(VideoReceiverConfig {
            wait_for_keyframe: false,
            ..cfg()
        });
        let t = Instant::now();
        let mut out = Vec::new();
        let meta = |seq: u16, marker: bool| RtpMeta {
            payload_type: 96,
            marker,
            sequence: seq,
            timestamp: 0,
            ssrc: 1,
        };
        rx.push(meta(0, false), &[], t, &mut out);
        rx.push(meta(1, false), &[26, 1, 2], t, &mut out);
        rx.push(meta(2, true), &[24, 0, 9, 1], t, &mut out);
        assert!(out.is_empty());
        let s = rx.stats();
        assert_eq!(s.depacketizer.malformed, 2);
        assert_eq!(s.depacketizer.unsupported, 1);
        assert_eq!(s.incomplete_dropped, 1);
    }
}
