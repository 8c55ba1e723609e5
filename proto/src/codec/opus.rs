//! Opus (RFC 6716) through libopus, the reference implementation, with the RTP conventions of
//! RFC 7587.
//!
//! This is a thin, safe layer over the `opus` crate: it fixes the choices a VoIP stream needs
//! (in-band FEC on, DTX off, a set bitrate), checks every size before libopus sees it, and turns
//! libopus' negative return codes into [`OpusError`]. Every packet from the network goes through
//! libopus' own packet parser, so malformed input is an error, never a panic.
//!
//! RFC 7587 in short: the RTP clock is always 48 kHz whatever rate the codec runs at, and the SDP
//! always says `opus/48000/2`, even for a mono stream; whether the sender actually sends stereo is
//! the `stereo`/`sprop-stereo` fmtp parameters' business. An encoder or decoder may run at any of
//! 8, 12, 16, 24 or 48 kHz: libopus converts internally, so an app at 16 kHz needs no resampler
//! in front of Opus (only the RTP timestamps step in 48 kHz units, [`PacketInfo::samples_48k`]).
//!
//! Loss handling: when a packet is missing, either the next packet is already here and
//! [`OpusDecoder::decode_fec`] rebuilds the lost audio from the in-band FEC copy the encoder put
//! into that next packet (libopus falls back to concealment if there is none), or
//! [`OpusDecoder::conceal`] extrapolates it (packet-loss concealment). Both return exactly the
//! number of samples asked for, so the playout clock never slips.

use opus::{Application, Bandwidth, Bitrate, Channels, ErrorCode};

/// The RTP clock rate of Opus, whatever rate the codec runs at (RFC 7587 §4.1).
pub const OPUS_RTP_CLOCK_RATE: u32 = 48_000;

/// The SDP encoding name (`a=rtpmap:<pt> opus/48000/2`).
pub const OPUS_ENCODING_NAME: &str = "opus";

/// The channel count in the rtpmap, always 2 (RFC 7587 §7): mono streams say so in fmtp.
pub const OPUS_RTPMAP_CHANNELS: u8 = 2;

/// `opus/48000/2`, the rtpmap encoding for every Opus stream.
pub const OPUS_RTPMAP: &str = "opus/48000/2";

/// Rates at which libopus encodes and decodes (Hz).
pub const OPUS_SAMPLE_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// The bitrate a new encoder starts with: good wideband speech, the usual choice for a mono call.
pub const DEFAULT_BITRATE: u32 = 32_000;

/// The expected loss a new encoder starts with; it sizes the in-band FEC (0 would turn FEC off).
pub const DEFAULT_PACKET_LOSS_PERCENT: u8 = 10;

/// The most bytes one encoded packet may take: libopus' recommended output buffer, larger than any
/// packet it writes for up to 120 ms of audio.
pub const MAX_ENCODED_BYTES: usize = 4000;

/// The longest audio one Opus packet carries (RFC 6716 §3.2.5): 120 ms.
pub const MAX_PACKET_MS: u32 = 120;

/// Packets longer than this are refused before libopus sees them. No UDP datagram is larger,
/// and it keeps the length well inside libopus' `int`.
pub const MAX_PACKET_BYTES: usize = 65_535;

/// Why an Opus operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpusError {
    /// The bytes are not a valid Opus packet (RFC 6716 §3); the message says what is wrong.
    InvalidPacket(String),
    /// An argument is unusable: a rate, a channel count, a frame length, a bitrate.
    InvalidArgument(String),
    /// libopus failed for another reason (allocation, internal error); the message is its own.
    Codec(String),
}

impl std::fmt::Display for OpusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpusError::InvalidPacket(m) => write!(f, "invalid Opus packet: {m}"),
            OpusError::InvalidArgument(m) => write!(f, "invalid Opus argument: {m}"),
            OpusError::Codec(m) => write!(f, "libopus error: {m}"),
        }
    }
}

impl std::error::Error for OpusError {}

