//! Sockets, I/O threads, channels and callback dispatch: the only code that does I/O.
//!
//! Threads: each stream (audio or video of a session) has one receive thread that sleeps in
//! `poll` on its RTP socket, its RTCP socket (without rtcp-mux) and a wake-up descriptor, then
//! drains the sockets with `recvmmsg`. Events go through bounded channels to the dispatcher
//! threads, which run the application's callbacks. Sending runs on the caller's thread.

pub mod dispatch;
pub mod event;
pub mod io_thread;
pub mod media;
pub mod port_pool;
pub mod session;
pub mod sip_transport;
pub mod socket;
pub mod stats;
pub mod stream;
mod video_rx;

pub use dispatch::Dispatcher;
pub use event::{KeyframeRequest, SessionId, SessionInfo, StreamInfo};
pub use io_thread::{IoThread, StopSignal};
pub use media::{AudioParams, MediaParams, VideoParams};
pub use port_pool::{PortLease, PortPool};
pub use session::{BoundMedia, EngineConfig, MediaEngine, MediaSession, SessionSpec};
pub use sip_transport::{Outbox, SipHandler, SipPeer, SipTransport, SipTransportKind, SHUTDOWN_LINGER};
pub use socket::{MediaSocket, RecvBatch, SendBatch, Waker};
pub use stats::{SessionStats, StreamStats};
pub use stream::{MediaStream, RtpSockets, SourcePolicy, StreamConfig};
