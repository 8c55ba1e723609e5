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

/// One RTP counter of [`StreamStats`] as the metrics show it.
pub struct StreamCounter {
    /// The metric family's name (its samples end in `_total`).
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// How to read it from a stream's counters.
    pub get: fn(&StreamStats) -> u64,
    /// Whether it only grows (a Prometheus counter); RFC 3550's cumulative loss does not (a
    /// late duplicate lowers it), so it is a gauge.
    pub monotonic: bool,
}

macro_rules! counters {
    (@counter) => { true };
    (@gauge) => { false };
    ($($name:literal, $kind:ident, $help:literal, |$s:ident| $get:expr;)*) => {
        /// The RTP counters the metrics sum over streams: one table drives both the sums kept
        /// for ended sessions and the rendering.
        pub const STREAM_COUNTERS: &[StreamCounter] = &[
            $(StreamCounter {
                name: $name,
                help: $help,
                get: |$s: &StreamStats| $get,
                monotonic: counters!(@$kind),
            },)*
        ];
    };
}

counters! {
    "rkm_rtp_packets_received", counter, "RTP packets accepted, retransmissions included.", |s| s.packets_received;
    "rkm_rtp_bytes_received", counter, "RTP bytes accepted, headers included.", |s| s.bytes_received;
    "rkm_rtp_packets_sent", counter, "RTP packets sent, retransmissions included.", |s| s.packets_sent;
    "rkm_rtp_bytes_sent", counter, "RTP bytes sent, headers included.", |s| s.bytes_sent;
    "rkm_rtp_packets_lost", gauge, "Packets lost on the path before recovery (RFC 3550 cumulative loss, at least 0 per stream; a late duplicate lowers it).", |s| u64::try_from(s.lost).unwrap_or(0);
    "rkm_rtp_packets_reordered", counter, "Packets that arrived after a later-numbered one.", |s| s.reordered;
    "rkm_rtp_packets_duplicate", counter, "Packets received more than once.", |s| s.duplicates;
    "rkm_rtp_packets_late", counter, "Packets that arrived after their place was given up on.", |s| s.late;
    "rkm_rtp_frames_received", counter, "Frames handed to the callbacks.", |s| s.frames;
    "rkm_rtp_keyframes_received", counter, "Key frames handed to the callbacks.", |s| s.keyframes;
    "rkm_rtp_frames_dropped_incomplete", counter, "Pictures dropped because packets of them were lost.", |s| s.frames_dropped_incomplete;
    "rkm_rtp_frames_dropped_gated", counter, "Pictures held back waiting for a key frame.", |s| s.frames_dropped_gated;
    "rkm_rtp_events_dropped_slow_callback", counter, "Events dropped because a callback queue was full.", |s| s.frames_dropped_slow_callback;
    "rkm_rtp_nack_sent", counter, "Sequence numbers asked for in NACKs (each retry counts).", |s| s.nack_sent;
    "rkm_rtp_nack_received", counter, "Sequence numbers the peers asked us for.", |s| s.nack_received;
    "rkm_rtp_retransmitted", counter, "Packets sent again because of a NACK (RTX when negotiated).", |s| s.retransmitted;
    "rkm_rtp_retransmit_refused", counter, "NACKed packets not sent again (unknown, too old, over budget).", |s| s.retransmit_refused;
    "rkm_rtp_rtx_received", counter, "RTX packets received (RFC 4588).", |s| s.rtx_received;
    "rkm_rtp_recovered", counter, "Missing packets that arrived in time after a NACK.", |s| s.recovered;
    "rkm_rtp_pli_sent", counter, "Picture Loss Indications sent.", |s| s.pli_sent;
    "rkm_rtp_pli_received", counter, "Picture Loss Indications received.", |s| s.pli_received;
    "rkm_rtp_fir_sent", counter, "Full Intra Requests sent.", |s| s.fir_sent;
    "rkm_rtp_fir_received", counter, "Full Intra Requests received.", |s| s.fir_received;
    "rkm_rtcp_received", counter, "RTCP compounds accepted.", |s| s.rtcp_received;
    "rkm_rtcp_sent", counter, "RTCP compounds sent.", |s| s.rtcp_sent;
    "rkm_rtp_unexpected_source", counter, "Datagrams from an address other than the session's remote (dropped).", |s| s.unexpected_source;
    "rkm_rtp_malformed", counter, "Datagrams that were not usable RTP/RTCP (dropped).", |s| s.malformed;
    "rkm_rtp_unknown_payload_type", counter, "RTP packets of a payload type the stream does not carry (dropped).", |s| s.unknown_payload_type;
    "rkm_rtp_audio_concealed", counter, "Audio frames concealed or flagged lost.", |s| s.audio_concealed;
    "rkm_rtp_audio_late", counter, "Audio packets that arrived after their frame had played.", |s| s.audio_late;
    "rkm_rtp_audio_dropped", counter, "Audio packets the jitter buffer dropped.", |s| s.audio_dropped;
    "rkm_rtp_srtp_auth_failed", counter, "SRTP/SRTCP packets whose authentication failed.", |s| s.srtp_auth_failed;
    "rkm_rtp_srtp_replayed", counter, "SRTP/SRTCP packets dropped as replays.", |s| s.srtp_replayed;
    "rkm_rtp_fec_sent", counter, "ULPFEC packets sent.", |s| s.fec_sent;
    "rkm_rtp_fec_received", counter, "ULPFEC packets received.", |s| s.fec_received;
    "rkm_rtp_fec_recovered", counter, "Lost video packets rebuilt from ULPFEC.", |s| s.fec_recovered;
    "rkm_rtp_fec_unrecoverable", counter, "ULPFEC packets given up with two or more packets still missing.", |s| s.fec_unrecoverable;
    "rkm_rtp_cc_pictures_dropped", counter, "Whole pictures the sender dropped rather than queue beyond the congestion-control estimate.", |s| s.cc_pictures_dropped;
    "rkm_rtp_cc_feedback_sent", counter, "Transport-wide congestion-control feedback packets sent.", |s| s.cc_feedback_sent;
    "rkm_rtp_cc_feedback_received", counter, "Transport-wide congestion-control feedback packets received and used.", |s| s.cc_feedback_received;
    "rkm_rtp_inactivity_events", counter, "Times a stream heard nothing for its inactivity timeout.", |s| s.inactivity_events;
    "rkm_rtcp_bye_received", counter, "RTCP BYEs received.", |s| s.bye_received;
    "rkm_dtmf_received", counter, "DTMF digits received.", |s| s.dtmf_received;
    "rkm_dtmf_sent", counter, "DTMF digits sent.", |s| s.dtmf_sent;
    "rkm_ice_stun_accepted", counter, "STUN messages an ICE agent took (authenticated checks and answers).", |s| s.stun_accepted;
    "rkm_ice_stun_malformed", counter, "STUN-range datagrams that did not parse (dropped).", |s| s.stun_malformed;
    "rkm_ice_stun_refused", counter, "STUN messages refused (wrong credentials, bad integrity, no ICE on the stream).", |s| s.stun_refused;
    "rkm_dtls_dropped", counter, "DTLS records dropped (from a source no ICE check validated, or no handshake to take them).", |s| s.dtls_dropped;
    "rkm_transport_dropped", counter, "Datagrams a DTLS-SRTP stream dropped on arrival (media before the keys or from another source, junk).", |s| s.transport_dropped;
    "rkm_rtp_dropped_unkeyed", counter, "RTP/RTCP made before DTLS keyed SRTP, never sent.", |s| s.media_dropped_unkeyed;
}

/// The number of [`STREAM_COUNTERS`].
const N_COUNTERS: usize = STREAM_COUNTERS.len();

/// [`STREAM_COUNTERS`] summed over streams, in the table's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTotals(pub [u64; N_COUNTERS]);

impl Default for StreamTotals {
    fn default() -> Self {
        StreamTotals([0; N_COUNTERS])
    }
}

impl StreamTotals {
    /// Adds one stream's counters.
    pub fn add(&mut self, s: &StreamStats) {
        for (t, c) in self.0.iter_mut().zip(STREAM_COUNTERS) {
            *t = t.saturating_add((c.get)(s));
        }
    }

    /// Adds what `later` counted beyond `earlier` (the same stream read twice).
    pub fn add_growth(&mut self, earlier: &StreamStats, later: &StreamStats) {
        for (t, c) in self.0.iter_mut().zip(STREAM_COUNTERS) {
            *t = t.saturating_add((c.get)(later).saturating_sub((c.get)(earlier)));
        }
    }

    /// Adds another sum.
    pub fn merge(&mut self, other: &StreamTotals) {
        for (t, o) in self.0.iter_mut().zip(other.0) {
            *t = t.saturating_add(o);
        }
    }
}
