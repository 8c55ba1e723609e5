//! Per-stream state of an RTP sender: SSRC, sequence numbers, timestamps and the counters a
//! sender report carries.
//!
//! RFC 3550 §5.1 asks for a random SSRC, a random first sequence number and a random timestamp
//! offset, so that a stream cannot be predicted from the outside and two streams started together
//! do not look alike. Randomness comes from the caller's `rand` generator; nothing here reads a
//! clock.

use rand::Rng;

use super::packet::{write_rtp_header, RTP_HEADER_LEN};
use super::rtcp::SenderInfo;

/// Sequence numbers, timestamps and counters of one outgoing RTP stream.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    pt: u8,
    clock_rate: u32,
    next_seq: u16,
    ts_offset: u32,
    packet_count: u32,
    octet_count: u32,
    last_rtp_ts: Option<u32>,
}

impl RtpSender {
    /// A sender with a random SSRC, first sequence number and timestamp offset.
    /// `clock_rate` is the RTP clock of the payload format (8000 for G.711, 90000 for video);
    /// zero is treated as 1 so that timestamp arithmetic stays defined.
    pub fn new<R: Rng + ?Sized>(pt: u8, clock_rate: u32, rng: &mut R) -> Self {
        Self::with_initial(rng.random(), pt, clock_rate, rng.random(), rng.random())
    }

    /// A sender with given starting values, for tests and for keeping an SSRC the signalling
    /// already announced.
    pub fn with_initial(
        ssrc: u32,
        pt: u8,
        clock_rate: u32,
        first_seq: u16,
        ts_offset: u32,
    ) -> Self {
        RtpSender {
            ssrc,
            pt: pt & 0x7f,
            clock_rate: clock_rate.max(1),
            next_seq: first_seq,
            ts_offset,
            packet_count: 0,
            octet_count: 0,
            last_rtp_ts: None,
        }
    }

    /// The synchronisation source identifier of this stream.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The RTP payload type written into every header.
    pub fn payload_type(&self) -> u8 {
        self.pt
    }

    /// Changes the payload type (for example after a re-INVITE picked another one).
    pub fn set_payload_type(&mut self, pt: u8) {
        self.pt = pt & 0x7f;
    }

    /// The RTP clock rate in Hz.
    #[cfg(any(test, feature = "_internals"))]
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// The random offset added to every timestamp.
    pub fn timestamp_offset(&self) -> u32 {
        self.ts_offset
    }

    /// The sequence number the next header will carry.
    pub fn next_sequence(&self) -> u16 {
        self.next_seq
    }

    /// The header of the next packet: takes the next sequence number (wrapping after 65535),
    /// counts one packet for the sender report and remembers `rtp_ts`. Payload bytes are counted
    /// separately with [`Self::count_payload`], because the header does not know them.
    pub fn next_header(&mut self, rtp_ts: u32, marker: bool) -> [u8; RTP_HEADER_LEN] {
        let mut h = [0u8; RTP_HEADER_LEN];
        write_rtp_header(&mut h, self.pt, marker, self.next_seq, rtp_ts, self.ssrc);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.packet_count = self.packet_count.wrapping_add(1);
        self.last_rtp_ts = Some(rtp_ts);
        h
    }

    /// Adds the payload length of a sent packet to the octet count (RFC 3550: payload octets
    /// only, neither header nor padding). The count wraps like the 32-bit field it fills.
    pub fn count_payload(&mut self, payload_len: usize) {
        self.octet_count = self.octet_count.wrapping_add(payload_len as u32);
    }

    /// The RTP timestamp of media captured `ms` milliseconds after the stream's time origin:
    /// the random offset plus `ms` in clock ticks, wrapping modulo 2^32. Negative or huge values
    /// wrap too; a NaN counts as 0.
    pub fn rtp_timestamp_for_ms(&self, ms: f64) -> u32 {
        let ticks = (ms * f64::from(self.clock_rate) / 1000.0).round();
        // f64 -> i64 saturates; truncating i64 -> u32 is the modulo-2^32 wrap we want.
        self.ts_offset.wrapping_add(ticks as i64 as u32)
    }

    /// The timestamp of the last header produced, if any.
    #[cfg(any(test, feature = "_internals"))]
    pub fn last_rtp_ts(&self) -> Option<u32> {
        self.last_rtp_ts
    }

    /// Packets sent so far (wrapping 32-bit, as in the sender report).
    #[cfg(any(test, feature = "_internals"))]
    pub fn packet_count(&self) -> u32 {
        self.packet_count
    }

