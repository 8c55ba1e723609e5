//! The counters of one RTP stream, as the application reads them.

/// What one RTP stream (audio or video) has seen and done. Counters start at 0 when the stream
/// is created; the `_ms`, `remote_` and `pacer_queued`/`audio_jitter_depth_ms` fields are current
/// values rather than totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStats {
    /// RTP packets accepted (right source, parsed), retransmissions included.
    pub packets_received: u64,
    /// RTP bytes accepted, headers included.
    pub bytes_received: u64,
    /// RTP packets sent, retransmissions included.
    pub packets_sent: u64,
    /// RTP bytes sent, headers included.
    pub bytes_sent: u64,
    /// Packets expected but not received on the path (RFC 3550 cumulative loss, before any
    /// recovery; negative with duplicates).
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
    /// Picture Loss Indications we sent (RFC 4585).
    pub pli_sent: u64,
    /// Picture Loss Indications the peer sent us.
    pub pli_received: u64,
    /// Full Intra Requests we sent (RFC 5104).
    pub fir_sent: u64,
    /// Full Intra Requests the peer sent us.
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

    /// Sequence numbers we asked for in NACKs (each retry counts).
    pub nack_sent: u64,
    /// Sequence numbers the peer asked us for.
    pub nack_received: u64,
    /// Packets we sent again because of a NACK (as RTX when negotiated).
    pub retransmitted: u64,
    /// NACKed packets we did not send again: unknown, too old, re-sent too recently, or over
    /// the retransmission budget.
    pub retransmit_refused: u64,
    /// RTX packets received (RFC 4588).
    pub rtx_received: u64,
    /// Retransmissions of packets we already had (dropped).
    pub rtx_duplicates: u64,
    /// Missing packets that arrived after we NACKed them, in time to be used.
    pub recovered: u64,
    /// Packets that arrived after their place in the stream had been given up on (dropped).
    pub late: u64,
    /// Audio frames concealed or flagged lost by the jitter buffer.
    pub audio_concealed: u64,
    /// Audio packets that arrived after their frame had played (dropped).
    pub audio_late: u64,
    /// Audio packets the jitter buffer dropped to lower its delay or because it was full.
    pub audio_dropped: u64,
    /// The jitter buffer's current target delay, milliseconds (0 without a jitter buffer).
    pub audio_jitter_depth_ms: f64,
    /// Round-trip time, milliseconds (0 until measured).
    pub rtt_ms: f64,
    /// Fraction of our packets the peer reports lost in its last report (0–1).
    pub remote_fraction_lost: f64,
    /// The peer's cumulative count of our packets lost.
    pub remote_cumulative_lost: i64,
    /// The interarrival jitter the peer reports for our packets, milliseconds.
    pub remote_jitter_ms: f64,
    /// Packets waiting in the pacer now.
    pub pacer_queued: u64,
    /// The last picture's pacing delay, milliseconds: from `send_video` to its last packet
    /// leaving.
    pub pacer_delay_ms: f64,
    /// The longest pacing delay of any picture, milliseconds.
    pub pacer_delay_max_ms: f64,
    /// RTCP BYEs received from the peer.
    pub bye_received: u64,
    /// Times the stream was reported inactive (no RTP or RTCP for the inactivity timeout).
    pub inactivity_events: u64,
    /// Tail-loss probes sent: our last packet sent once more when no picture followed it (so
    /// a receiver that lost the end of the last picture can tell); not in `retransmitted`.
    pub tail_probes: u64,
    /// The packet loss (percent) our Opus encoder protects against with in-band FEC, from the
    /// peer's last receiver report; 0 before the first report (the encoder starts at 10 %) and
    /// for codecs without FEC.
    pub audio_expected_loss_pct: u32,
    /// SRTP/SRTCP packets dropped because their authentication tag did not verify (tampered, or
    /// protected with another key).
    pub srtp_auth_failed: u64,
    /// SRTP/SRTCP packets dropped as replays (already received, or older than the window).
    pub srtp_replayed: u64,
    /// ULPFEC packets sent (in RED) to protect our video.
    pub fec_sent: u64,
    /// ULPFEC packets received from the peer.
    pub fec_received: u64,
    /// Lost video packets rebuilt from ULPFEC before anyone asked for them again.
    pub fec_recovered: u64,
    /// ULPFEC packets given up with two or more of the packets they protect still missing.
    pub fec_unrecoverable: u64,
    /// Congestion control: the send-side bandwidth estimate, bits per second (0 when congestion
    /// control is off on this stream).
    pub cc_target_bps: u64,
    /// The rate the pacer releases packets at under congestion control, bits per second (0 when
    /// off: the pacer then follows the stream's own rate).
    pub cc_pacer_rate_bps: u64,
    /// Whole pictures the sender dropped rather than queue more than the estimate carries.
    pub cc_pictures_dropped: u64,
    /// Transport-wide feedback packets (RTPFB FMT 15) we sent, as the receiver.
    pub cc_feedback_sent: u64,
    /// Transport-wide feedback packets the peer sent us that the estimator used.
    pub cc_feedback_received: u64,
    /// Padding-only video packets received (a sender's bandwidth probes, on the media's or the
    /// RTX stream): counted in `packets_received`, never handed to picture assembly.
    pub padding_received: u64,
    /// ICE on this stream (DTLS-SRTP transports): 0 off, 1 new, 2 checking, 3 connected,
    /// 4 disconnected, 5 consent expired (the stream ended).
    pub ice_state: u32,
    /// DTLS-SRTP on this stream: 0 off, 1 new, 2 connecting, 3 connected (SRTP keyed),
    /// 4 failed (the stream ended), 5 closed (by the peer: the stream ended; or by us).
    pub dtls_state: u32,
    /// Our side of the ICE-selected pair (`None` before selection and without ICE).
    pub ice_local: Option<std::net::SocketAddr>,
    /// Where media goes on a DTLS-SRTP transport: the selected pair's remote (with ICE), the
    /// peer's address (without).
    pub ice_remote: Option<std::net::SocketAddr>,
    /// STUN messages the ICE agent took (authenticated checks and answers).
    pub stun_accepted: u64,
    /// STUN-range datagrams that did not parse as STUN (dropped).
    pub stun_malformed: u64,
    /// STUN messages refused: wrong credentials, bad integrity, or no ICE on the stream.
    pub stun_refused: u64,
    /// DTLS records dropped: from a source no ICE check validated, or with no handshake to take
    /// them.
    pub dtls_dropped: u64,
    /// Datagrams a DTLS-SRTP transport dropped on arrival: RTP/RTCP before the keys or from
    /// another source than the selected remote, and anything else RFC 7983 does not name.
    pub transport_dropped: u64,
    /// RTP/RTCP we produced that never left because DTLS had not keyed SRTP yet (or consent
    /// was lost): never sent in the clear.
    pub media_dropped_unkeyed: u64,
}