impl From<opus::Error> for OpusError {
    fn from(e: opus::Error) -> Self {
        let m = format!("{}: {}", e.function(), e.description());
        match e.code() {
            ErrorCode::InvalidPacket => OpusError::InvalidPacket(m),
            ErrorCode::BadArg | ErrorCode::BufferTooSmall => OpusError::InvalidArgument(m),
            _ => OpusError::Codec(m),
        }
    }
}

/// The kind of signal the encoder tunes for (libopus' `OPUS_APPLICATION_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpusApplication {
    /// Speech: favours intelligibility; the choice for calls.
    Voip,
    /// Music and general audio: favours fidelity.
    Audio,
    /// The lowest algorithmic delay (CELT only, no speech mode, hence no in-band FEC).
    LowDelay,
}

impl From<OpusApplication> for Application {
    fn from(a: OpusApplication) -> Self {
        match a {
            OpusApplication::Voip => Application::Voip,
            OpusApplication::Audio => Application::Audio,
            OpusApplication::LowDelay => Application::LowDelay,
        }
    }
}

/// The version string of the linked libopus, e.g. `libopus 1.6.1`.
pub fn libopus_version() -> &'static str {
    opus::version()
}

/// Samples per channel in `ms` milliseconds at `sample_rate`, for frame sizing (20 ms at 48 kHz:
/// 960).
pub fn samples_per_ms(sample_rate: u32, ms: u32) -> usize {
    (u64::from(sample_rate) * u64::from(ms) / 1000) as usize
}

fn check_rate(sample_rate: u32) -> Result<(), OpusError> {
    if OPUS_SAMPLE_RATES.contains(&sample_rate) {
        Ok(())
    } else {
        Err(OpusError::InvalidArgument(format!(
            "sample rate {sample_rate} Hz; Opus runs at 8000, 12000, 16000, 24000 or 48000"
        )))
    }
}

fn channels_of(channels: u8) -> Result<Channels, OpusError> {
    match channels {
        1 => Ok(Channels::Mono),
        2 => Ok(Channels::Stereo),
        n => Err(OpusError::InvalidArgument(format!(
            "{n} channels; Opus streams here are mono or stereo"
        ))),
    }
}

/// The duration of `samples` (per channel) at `sample_rate` in units of 2.5 ms, if it is whole.
fn quarter_frames(samples: usize, sample_rate: u32) -> Option<u64> {
    let units = samples as u64 * 400;
    units
        .is_multiple_of(u64::from(sample_rate))
        .then(|| units / u64::from(sample_rate))
}

/// What the header of a valid packet says (RFC 6716 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// Number of Opus frames in the packet (1 to 48).
    pub frames: usize,
    /// Duration in samples per channel at 48 kHz: the step of the RTP timestamp.
    pub samples_48k: usize,
    /// The TOC's stereo flag: the frames were coded as stereo.
    pub stereo: bool,
    /// The audio bandwidth the TOC announces, in Hz: 4000 (narrowband), 6000, 8000 (wideband),
    /// 12000 or 20000 (fullband).
    pub bandwidth_hz: u32,
}

/// The audio bandwidth of a TOC byte's configuration (RFC 6716 §3.1, table 2).
fn toc_bandwidth_hz(toc: u8) -> u32 {
    match toc >> 3 {
        0..=3 | 16..=19 => 4_000,
        4..=7 => 6_000,
        8..=11 | 20..=23 => 8_000,
        12..=13 | 24..=27 => 12_000,
        _ => 20_000,
    }
}

/// Checks the framing of a packet (TOC byte, frame count, frame lengths against the packet
/// length, the 120 ms limit) without decoding it.
pub fn parse_packet(packet: &[u8]) -> Result<PacketInfo, OpusError> {
    if packet.is_empty() {
        return Err(OpusError::InvalidPacket("empty".into()));
    }
    if packet.len() > MAX_PACKET_BYTES {
        return Err(OpusError::InvalidPacket(format!(
            "{} bytes, more than {MAX_PACKET_BYTES}",
            packet.len()
        )));
    }
    let parsed = opus::packet::parse(packet)?;
    // get_nb_samples also enforces the 120 ms limit, which the parser alone does not.
    let samples_48k = opus::packet::get_nb_samples(packet, OPUS_RTP_CLOCK_RATE)?;
    Ok(PacketInfo {
        frames: parsed.frames.len(),
        samples_48k,
        stereo: packet[0] & 0x04 != 0,
        bandwidth_hz: toc_bandwidth_hz(packet[0]),
    })
}

