//! The RTP and SIP voice/video backends.

pub mod rtp;

pub use rtp::{RtpBackendConfig, RtpVideoBackend, RtpVoiceBackend};
