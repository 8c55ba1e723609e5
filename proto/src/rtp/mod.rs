//! RTP and RTCP: packets, per-stream sender and receiver state, the jitter buffers and picture
//! assembly, loss recovery (NACK, RTX), pacing, and the stream state machine that ties them
//! together ([`stream::StreamCore`]). Pure: time is passed in.
//!
//! | file | job |
//! |---|---|
//! | `packet`, `rtcp`, `hdrext` | the wire formats (RTP, RTCP, RFC 8285 header extensions) |
//! | `twcc`, `remb` | congestion feedback: transport-wide CC (both ways, the receiver's record), REMB |
//! | `bwe` | the bandwidth estimator (delay- and loss-based), fed by that feedback |
//! | `sender`, `receiver` | RTP header state of our stream; RFC 3550 reception statistics |
//! | `reorder`, `video` | the video jitter buffer and picture assembly |
//! | `nack`, `rtt` | which packets to ask for again and when; the round-trip time |
//! | `history`, `rtx`, `pacer`, `rate` | what a sender keeps, re-sends (RFC 4588) and paces |
//! | `red`, `fec` | RED (RFC 2198) and ULPFEC (RFC 5109): forward error correction |
//! | `audio_jitter`, `conceal` | audio playout and loss concealment |
//! | `media_tx` | turning pictures, PCM and DTMF into payloads |
//! | `srtp` | SRTP/SRTCP contexts and keys (RFC 3711, RFC 7714) over `rtc-srtp` |
//! | `config`, `stats`, `stream` | the stream core: settings, counters, state machine |
//! | `sim` | a seeded, simulated network path on virtual time, for tests and benchmarks |

// A pure layer: any `unsafe` the engine needs lives in engine/ (or ffi/), never here.
#![forbid(unsafe_code)]

pub mod audio_jitter;
pub mod bwe;
pub mod ccfb;
pub mod conceal;
pub mod config;
pub mod fec;
pub mod hdrext;
pub mod history;
pub mod media_tx;
pub mod nack;
pub mod pacer;
pub mod packet;
pub mod pool;
pub mod rate;
pub mod receiver;
pub mod red;
pub mod remb;
pub mod reorder;
pub mod rtcp;
pub mod rtt;
pub mod rtx;
pub mod sender;
pub mod srtp;
// Test scaffolding (the virtual-time pair harness): compiled only for tests and the unstable
// `_internals` feature, which tests/pure/stream_core.rs and the benchmarks use.
#[cfg(any(test, feature = "_internals"))]
pub mod sim;
pub mod stats;
pub mod stream;
pub mod twcc;
pub mod video;

// Re-exports for the `_internals` API (fuzz targets, benches, tests); without the feature the
// crate itself may not need every name.
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use config::{AudioParams, CoreConfig, MediaParams, SourcePolicy, VideoParams};
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use stats::StreamStats;
#[cfg_attr(not(feature = "_internals"), allow(unused_imports))]
pub use stream::{KeyframeRequest, StreamCore, StreamEvent, Transmit, TransmitKind};

/// The fields of a received RTP header that the stream logic uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMeta {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}
