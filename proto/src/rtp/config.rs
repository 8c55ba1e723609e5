//! What a stream carries and how it behaves: the settings of a [`crate::rtp::stream::StreamCore`].
//!
//! Every settings struct has a `Default`, so callers write the fields they care about and
//! `..Default::default()`, and adding a setting later breaks nobody.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::bwe::BweConfig;
use super::history::{HistoryConfig, RetransmitLimits};
use super::nack::NackConfig;
use super::pacer::PacerConfig;
use super::rtcp::RtcpInterval;
use super::rtx::RtxConfig;
use crate::codec::h264::{PacketizationMode, DEFAULT_MTU};
use crate::codec::voice::{AppRate, VoiceCodec};
use crate::frame::{Delivery, VideoCodec};

/// Which sources a stream accepts packets from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePolicy {
    /// Only the configured remote address (RTP) and its RTCP address.
    #[default]
    RemoteOnly,
    /// The first source seen becomes the remote address (symmetric RTP, for peers behind NAT);
    /// later packets from elsewhere are dropped.
    LatchFirst,
}

/// Audio stream parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioParams {
    /// RTP payload type of the audio.
    pub payload_type: u8,
    pub clock_rate: u32,
    /// RTP payload type of telephone events (RFC 4733); `None` disables DTMF.
    pub dtmf_payload_type: Option<u8>,
    /// Jitter buffer: 0 delivers packets as they arrive (no reordering, no concealment); more
    /// plays them out in order on their own cadence with at least this many milliseconds of
    /// delay, adapting upwards to the measured jitter, with lost frames concealed and flagged.
    pub audio_jitter_ms: u32,
    /// The most delay the jitter buffer may adapt up to; 0 picks the larger of
    /// 4 × `audio_jitter_ms` and 200 ms.
    pub audio_jitter_max_ms: u32,
    /// The codec the engine encodes and decodes on this stream. `None`: the codec of a static
    /// payload type (0 PCMU, 8 PCMA, 9 G.722), and other payload types are passed through.
    /// With a codec, `clock_rate` should be its RTP clock (48000 for Opus, 8000 for G.722).
    pub codec: Option<VoiceCodec>,
    /// The PCM rate of `send_audio` and of received frames when the engine codes the stream.
    pub app_rate: AppRate,
    /// Opus: the peer's `maxplaybackrate`, which bounds the band we encode.
    pub opus_max_playback_rate: Option<u32>,
}

impl AudioParams {
    /// The codec the engine codes on this stream, if any.
    pub fn voice_codec(&self) -> Option<VoiceCodec> {
        self.codec
            .or_else(|| VoiceCodec::from_static_payload_type(self.payload_type))
    }

    /// The PCM rate the application sends and receives: the [`AppRate`] rule for a coded
    /// stream, the clock rate for a passed-through one.
    pub fn pcm_rate(&self) -> u32 {
        match self.voice_codec() {
            Some(c) => self.app_rate.resolve(c),
            None => self.clock_rate,
        }
    }
}

impl Default for AudioParams {
    fn default() -> Self {
        AudioParams {
            payload_type: 0,
            clock_rate: 8000,
            dtmf_payload_type: Some(101),
            audio_jitter_ms: 0,
            audio_jitter_max_ms: 0,
            codec: None,
            app_rate: AppRate::Auto,
            opus_max_playback_rate: None,
        }
    }
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
    /// Receiving: ask for lost packets with NACKs and hold pictures for them (RFC 4585).
    pub nack: NackConfig,
    /// RTX (RFC 4588), both ways: our retransmissions go on this payload type and SSRC, and the
    /// peer's RTX packets of this payload type are accepted. `None`: retransmissions are the
    /// original packets, as they were.
    pub rtx: Option<RtxConfig>,
    /// Sending: how long sent packets are kept for retransmission.
    pub history: HistoryConfig,
    /// Sending: how much NACKs may make us retransmit.
    pub retransmit: RetransmitLimits,
    /// Sending: how pictures are spread over time.
    pub pacer: PacerConfig,
    /// Forward error correction (ULPFEC in RED), both ways; `None`: off.
    pub fec: Option<super::fec::FecConfig>,
    /// Send-side congestion control, both ways (off by default).
    pub congestion: CongestionParams,
}

/// The RTP header extension ID the transport-wide sequence number travels under when nothing
/// negotiated another (`a=extmap:3`, as browsers usually offer it).
pub const DEFAULT_TRANSPORT_CC_ID: u8 = 3;

/// Send-side congestion control of a video stream (transport-wide CC). When on, the sender
/// stamps a transport-wide sequence number on every RTP packet it sends and runs a
/// [`BandwidthEstimator`](super::bwe::BandwidthEstimator) on the peer's feedback; the receiver
/// records the numbers it receives and sends transport-cc feedback (RTPFB FMT 15). Both ends must
/// agree (same extension ID), which SDP negotiates or the application configures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CongestionParams {
    /// Run congestion control at all.
    pub enabled: bool,
    /// The header extension ID of the transport-wide sequence number, 1–14.
    pub transport_cc_id: u8,
    /// The estimator's bounds and start bitrate.
    pub bitrate: BweConfig,
    /// How often the receiver sends feedback.
    pub feedback_interval: Duration,
    /// The sender drops whole pictures rather than let its pacer queue hold more than this
    /// many picture intervals of media.
    pub max_queue_pictures: u32,
    /// Which feedback carries the estimate (what SDP agreed on).
    pub feedback: CcFeedback,
    /// The header extension ID of abs-send-time, 1–14, when agreed: the sender stamps it on
    /// every packet as it leaves the pacer, a REMB receiver reads send times from it.
    pub abs_send_time_id: Option<u8>,
}

