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
//! `backend` composes them; `ffi` is the C ABI. The internal layers are public only with the
//! `_internals` cargo feature (fuzz targets, benchmarks and tests use it); without it the API is
//! `backend`, `codec`, `frame`, `error`, `netem` (the network impairment model the tests and the
//! `netsim` command share) and `prelude`. See ARCHITECTURE.md.
//!
//! `_internals` is **unstable**: it is not part of the supported API, and what it exposes (the
//! internal layers, the virtual-time network, the fake media host, the fuzz harnesses) may change
//! or disappear in any release.

pub mod backend;
pub mod codec;
pub mod error;
// The C ABI: its `#[no_mangle]` functions are exported from the cdylib and staticlib whatever
// the module's visibility; Rust users have the backends.
#[allow(unused_imports)]
mod ffi;
pub mod frame;
pub mod netem;
pub mod prelude;

/// Declares an internal layer: public with the unstable `_internals` feature, private otherwise.
///
/// The internal layers are not part of the supported API, so their items are exempt from
/// `missing_docs` when the feature makes them public (the module itself is documented).
macro_rules! internal_layer {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[cfg(feature = "_internals")]
        #[allow(missing_docs)]
        pub mod $name;
        #[cfg(not(feature = "_internals"))]
        mod $name;
    };
}

internal_layer!(
    /// Sockets, I/O threads, channels and callback dispatch: the only I/O.
    engine
);
internal_layer!(
    /// RTP and RTCP: packets, stream state, reordering and picture assembly. Pure.
    rtp
);
internal_layer!(
    /// SDP offer/answer. Pure.
    sdp
);
internal_layer!(
    /// SIP messages, transactions, dialogs and digest authentication. Pure.
    sip
);

pub use error::{Error, Result};
pub use frame::{AudioFrame, Delivery, DtmfEvent, VideoChunk, VideoCodec, VideoFrame};

// The README's Rust examples are compiled (and the `no_run` ones not run) as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
