//! Which offered payload types we can use: audio codecs, telephone events, and the H.264 / VP8
//! format parameters.

use std::fmt;

use crate::codec::voice::VoiceCodec;
use crate::frame::VideoCodec;

use super::model::{static_payload, MediaDescription, PayloadType};

/// An audio codec we are willing to negotiate. G.711, G.722 and Opus are coded in the engine;
/// anything else is carried as opaque payload for the application.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AudioCodec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// G.722 at 64 kbit/s, static payload type 9: sampled at 16 kHz, but `G722/8000` in SDP and
    /// 8 kHz in RTP timestamps (RFC 3551 §4.5.2).
    G722,
    /// Opus (RFC 7587): always `opus/48000/2` in SDP, whatever it carries; a dynamic payload type.
    Opus,
    /// Any other codec, matched by encoding name (without case), clock rate and channel count.
    Other {
        /// Encoding name as in `a=rtpmap`.
        name: String,
        /// RTP clock rate.
        clock_rate: u32,
        /// Channel count (1 unless the rtpmap says otherwise).
        channels: u16,
    },
}

impl AudioCodec {
    /// The SDP encoding name.
    pub fn encoding_name(&self) -> &str {
        match self {
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
            AudioCodec::G722 => "G722",
            AudioCodec::Opus => "opus",
            AudioCodec::Other { name, .. } => name,
        }
    }

    /// The RTP clock rate, as SDP and RTP timestamps use it.
    pub fn clock_rate(&self) -> u32 {
        match self {
            AudioCodec::Pcmu | AudioCodec::Pcma | AudioCodec::G722 => 8000,
            AudioCodec::Opus => 48000,
            AudioCodec::Other { clock_rate, .. } => *clock_rate,
        }
    }

    /// The rate the codec samples audio at: 16 kHz for G.722 (twice its RTP clock), 48 kHz for
    /// Opus, the clock rate otherwise.
    pub fn sample_rate(&self) -> u32 {
        match self {
            AudioCodec::G722 => 16000,
            other => other.clock_rate(),
        }
    }

    /// The channel count in the rtpmap (2 for Opus, which signals mono or stereo in fmtp).
    pub fn channels(&self) -> u16 {
        match self {
            AudioCodec::Pcmu | AudioCodec::Pcma | AudioCodec::G722 => 1,
            AudioCodec::Opus => 2,
            AudioCodec::Other { channels, .. } => *channels,
        }
    }

    /// The engine's codec for this one, `None` for those it passes through.
    pub fn voice_codec(&self) -> Option<VoiceCodec> {
        match self {
            AudioCodec::Pcmu => Some(VoiceCodec::Pcmu),
            AudioCodec::Pcma => Some(VoiceCodec::Pcma),
            AudioCodec::G722 => Some(VoiceCodec::G722),
            AudioCodec::Opus => Some(VoiceCodec::Opus),
            AudioCodec::Other { .. } => None,
        }
    }

    /// Whether the engine encodes and decodes this codec (the others are passed through).
    pub fn is_coded_by_engine(&self) -> bool {
        !matches!(self, AudioCodec::Other { .. })
    }

    /// The codecs a SIP backend offers and accepts by default, in our order of preference:
    /// roomkit's G.722, PCMU and PCMA, with Opus first.
    pub fn defaults() -> Vec<AudioCodec> {
        vec![
            AudioCodec::Opus,
            AudioCodec::G722,
            AudioCodec::Pcmu,
            AudioCodec::Pcma,
        ]
    }

    /// The RFC 3551 static payload type for this codec, if it has one.
    pub fn static_payload_type(&self) -> Option<u8> {
        (0u8..35).find(|&pt| {
            static_payload(pt).is_some_and(|(name, clock, ch)| {
                name.eq_ignore_ascii_case(self.encoding_name())
                    && clock == self.clock_rate()
                    && ch == self.channels()
            })
        })
    }

