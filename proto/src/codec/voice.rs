//! The voice codecs the engine encodes and decodes itself, and the rate rules that go with them:
//! which rate each codec samples at, which clock its RTP timestamps use, and which PCM rate an
//! application gets by default.
//!
//! G.722 is the odd one (RFC 3551 §4.5.2): it samples at 16 kHz, yet SDP says `G722/8000` and
//! its RTP timestamps count at 8 kHz, so 20 ms of audio is 320 samples but advances the
//! timestamp by 160. One G.722 byte is two 16 kHz samples, hence one RTP timestamp unit per
//! byte. Opus counts at 48 kHz on the wire whatever rate it runs at (RFC 7587).

use super::g711::G711;
use super::g722::G722Encoder;
use super::opus::{
    OpusApplication, OpusEncoder, OpusError, OPUS_RTP_CLOCK_RATE, OPUS_SAMPLE_RATES,
};
use super::resample::RESAMPLER_RATES;

/// A codec the engine encodes and decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VoiceCodec {
    /// G.711 µ-law (payload type 0).
    Pcmu,
    /// G.711 A-law (payload type 8).
    Pcma,
    /// G.722 at 64 kbit/s (payload type 9).
    G722,
    /// Opus (a dynamic payload type), mono.
    Opus,
}

impl VoiceCodec {
    /// The codec of an RFC 3551 static payload type, for streams that name no codec.
    pub fn from_static_payload_type(pt: u8) -> Option<VoiceCodec> {
        match pt {
            0 => Some(VoiceCodec::Pcmu),
            8 => Some(VoiceCodec::Pcma),
            9 => Some(VoiceCodec::G722),
            _ => None,
        }
    }

    /// The codec of an SDP encoding name (any case) at an RTP clock rate: `PCMU/8000`,
    /// `PCMA/8000`, `G722/8000`, `opus/48000`. Anything else is not coded by the engine.
    pub fn from_name(name: &str, clock_rate: u32) -> Option<VoiceCodec> {
        let codec = [
            VoiceCodec::Pcmu,
            VoiceCodec::Pcma,
            VoiceCodec::G722,
            VoiceCodec::Opus,
        ]
        .into_iter()
        .find(|c| c.encoding_name().eq_ignore_ascii_case(name))?;
        (codec.rtp_clock_rate() == clock_rate).then_some(codec)
    }

    /// The SDP encoding name.
    pub fn encoding_name(self) -> &'static str {
        match self {
            VoiceCodec::Pcmu => "PCMU",
            VoiceCodec::Pcma => "PCMA",
            VoiceCodec::G722 => "G722",
            VoiceCodec::Opus => "opus",
        }
    }

    /// The clock of RTP timestamps (and of SDP's rtpmap): 8000, or 48000 for Opus.
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            VoiceCodec::Opus => OPUS_RTP_CLOCK_RATE,
            _ => 8000,
        }
    }

    /// The rate the codec's audio naturally has: 8 kHz (G.711), 16 kHz (G.722), 48 kHz (Opus).
    pub fn natural_rate(self) -> u32 {
        match self {
            VoiceCodec::Pcmu | VoiceCodec::Pcma => 8000,
            VoiceCodec::G722 => 16_000,
            VoiceCodec::Opus => 48_000,
        }
    }

    /// Whether the codec carries wideband audio (G.722, Opus).
    pub fn is_wideband(self) -> bool {
        matches!(self, VoiceCodec::G722 | VoiceCodec::Opus)
    }

    /// The rate the codec's encoder and decoder run at when the application's audio is at
    /// `app_rate`: Opus runs at the application's rate when libopus can (no resampler needed),
    /// the others at their natural rate.
    pub fn coding_rate(self, app_rate: u32) -> u32 {
        match self {
            VoiceCodec::Opus if OPUS_SAMPLE_RATES.contains(&app_rate) => app_rate,
            other => other.natural_rate(),
        }
    }

    /// PCM samples (at `coding_rate`) per RTP timestamp unit, as a ratio `(num, den)`:
    /// G.711 1/1, G.722 2/1, Opus `coding_rate`/48000.
    fn samples_per_tick(self, coding_rate: u32) -> (u64, u64) {
        (u64::from(coding_rate), u64::from(self.rtp_clock_rate()))
    }

    /// PCM samples at `coding_rate` that `ticks` RTP timestamp units stand for (G.722: twice).
    pub fn samples_for_ticks(self, ticks: u32, coding_rate: u32) -> usize {
        let (num, den) = self.samples_per_tick(coding_rate);
        (u64::from(ticks) * num / den) as usize
    }
}

