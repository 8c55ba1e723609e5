//! Which offered payload types we can use: audio codecs, telephone events, and the H.264 / VP8
//! format parameters.

use std::fmt;

use crate::frame::VideoCodec;

use super::model::{static_payload, MediaDescription, PayloadType};

/// An audio codec we are willing to negotiate. G.711 is coded in the engine; anything else is
/// carried as opaque payload for the application.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AudioCodec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// Any other codec, matched by encoding name (without case), clock rate and channel count.
    Other {
        name: String,
        clock_rate: u32,
        channels: u16,
    },
}

impl AudioCodec {
    /// The SDP encoding name.
    pub fn encoding_name(&self) -> &str {
        match self {
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
            AudioCodec::Other { name, .. } => name,
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(&self) -> u32 {
        match self {
            AudioCodec::Pcmu | AudioCodec::Pcma => 8000,
            AudioCodec::Other { clock_rate, .. } => *clock_rate,
        }
    }

    /// The channel count.
    pub fn channels(&self) -> u16 {
        match self {
            AudioCodec::Pcmu | AudioCodec::Pcma => 1,
            AudioCodec::Other { channels, .. } => *channels,
        }
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

    /// Reads a codec name as a user writes it: `PCMU`, `pcma`, a static name such as `G722`, or
    /// `name/clock[/channels]` (`opus/48000/2`). `None` for a bare name we know no clock rate for.
    pub fn from_name(text: &str) -> Option<AudioCodec> {
        let mut parts = text.trim().split('/');
        let name = parts.next()?.trim();
        if name.is_empty() {
            return None;
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

    /// A codec from its three properties; G.711 names at 8 kHz mono give the built-in variants.
    pub fn new(name: &str, clock_rate: u32, channels: u16) -> AudioCodec {
        if clock_rate == 8000 && channels == 1 {
            if name.eq_ignore_ascii_case("PCMU") {
                return AudioCodec::Pcmu;
            }
            if name.eq_ignore_ascii_case("PCMA") {
                return AudioCodec::Pcma;
            }
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

/// The RTCP feedback types we take part in: PLI and FIR (keyframe requests) and generic NACK.
pub(crate) fn supported_feedback(fb: &str) -> bool {
    ["nack", "nack pli", "ccm fir"]
        .iter()
        .any(|s| fb.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(AudioCodec::from_name("pcmu"), Some(AudioCodec::Pcmu));
        assert_eq!(AudioCodec::from_name("PCMA/8000"), Some(AudioCodec::Pcma));
        assert_eq!(
            AudioCodec::from_name("G722"),
            Some(AudioCodec::Other {
                name: "G722".into(),
                clock_rate: 8000,
                channels: 1
            })
        );
        assert_eq!(AudioCodec::from_name("opus/48000/2").unwrap().channels(), 2);
        assert_eq!(AudioCodec::from_name("opus"), None);
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
