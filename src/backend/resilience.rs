//! How a backend's streams cope with a real network: loss recovery, pacing, audio jitter and the
//! liveness of the peer. One settings struct, [`ResilienceConfig`], shared by the RTP and SIP
//! backend configurations, and the one place where it is turned into stream settings.

use std::time::Duration;

use crate::engine::{AudioParams, StreamConfig, VideoParams};
use crate::rtp::bwe::BweConfig;
use crate::rtp::config::{CcAgreement, CcFeedback, CongestionParams, DEFAULT_INACTIVITY_TIMEOUT};
use crate::rtp::fec::FecConfig;
use crate::rtp::nack::NackConfig;
use crate::rtp::pacer::PacerConfig;
use crate::rtp::rtx::RtxConfig;

/// Loss recovery, pacing, jitter buffering and liveness of every session of a backend.
/// `Default` gives roomkit-media's defaults: NACK on, pacing on, no audio jitter buffer, 30 s
/// inactivity timeout, no close linger.
#[derive(Debug, Clone, PartialEq)]
pub struct ResilienceConfig {
    /// Video loss recovery on receive: NACK lost packets and hold pictures for them, with
    /// deadlines from the measured round trip (RFC 4585). On a SIP call it also needs the peer to
    /// agree to `nack` in SDP. Turn it off for peers that never retransmit.
    pub nack: NackConfig,
    /// How video pictures are spread over time when sent, so that a large key picture never
    /// leaves as one burst that overflows a router queue or the peer's socket buffer.
    pub pacer: PacerConfig,
    /// Audio jitter buffer depth in milliseconds: 0 delivers packets as they arrive; more plays
    /// them out in order every 20 ms, conceals lost frames (flagged `AudioFrame::concealed`)
    /// and adapts its depth up to `audio_jitter_max_ms`.
    pub audio_jitter_ms: u32,
    /// The most the audio jitter buffer may grow to; 0 picks max(4 × `audio_jitter_ms`, 200).
    pub audio_jitter_max_ms: u32,
    /// A stream whose peer sends nothing (RTP or RTCP) for this long is dead; a session ends
    /// when all its streams are dead (see `SessionInfo::end_reason`). Zero: never.
    pub inactivity_timeout: Duration,
    /// When a session ends, keep answering the peer's NACKs until our video has been idle this
    /// long (at most four times as long), so the last pictures can still be repaired. Zero
    /// closes at once.
    pub close_linger: Duration,
    /// Send-side congestion control of video (off by default).
    pub congestion: CongestionConfig,
}

/// Send-side congestion control of video streams (transport-wide CC, issue 17). On, the video
/// sender stamps a transport-wide sequence number on every packet, the receiver reports their
/// arrival (RTCP transport-cc feedback every 50 ms), the sender estimates the path's bandwidth
/// from that feedback, paces at the estimate and drops whole pictures rather than queue more than
/// two picture intervals (asking the application for a key picture when it can send again).
/// Both ends must run it: on the RTP backend configure both; a SIP call offers or answers it
/// (`a=rtcp-fb:<pt> transport-cc` and `a=extmap`) and runs it only when both sides agreed.
/// `MediaBackend::on_target_bitrate` reports the estimate's moves for the encoder to follow.
/// Off by default: an application that does not follow it gains low delay at the cost of
/// dropped pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CongestionConfig {
    /// Run congestion control on video streams.
    pub enabled: bool,
    /// The estimate never goes below this, bits per second.
    pub min_bps: u64,
    /// The estimate before any feedback, bits per second.
    pub start_bps: u64,
    /// The estimate never goes above this, bits per second.
    pub max_bps: u64,
    /// In SIP calls, offer and accept only this feedback; `None` (the default): transport-cc,
    /// RFC 8888 and REMB, preferred in that order.
    pub feedback_only: Option<CcFeedback>,
}

impl Default for CongestionConfig {
    fn default() -> Self {
        let b = BweConfig::default();
        CongestionConfig {
            enabled: false,
            min_bps: b.min_bps,
            start_bps: b.start_bps,
            max_bps: b.max_bps,
            feedback_only: None,
        }
    }
}

impl CongestionConfig {
    /// The stream settings: on when configured and both ends agreed on a feedback (`agreed`).
    fn params(&self, agreed: Option<CcAgreement>) -> CongestionParams {
        let defaults = CongestionParams::default();
        CongestionParams {
            enabled: self.enabled && agreed.is_some(),
            transport_cc_id: agreed
                .and_then(|a| a.transport_cc_id)
                .unwrap_or(defaults.transport_cc_id),
            feedback: agreed.map_or(defaults.feedback, |a| a.feedback),
            abs_send_time_id: agreed.and_then(|a| a.abs_send_time_id),
            bitrate: BweConfig {
                min_bps: self.min_bps,
                start_bps: self.start_bps,
                max_bps: self.max_bps,
            },
            ..defaults
        }
    }
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            nack: NackConfig::default(),
            pacer: PacerConfig::default(),
            audio_jitter_ms: 0,
            audio_jitter_max_ms: 0,
            inactivity_timeout: DEFAULT_INACTIVITY_TIMEOUT,
            close_linger: Duration::ZERO,
            congestion: CongestionConfig::default(),
        }
    }
}

impl ResilienceConfig {
    /// Audio stream settings with the jitter buffer applied.
    pub(crate) fn audio(&self, a: AudioParams) -> AudioParams {
        AudioParams {
            audio_jitter_ms: self.audio_jitter_ms,
            audio_jitter_max_ms: self.audio_jitter_max_ms,
            ..a
        }
    }

    /// Video stream settings with NACK (when `peer_nacks`: the peer takes part), RTX on
    /// `rtx_payload_type` (repairing `v.payload_type`), pacing, congestion control (when the
    /// ends agreed on a feedback, `cc`) and FEC (on the payload types both ends use, `fec`)
    /// applied.
    pub(crate) fn video(
        &self,
        v: VideoParams,
        peer_nacks: bool,
        rtx_payload_type: Option<u8>,
        cc: Option<CcAgreement>,
        fec: Option<FecConfig>,
    ) -> VideoParams {
        VideoParams {
            nack: NackConfig {
                enabled: self.nack.enabled && peer_nacks,
                ..self.nack
            },
            rtx: rtx_payload_type.map(|payload_type| RtxConfig {
                payload_type,
                apt: v.payload_type,
                ssrc: None,
            }),
            pacer: self.pacer,
            congestion: self.congestion.params(cc),
            fec,
            ..v
        }
    }

    /// Stream settings with liveness and close linger applied.
    pub(crate) fn stream(&self, s: StreamConfig) -> StreamConfig {
        StreamConfig {
            inactivity_timeout: self.inactivity_timeout,
            close_linger: self.close_linger,
            ..s
        }
    }
}
