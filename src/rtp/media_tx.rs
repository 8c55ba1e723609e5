//! The media-specific send halves of a stream: what turns the application's media into RTP
//! payloads. Audio: 20 ms G.711 framing (or payloads passed through) on the stream's audio
//! timeline. Video: the codec's packetizer and its reused payload list. DTMF: the packets of one
//! key press, planned by the pure sender.

use std::ops::Range;
use std::time::Duration;

use super::config::{AudioParams, VideoParams};
use super::sender::RtpSender;
use crate::codec::dtmf::{DtmfPacket, DtmfSender, DEFAULT_DTMF_VOLUME};
use crate::codec::g711::G711;
use crate::codec::h264::H264Packetizer;
use crate::codec::vp8::Vp8Packetizer;
use crate::codec::{Packetizer, PayloadList};
use crate::error::{Error, Result};
use crate::frame::VideoCodec;

/// Length of one audio packet.
const AUDIO_FRAME_MS: u32 = 20;

/// Send half of an audio stream: 20 ms G.711 framing and the audio timeline.
#[derive(Debug)]
pub struct AudioTx {
    law: Option<G711>,
    samples_per_frame: usize,
    /// Encoded payloads of the last call, back to back.
    buf: Vec<u8>,
    /// Per packet: RTP timestamp, marker, where its payload is in `buf`.
    packets: Vec<(u32, bool, Range<usize>)>,
    /// Stream time (ms) the next frame starts at; `None` before the first frame.
    next_ms: Option<f64>,
    /// Reused frame of PCM (the last one padded with silence).
    frame: Vec<i16>,
}

impl AudioTx {
    pub fn new(p: &AudioParams) -> AudioTx {
        let samples_per_frame = (p.clock_rate as usize * AUDIO_FRAME_MS as usize / 1000).max(1);
        AudioTx {
            law: G711::from_payload_type(p.payload_type),
            samples_per_frame,
            buf: Vec::new(),
            packets: Vec::new(),
            next_ms: None,
            frame: vec![0; samples_per_frame],
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
        for chunk in pcm.chunks(self.samples_per_frame) {
            self.frame[..chunk.len()].copy_from_slice(chunk);
            self.frame[chunk.len()..].fill(0);
            let start = self.buf.len();
            law.encode(&self.frame, &mut self.buf);
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
pub fn plan_dtmf(digit: char, duration_ms: u32, clock_rate: u32) -> Result<Vec<DtmfPacket>> {
    let plan = DtmfSender::new(digit, duration_ms, clock_rate, DEFAULT_DTMF_VOLUME)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    Ok(plan.packets().collect())
}

/// Send half of a video stream: the packetizer and its reused payload list.
pub struct VideoTx {
    packetizer: Box<dyn Packetizer>,
    pub(crate) payloads: PayloadList,
}

impl std::fmt::Debug for VideoTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoTx")
            .field("packets", &self.payloads.len())
            .finish_non_exhaustive()
    }
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
