//! The media-specific send halves of a stream: what turns the application's media into RTP
//! payloads. Audio: 20 ms framing and encoding (or payloads passed through) on the stream's audio
//! timeline. Video: the codec's packetizer and its reused payload list. DTMF: the packets of one
//! key press, planned by the pure sender.

use std::ops::Range;
use std::time::Duration;

use super::config::{AudioParams, VideoParams};
use super::sender::RtpSender;
use crate::codec::dtmf::{DtmfPacket, DtmfSender, DEFAULT_DTMF_VOLUME};
use crate::codec::h264::H264Packetizer;
use crate::codec::resample::Resampler;
use crate::codec::voice::VoiceEncoder;
use crate::codec::vp8::Vp8Packetizer;
use crate::codec::{Packetizer, PayloadList};
use crate::error::{Error, Result};
use crate::frame::VideoCodec;

/// Length of one audio packet.
const AUDIO_FRAME_MS: u32 = 20;

/// Samples in one packet's 20 ms at `rate` Hz.
fn per_frame(rate: u32) -> usize {
    (rate as usize * AUDIO_FRAME_MS as usize / 1000).max(1)
}

/// Send half of an audio stream: 20 ms framing of the application's PCM, converted to the
/// codec's rate when they differ and encoded, and the audio timeline.
#[derive(Debug)]
pub struct AudioTx {
    encoder: Option<VoiceEncoder>,
    /// The stream's PCM rate: what `encode` takes when the caller names no rate.
    app_rate: u32,
    /// The rate the encoder codes at.
    coding_rate: u32,
    /// The rate of the PCM `resampler` and `frame` are set up for (the last call's).
    in_rate: u32,
    /// Converts the caller's PCM to the encoder's rate, when they differ.
    resampler: Option<Resampler>,
    /// Converters from the other rates used before, kept so that a caller alternating rates
    /// does not design a filter on every change.
    idle_resamplers: Vec<Resampler>,
    /// Samples per 20 ms at `in_rate`.
    samples_per_frame: usize,
    /// Samples per 20 ms at the encoder's rate.
    coded_per_frame: usize,
    /// Encoded payloads of the last call, back to back.
    buf: Vec<u8>,
    /// Per packet: RTP timestamp, marker, where its payload is in `buf`.
    packets: Vec<(u32, bool, Range<usize>)>,
    /// Stream time (ms) the next frame starts at; `None` before the first frame.
    next_ms: Option<f64>,
    /// Reused frame of PCM (the last one padded with silence).
    frame: Vec<i16>,
    /// Reused frame at the encoder's rate.
    coded: Vec<i16>,
}

impl AudioTx {
    /// The send half for `p`: an encoder when the engine codes its codec.
    pub fn new(p: &AudioParams) -> Result<AudioTx> {
        let codec = p.voice_codec();
        let app_rate = p.pcm_rate();
        let mut encoder = None;
        let mut resampler = None;
        let mut coding_rate = app_rate;
        if let Some(c) = codec {
            p.app_rate.validate().map_err(Error::InvalidArgument)?;
            coding_rate = c.coding_rate(app_rate);
            let mut e = VoiceEncoder::new(c, coding_rate).map_err(|e| {
                Error::InvalidArgument(format!("{} encoder: {e}", c.encoding_name()))
            })?;
            if let Some(hz) = p.opus_max_playback_rate {
                e.set_max_playback_rate(hz)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            }
            encoder = Some(e);
            if coding_rate != app_rate {
                resampler = Some(
                    Resampler::new(app_rate, coding_rate)
                        .map_err(|e| Error::InvalidArgument(e.to_string()))?,
                );
            }
        }
        let samples_per_frame = per_frame(app_rate);
        Ok(AudioTx {
            encoder,
            app_rate,
            coding_rate,
            in_rate: app_rate,
            resampler,
            idle_resamplers: Vec::new(),
            samples_per_frame,
            coded_per_frame: per_frame(coding_rate),
            buf: Vec::new(),
            packets: Vec::new(),
            next_ms: None,
            frame: vec![0; samples_per_frame],
            coded: Vec::new(),
        })
    }

    /// The receiver reported `fraction` of our packets lost (RTCP): the encoder adapts its
    /// loss protection (Opus in-band FEC). Returns the expected loss now in use, if any.
    pub fn on_reported_loss(&mut self, fraction: f64) -> Option<u8> {
        self.encoder.as_mut()?.on_reported_loss(fraction)
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

    /// Encodes `pcm` into 20 ms packets, the last padded with silence. `rate_hz` is the PCM's
    /// rate (one of the resampler's: 8, 12, 16, 24, 32 or 48 kHz); `None` is the stream's PCM
    /// rate. The RTP timestamps follow the codec's clock, so a 20 ms G.722 packet advances them
    /// by 160 although it codes 320 samples.
    pub fn encode(
        &mut self,
        pcm: &[i16],
        rate_hz: Option<u32>,
        now: Duration,
        rtp: &RtpSender,
    ) -> Result<()> {
        self.set_input_rate(rate_hz.unwrap_or(self.app_rate))?;
        let (mut ms, mut marker) = self.start_ms(now);
        let Some(encoder) = self.encoder.as_mut() else {
            return Err(Error::Unsupported(
                "send_audio encodes PCMU, PCMA, G.722 and Opus; send this stream's format with \
                 send_audio_payload"
                    .into(),
            ));
        };
        self.buf.clear();
        self.packets.clear();
        if pcm.is_empty() {
            return Ok(());
        }
        for chunk in pcm.chunks(self.samples_per_frame) {
            self.frame[..chunk.len()].copy_from_slice(chunk);
            self.frame[chunk.len()..].fill(0);
            let start = self.buf.len();
            let frame = match self.resampler.as_mut() {
                Some(r) => {
                    self.coded.clear();
                    r.process(&self.frame, &mut self.coded);
                    // 20 ms converts to a whole number of samples at every supported pair of
                    // rates; the resize only guards the encoder's frame size.
                    self.coded.resize(self.coded_per_frame, 0);
                    &self.coded
                }
                None => &self.frame,
            };
            if let Err(e) = encoder.encode(frame, &mut self.buf) {
                self.buf.truncate(start);
                return Err(Error::InvalidArgument(format!("cannot encode audio: {e}")));
            }
            self.packets
                .push((rtp.rtp_timestamp_for_ms(ms), marker, start..self.buf.len()));
            marker = false;
            ms += f64::from(AUDIO_FRAME_MS);
        }
        self.next_ms = Some(ms);
        Ok(())
    }

    /// Sets the framing and the conversion up for PCM at `hz`, when the last call's was another
    /// rate. A change of rate starts the converter afresh (its few samples of history belong to
    /// other audio); converters once made are kept for the next change.
    fn set_input_rate(&mut self, hz: u32) -> Result<()> {
        if hz == self.in_rate {
            return Ok(());
        }
        let next = if hz == self.coding_rate {
            None
        } else if let Some(i) = self.idle_resamplers.iter().position(|r| r.from_hz() == hz) {
            let mut r = self.idle_resamplers.swap_remove(i);
            r.reset();
            Some(r)
        } else {
            Some(
                Resampler::new(hz, self.coding_rate)
                    .map_err(|e| Error::InvalidArgument(e.to_string()))?,
            )
        };
        if let Some(old) = std::mem::replace(&mut self.resampler, next) {
            self.idle_resamplers.push(old);
        }
        self.in_rate = hz;
        self.samples_per_frame = per_frame(hz);
        self.frame = vec![0; self.samples_per_frame];
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
