//! Sockets, I/O threads, channels and callback dispatch: the only code that does I/O.
//!
//! Threads: each stream (audio or video of a session) has one I/O thread that sleeps in `ppoll`
//! on its RTP socket, its RTCP socket (without rtcp-mux) and a wake-up descriptor until the
//! stream core's next timeout, drains the sockets with `recvmmsg` into the core, and sends what
//! the core produced (RTCP, retransmissions, paced packets); or, with `io_threads` > 0, shared
//! threads do the same for many streams each from `epoll` ([`io_pool`]). The protocol itself is the pure
//! [`crate::rtp::stream::StreamCore`]. Events go through bounded channels to the dispatcher
//! threads, which run the application's callbacks. Sending runs on the caller's thread.

pub mod dispatch;
mod driven;
pub mod event;
pub mod http;
pub mod io_pool;
pub mod io_thread;
pub mod metrics_http;
pub mod port_pool;
pub mod session;
pub mod sip_stream;
pub mod sip_transport;
pub mod socket;
pub mod stats;
pub mod stream;
pub mod stun_gather;
pub mod turn_gather;

pub use crate::rtp::config::{AudioParams, MediaParams, VideoParams};
// Re-exports for the `_internals` API (fuzz targets, benches, tests); without the feature the
// crate itself may not need every name.
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use dispatch::Dispatcher;
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use event::{
    EndReason, KeyframeRequest, MediaKind, SessionId, SessionInfo, StreamEndReason, StreamEnded,
    StreamInfo,
};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use io_thread::{IoThread, StopSignal};
pub use port_pool::{PortLease, PortPool};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use session::{BoundMedia, EndHook, EngineConfig, MediaEngine, MediaSession, SessionSpec};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use sip_transport::{SipHandler, SipTransport, SHUTDOWN_LINGER};
// The SIP layer's own types for what a handler sends and to whom (kept here for old paths).
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use crate::sip::{Outbox, SipPeer, SipTransportKind};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use socket::{MediaSocket, RecvBatch, SendBatch, Waker};
pub use stats::{SessionStats, StreamStats};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use stream::{MediaStream, RtpSockets, SourcePolicy, StreamConfig};