/// Which feedback a congestion-controlled stream sends (as receiver) and uses (as sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CcFeedback {
    /// Transport-wide sequence numbers and transport-cc feedback: the sender estimates.
    #[default]
    TransportCc,
    /// `goog-remb`: the receiver estimates from arrivals (against abs-send-time when agreed,
    /// else the RTP timestamp) and sends REMB; the sender paces at the REMB it receives.
    Remb,
    /// RFC 8888 congestion control feedback (`ack ccfb`): the receiver reports each packet by
    /// SSRC and sequence number; the sender estimates, as with transport-cc.
    Ccfb,
}

/// What the two ends agreed on for congestion control (in SDP, or configured alike on both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcAgreement {
    pub feedback: CcFeedback,
    /// The transport-wide sequence number's extension ID (transport-cc).
    pub transport_cc_id: Option<u8>,
    /// abs-send-time's extension ID, when agreed.
    pub abs_send_time_id: Option<u8>,
}

impl CcAgreement {
    /// Transport-wide CC with the sequence number under `id`.
    pub fn transport_cc(id: u8) -> Self {
        CcAgreement {
            feedback: CcFeedback::TransportCc,
            transport_cc_id: Some(id),
            abs_send_time_id: None,
        }
    }

    /// RFC 8888 feedback (no header extension needed).
    pub fn ccfb() -> Self {
        CcAgreement {
            feedback: CcFeedback::Ccfb,
            transport_cc_id: None,
            abs_send_time_id: None,
        }
    }

    /// REMB, with abs-send-time under `abs_send_time_id` when agreed.
    pub fn remb(abs_send_time_id: Option<u8>) -> Self {
        CcAgreement {
            feedback: CcFeedback::Remb,
            transport_cc_id: None,
            abs_send_time_id,
        }
    }
}

impl Default for CongestionParams {
    fn default() -> Self {
        CongestionParams {
            enabled: false,
            transport_cc_id: DEFAULT_TRANSPORT_CC_ID,
            bitrate: BweConfig::default(),
            feedback_interval: Duration::from_millis(50),
            max_queue_pictures: 2,
            feedback: CcFeedback::TransportCc,
            abs_send_time_id: None,
        }
    }
}

impl Default for VideoParams {
    fn default() -> Self {
        VideoParams {
            payload_type: 96,
            clock_rate: 90_000,
            codec: VideoCodec::H264,
            delivery: Delivery::AccessUnit,
            wait_for_keyframe: true,
            deliver_incomplete: false,
            mtu: DEFAULT_MTU,
            packetization_mode: PacketizationMode::NonInterleaved,
            nack: NackConfig::default(),
            rtx: None,
            history: HistoryConfig::default(),
            retransmit: RetransmitLimits::default(),
            pacer: PacerConfig::default(),
            fec: None,
            congestion: CongestionParams::default(),
        }
    }
}

/// What a stream carries.
// A settings value made once per stream: its size does not matter, and boxing the video variant
// would make every caller write `Box::new`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum MediaParams {
    Audio(AudioParams),
    Video(VideoParams),
}

impl Default for MediaParams {
    fn default() -> Self {
        MediaParams::Audio(AudioParams::default())
    }
}

impl MediaParams {
    /// The media payload type.
    pub fn payload_type(&self) -> u8 {
        match self {
            MediaParams::Audio(a) => a.payload_type,
            MediaParams::Video(v) => v.payload_type,
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(&self) -> u32 {
        match self {
            MediaParams::Audio(a) => a.clock_rate,
            MediaParams::Video(v) => v.clock_rate,
        }
    }
}

/// Everything a [`crate::rtp::stream::StreamCore`] needs: the media, the peer, and the policies.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub media: MediaParams,
    /// Where RTP goes.
    pub remote_rtp: SocketAddr,
    /// Where RTCP goes (the RTP address with rtcp-mux).
    pub remote_rtcp: SocketAddr,
    /// RTP and RTCP share one port (RFC 5761).
    pub rtcp_mux: bool,
    pub source_policy: SourcePolicy,
    /// Nominal RTCP report interval (randomised ×0.5–1.5 each time).
    pub rtcp_interval: Duration,
    /// Our SDES CNAME.
    pub cname: String,
    /// Report the stream inactive after this long without RTP or RTCP from the peer; zero turns
    /// the check off.
    pub inactivity_timeout: Duration,
    /// Our SSRC; `None` draws one from the seed.
    pub ssrc: Option<u32>,
    /// Our first RTP sequence number; `None` draws one from the seed (tests pick one near the
    /// wrap).
    pub initial_seq: Option<u16>,
    /// SRTP keys (SDES or the application's): every packet we send is protected and every one
    /// we receive unprotected before it is parsed. `None`: plain RTP.
    pub srtp: Option<super::srtp::SrtpKeys>,
    /// DTLS-SRTP, with ICE when negotiated (issue 19): the core runs the ICE agent and the
    /// handshake on its socket and keys its SRTP from it; media waits for the keys and goes to
    /// the ICE-selected remote (`remote_rtp` is used only without ICE). Needs `rtcp_mux` and
    /// `srtp: None`.
    pub ice_dtls: Option<crate::webrtc::IceDtlsParams>,
}

/// The default inactivity timeout, as roomkit's.
pub const DEFAULT_INACTIVITY_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for CoreConfig {
    fn default() -> Self {
        let nowhere = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        CoreConfig {
            media: MediaParams::default(),
            remote_rtp: nowhere,
            remote_rtcp: nowhere,
            rtcp_mux: false,
            source_policy: SourcePolicy::RemoteOnly,
            rtcp_interval: RtcpInterval::DEFAULT_NOMINAL,
            cname: "roomkit-media".into(),
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
            ssrc: None,
            initial_seq: None,
            srtp: None,
            ice_dtls: None,
        }
    }
}