/// Which PCM rate the application sends and receives on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppRate {
    /// 16 kHz when the codec is wideband (G.722, Opus), 8 kHz otherwise (G.711).
    #[default]
    Auto,
    /// The codec's natural rate: 8 kHz for G.711, 16 kHz for G.722, 48 kHz for Opus.
    Codec,
    /// This rate, in Hz: one of 8000, 12000, 16000, 24000, 32000 or 48000.
    Hz(u32),
}

impl AppRate {
    /// The rate in Hz for `codec`.
    pub fn resolve(self, codec: VoiceCodec) -> u32 {
        match self {
            AppRate::Auto if codec.is_wideband() => 16_000,
            AppRate::Auto => 8000,
            AppRate::Codec => codec.natural_rate(),
            AppRate::Hz(hz) => hz,
        }
    }

    /// Checks that a fixed rate is one the engine converts to and from.
    pub fn validate(self) -> Result<(), String> {
        match self {
            AppRate::Hz(hz) if !RESAMPLER_RATES.contains(&hz) => Err(format!(
                "audio sample rate {hz} Hz; supported: 8000, 12000, 16000, 24000, 32000, 48000"
            )),
            _ => Ok(()),
        }
    }
}

/// A codec's encoder for one stream, taking mono PCM at its coding rate one frame at a time.
#[derive(Debug)]
pub enum VoiceEncoder {
    /// PCMU or PCMA (the variant says which law).
    G711(G711),
    /// G.722 at 64 kbit/s.
    G722(Box<G722Encoder>),
    /// Opus (libopus).
    Opus(Box<OpusEncoder>),
}

impl VoiceEncoder {
    /// An encoder for `codec` taking PCM at `coding_rate` (see [`VoiceCodec::coding_rate`]).
    pub fn new(codec: VoiceCodec, coding_rate: u32) -> Result<VoiceEncoder, OpusError> {
        Ok(match codec {
            VoiceCodec::Pcmu => VoiceEncoder::G711(G711::Pcmu),
            VoiceCodec::Pcma => VoiceEncoder::G711(G711::Pcma),
            VoiceCodec::G722 => VoiceEncoder::G722(Box::default()),
            // Mono, tuned for speech, with in-band FEC on and 10 % expected loss.
            VoiceCodec::Opus => VoiceEncoder::Opus(Box::new(OpusEncoder::new(
                coding_rate,
                1,
                OpusApplication::Voip,
            )?)),
        })
    }

    /// Encodes one frame (20 ms for the stream core) and appends the payload to `out`.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), OpusError> {
        match self {
            VoiceEncoder::G711(law) => law.encode(pcm, out),
            VoiceEncoder::G722(e) => e.encode(pcm, out),
            VoiceEncoder::Opus(e) => {
                e.encode(pcm, out)?;
            }
        }
        Ok(())
    }

    /// Tells the encoder the packet loss its receiver reports (RTCP fraction lost, 0.0 to 1.0).
    /// Opus sizes its in-band FEC by it: the reported loss rounded up, at least 1 % (so the FEC
    /// stays on for the next loss) and at most [`MAX_EXPECTED_LOSS_PERCENT`]; the other codecs
    /// have nothing to adapt. Returns the percentage now in use, if the codec has one.
    pub fn on_reported_loss(&mut self, fraction: f64) -> Option<u8> {
        let VoiceEncoder::Opus(e) = self else {
            return None;
        };
        let percent = expected_loss_percent(fraction);
        e.set_packet_loss_percent(percent).ok()?;
        Some(percent)
    }

    /// Asks the Opus encoder to code no more bandwidth than a receiver playing at `hz` can use
    /// (the peer's `maxplaybackrate`); the other codecs have a fixed band.
    pub fn set_max_playback_rate(&mut self, hz: u32) -> Result<(), OpusError> {
        match self {
            VoiceEncoder::Opus(e) => e.set_max_playback_rate(hz),
            _ => Ok(()),
        }
    }
}

