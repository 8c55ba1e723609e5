//! The receive half of a [`StreamCore`]: RTP from the peer through the payload-type and source
//! checks, reception statistics, RTX unwrapping and the NACK tracker, into picture assembly
//! (video) or the audio jitter buffer and decoder (audio); and the feedback a receiver sends
//! about what it got (NACK, PLI, FIR). The RTCP dispatcher and the timers stay in `mod.rs`.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::codec::dtmf::DtmfReceiver;
use crate::codec::h264::H264Depacketizer;
use crate::codec::resample::Resampler;
use crate::codec::vp8::Vp8Depacketizer;
use crate::codec::Depacketizer;
use crate::error::{Error, Result};
use crate::frame::{AudioFrame, VideoCodec, VideoFrame};
use crate::rtp::audio_jitter::{AudioJitterBuffer, AudioJitterConfig, JitterPacket, Playout};
use crate::rtp::conceal::{decoder_for, AudioDecoder};
use crate::rtp::config::{AudioParams, VideoParams};
use crate::rtp::nack::{Arrival as NackArrival, NackConfig, NackTracker};
use crate::rtp::packet::parse_rtp;
use crate::rtp::receiver::{Arrival, ReceiverStats};
use crate::rtp::reorder::{PushOutcome, ReorderConfig};
use crate::rtp::rtcp::{build_fir, build_nack, build_pli};
use crate::rtp::rtt::RttEstimator;
use crate::rtp::rtx::{original_meta, unwrap_rtx, RtxConfig};
use crate::rtp::video::{VideoReceiver, VideoReceiverConfig};
use crate::rtp::RtpMeta;

use super::fec::FecIn;
use super::{KeyframeRequest, StreamCore, StreamEvent};

/// Automatic PLIs at most this often (RFC 4585 asks feedback to be rate-limited); the
/// application's own requests are not limited.
const PLI_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// The reorder window with NACK: a key picture of a large stream fits.
const NACK_WINDOW: usize = 1024;
/// A first packet that may not open its picture makes the receiver ask for this many before it.
const START_PROBE_PACKETS: u16 = 4;
/// How long it waits for them: two round trips and a margin, at most the NACK deadline.
const START_PROBE_MARGIN: Duration = Duration::from_millis(30);

/// The receive half of a video stream.
pub(super) struct VideoIn {
    pub(super) rx: VideoReceiver,
    pub(super) nack: Option<NackTracker>,
    pub(super) nack_cfg: NackConfig,
    pub(super) rtx: Option<RtxConfig>,
    pub(super) frames: Vec<VideoFrame>,
    /// ULPFEC in RED, when on.
    pub(super) fec: Option<FecIn>,
}

/// The receive half of an audio stream.
pub(super) struct AudioIn {
    pub(super) payload_type: u8,
    pub(super) dtmf_pt: Option<u8>,
    pub(super) rx: AudioRx,
    pub(super) jitter: Option<AudioJitterBuffer>,
    pub(super) dtmf: DtmfReceiver,
}

/// Decoding to the application's PCM rate: the codec's decoder, then a converter when the
/// decoder runs at another rate.
pub(super) struct AudioRx {
    pub(super) decoder: Box<dyn AudioDecoder>,
    pub(super) resampler: Option<Resampler>,
    /// The rate of the PCM handed out (the clock rate for passed-through formats).
    pub(super) pcm_rate: u32,
    /// Decoded PCM before conversion (reused).
    pub(super) scratch: Vec<i16>,
}

impl VideoIn {
    /// The receive half of a video stream: picture assembly with a NACK-sized reorder window
    /// when NACK is on.
    pub(super) fn new(v: &VideoParams, clock_rate: u32) -> VideoIn {
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
        VideoIn {
            rx: VideoReceiver::new(rcfg, depack),
            nack: v.nack.enabled.then(|| NackTracker::new(v.nack)),
            nack_cfg: v.nack,
            rtx: v.rtx,
            frames: Vec::new(),
            fec: v.fec.map(FecIn::new),
        }
    }
}

impl AudioIn {
    pub(super) fn new(a: &AudioParams, clock_rate: u32) -> Result<AudioIn> {
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
    pub(super) fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
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
    pub(super) fn conceal(&mut self, ticks: usize, next: Option<&[u8]>) -> Vec<i16> {
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

impl StreamCore {
    // ---- media from the peer ---------------------------------------------------------------

    /// An RTP packet (SRTP on a secured stream) that arrived at `now` from `from`. A secured
    /// packet is authenticated and replay-checked before anything else, latching included.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.closed || self.unkeyed() {
            return;
        }
        match self.srtp.as_mut().map(|s| s.unprotect_rtp(data, now)) {
            None => self.handle_plain_rtp(now, from, data),
            Some(Ok(plain)) => self.handle_plain_rtp(now, from, &plain),
            Some(Err(e)) => self.srtp_dropped(e),
        }
    }

    fn handle_plain_rtp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
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
        if let Some(cc) = self.cc.as_mut() {
            cc.on_rtp(now, data);
        }
        if self.is_red(meta.payload_type) {
            self.on_red(now, meta, data);
            return;
        }
        let media = meta.payload_type == self.rtp.payload_type();
        self.on_rtp_packet(now, meta, data, range, false);
        if media {
            self.fec_media(now, data);
        }
    }

