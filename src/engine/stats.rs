//! Counters a session exposes, per stream.

pub use crate::rtp::stats::StreamStats;

/// The counters of a session: audio always, video when the session carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionStats {
    pub audio: StreamStats,
    pub video: Option<StreamStats>,
}