    /// Reads a codec name as a user writes it: `PCMU`, `pcma`, `g722`, `opus`, another static
    /// name such as `GSM`, or `name/clock[/channels]`. `None` for a bare name we know no clock
    /// rate for.
    pub fn from_name(text: &str) -> Option<AudioCodec> {
        let mut parts = text.trim().split('/');
        let name = parts.next()?.trim();
        if name.is_empty() {
            return None;
        }
        if name.eq_ignore_ascii_case("opus") {
            // RFC 7587 fixes the rtpmap: `opus/48000/2`, so the bare name is enough.
            let rest: Vec<&str> = parts.collect();
            return match rest.as_slice() {
                [] | ["48000"] | ["48000", "2"] => Some(AudioCodec::Opus),
                _ => None,
            };
        }
        let clock: Option<u32> = match parts.next() {
            Some(c) => Some(c.trim().parse().ok()?),
            None => None,
        };
        let channels: Option<u16> = match parts.next() {
            Some(c) => Some(c.trim().parse().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        let (clock_rate, channels) = match clock {
            Some(clock) => (clock, channels.unwrap_or(1)),
            None => {
                let (_, clock, ch) = (0u8..35)
                    .filter_map(static_payload)
                    .find(|(n, _, _)| n.eq_ignore_ascii_case(name))?;
                (clock, ch)
            }
        };
        Some(AudioCodec::new(name, clock_rate, channels))
    }

    /// A codec from its three properties; the codecs the engine codes give their own variants.
    pub fn new(name: &str, clock_rate: u32, channels: u16) -> AudioCodec {
        if clock_rate == 8000 && channels == 1 {
            if name.eq_ignore_ascii_case("PCMU") {
                return AudioCodec::Pcmu;
            }
            if name.eq_ignore_ascii_case("PCMA") {
                return AudioCodec::Pcma;
            }
            if name.eq_ignore_ascii_case("G722") {
                return AudioCodec::G722;
            }
        }
        if clock_rate == 48000 && channels == 2 && name.eq_ignore_ascii_case("opus") {
            return AudioCodec::Opus;
        }
        AudioCodec::Other {
            name: name.to_string(),
            clock_rate,
            channels,
        }
    }

    /// Whether an offered payload type is this codec.
    pub fn matches(&self, p: &PayloadType) -> bool {
        p.is(self.encoding_name())
            && p.clock_rate() == Some(self.clock_rate())
            && p.channels() == self.channels()
    }

    /// The rtpmap text for payload type `pt` (`0 PCMU/8000`, `111 opus/48000/2`).
    pub(crate) fn rtpmap(&self, pt: u8) -> String {
        if self.channels() > 1 {
            format!(
                "{pt} {}/{}/{}",
                self.encoding_name(),
                self.clock_rate(),
                self.channels()
            )
        } else {
            format!("{pt} {}/{}", self.encoding_name(), self.clock_rate())
        }
    }
}

impl fmt::Display for AudioCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encoding_name())
    }
}

/// The RFC 4733 encoding name of telephone events.
pub(crate) const TELEPHONE_EVENT: &str = "telephone-event";

/// The events we answer when the offer gives no fmtp for telephone-event: the DTMF digits and A–D.
pub(crate) const DEFAULT_EVENTS: &str = "0-16";

/// The telephone-event payload type of an audio m-line whose codec runs at `clock_rate`. Events
/// are timed on the audio clock (RFC 4733 §2.1), so only an entry with the same rate will do.
pub(crate) fn telephone_event(media: &MediaDescription, clock_rate: u32) -> Option<&PayloadType> {
    media
        .payloads
        .iter()
        .find(|p| p.is(TELEPHONE_EVENT) && p.clock_rate() == Some(clock_rate))
}

/// The H.264 profile-level-id RFC 6184 §8.1 tells us to assume when the offer has none:
/// Baseline profile, level 1.0.
pub const H264_DEFAULT_PROFILE_LEVEL_ID: &str = "420010";

