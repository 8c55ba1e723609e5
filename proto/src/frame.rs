//! The media units an application sends and receives.

use std::fmt;

/// A video codec the engine can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VideoCodec {
    /// H.264 / AVC, RTP payload format RFC 6184.
    H264,
    /// VP8, RTP payload format RFC 7741.
    Vp8,
}

impl VideoCodec {
    /// The lower-case identifier used in `VideoFrame::codec` and in JSON output (`"h264"`, `"vp8"`).
    pub fn as_str(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::Vp8 => "vp8",
        }
    }

    /// The SDP encoding name (`H264`, `VP8`).
    pub fn encoding_name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H264",
            VideoCodec::Vp8 => "VP8",
        }
    }

    /// Parses a codec name, case-insensitively (`h264`, `H264`, `vp8`, `VP8`).
    pub fn from_name(name: &str) -> Option<VideoCodec> {
        if name.eq_ignore_ascii_case("h264") {
            Some(VideoCodec::H264)
        } else if name.eq_ignore_ascii_case("vp8") {
            Some(VideoCodec::Vp8)
        } else {
            None
        }
    }
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How received H.264 video is handed to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Delivery {
    /// One frame per picture, Annex-B (a 4-byte start code before every NAL), complete pictures only.
    #[default]
    AccessUnit,
    /// One frame per NAL unit, raw (no start code): the behaviour of roomkit's Python backend.
    NalUnit,
}

/// One received unit of video: a whole picture (`Delivery::AccessUnit`, and always for VP8) or one
/// NAL unit (`Delivery::NalUnit`).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    /// Annex-B access unit, raw NAL unit, or a VP8 frame.
    pub data: Vec<u8>,
    /// The codec of `data`.
    pub codec: VideoCodec,
    /// Presentation time: the RTP timestamp unwrapped, relative to the session's first packet,
    /// divided by the clock rate, in milliseconds.
    pub timestamp_ms: f64,
    /// The RTP timestamp as it arrived.
    pub rtp_timestamp: u32,
    /// An IDR (H.264) or key frame (VP8) is in this picture.
    pub keyframe: bool,
    /// Frames delivered in this session before this one (starts at 0).
    pub sequence: u64,
    /// False only when the session delivers incomplete pictures on request and this one lost packets.
    pub complete: bool,
}

/// One picture to send. `timestamp_ms` is the presentation time; `None` means "now" on the
/// session's monotonic clock.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoChunk {
    /// Annex-B (3- or 4-byte start codes) or a single raw NAL unit for H.264; one frame for VP8.
    pub data: Vec<u8>,
    /// The picture is a key frame (H.264 IDR, VP8 key frame).
    pub keyframe: bool,
    /// Presentation time in milliseconds; `None`: now.
    pub timestamp_ms: Option<f64>,
}

/// A block of received audio. PCMU, PCMA, G.722 and Opus are decoded by the engine into `pcm`,
/// at the application's PCM rate (`sample_rate`); any other negotiated format is passed
/// through: `pcm` is empty and `payload` carries the encoded bytes for the application's own
/// decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    /// 16-bit signed PCM, native endianness (empty for formats the engine does not decode).
    pub pcm: Vec<i16>,
    /// Samples per second of `pcm`: the backend's `audio_sample_rate` rule for decoded codecs
    /// (16 kHz on G.722 and Opus, 8 kHz on G.711 by default), the RTP clock rate otherwise.
    pub sample_rate: u32,
    /// Interleaved channels in `pcm` (1: mono).
    pub channels: u16,
    /// The RTP timestamp of the packet this audio came in (0 for audio the application made).
    pub rtp_timestamp: u32,
    /// The RTP payload type the audio came with.
    pub payload_type: u8,
    /// The RTP payload as it arrived (for decoded codecs too, so it can be recorded or forwarded
    /// as is).
    pub payload: Vec<u8>,
    /// This frame stands for audio that never arrived (the jitter buffer reached its turn
    /// without a packet): `pcm` is the codec's concealment (for Opus, the frame rebuilt from the
    /// next packet's in-band FEC when it had arrived) or empty (formats the application decodes,
    /// which conceal themselves), and `payload` is empty. Always false without a jitter buffer.
    pub concealed: bool,
}

/// A telephone event (RFC 4733): a DTMF digit and how long it was held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// One of `0-9`, `*`, `#`, `A-D`.
    pub digit: char,
    /// How long the digit was held, in milliseconds.
    pub duration_ms: u32,
}
