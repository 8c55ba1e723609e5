//! RTP and RTCP: packets, per-stream sender and receiver state, the jitter buffers and picture
//! assembly, loss recovery (NACK, RTX), pacing, and the stream state machine that ties them
//! together ([`stream::StreamCore`]). Pure: time is passed in.
//!
//! | file | job |
//! |---|---|
//! | `packet`, `rtcp` | the wire formats |
//! | `sender`, `receiver` | RTP header state of our stream; RFC 3550 reception statistics |
//! | `reorder`, `video` | the video jitter buffer and picture assembly |
//! | `nack`, `rtt` | which packets to ask for again and when; the round-trip time |
//! | `history`, `rtx`, `pacer`, `rate` | what a sender keeps, re-sends (RFC 4588) and paces |
//! | `audio_jitter`, `conceal` | audio playout and loss concealment |
//! | `media_tx` | turning pictures, PCM and DTMF into payloads |
//! | `config`, `stats`, `stream` | the stream core: settings, counters, state machine |
//! | `sim` | a seeded, simulated network path on virtual time, for tests and benchmarks |

pub mod audio_jitter;
pub mod conceal;
pub mod config;
pub mod history;
pub mod media_tx;
pub mod nack;
pub mod pacer;
pub mod packet;
pub mod rate;
pub mod receiver;
pub mod reorder;
pub mod rtcp;
pub mod rtt;
pub mod rtx;
pub mod sender;
pub mod sim;
pub mod stats;
pub mod stream;
pub mod video;

pub use config::{AudioParams, CoreConfig, MediaParams, SourcePolicy, VideoParams};
pub use stats::StreamStats;
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
