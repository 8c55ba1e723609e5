//! The media-specific halves of a stream: what turns received payloads into frames and events, and
//! what turns the application's media into payloads. They wrap the pure codec and RTP layers and
//! add only what a live stream needs (time from the stream's clock, events for the callbacks).

use std::ops::Range;
use std::time::{Duration, Instant};

use super::event::{EngineEvent, SessionId};
use crate::codec::dtmf::{DtmfReceiver, DtmfSender, DEFAULT_DTMF_VOLUME};
use crate::codec::g711::G711;
use crate::codec::h264::{H264Packetizer, PacketizationMode};
use crate::codec::vp8::Vp8Packetizer;
use crate::codec::{Packetizer, PayloadList};
use crate::error::{Error, Result};
use crate::frame::{AudioFrame, Delivery, VideoCodec};
use crate::rtp::sender::RtpSender;
use crate::rtp::RtpMeta;

pub use super::video_rx::VideoRx;

/// Audio stream parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioParams {
    /// RTP payload type of the audio (0 PCMU, 8 PCMA; others are not decoded).
    pub payload_type: u8,
    pub clock_rate: u32,
    /// RTP payload type of telephone events (RFC 4733); `None` disables DTMF.
    pub dtmf_payload_type: Option<u8>,
}

/// Video stream parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoParams {
    pub payload_type: u8,
    pub clock_rate: u32,
    pub codec: VideoCodec,
    pub delivery: Delivery,
    /// Hold non-key pictures back after a loss until a key frame arrives.
    pub wait_for_keyframe: bool,
    /// Deliver pictures that lost packets (flagged `complete: false`) instead of dropping them.
    pub deliver_incomplete: bool,
    /// Largest RTP payload sent.
    pub mtu: usize,
    /// H.264 packetization mode (1 allows STAP-A and FU-A; 0 single NAL units only).
    pub packetization_mode: PacketizationMode,
}

/// What a stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaParams {
    Audio(AudioParams),
    Video(VideoParams),
}

/// What the receive halves produced while handling packets: events for the callbacks, a wish for
/// a key frame, and running counters.
#[derive(Debug, Default)]
pub struct RxOutput {
    pub events: Vec<EngineEvent>,
    pub want_keyframe: bool,
    pub counters: RxCounters,
}

/// Running totals kept by the receive halves (copied into the stream's stats).
#[derive(Debug, Default, Clone, Copy)]
pub struct RxCounters {
    pub frames: u64,
    pub keyframes: u64,
    pub dropped_incomplete: u64,
    pub dropped_gated: u64,
    pub dtmf: u64,
    /// Payloads the depacketizer or decoder could not use.
    pub malformed: u64,
}

/// Receive half of an audio stream: G.711 decoding and telephone events.
pub struct AudioRx {
    session: SessionId,
    payload_type: u8,
    clock_rate: u32,
    law: Option<G711>,
    dtmf: DtmfReceiver,
    origin: Instant,
}

impl AudioRx {
    pub fn new(p: &AudioParams, session: SessionId) -> AudioRx {
        AudioRx {
            session,
            payload_type: p.payload_type,
            clock_rate: p.clock_rate,
            law: G711::from_payload_type(p.payload_type),
            dtmf: DtmfReceiver::new(p.clock_rate),
            origin: Instant::now(),
        }
    }

    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// One accepted RTP packet of this stream (`is_dtmf`: it has the telephone-event type).
    pub fn on_rtp(
        &mut self,
        meta: &RtpMeta,
        payload: &[u8],
        is_dtmf: bool,
        now: Instant,
        out: &mut RxOutput,
    ) {
        if is_dtmf {
            let now_ms = self.now_ms(now);
            match self.dtmf.feed(meta.timestamp, payload, now_ms) {
                Ok(first) => {
                    let mut next = first;
                    while let Some(ev) = next {
                        out.counters.dtmf += 1;
                        out.events.push(EngineEvent::Dtmf(self.session, ev));
                        next = self.dtmf.poll(now_ms);
                    }
                }
                Err(_) => out.counters.malformed += 1,
            }
            return;
        }
        // G.711 is decoded here; other formats are passed through for the application to decode.
        let mut pcm = Vec::new();
        if let Some(law) = self.law {
            pcm.reserve(payload.len());
            law.decode(payload, &mut pcm);
        }
        out.counters.frames += 1;
        out.events.push(EngineEvent::Audio(
            self.session,
            AudioFrame {
                pcm,
                sample_rate: self.clock_rate,
                channels: 1,
                rtp_timestamp: meta.timestamp,
                payload_type: meta.payload_type,
                payload: payload.to_vec(),
            },
        ));
    }

    /// Reports a telephone event whose end packets never came.
    pub fn poll(&mut self, now: Instant, out: &mut RxOutput) {
        let now_ms = self.now_ms(now);
        while let Some(ev) = self.dtmf.poll(now_ms) {
            out.counters.dtmf += 1;
            out.events.push(EngineEvent::Dtmf(self.session, ev));
        }
    }

    /// When [`AudioRx::poll`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.dtmf
            .poll_timeout()
            .map(|ms| self.origin + Duration::from_millis(ms))
    }
}

/// Length of one audio packet.
const AUDIO_FRAME_MS: u32 = 20;

