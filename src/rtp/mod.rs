//! RTP and RTCP: packets, per-stream sender and receiver state, the reorder window and picture
//! assembly. Pure: time is passed in.

pub mod packet;
pub mod receiver;
pub mod reorder;
pub mod rtcp;
pub mod sender;
pub mod video;

/// The fields of a received RTP header that the stream logic uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMeta {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}
