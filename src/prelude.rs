//! The names most programs need: `use roomkit_media::prelude::*`.

pub use crate::backend::{MediaBackend, SessionId, SessionInfo};
pub use crate::frame::{AudioFrame, DtmfEvent, VideoChunk, VideoCodec, VideoFrame};
