//! roomkit-media: a native engine for real-time audio and video over RTP, with SIP signalling.
//!
//! # Where to start
//!
//! Pick a backend in [`backend`]:
//! - [`RtpVoiceBackend`](backend::RtpVoiceBackend) / [`RtpVideoBackend`](backend::RtpVideoBackend)
//!   when your application knows where to send media: `connect(room, participant, options)`
//!   creates a session.
//! - [`SipVoiceBackend`](backend::SipVoiceBackend) / [`SipVideoBackend`](backend::SipVideoBackend)
//!   to answer SIP calls: create it, register callbacks, then `start()`.
//!
//! Every backend has the same session operations and callbacks, the
//! [`MediaBackend`](backend::MediaBackend) trait (`send_video`, `send_audio`, `send_dtmf`,
//! `request_keyframe`, `stats`, `disconnect`, `on_video_received`, ...): bring it into scope with
//! `use roomkit_media::prelude::*`. Media arrives as [`VideoFrame`], [`AudioFrame`] and
//! [`DtmfEvent`] on callback threads, never on a socket thread. Errors are [`Error`].
//!
//! ```no_run
//! use roomkit_media::prelude::*;
//! use roomkit_media::backend::{RtpBackendConfig, RtpVideoBackend, ConnectOptions};
//!
//! # fn main() -> roomkit_media::Result<()> {
//! let backend = RtpVideoBackend::new(RtpBackendConfig::default())?;
//! backend.on_video_received(|session, frame| {
//!     println!("{session}: {} bytes, key={}", frame.data.len(), frame.keyframe);
//! });
//! let options = ConnectOptions::to("127.0.0.1:5004".parse().unwrap(), Some("127.0.0.1:5006".parse().unwrap()));
//! let session = backend.connect("room", "alice", options)?;
//! backend.send_video(session.id, &[0, 0, 0, 1, 0x65, 0x88, 0x84])?;
//! # Ok(()) }
//! ```
//!
//! [`codec`] has the payload formats and file readers/writers (H.264 Annex-B, IVF, G.711,
//! G.722, Opus, resampling, RFC 4733) for tools around the engine. The C API is described in the README and the generated
//! header `include/roomkit_media.h`.
//!
//! # Layers
//!
//! Everything but `engine` is pure (no sockets, threads or clock reads; time is passed in):
//! `codec` (payload formats), `rtp` (RTP/RTCP, the per-stream state machine with loss recovery,
//! pacing and jitter buffers), `sdp` (offer/answer), `sip`
//! (messages, transactions, dialogs); `engine` owns sockets, threads and callback dispatch;
//! `backend` composes them; `ffi` is the C ABI. The pure layers (with `frame`, `error` and
//! `netem`) are a crate of their own, `roomkit-media-proto`, which cannot import the engine;
//! this crate re-exports them under the paths below, so depending on `roomkit-media` is enough.
//! The internal layers are public only with the `_internals` cargo feature (fuzz targets,
//! benchmarks and tests use it); without it the API is `backend`, `codec`, `frame`, `error`,
//! `netem` (the network impairment model the tests and the
//! `netsim` command share) and `prelude`. See ARCHITECTURE.md.
//!
//! `_internals` is **unstable**: it is not part of the supported API, and what it exposes (the
//! internal layers, the virtual-time network, the fake media host, the fuzz harnesses) may change
//! or disappear in any release.

pub mod backend;
// The C ABI: its `#[no_mangle]` functions are exported from the cdylib and staticlib whatever
// the module's visibility; Rust users have the backends.
#[allow(unused_imports)]
mod ffi;
pub mod metrics;
pub mod prelude;
pub mod whip;

// The pure layers, from the roomkit-media-proto crate (proto/): re-exported under their old
// paths, so `roomkit_media::codec`, `::frame`, `::error` and `::netem` are the supported API as
// before, and `crate::rtp` and friends resolve inside this crate as if the modules were here.
pub use roomkit_media_proto::{codec, error, frame, netem};

// The internal layers: public with the unstable `_internals` feature, private otherwise. They are
// not part of the supported API, so their items are exempt from `missing_docs` when the feature
// makes them public (each module itself is documented).

/// Sockets, I/O threads, channels and callback dispatch: the only I/O.
#[cfg(feature = "_internals")]
#[allow(missing_docs)]
pub mod engine;
#[cfg(not(feature = "_internals"))]
mod engine;

// The internal pure layers (RTP, SDP, SIP): public with `_internals`, private otherwise. Their
// documentation (and `missing_docs` exemption) is in roomkit-media-proto.
#[cfg(feature = "_internals")]
pub use roomkit_media_proto::{http, rtp, sdp, sip, webrtc};
#[cfg(not(feature = "_internals"))]
use roomkit_media_proto::{rtp, sdp, sip, webrtc};

pub use error::{Error, Result};
// SRTP keys and suites: what a secured session is configured with and reports.
pub use frame::{AudioFrame, Delivery, DtmfEvent, VideoChunk, VideoCodec, VideoFrame};
pub use rtp::srtp::{SrtpKey, SrtpKeys, SrtpSuite};
pub use sdp::{DtlsSrtpPolicy, SrtpPolicy};

// The README's Rust examples are compiled (and the `no_run` ones not run) as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
