//! The RTP and SIP voice/video backends.
//!
//! Where to start: an RTP backend ([`RtpVoiceBackend`], [`RtpVideoBackend`]) when your
//! application knows the remote addresses itself, a SIP backend ([`SipVoiceBackend`],
//! [`SipVideoBackend`]) when calls are set up with SIP: answered, dialed ([`DialOptions`]),
//! and reachable through a registrar ([`RegisterOptions`]). Every backend has the same session
//! operations and callbacks: [`MediaBackend`].

pub(crate) mod api;
mod resilience;
pub mod rtp;
pub mod sip;
mod sip_config;
#[cfg(feature = "internals")]
pub mod sip_ua;
// Without `internals`, what only tests and the fuzzer reach (the fake host, counts) is unused.
#[cfg(not(feature = "internals"))]
#[allow(dead_code, unused_imports)]
mod sip_ua;

pub use api::MediaBackend;
pub use resilience::ResilienceConfig;
pub use rtp::{ConnectOptions, RtpBackendConfig, RtpVideoBackend, RtpVoiceBackend};
pub use sip::{DialOptions, RegisterOptions, SipVideoBackend, SipVoiceBackend};
pub use sip_config::{
    CallDecision, IncomingCall, InviteFilter, SipBackendConfig, SipCredentials, SipStats,
};
pub use sip_ua::{CallProgress, CallState, RegistrationEvent, RegistrationId};

pub use crate::codec::h264::PacketizationMode;
pub use crate::codec::voice::AppRate;
pub use crate::engine::{
    EndReason, KeyframeRequest, SessionId, SessionInfo, SessionStats, StreamInfo, StreamStats,
};
pub use crate::rtp::nack::NackConfig;
pub use crate::rtp::pacer::PacerConfig;
pub use crate::sdp::AudioCodec;
pub use crate::sip::transaction::Timers as SipTimers;