/// The profile-level-id we offer: Constrained Baseline, level 3.1.
pub const H264_OFFER_PROFILE_LEVEL_ID: &str = "42e01f";

/// The packetization-mode of an H.264 payload type (absent means 0, RFC 6184 §8.1).
pub(crate) fn h264_packetization_mode(p: &PayloadType) -> Option<u8> {
    match p.fmtp_param("packetization-mode") {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// The offered profile-level-id, when it is well-formed (six hex digits).
pub(crate) fn h264_profile_level_id(p: &PayloadType) -> Option<&str> {
    p.fmtp_param("profile-level-id")
        .filter(|v| v.len() == 6 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The video codec an offered payload type carries, when it is one we implement.
pub(crate) fn video_codec_of(p: &PayloadType) -> Option<VideoCodec> {
    if p.clock_rate() != Some(90000) {
        return None;
    }
    let codec = VideoCodec::from_name(p.encoding_name()?)?;
    match codec {
        // Interleaved mode (2) needs STAP-B/MTAP/FU-B, which we do not implement.
        VideoCodec::H264 => matches!(h264_packetization_mode(p), Some(0 | 1)).then_some(codec),
        VideoCodec::Vp8 => Some(codec),
    }
}

/// Picks the payload type to use from an m-line for `codec`: for H.264, the first offered with
/// packetization-mode 1, else the first with mode 0; for VP8, the first.
pub(crate) fn pick_video_payload(
    media: &MediaDescription,
    codec: VideoCodec,
) -> Option<&PayloadType> {
    let usable: Vec<&PayloadType> = media
        .payloads
        .iter()
        .filter(|p| video_codec_of(p) == Some(codec))
        .collect();
    match codec {
        VideoCodec::H264 => usable
            .iter()
            .find(|p| h264_packetization_mode(p) == Some(1))
            .or_else(|| usable.first())
            .copied(),
        VideoCodec::Vp8 => usable.first().copied(),
    }
}

/// The RTCP feedback types we take part in: PLI and FIR (keyframe requests) always, generic NACK
/// when loss recovery is on.
pub(crate) fn supported_feedback(fb: &str, nack: bool) -> bool {
    fb.eq_ignore_ascii_case("nack pli")
        || fb.eq_ignore_ascii_case("ccm fir")
        || (nack && fb.eq_ignore_ascii_case("nack"))
}

/// The RFC 4588 encoding name of retransmission payload types.
pub(crate) const RTX: &str = "rtx";

/// The RED and ULPFEC payload types an m-line lists (`a=rtpmap:<pt> red/90000` and
/// `a=rtpmap:<pt> ulpfec/90000`), when it lists both: forward error correction on video.
pub fn fec_payload_types(media: &MediaDescription) -> Option<(u8, u8)> {
    let find = |name: &str| {
        media
            .payloads
            .iter()
            .find(|p| p.is(name) && p.clock_rate() == Some(90000))
            .map(|p| p.pt)
    };
    Some((find("red")?, find("ulpfec")?))
}

/// Writes the RED and ULPFEC payload types into a video m-line's formats and attributes.
pub(crate) fn write_fec(fec: Option<(u8, u8)>, fmt: &mut String, attrs: &mut Vec<String>) {
    if let Some((red, ulpfec)) = fec {
        fmt.push_str(&format!(" {red} {ulpfec}"));
        attrs.push(format!("rtpmap:{red} red/90000"));
        attrs.push(format!("rtpmap:{ulpfec} ulpfec/90000"));
    }
}

/// The retransmission payload type an m-line offers for payload type `pt` (`a=rtpmap:<rtx>
/// rtx/<clock>` with `a=fmtp:<rtx> apt=<pt>`).
pub(crate) fn rtx_for(media: &MediaDescription, pt: u8) -> Option<&PayloadType> {
    media.payloads.iter().find(|p| {
        p.is(RTX)
            && p.clock_rate() == Some(90000)
            && p.fmtp_param("apt").and_then(|v| v.parse::<u8>().ok()) == Some(pt)
    })
}

/// The Opus format parameters a peer gave for what it receives (RFC 7587 §6.1): they shape what
/// we encode for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpusParams {
    /// The peer decodes in-band FEC: we should send it (`useinbandfec=1`).
    pub fec: bool,
    /// The peer prefers stereo (`stereo=1`); we send mono otherwise.
    pub stereo: bool,
    /// The highest audio bandwidth (as a sample rate) the peer wants to play (`maxplaybackrate`).
    pub max_playback_rate: Option<u32>,
}

impl OpusParams {
    /// Reads an Opus payload type's fmtp.
    pub(crate) fn of(p: &PayloadType) -> OpusParams {
        OpusParams {
            fec: p.fmtp_param("useinbandfec") == Some("1"),
            stereo: p.fmtp_param("stereo") == Some("1"),
            max_playback_rate: p
                .fmtp_param("maxplaybackrate")
                .and_then(|v| v.parse().ok())
                .filter(|r| (8000..=48000).contains(r)),
        }
    }
}

/// The fmtp we write for Opus, offering or answering: we decode in-band FEC and prefer mono.
pub(crate) const OPUS_FMTP: &str = "useinbandfec=1;stereo=0;sprop-stereo=0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(AudioCodec::from_name("pcmu"), Some(AudioCodec::Pcmu));
        assert_eq!(AudioCodec::from_name("PCMA/8000"), Some(AudioCodec::Pcma));
        assert_eq!(AudioCodec::from_name("G722"), Some(AudioCodec::G722));
        assert_eq!(AudioCodec::from_name("g722/8000"), Some(AudioCodec::G722));
        assert_eq!(AudioCodec::G722.sample_rate(), 16000);
        assert_eq!(
            AudioCodec::from_name("opus/48000/2"),
            Some(AudioCodec::Opus)
        );
        assert_eq!(AudioCodec::from_name("opus"), Some(AudioCodec::Opus));
        assert_eq!(
            AudioCodec::from_name("opus/16000"),
            None,
            "RFC 7587: 48000/2 only"
        );
        assert_eq!(AudioCodec::Opus.channels(), 2);
        assert_eq!(
            AudioCodec::from_name("GSM"),
            Some(AudioCodec::Other {
                name: "GSM".into(),
                clock_rate: 8000,
                channels: 1
            })
        );
        assert_eq!(AudioCodec::from_name("speex"), None);
        assert_eq!(AudioCodec::from_name("x/y"), None);
        assert_eq!(AudioCodec::from_name(""), None);
        assert_eq!(AudioCodec::Pcma.static_payload_type(), Some(8));
        assert_eq!(
            AudioCodec::from_name("G722").unwrap().static_payload_type(),
            Some(9)
        );
        assert_eq!(
            AudioCodec::from_name("opus/48000/2")
                .unwrap()
                .static_payload_type(),
            None
        );
    }

    fn h264(pt: u8, fmtp: Option<&str>) -> PayloadType {
        PayloadType {
            pt,
            rtpmap: Some(super::super::model::RtpMap {
                encoding_name: "H264".into(),
                clock_rate: 90000,
                channels: None,
            }),
            fmtp: fmtp.map(str::to_string),
            rtcp_fb: vec![],
        }
    }

    #[test]
    fn h264_modes() {
        assert_eq!(h264_packetization_mode(&h264(96, None)), Some(0));
        assert_eq!(
            h264_packetization_mode(&h264(96, Some("packetization-mode=1"))),
            Some(1)
        );
        assert_eq!(
            video_codec_of(&h264(96, Some("packetization-mode=2"))),
            None
        );
        assert_eq!(
            video_codec_of(&h264(96, Some("packetization-mode=x"))),
            None
        );
        assert_eq!(
            h264_profile_level_id(&h264(96, Some("profile-level-id=42801F"))),
            Some("42801F")
        );
        assert_eq!(
            h264_profile_level_id(&h264(96, Some("profile-level-id=42801"))),
            None
        );
    }
}