/// Samples per channel that `packet` decodes to at `sample_rate`, after checking its framing.
pub fn packet_samples(packet: &[u8], sample_rate: u32) -> Result<usize, OpusError> {
    check_rate(sample_rate)?;
    let info = parse_packet(packet)?;
    Ok(info.samples_48k * sample_rate as usize / OPUS_RTP_CLOCK_RATE as usize)
}

/// An Opus encoder for one stream, set up for real-time calls: in-band FEC on, DTX off (every
/// frame produces a packet, so the RTP timestamps advance evenly), [`DEFAULT_BITRATE`].
pub struct OpusEncoder {
    inner: opus::Encoder,
    sample_rate: u32,
    channels: usize,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder taking `channels` (1 or 2) interleaved channels at `sample_rate` (one of
    /// [`OPUS_SAMPLE_RATES`]).
    pub fn new(
        sample_rate: u32,
        channels: u8,
        application: OpusApplication,
    ) -> Result<Self, OpusError> {
        check_rate(sample_rate)?;
        let ch = channels_of(channels)?;
        let mut inner = opus::Encoder::new(sample_rate, ch, application.into())?;
        inner.set_dtx(false)?;
        let mut enc = OpusEncoder {
            inner,
            sample_rate,
            channels: usize::from(channels),
        };
        enc.set_bitrate(DEFAULT_BITRATE)?;
        enc.set_inband_fec(true)?;
        enc.set_packet_loss_percent(DEFAULT_PACKET_LOSS_PERCENT)?;
        Ok(enc)
    }

    /// The input rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The number of interleaved input channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Sets the target bitrate in bits per second (libopus accepts 500 to 512000).
    pub fn set_bitrate(&mut self, bits_per_second: u32) -> Result<(), OpusError> {
        if !(500..=512_000).contains(&bits_per_second) {
            return Err(OpusError::InvalidArgument(format!(
                "bitrate {bits_per_second} b/s; libopus accepts 500 to 512000"
            )));
        }
        self.inner
            .set_bitrate(Bitrate::Bits(bits_per_second as i32))?;
        Ok(())
    }

    /// Turns in-band FEC on or off: with it on, each packet also carries a coarse copy of the
    /// previous frame, which the receiver uses when that frame's packet is lost. It takes effect
    /// only with a non-zero [`Self::set_packet_loss_percent`], and only in the speech (SILK and
    /// hybrid) modes.
    pub fn set_inband_fec(&mut self, on: bool) -> Result<(), OpusError> {
        self.inner.set_inband_fec(on)?;
        Ok(())
    }

    /// The packet loss the encoder should expect, 0 to 100 %: the higher, the more of the bitrate
    /// goes to FEC and the more robust the coding (typically from RTCP receiver reports).
    pub fn set_packet_loss_percent(&mut self, percent: u8) -> Result<(), OpusError> {
        if percent > 100 {
            return Err(OpusError::InvalidArgument(format!(
                "packet loss {percent} %, more than 100"
            )));
        }
        self.inner.set_packet_loss_perc(i32::from(percent))?;
        Ok(())
    }

    /// The packet loss the encoder currently expects, in percent.
    pub fn packet_loss_percent(&mut self) -> Result<u8, OpusError> {
        Ok(self.inner.get_packet_loss_perc()?.clamp(0, 100) as u8)
    }

    /// Honours the receiver's `maxplaybackrate` (RFC 7587 §6.1): audio above half that rate
    /// would be thrown away by the receiver, so the encoder stops coding it and spends the bits
    /// below (8000 → narrowband, 12000 → mediumband, 16000 → wideband, 24000 → super-wideband,
    /// higher → fullband).
    pub fn set_max_playback_rate(&mut self, hz: u32) -> Result<(), OpusError> {
        let band = match hz {
            0 => return Err(OpusError::InvalidArgument("maxplaybackrate 0".into())),
            1..=8_000 => Bandwidth::Narrowband,
            8_001..=12_000 => Bandwidth::Mediumband,
            12_001..=16_000 => Bandwidth::Wideband,
            16_001..=24_000 => Bandwidth::Superwideband,
            _ => Bandwidth::Fullband,
        };
        self.inner.set_max_bandwidth(band)?;
        Ok(())
    }

    /// The encoder's algorithmic delay in samples per channel at its rate (the Ogg pre-skip).
    pub fn lookahead(&mut self) -> Result<usize, OpusError> {
        Ok(self.inner.get_lookahead()?.max(0) as usize)
    }

    /// Encodes one frame and appends the packet to `out`, returning its length in bytes.
    /// `pcm` holds interleaved samples for 2.5, 5, 10, 20, 40, 60, 80, 100 or 120 ms.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<usize, OpusError> {
        let per_channel = pcm.len() / self.channels;
        let valid_duration = matches!(
            quarter_frames(per_channel, self.sample_rate),
            Some(1 | 2 | 4 | 8 | 16 | 24 | 32 | 40 | 48)
        );
        if !pcm.len().is_multiple_of(self.channels) || !valid_duration {
            return Err(OpusError::InvalidArgument(format!(
                "{} samples for {} channel(s) at {} Hz is not an Opus frame \
                 (2.5, 5, 10, 20, 40, 60, 80, 100 or 120 ms)",
                pcm.len(),
                self.channels,
                self.sample_rate
            )));
        }
        let start = out.len();
        out.resize(start + MAX_ENCODED_BYTES, 0);
        match self.inner.encode(pcm, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                out.truncate(start);
                Err(e.into())
            }
        }
    }
}

