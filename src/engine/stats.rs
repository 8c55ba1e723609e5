//! Counters a session exposes, per stream.

pub use crate::rtp::stats::StreamStats;

/// The counters of a session: audio always, video when the session carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionStats {
    /// The audio stream's counters.
    pub audio: StreamStats,
    /// The video stream's counters, when the session has video.
    pub video: Option<StreamStats>,
}