    /// Payload octets sent so far (wrapping 32-bit, as in the sender report).
    #[cfg(any(test, feature = "_internals"))]
    pub fn octet_count(&self) -> u32 {
        self.octet_count
    }

    /// True once a packet was sent, which is when RFC 3550 wants SRs rather than RRs.
    pub fn has_sent(&self) -> bool {
        self.packet_count > 0 || self.last_rtp_ts.is_some()
    }

    /// The sender-info part of an SR: `ntp_now` is the wall clock as 64-bit NTP and `rtp_now` the
    /// RTP timestamp of the same instant (for example [`Self::rtp_timestamp_for_ms`] of the time
    /// since the stream origin).
    pub fn sender_info(&self, ntp_now: u64, rtp_now: u32) -> SenderInfo {
        SenderInfo {
            ntp: ntp_now,
            rtp_ts: rtp_now,
            packet_count: self.packet_count,
            octet_count: self.octet_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::parse_rtp;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn random_starting_values_differ() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = RtpSender::new(96, 90000, &mut rng);
        let b = RtpSender::new(96, 90000, &mut rng);
        assert_ne!(
            (a.ssrc(), a.next_sequence(), a.timestamp_offset()),
            (b.ssrc(), b.next_sequence(), b.timestamp_offset())
        );
        assert!(!a.has_sent());
        assert_eq!(a.last_rtp_ts(), None);
    }

    #[test]
    fn headers_advance_and_wrap() {
        let mut s = RtpSender::with_initial(0x1111, 96, 90000, 65534, 0);
        let seqs: Vec<u16> = (0..4)
            .map(|i| {
                let h = s.next_header(1000 + i, i == 3);
                let (meta, _) = parse_rtp(&h).unwrap();
                assert_eq!(meta.ssrc, 0x1111);
                assert_eq!(meta.payload_type, 96);
                assert_eq!(meta.timestamp, 1000 + i);
                assert_eq!(meta.marker, i == 3);
                meta.sequence
            })
            .collect();
        assert_eq!(seqs, [65534, 65535, 0, 1]);
        assert_eq!(s.packet_count(), 4);
        assert_eq!(s.last_rtp_ts(), Some(1003));
        assert!(s.has_sent());
    }

    #[test]
    fn timestamps_from_milliseconds() {
        let s = RtpSender::with_initial(1, 96, 90000, 0, 1000);
        assert_eq!(s.rtp_timestamp_for_ms(0.0), 1000);
        assert_eq!(s.rtp_timestamp_for_ms(1000.0), 91000);
        assert_eq!(s.rtp_timestamp_for_ms(33.3333), 1000 + 3000);
        let audio = RtpSender::with_initial(1, 0, 8000, 0, 0);
        assert_eq!(audio.rtp_timestamp_for_ms(20.0), 160);
        assert_eq!(s.rtp_timestamp_for_ms(f64::NAN), 1000);
        assert_eq!(s.rtp_timestamp_for_ms(-1.0), 1000 - 90);
    }

    #[test]
    fn timestamps_wrap() {
        let s = RtpSender::with_initial(1, 96, 90000, 0, u32::MAX - 89);
        assert_eq!(s.rtp_timestamp_for_ms(1.0), 0);
        assert_eq!(s.rtp_timestamp_for_ms(2.0), 90);
        // 2^32 ticks at 90 kHz is about 13.25 hours; one full period later we are back.
        let period_ms = 4_294_967_296.0 / 90.0;
        assert_eq!(s.rtp_timestamp_for_ms(period_ms + 1.0), 0);
    }

    #[test]
    fn sender_info_carries_counters() {
        let mut s = RtpSender::with_initial(1, 96, 90000, 0, 0);
        for len in [100usize, 1200, 7] {
            s.next_header(0, false);
            s.count_payload(len);
        }
        let si = s.sender_info(0x0102_0304_0506_0708, 4242);
        assert_eq!(
            si,
            SenderInfo {
                ntp: 0x0102_0304_0506_0708,
                rtp_ts: 4242,
                packet_count: 3,
                octet_count: 1307
            }
        );
    }

    #[test]
    fn payload_type_is_seven_bits() {
        let mut s = RtpSender::with_initial(1, 0xff, 0, 0, 0);
        assert_eq!(s.payload_type(), 0x7f);
        assert_eq!(s.clock_rate(), 1);
        s.set_payload_type(97);
        let (meta, _) = parse_rtp(&s.next_header(0, false)).unwrap();
        assert_eq!(meta.payload_type, 97);
        assert!(!meta.marker);
    }
}
