//! The RTP and SIP voice/video backends.
//!
//! Where to start: an RTP backend ([`RtpVoiceBackend`], [`RtpVideoBackend`]) when your
//! application knows the remote addresses itself, a SIP backend ([`SipVoiceBackend`],
//! [`SipVideoBackend`]) when calls are set up with SIP. Every backend has the same session
//! operations and callbacks: [`MediaBackend`].

pub(crate) mod api;
pub mod rtp;
pub mod sip;
mod sip_config;
mod sip_core;
pub mod sip_uac;

pub use api::MediaBackend;
pub use rtp::{ConnectOptions, RtpBackendConfig, RtpVideoBackend, RtpVoiceBackend};
pub use sip::{SipVideoBackend, SipVoiceBackend};
pub use sip_config::{CallDecision, IncomingCall, InviteFilter, SipBackendConfig, SipStats};
pub use sip_uac::{SipCall, SipCaller, SipCallerConfig};

pub use crate::codec::h264::PacketizationMode;
pub use crate::engine::{
    KeyframeRequest, SessionId, SessionInfo, SessionStats, StreamInfo, StreamStats,
};
pub use crate::rtp::nack::NackConfig;
pub use crate::rtp::pacer::PacerConfig;
pub use crate::sdp::AudioCodec;
pub use crate::sip::transaction::Timers as SipTimers;
