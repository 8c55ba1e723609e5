//! roomkit-media: a native engine for real-time audio and video over RTP, with SIP signalling.
//!
//! The crate is layered so that everything except `engine` is pure (no sockets, threads or clock
//! reads; time is passed in):
//!
//! - [`frame`]: the media units applications see (`VideoFrame`, `VideoChunk`, `AudioFrame`, `DtmfEvent`).
//! - [`codec`]: payload formats — H.264 (RFC 6184), VP8 (RFC 7741), G.711, RFC 4733 telephone events, IVF.
//! - [`rtp`]: RTP/RTCP packets, sender and receiver state, jitter buffers, picture assembly, loss
//!   recovery (NACK, RTX), pacing, and the per-stream state machine `rtp::StreamCore`.
//! - [`sdp`], [`sip`]: offer/answer and SIP signalling.
//! - [`engine`]: sockets, I/O threads, channels and callback dispatch — the only I/O.
//! - [`backend`]: the RTP and SIP voice/video backends, built from the layers above.
//! - [`ffi`]: the C ABI.

pub mod backend;
pub mod codec;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod frame;
pub mod rtp;
pub mod sdp;
pub mod sip;

pub use error::{Error, Result};
pub use frame::{AudioFrame, Delivery, DtmfEvent, VideoChunk, VideoCodec, VideoFrame};
