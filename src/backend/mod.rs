//! The RTP and SIP voice/video backends.

pub mod rtp;
pub mod sip;
mod sip_core;
pub mod sip_uac;

pub use rtp::{RtpBackendConfig, RtpVideoBackend, RtpVoiceBackend};
pub use sip::{
    CallDecision, IncomingCall, InviteFilter, SipBackendConfig, SipStats, SipVideoBackend,
    SipVoiceBackend,
};
pub use sip_uac::{SipCall, SipCaller, SipCallerConfig};