/// An Opus decoder for one stream, with packet-loss concealment and in-band FEC recovery.
pub struct OpusDecoder {
    inner: opus::Decoder,
    sample_rate: u32,
    channels: usize,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A decoder writing `channels` (1 or 2) interleaved channels at `sample_rate` (one of
    /// [`OPUS_SAMPLE_RATES`]). Packets coded with the other channel count are mixed down or
    /// duplicated by libopus.
    pub fn new(sample_rate: u32, channels: u8) -> Result<Self, OpusError> {
        check_rate(sample_rate)?;
        let ch = channels_of(channels)?;
        Ok(OpusDecoder {
            inner: opus::Decoder::new(sample_rate, ch)?,
            sample_rate,
            channels: usize::from(channels),
        })
    }

    /// The output rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The number of interleaved output channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Decodes one packet and appends its samples (interleaved) to `out`; returns the number of
    /// samples per channel. A malformed packet is an error and leaves `out` as it was.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, OpusError> {
        // An empty slice would mean "lost" to libopus; from the network it is simply invalid.
        parse_packet(packet)?;
        let max = samples_per_ms(self.sample_rate, MAX_PACKET_MS);
        self.decode_into(packet, max, false, out)
    }

    /// Packet-loss concealment: appends `samples` samples per channel that continue the signal
    /// where the last decoded packet left it (fading to silence over long gaps). `samples` must
    /// be a multiple of 2.5 ms and at most 120 ms; for a lost 20 ms packet at 48 kHz, 960.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<usize, OpusError> {
        self.check_gap(samples)?;
        self.decode_into(&[], samples, false, out)
    }

    /// Recovers lost audio from the in-band FEC of `next_packet`, the packet that arrived after
    /// the gap: appends `lost_samples` samples per channel standing for the missing audio (the
    /// gap's length, from the RTP timestamps: one 20 ms packet at 48 kHz is 960). The FEC covers
    /// only the frame just before `next_packet`; libopus conceals any earlier part of a longer
    /// gap, and all of it when `next_packet` carries no FEC. Decode `next_packet` itself with
    /// [`Self::decode`] afterwards.
    pub fn decode_fec(
        &mut self,
        next_packet: &[u8],
        lost_samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<usize, OpusError> {
        parse_packet(next_packet)?;
        self.check_gap(lost_samples)?;
        self.decode_into(next_packet, lost_samples, true, out)
    }

    /// libopus conceals or recovers whole 2.5 ms units, up to 120 ms at a time.
    fn check_gap(&self, samples: usize) -> Result<(), OpusError> {
        match quarter_frames(samples, self.sample_rate) {
            Some(q) if (1..=48).contains(&q) => Ok(()),
            _ => Err(OpusError::InvalidArgument(format!(
                "{samples} samples at {} Hz is not a multiple of 2.5 ms between 2.5 and 120 ms",
                self.sample_rate
            ))),
        }
    }

    /// Runs libopus with room for `max_samples` per channel and keeps what it wrote.
    fn decode_into(
        &mut self,
        packet: &[u8],
        max_samples: usize,
        fec: bool,
        out: &mut Vec<i16>,
    ) -> Result<usize, OpusError> {
        let start = out.len();
        out.resize(start + max_samples * self.channels, 0);
        match self.inner.decode(packet, &mut out[start..], fec) {
            Ok(n) => {
                out.truncate(start + n * self.channels);
                Ok(n)
            }
            Err(e) => {
                out.truncate(start);
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tone::{db, level_at, rms, zero_crossing_frequency, Sine};

    const RATE: u32 = 48_000;
    const FRAME: usize = 960; // 20 ms at 48 kHz

    /// `seconds` of a tone, encoded in 20 ms frames at 48 kHz mono.
    fn encode_tone(freq: f64, amplitude: f64, frames: usize) -> Vec<Vec<u8>> {
        let mut enc = OpusEncoder::new(RATE, 1, OpusApplication::Voip).unwrap();
        let mut sine = Sine::new(freq, RATE, amplitude);
        (0..frames)
            .map(|_| {
                let mut pkt = Vec::new();
                let n = enc.encode(&sine.take(FRAME), &mut pkt).unwrap();
                assert_eq!(n, pkt.len());
                pkt
            })
            .collect()
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_level() {
        let packets = encode_tone(1000.0, 10_000.0, 50);
        let mut dec = OpusDecoder::new(RATE, 1).unwrap();
        let mut pcm = Vec::new();
        for p in &packets {
            assert_eq!(dec.decode(p, &mut pcm).unwrap(), FRAME);
        }
        assert_eq!(pcm.len(), 50 * FRAME);
        // The first 100 ms hold the codec's delay and its start-up.
        let steady = &pcm[5 * FRAME..];
        let level = level_at(steady, RATE, 1000.0);
        let freq = zero_crossing_frequency(steady, RATE).unwrap();
        // The share of the signal's power that is the 1 kHz tone.
        let purity = (level * level / 2.0) / (rms(steady) * rms(steady));
        println!(
            "opus 32 kb/s, 1 kHz at 10000: level {level:.0} ({:+.2} dB), {freq:.2} Hz, \
             tone power {:.2} %",
            db(level, 10_000.0),
            purity * 100.0
        );
        assert!(db(level, 10_000.0).abs() < 1.0, "level {level}");
        assert!((freq - 1000.0).abs() < 2.0, "frequency {freq}");
        assert!(purity > 0.98, "tone power share {purity}");
    }

    #[test]
    fn a_stream_at_16_khz_decodes_at_48_khz() {
        // libopus converts rates itself: a 16 kHz encoder and a 48 kHz decoder agree.
        let mut enc = OpusEncoder::new(16_000, 1, OpusApplication::Voip).unwrap();
        let mut dec = OpusDecoder::new(48_000, 1).unwrap();
        let mut sine = Sine::new(440.0, 16_000, 8000.0);
        let mut pcm = Vec::new();
        for _ in 0..50 {
            let mut pkt = Vec::new();
            enc.encode(&sine.take(320), &mut pkt).unwrap();
            assert_eq!(parse_packet(&pkt).unwrap().samples_48k, 960);
            assert_eq!(packet_samples(&pkt, 16_000).unwrap(), 320);
            assert_eq!(dec.decode(&pkt, &mut pcm).unwrap(), 960);
        }
        let level = level_at(&pcm[5 * FRAME..], 48_000, 440.0);
        assert!(db(level, 8000.0).abs() < 1.0, "level {level}");
    }

    #[test]
    fn stereo_round_trip() {
        let mut enc = OpusEncoder::new(RATE, 2, OpusApplication::Audio).unwrap();
        // Below about 80 kb/s libopus narrows the stereo image (each channel takes some of the
        // other), which would lower each tone by about 1 dB.
        enc.set_bitrate(96_000).unwrap();
        let mut dec = OpusDecoder::new(RATE, 2).unwrap();
        let (mut l, mut r) = (
            Sine::new(500.0, RATE, 8000.0),
            Sine::new(1500.0, RATE, 8000.0),
        );
        let mut pcm = Vec::new();
        for _ in 0..50 {
            let (a, b) = (l.take(FRAME), r.take(FRAME));
            let frame: Vec<i16> = a.iter().zip(&b).flat_map(|(&x, &y)| [x, y]).collect();
            let mut pkt = Vec::new();
            enc.encode(&frame, &mut pkt).unwrap();
            assert!(parse_packet(&pkt).unwrap().stereo);
            assert_eq!(dec.decode(&pkt, &mut pcm).unwrap(), FRAME);
        }
        let left: Vec<i16> = pcm.iter().step_by(2).copied().skip(5 * FRAME).collect();
        let right: Vec<i16> = pcm
            .iter()
            .skip(1)
            .step_by(2)
            .copied()
            .skip(5 * FRAME)
            .collect();
        let (l_db, r_db) = (
            db(level_at(&left, RATE, 500.0), 8000.0),
            db(level_at(&right, RATE, 1500.0), 8000.0),
        );
        println!("stereo 96 kb/s: left 500 Hz {l_db:+.2} dB, right 1500 Hz {r_db:+.2} dB");
        assert!(l_db.abs() < 1.0 && r_db.abs() < 1.0);
        // Each channel keeps its own tone: the other one is far down.
        assert!(db(level_at(&left, RATE, 1500.0), 8000.0) < -30.0);
        assert!(db(level_at(&right, RATE, 500.0), 8000.0) < -30.0);
    }

    #[test]
    fn concealment_fills_the_gap_with_the_signal() {
        let packets = encode_tone(440.0, 10_000.0, 30);
        let mut dec = OpusDecoder::new(RATE, 1).unwrap();
        let mut pcm = Vec::new();
        for p in &packets[..20] {
            dec.decode(p, &mut pcm).unwrap();
        }
        let before = pcm.len();
        assert_eq!(dec.conceal(FRAME, &mut pcm).unwrap(), FRAME);
        assert_eq!(pcm.len(), before + FRAME);
        // Concealment continues a steady tone rather than going silent.
        let concealed = &pcm[before..];
        assert!(rms(concealed) > 0.5 * rms(&pcm[before - FRAME..before]));
        // Other durations: 2.5 ms and 60 ms, and stereo doubles the samples appended.
        assert_eq!(dec.conceal(120, &mut pcm).unwrap(), 120);
        assert_eq!(dec.conceal(2880, &mut pcm).unwrap(), 2880);
        let mut stereo = OpusDecoder::new(16_000, 2).unwrap();
        let mut out = Vec::new();
        assert_eq!(stereo.conceal(320, &mut out).unwrap(), 320);
        assert_eq!(out.len(), 640);
    }

    #[test]
    fn fec_recovers_a_lost_frame_better_than_concealment() {
        // A sweep is hard to extrapolate, so the FEC copy should clearly beat PLC.
        let mut enc = OpusEncoder::new(RATE, 1, OpusApplication::Voip).unwrap();
        enc.set_packet_loss_percent(30).unwrap();
        let mut source = Vec::new();
        let mut packets = Vec::new();
        for k in 0..40 {
            let mut frame = Sine::new(300.0 + 40.0 * k as f64, RATE, 9000.0).take(FRAME);
            frame.iter_mut().for_each(|s| *s = (*s as f64 * 0.9) as i16);
            let mut pkt = Vec::new();
            enc.encode(&frame, &mut pkt).unwrap();
            source.extend_from_slice(&frame);
            packets.push(pkt);
        }
        let lost = 25;
        let run = |use_fec: bool| {
            let mut dec = OpusDecoder::new(RATE, 1).unwrap();
            let mut pcm = Vec::new();
            for (i, p) in packets.iter().enumerate() {
                if i == lost {
                    continue;
                }
                if i == lost + 1 {
                    let n = if use_fec {
                        dec.decode_fec(p, FRAME, &mut pcm).unwrap()
                    } else {
                        dec.conceal(FRAME, &mut pcm).unwrap()
                    };
                    assert_eq!(n, FRAME);
                }
                dec.decode(p, &mut pcm).unwrap();
            }
            assert_eq!(pcm.len(), packets.len() * FRAME);
            pcm
        };
        let (with_fec, with_plc) = (run(true), run(false));
        // The decoder output lags the input by the codec delay; compare the lost frame's slot
        // against the fully decoded stream (no loss) rather than the source.
        let mut reference = Vec::new();
        let mut dec = OpusDecoder::new(RATE, 1).unwrap();
        for p in &packets {
            dec.decode(p, &mut reference).unwrap();
        }
        let slot = lost * FRAME..(lost + 1) * FRAME;
        let err = |pcm: &[i16]| {
            let diff: Vec<i16> = pcm[slot.clone()]
                .iter()
                .zip(&reference[slot.clone()])
                .map(|(&a, &b)| a.saturating_sub(b))
                .collect();
            rms(&diff)
        };
        let (e_fec, e_plc) = (err(&with_fec), err(&with_plc));
        println!(
            "lost frame error vs loss-free decode: FEC {e_fec:.0}, PLC {e_plc:.0} (rms), signal {:.0}",
            rms(&reference[slot.clone()])
        );
        assert!(e_fec < 0.5 * e_plc, "FEC error {e_fec} vs PLC {e_plc}");
    }

    #[test]
    fn fec_without_fec_data_still_fills_the_gap() {
        // An encoder with FEC off: decode_fec falls back to concealment, same length.
        let mut enc = OpusEncoder::new(RATE, 1, OpusApplication::Voip).unwrap();
        enc.set_inband_fec(false).unwrap();
        let mut sine = Sine::new(440.0, RATE, 8000.0);
        let mut dec = OpusDecoder::new(RATE, 1).unwrap();
        let mut pcm = Vec::new();
        let mut pkt = Vec::new();
        enc.encode(&sine.take(FRAME), &mut pkt).unwrap();
        dec.decode(&pkt, &mut pcm).unwrap();
        pkt.clear();
        enc.encode(&sine.take(FRAME), &mut pkt).unwrap();
        // A 40 ms gap: libopus conceals the first half, recovers (or conceals) the second.
        assert_eq!(
            dec.decode_fec(&pkt, 2 * FRAME, &mut pcm).unwrap(),
            2 * FRAME
        );
        assert_eq!(pcm.len(), 3 * FRAME);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let mut dec = OpusDecoder::new(RATE, 1).unwrap();
        let mut out = vec![7i16; 3];
        // Empty: invalid from the network (loss is conceal()'s job).
        assert!(matches!(
            dec.decode(&[], &mut out),
            Err(OpusError::InvalidPacket(_))
        ));
        // Code 3 (arbitrary frame count) with the count byte missing.
        assert!(matches!(
            dec.decode(&[0x03], &mut out),
            Err(OpusError::InvalidPacket(_))
        ));
        // Code 3 asking for 0 frames, and 49 frames (more than 120 ms).
        assert!(dec.decode(&[0x03, 0x00], &mut out).is_err());
        assert!(parse_packet(&[0x03, 49, 0, 0]).is_err());
        // Code 2 whose first frame's length runs past the end.
        assert!(dec.decode(&[0x02, 200, 1, 2, 3], &mut out).is_err());
        // Longer than any datagram.
        assert!(parse_packet(&vec![0u8; MAX_PACKET_BYTES + 1]).is_err());
        assert_eq!(out, vec![7; 3], "a failed decode leaves the output alone");
        // Random bytes: each is an error or a full decode of the duration the TOC claims.
        let mut x: u32 = 0x1234_5678;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..5000 {
            let len = (rnd() % 300) as usize;
            let pkt: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            let mut pcm = Vec::new();
            match dec.decode(&pkt, &mut pcm) {
                Ok(n) => {
                    assert_eq!(n, packet_samples(&pkt, RATE).unwrap());
                    assert_eq!(pcm.len(), n);
                }
                Err(_) => assert!(pcm.is_empty()),
            }
            // decode_fec on garbage: an error or exactly the gap.
            if let Ok(n) = dec.decode_fec(&pkt, FRAME, &mut pcm) {
                assert_eq!(n, FRAME);
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(OpusEncoder::new(44_100, 1, OpusApplication::Voip).is_err());
        assert!(OpusEncoder::new(48_000, 3, OpusApplication::Voip).is_err());
        assert!(OpusDecoder::new(22_050, 1).is_err());
        assert!(OpusDecoder::new(48_000, 0).is_err());
        let mut enc = OpusEncoder::new(RATE, 1, OpusApplication::Voip).unwrap();
        let mut out = Vec::new();
        // 15 ms and an odd length are not Opus frame sizes.
        assert!(enc.encode(&[0; 720], &mut out).is_err());
        assert!(enc.encode(&[0; 961], &mut out).is_err());
        assert!(enc.encode(&[], &mut out).is_err());
        assert!(out.is_empty());
        assert!(enc.set_bitrate(100).is_err());
        assert!(enc.set_packet_loss_percent(101).is_err());
        let mut stereo = OpusEncoder::new(RATE, 2, OpusApplication::Voip).unwrap();
        assert!(stereo.encode(&[0; 1921], &mut out).is_err());
        let mut dec = OpusDecoder::new(RATE, 1).unwrap();
        assert!(dec.conceal(0, &mut Vec::new()).is_err());
        assert!(dec.conceal(100, &mut Vec::new()).is_err());
        assert!(dec.conceal(5761, &mut Vec::new()).is_err());
        assert!(dec.conceal(6000, &mut Vec::new()).is_err());
    }

    #[test]
    fn every_frame_duration_encodes() {
        for rate in OPUS_SAMPLE_RATES {
            let mut enc = OpusEncoder::new(rate, 1, OpusApplication::Voip).unwrap();
            for tenths_ms in [25u32, 50, 100, 200, 400, 600, 800, 1000, 1200] {
                let n = (rate * tenths_ms / 10_000) as usize;
                let mut pkt = Vec::new();
                enc.encode(&vec![0; n], &mut pkt).unwrap();
                let info = parse_packet(&pkt).unwrap();
                assert_eq!(
                    info.samples_48k,
                    (48 * tenths_ms / 10) as usize,
                    "{rate} Hz"
                );
                assert_eq!(packet_samples(&pkt, rate).unwrap(), n);
            }
        }
    }

    #[test]
    fn max_playback_rate_limits_the_coded_band() {
        for (rate, max_band) in [
            (8_000, 4_000),
            (16_000, 8_000),
            (24_000, 12_000),
            (48_000, 20_000),
        ] {
            let mut enc = OpusEncoder::new(RATE, 1, OpusApplication::Voip).unwrap();
            enc.set_bitrate(64_000).unwrap();
            enc.set_max_playback_rate(rate).unwrap();
            let mut sine = Sine::new(440.0, RATE, 8000.0);
            let mut widest = 0;
            for _ in 0..25 {
                let mut pkt = Vec::new();
                enc.encode(&sine.take(FRAME), &mut pkt).unwrap();
                widest = widest.max(parse_packet(&pkt).unwrap().bandwidth_hz);
            }
            // At 64 kbit/s libopus codes a tone at the widest band it is allowed: exactly the
            // limit (so at 48 kHz, fullband, which shows the lower limits did take effect).
            assert_eq!(widest, max_band, "maxplaybackrate {rate}");
        }
        let mut enc = OpusEncoder::new(RATE, 1, OpusApplication::Voip).unwrap();
        assert!(enc.set_max_playback_rate(0).is_err());
    }

    #[test]
    fn sdp_constants_follow_rfc_7587() {
        assert_eq!(
            OPUS_RTPMAP,
            format!("{OPUS_ENCODING_NAME}/{OPUS_RTP_CLOCK_RATE}/{OPUS_RTPMAP_CHANNELS}")
        );
        assert!(libopus_version().starts_with("libopus 1."));
    }
}
