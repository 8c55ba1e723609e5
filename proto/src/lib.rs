//! roomkit-media-proto: the sans-IO protocol layers of
//! [roomkit-media](https://crates.io/crates/roomkit-media), in a crate of their own (as
//! quinn-proto is to quinn and str0m-proto to str0m).
//!
//! Everything here is pure: no socket, no thread, no file and no clock read. Time comes in as an
//! [`Instant`](std::time::Instant) argument, bytes and commands come in through `handle_*`
//! calls, and what the layer wants done comes out of `poll_*` calls (datagrams to send, events,
//! the next instant it wants to be woken at). After any input, drain the `poll_*` outputs; time
//! passed in never goes backwards. The engine of roomkit-media owns the sockets, threads and
//! clocks and drives these layers; tests drive them on virtual time.
//!
//! That this crate cannot reach the engine is what keeps the rule true: it does not depend on
//! roomkit-media, so an import of the engine, a backend or the C ABI from here does not build.
//!
//! # Modules
//!
//! - [`codec`], [`frame`], [`error`], [`netem`]: public API of roomkit-media, which re-exports
//!   them under the same names (`roomkit_media::codec`, ...); use them from there.
//! - [`rtp`], [`sdp`], [`sip`]: the internal layers (the RTP stream state machine, SDP
//!   offer/answer, SIP messages, transactions and dialogs). They are public here only so that
//!   roomkit-media can use them; they are **not** a supported API and may change in any release.
//!
//! The `_internals` feature (unstable, turned on by roomkit-media's own `_internals`) compiles
//! the test scaffolding: the virtual-time stream pair `rtp::sim` and test-only accessors.

pub mod codec;
pub mod error;
pub mod frame;
pub mod netem;

// The internal layers are exempt from `missing_docs`: they are not a supported API (above), so
// their items are documented where it helps rather than one by one. Each module documents itself
// in its mod.rs (an outer doc comment here would make rustdoc resolve those links from the crate
// root, where `stream::StreamCore` and the like do not resolve).
#[allow(missing_docs)]
pub mod rtp;
#[allow(missing_docs)]
pub mod sdp;
#[allow(missing_docs)]
pub mod sip;
#[allow(missing_docs)]
pub mod webrtc;
// The HTTP/1.1 bytes of the engine's small server (metrics, WHIP/WHEP): internal like the above.
pub mod http;

pub use error::{Error, Result};
pub use frame::{AudioFrame, Delivery, DtmfEvent, VideoChunk, VideoCodec, VideoFrame};
