//! Counters a session exposes, per stream.

/// What one RTP stream (audio or video) has seen and done. Counters start at 0 when the session
/// is created.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStats {
    /// RTP packets accepted (right source, parsed).
    pub packets_received: u64,
    /// RTP bytes accepted, headers included.
    pub bytes_received: u64,
    /// RTP packets sent.
    pub packets_sent: u64,
    /// RTP bytes sent, headers included.
    pub bytes_sent: u64,
    /// Packets expected but not received (RFC 3550 cumulative loss; negative with duplicates).
    pub lost: i64,
    /// Packets that arrived after a later-numbered one.
    pub reordered: u64,
    /// Packets received more than once.
    pub duplicates: u64,
    /// Interarrival jitter, milliseconds.
    pub jitter_ms: f64,
    /// Frames handed to the callbacks (video pictures or NAL units, audio frames).
    pub frames: u64,
    /// Key frames among them.
    pub keyframes: u64,
    /// Pictures dropped because packets of them were lost.
    pub frames_dropped_incomplete: u64,
    /// Pictures held back by the wait-for-keyframe gate.
    pub frames_dropped_gated: u64,
    /// Events dropped because the callback queue was full (a slow callback).
    pub frames_dropped_slow_callback: u64,
    pub pli_sent: u64,
    pub pli_received: u64,
    pub fir_sent: u64,
    pub fir_received: u64,
    /// RTCP packets (compounds) accepted.
    pub rtcp_received: u64,
    /// RTCP compounds sent (reports, feedback, BYE).
    pub rtcp_sent: u64,
    /// Datagrams from an address other than the session's remote (dropped).
    pub unexpected_source: u64,
    /// Datagrams that were not valid RTP/RTCP or could not be used (dropped).
    pub malformed: u64,
    /// RTP packets with a payload type this stream does not carry (dropped).
    pub unknown_payload_type: u64,
    /// DTMF digits received.
    pub dtmf_received: u64,
    /// DTMF digits sent.
    pub dtmf_sent: u64,
}

/// The counters of a session: audio always, video when the session carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionStats {
    pub audio: StreamStats,
    pub video: Option<StreamStats>,
}
