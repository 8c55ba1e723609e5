//! The RTP and SIP voice/video backends.
//!
//! Where to start: an RTP backend ([`RtpVoiceBackend`], [`RtpVideoBackend`]) when your
//! application knows the remote addresses itself, a SIP backend ([`SipVoiceBackend`],
//! [`SipVideoBackend`]) when calls are set up with SIP: answered, dialed ([`DialOptions`]),
//! and reachable through a registrar ([`RegisterOptions`]). Every backend has the same session
//! operations and callbacks: [`MediaBackend`].

// The backends compose the engine: any `unsafe` lives in engine/ or ffi/, never here.
#![forbid(unsafe_code)]

pub(crate) mod api;
mod resilience;
pub mod rtp;
pub mod sip;
mod sip_config;
// The SIP user agent is an internal layer: public with the unstable `_internals` feature (for
// the fuzzer, benches and tests), and then not part of the supported API, hence no docs demanded.
#[cfg(feature = "_internals")]
#[allow(missing_docs)]
pub mod sip_ua;
#[cfg(not(feature = "_internals"))]
mod sip_ua;

pub use api::MediaBackend;
pub use resilience::{CongestionConfig, ResilienceConfig};
pub use rtp::{ConnectOptions, RtpBackendConfig, RtpVideoBackend, RtpVoiceBackend};
pub use sip::{DialOptions, RegisterOptions, SipVideoBackend, SipVoiceBackend};
pub use sip_config::{
    AuthResolver, CallDecision, IncomingCall, InviteFilter, OverloadConfig, SipBackendConfig,
    SipCredentials, SipStats, SipTlsConfig, SipTrace, StreamTimeouts,
};
pub use sip_ua::{CallProgress, CallState, RegistrationEvent, RegistrationId};

pub use crate::codec::h264::PacketizationMode;
pub use crate::codec::voice::AppRate;
pub use crate::engine::{
    EndReason, KeyframeRequest, SessionId, SessionInfo, SessionStats, StreamInfo, StreamStats,
};
pub use crate::rtp::fec::FecConfig;
pub use crate::rtp::nack::NackConfig;
pub use crate::rtp::pacer::PacerConfig;
pub use crate::sdp::AudioCodec;
pub use crate::sip::transaction::Timers as SipTimers;
pub use crate::sip::SipTransportKind;