/// Send half of an audio stream: 20 ms G.711 framing and the audio timeline.
pub struct AudioTx {
    law: Option<G711>,
    samples_per_frame: usize,
    /// Encoded payloads of the last call, back to back.
    buf: Vec<u8>,
    /// Per packet: RTP timestamp, marker, where its payload is in `buf`.
    packets: Vec<(u32, bool, Range<usize>)>,
    /// Stream time (ms) the next frame starts at; `None` before the first frame.
    next_ms: Option<f64>,
}

impl AudioTx {
    pub fn new(p: &AudioParams) -> AudioTx {
        AudioTx {
            law: G711::from_payload_type(p.payload_type),
            samples_per_frame: (p.clock_rate as usize * AUDIO_FRAME_MS as usize / 1000).max(1),
            buf: Vec::new(),
            packets: Vec::new(),
            next_ms: None,
        }
    }

    /// Where the audio timeline stands at stream time `now`: continuing the previous frames when
    /// the caller keeps up, jumping to the wall clock after a pause (which starts a talkspurt).
    fn start_ms(&self, now: Duration) -> (f64, bool) {
        let now_ms = now.as_secs_f64() * 1000.0;
        match self.next_ms {
            Some(next) if next + f64::from(AUDIO_FRAME_MS) >= now_ms => (next, false),
            _ => (now_ms, true),
        }
    }

    /// Encodes `pcm` into 20 ms packets, the last padded with silence.
    pub fn encode(&mut self, pcm: &[i16], now: Duration, rtp: &RtpSender) -> Result<()> {
        let law = self.law.ok_or_else(|| {
            Error::Unsupported("send_audio encodes G.711 only (payload type 0 or 8)".into())
        })?;
        self.buf.clear();
        self.packets.clear();
        if pcm.is_empty() {
            return Ok(());
        }
        let (mut ms, mut marker) = self.start_ms(now);
        let mut frame = vec![0i16; self.samples_per_frame];
        for chunk in pcm.chunks(self.samples_per_frame) {
            frame[..chunk.len()].copy_from_slice(chunk);
            frame[chunk.len()..].fill(0);
            let start = self.buf.len();
            law.encode(&frame, &mut self.buf);
            self.packets
                .push((rtp.rtp_timestamp_for_ms(ms), marker, start..self.buf.len()));
            marker = false;
            ms += f64::from(AUDIO_FRAME_MS);
        }
        self.next_ms = Some(ms);
        Ok(())
    }

    /// Queues one frame the application encoded itself (a format the engine passes through, or
    /// G.711 bytes made elsewhere), lasting `duration_ms` on the audio timeline.
    pub fn passthrough(
        &mut self,
        payload: &[u8],
        duration_ms: u32,
        now: Duration,
        rtp: &RtpSender,
    ) -> Result<()> {
        if payload.is_empty() || duration_ms == 0 || duration_ms > 1000 {
            return Err(Error::InvalidArgument(
                "an audio payload needs bytes and a duration of 1-1000 ms".into(),
            ));
        }
        self.buf.clear();
        self.packets.clear();
        let (ms, marker) = self.start_ms(now);
        self.buf.extend_from_slice(payload);
        self.packets
            .push((rtp.rtp_timestamp_for_ms(ms), marker, 0..payload.len()));
        self.next_ms = Some(ms + f64::from(duration_ms));
        Ok(())
    }

    /// The packets of the last [`AudioTx::encode`]: timestamp, marker, payload length.
    pub fn packets(&self) -> impl Iterator<Item = (u32, bool, usize)> + '_ {
        self.packets.iter().map(|(t, m, r)| (*t, *m, r.len()))
    }

    /// Payload of packet `i` of the last encode.
    pub fn payload(&self, i: usize) -> &[u8] {
        &self.buf[self.packets[i].2.clone()]
    }

    /// The RTP timestamp for a telephone event starting now, on the audio timeline.
    pub fn event_timestamp(&self, now: Duration, rtp: &RtpSender) -> u32 {
        rtp.rtp_timestamp_for_ms(self.start_ms(now).0)
    }
}

/// The packets of one DTMF key press, planned by the pure sender.
pub fn plan_dtmf(
    digit: char,
    duration_ms: u32,
    clock_rate: u32,
) -> Result<Vec<crate::codec::dtmf::DtmfPacket>> {
    let plan = DtmfSender::new(digit, duration_ms, clock_rate, DEFAULT_DTMF_VOLUME)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    Ok(plan.packets().collect())
}

/// Send half of a video stream: the packetizer and its reused payload list.
pub struct VideoTx {
    packetizer: Box<dyn Packetizer>,
    pub(crate) payloads: PayloadList,
}

impl VideoTx {
    pub fn new(p: &VideoParams) -> Result<VideoTx> {
        if p.mtu < 16 {
            return Err(Error::InvalidArgument(format!(
                "mtu {} is too small",
                p.mtu
            )));
        }
        let packetizer: Box<dyn Packetizer> = match p.codec {
            VideoCodec::H264 => Box::new(H264Packetizer::new(p.mtu, p.packetization_mode)),
            VideoCodec::Vp8 => Box::new(Vp8Packetizer::new(p.mtu)),
        };
        Ok(VideoTx {
            packetizer,
            payloads: PayloadList::new(),
        })
    }

    /// Describes the RTP payloads of `picture` in `self.payloads`.
    pub fn packetize(&mut self, picture: &[u8]) -> Result<()> {
        self.payloads.clear();
        self.packetizer
            .packetize(picture, &mut self.payloads)
            .map_err(|e| Error::InvalidArgument(format!("cannot send this picture: {e}")))
    }
}