/// The most loss the Opus encoder is told to expect: beyond it FEC takes bits the speech needs
/// and cannot save much more.
pub const MAX_EXPECTED_LOSS_PERCENT: u8 = 30;

/// The expected loss (percent) for a reported loss `fraction`; see
/// [`VoiceEncoder::on_reported_loss`].
pub fn expected_loss_percent(fraction: f64) -> u8 {
    if !fraction.is_finite() {
        return 1;
    }
    (fraction * 100.0)
        .ceil()
        .clamp(1.0, f64::from(MAX_EXPECTED_LOSS_PERCENT)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_loss_follows_the_reports_within_bounds() {
        assert_eq!(expected_loss_percent(0.0), 1);
        assert_eq!(expected_loss_percent(0.031), 4);
        assert_eq!(expected_loss_percent(0.9), MAX_EXPECTED_LOSS_PERCENT);
        assert_eq!(expected_loss_percent(f64::NAN), 1);
        assert_eq!(expected_loss_percent(-1.0), 1);
        let mut opus = VoiceEncoder::new(VoiceCodec::Opus, 16_000).unwrap();
        assert_eq!(opus.on_reported_loss(0.05), Some(5));
        let VoiceEncoder::Opus(e) = &mut opus else {
            unreachable!()
        };
        assert_eq!(e.packet_loss_percent().unwrap(), 5);
        let mut g722 = VoiceEncoder::new(VoiceCodec::G722, 16_000).unwrap();
        assert_eq!(g722.on_reported_loss(0.05), None);
    }

    #[test]
    fn names_clocks_and_rates() {
        assert_eq!(VoiceCodec::from_name("g722", 8000), Some(VoiceCodec::G722));
        assert_eq!(VoiceCodec::from_name("OPUS", 48000), Some(VoiceCodec::Opus));
        assert_eq!(VoiceCodec::from_name("opus", 8000), None);
        assert_eq!(VoiceCodec::from_name("GSM", 8000), None);
        assert_eq!(
            VoiceCodec::from_static_payload_type(9),
            Some(VoiceCodec::G722)
        );
        assert_eq!(VoiceCodec::from_static_payload_type(3), None);
        // 20 ms of G.722 is 160 ticks and 320 samples.
        assert_eq!(VoiceCodec::G722.samples_for_ticks(160, 16_000), 320);
        assert_eq!(VoiceCodec::Opus.samples_for_ticks(960, 16_000), 320);
        assert_eq!(VoiceCodec::Pcmu.samples_for_ticks(160, 8000), 160);
        assert_eq!(VoiceCodec::Opus.coding_rate(16_000), 16_000);
        assert_eq!(VoiceCodec::Opus.coding_rate(32_000), 48_000);
        assert_eq!(VoiceCodec::G722.coding_rate(8000), 16_000);
    }

    #[test]
    fn app_rate_rule() {
        assert_eq!(AppRate::Auto.resolve(VoiceCodec::Pcmu), 8000);
        assert_eq!(AppRate::Auto.resolve(VoiceCodec::G722), 16_000);
        assert_eq!(AppRate::Auto.resolve(VoiceCodec::Opus), 16_000);
        assert_eq!(AppRate::Codec.resolve(VoiceCodec::Opus), 48_000);
        assert_eq!(AppRate::Hz(24_000).resolve(VoiceCodec::Pcma), 24_000);
        assert!(AppRate::Hz(44_100).validate().is_err());
        assert!(AppRate::Hz(32_000).validate().is_ok());
    }
}
