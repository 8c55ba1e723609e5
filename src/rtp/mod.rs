//! RTP and RTCP: packets, per-stream sender and receiver state, the reorder window and picture
//! assembly. Pure: time is passed in.

pub mod packet;
pub mod receiver;
pub mod reorder;
pub mod rtcp;
pub mod sender;
pub mod video;