    /// One RTP packet of the stream, `data[range]` its payload; `fec_recovered`: rebuilt from
    /// FEC rather than arrived, so it stays out of the reception statistics and the counters of
    /// what arrived, but still cancels its NACK.
    pub(super) fn on_rtp_packet(
        &mut self,
        now: Instant,
        meta: RtpMeta,
        data: &[u8],
        range: Range<usize>,
        fec_recovered: bool,
    ) {
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
            // Audio: the jitter buffer, the decoder's and the converter's state (G.722's
            // predictor, Opus' and the concealment's history) belong to the old source.
            if let Some(a) = self.audio_in.as_mut() {
                if let Some(j) = a.jitter.as_mut() {
                    j.reset();
                }
                a.rx.decoder.reset();
                if let Some(r) = a.rx.resampler.as_mut() {
                    r.reset();
                }
            }
        }
        // A packet we NACKed that now arrives is most likely the retransmission: it says
        // nothing about the path, so it stays out of the RFC 3550 statistics.
        let nack_arrival = self.note_for_nack(now, meta.sequence, meta.marker);
        let repaired = matches!(
            nack_arrival,
            Some(NackArrival::Recovered { nacks, .. } | NackArrival::Late { nacks, .. }) if nacks > 0
        );
        if repaired && !fec_recovered {
            if let Some(f) = self.video_in.as_mut().and_then(|v| v.fec.as_mut()) {
                f.repairs_seen = true;
            }
        }
        let recovered = fec_recovered || repaired;
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
        ) = nack_arrival.filter(|_| !fec_recovered)
        {
            // Ambiguous (a late original looks the same); the estimator's median copes. A packet
            // rebuilt from FEC says nothing about the round trip.
            self.rtt
                .on_ambiguous_sample(now.saturating_duration_since(t));
        }
        if self.audio_in.is_some() && matches!(verdict, Some(Arrival::Duplicate | Arrival::Jump)) {
            return;
        }
        if !fec_recovered {
            self.stats.packets_received += 1;
            self.stats.bytes_received += data.len() as u64;
        }
        if self.audio_in.is_some() {
            self.on_audio_rtp(now, &meta, payload);
        } else if payload.is_empty() {
            // Padding only (a bandwidth probe on the media's sequence numbers): it holds its
            // place in the sequence, so no gap is seen there, and nothing of it reaches the
            // depacketizer.
            if !fec_recovered {
                self.stats.padding_received += 1;
            }
            if let Some(v) = self.video_in.as_mut() {
                let _ = v.rx.push_filler(meta, now, &mut v.frames);
            }
            self.after_video(now);
        } else {
            self.on_video_rtp(now, meta, payload, false);
        }
    }

    /// Tells the NACK tracker about a packet of the media source.
    pub(super) fn note_for_nack(
        &mut self,
        now: Instant,
        seq: u16,
        marker: bool,
    ) -> Option<NackArrival> {
        let v = self.video_in.as_mut()?;
        let n = v.nack.as_mut()?;
        let arrival = n.on_packet(seq, now, &self.rtt);
        n.note_marker(seq, marker, now);
        Some(arrival)
    }

    /// An RTX packet: unwrapped, it joins the media in the jitter buffer.
    fn on_rtx(&mut self, now: Instant, meta: &RtpMeta, payload: &[u8], len: usize) {
        if payload.is_empty() {
            // Padding only on the RTX stream (a bandwidth probe): no original inside.
            self.stats.padding_received += 1;
            self.stats.packets_received += 1;
            self.stats.bytes_received += len as u64;
            return;
        }
        let Some(media_ssrc) = self.rx_stats.as_ref().map(ReceiverStats::ssrc) else {
            // A retransmission of a stream we have not seen: nothing to repair.
            self.stats.unknown_payload_type += 1;
            return;
        };
        let Some((osn, original)) = unwrap_rtx(payload) else {
            // Too short for the original sequence number.
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
    pub(super) fn after_video(&mut self, now: Instant) {
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
    pub(super) fn play_audio(&mut self, now: Instant) {
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

    // ---- feedback to the peer's sender -----------------------------------------------------

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

    /// Video passthrough on or off, at once ([`VideoReceiver::set_passthrough`]): every picture
    /// delivered, damaged ones flagged, no keyframe gate. No-op on a stream without video.
    pub fn set_video_passthrough(&mut self, on: bool) {
        if let Some(v) = self.video_in.as_mut() {
            v.rx.set_passthrough(on);
        }
    }

    /// Sends the NACKs that are due.
    pub(super) fn send_nacks(&mut self, now: Instant) {
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
    pub(super) fn send_pli(&mut self, now: Instant, forced: bool) {
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
}
