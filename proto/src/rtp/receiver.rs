//! Reception statistics of one RTP source, as RFC 3550 defines them: the extended highest
//! sequence number, expected and received counts, cumulative and fractional loss (A.1, A.3),
//! interarrival jitter (A.8), and the LSR/DLSR echo of the source's last sender report. From these
//! we fill the report blocks of our SRs and RRs.
//!
//! Time is passed in: packet arrival times in RTP clock units, sender-report times as NTP.

use std::time::Duration;

use super::rtcp::{ntp_short, ReportBlockData};

/// A jump ahead of more than this many packets is suspicious (RFC 3550 A.1 `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;
/// A packet up to this many behind the highest is late, not a restart (A.1 `MAX_MISORDER`).
const MAX_MISORDER: u16 = 100;
/// How many sequence numbers behind the highest we remember, to tell duplicates from late packets.
const HISTORY: u16 = 128;

/// How an arriving packet relates to the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The first packet of the source.
    First,
    /// Ahead of every packet so far; `missing` sequence numbers were skipped (0 when contiguous).
    InOrder { missing: u16 },
    /// Behind the highest sequence number and not seen before.
    Late,
    /// A sequence number already received.
    Duplicate,
    /// A jump far ahead or behind: not counted, and the packet should be dropped. If the next
    /// packet continues from it, the source is taken to have restarted.
    Jump,
    /// The second packet of a continuous run after a [`Arrival::Jump`]: the source restarted its
    /// sequence numbering, and statistics start again from this packet.
    Restart,
}

/// Reception statistics of one source (one SSRC).
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    ssrc: u32,
    started: bool,
    max_seq: u16,
    /// Sequence wraps seen, times 65536.
    cycles: i64,
    /// Extended sequence number of the first packet (moved back if an earlier one arrives late).
    base_seq: i64,
    /// The sequence number that would confirm a restart after a jump.
    bad_seq: Option<u16>,
    /// Bit i set: sequence number `max_seq - i` was received.
    recent: u128,
    received: u64,
    expected_prior: i64,
    received_prior: u64,
    transit: Option<u32>,
    jitter: f64,
    duplicates: u64,
    late: u64,
    jumps: u64,
    restarts: u64,
    bytes: u64,
    /// NTP time carried by the last SR from the source, and our NTP time when it arrived.
    last_sr: Option<(u64, u64)>,
}

impl ReceiverStats {
    /// Empty statistics for source `ssrc`.
    pub fn new(ssrc: u32) -> Self {
        ReceiverStats {
            ssrc,
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: None,
            recent: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0.0,
            duplicates: 0,
            late: 0,
            jumps: 0,
            restarts: 0,
            bytes: 0,
            last_sr: None,
        }
    }

    /// Converts a time since any fixed origin into RTP clock units, wrapping like an RTP
    /// timestamp; this is the `arrival` argument of [`Self::on_packet`].
    pub fn arrival_in_clock_units(since_origin: Duration, clock_rate: u32) -> u32 {
        (since_origin.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as u32
    }

    /// The source these statistics describe.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    fn restart_at(&mut self, seq: u16) {
        self.started = true;
        self.max_seq = seq;
        self.cycles = 0;
        self.base_seq = i64::from(seq);
        self.bad_seq = None;
        self.recent = 1;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.transit = None;
        self.jitter = 0.0;
    }

    /// Records an arriving packet: its sequence number, RTP timestamp, arrival time in the same
    /// clock units as the timestamp (see [`Self::arrival_in_clock_units`]) and payload length.
    pub fn on_packet(
        &mut self,
        seq: u16,
        rtp_ts: u32,
        arrival: u32,
        payload_len: usize,
    ) -> Arrival {
        let verdict = if !self.started {
            self.restart_at(seq);
            Arrival::First
        } else {
            let ahead = seq.wrapping_sub(self.max_seq);
            if ahead == 0 {
                Arrival::Duplicate
            } else if ahead < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.recent = if ahead >= HISTORY {
                    1
                } else {
                    (self.recent << ahead) | 1
                };
                self.max_seq = seq;
                self.bad_seq = None;
                Arrival::InOrder { missing: ahead - 1 }
            } else if ahead <= 0u16.wrapping_sub(MAX_MISORDER) {
                if self.bad_seq == Some(seq) {
                    self.restarts += 1;
                    self.restart_at(seq);
                    Arrival::Restart
                } else {
                    self.jumps += 1;
                    self.bad_seq = Some(seq.wrapping_add(1));
                    return Arrival::Jump;
                }
            } else {
                let behind = self.max_seq.wrapping_sub(seq);
                let bit = 1u128 << behind;
                if self.recent & bit != 0 {
                    Arrival::Duplicate
                } else {
                    self.recent |= bit;
                    // An earlier packet than the first one: it extends the expected range
                    // instead of making the loss count negative.
                    let ext = self.ext_max() - i64::from(behind);
                    self.base_seq = self.base_seq.min(ext);
                    Arrival::Late
                }
            }
        };
        self.received += 1;
        self.bytes += payload_len as u64;
        match verdict {
            Arrival::Duplicate => self.duplicates += 1,
            _ => {
                if verdict == Arrival::Late {
                    self.late += 1;
                }
                self.update_jitter(rtp_ts, arrival);
            }
        }
        verdict
    }

    /// RFC 3550 A.8: the mean deviation of the difference in transit time between packets,
    /// smoothed with gain 1/16.
    fn update_jitter(&mut self, rtp_ts: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(prev) = self.transit {
            let d = f64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    fn ext_max(&self) -> i64 {
        self.cycles + i64::from(self.max_seq)
    }

    /// Records a sender report from the source: `ntp` is the time it carries, `arrival_ntp` our
    /// own NTP time when it arrived. Later report blocks echo it as LSR and DLSR.
    pub fn on_sender_report(&mut self, ntp: u64, arrival_ntp: u64) {
        self.last_sr = Some((ntp, arrival_ntp));
    }

    /// The report block about this source for an SR or RR sent at `now_ntp`. Computes the loss
    /// fraction since the previous call (so call it once per report sent).
    pub fn report_block(&mut self, now_ntp: u64) -> ReportBlockData {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received as i64 - self.received_prior as i64;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval - received_interval;
        let fraction_lost = if expected_interval <= 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        let (lsr, dlsr) = match self.last_sr {
            Some((ntp, arrival)) => (
                ntp_short(ntp),
                // 1/65536 s units: the middle 32 bits of the NTP difference.
                u32::try_from(now_ntp.saturating_sub(arrival) >> 16).unwrap_or(u32::MAX),
            ),
            None => (0, 0),
        };
        ReportBlockData {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            ext_highest_seq: self.ext_highest_seq(),
            jitter: self.jitter as u32,
            lsr,
            dlsr,
        }
    }

    /// Extended highest sequence number received: wrap count in the upper 16 bits.
    pub fn ext_highest_seq(&self) -> u32 {
        self.ext_max() as u32
    }

    /// Packets expected: from the first sequence number to the highest, inclusive.
    pub fn expected(&self) -> i64 {
        if self.started {
            self.ext_max() - self.base_seq + 1
        } else {
            0
        }
    }

    /// Packets received, late ones and duplicates included (as RFC 3550 counts them).
    #[cfg(any(test, feature = "_internals"))]
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Expected minus received since the start; negative when duplicates outnumber losses.
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() - self.received as i64
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Packets whose sequence number had already been received.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets that arrived after a higher sequence number (reordered).
    pub fn reordered(&self) -> u64 {
        self.late
    }

    /// Packets rejected as a jump in sequence numbers.
    #[cfg(any(test, feature = "_internals"))]
    pub fn jumps(&self) -> u64 {
        self.jumps
    }

    /// Times the source restarted its sequence numbers.
    #[cfg(any(test, feature = "_internals"))]
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Payload bytes of the packets counted as received.
    #[cfg(any(test, feature = "_internals"))]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The last sender report: the NTP time it carried and our NTP time when it arrived.
    #[cfg(any(test, feature = "_internals"))]
    pub fn last_sender_report(&self) -> Option<(u64, u64)> {
        self.last_sr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds sequence numbers with timestamps that keep transit constant.
    fn feed(stats: &mut ReceiverStats, seqs: &[u16]) -> Vec<Arrival> {
        seqs.iter()
            .map(|&s| stats.on_packet(s, u32::from(s) * 160, u32::from(s) * 160 + 50, 100))
            .collect()
    }

    #[test]
    fn contiguous_stream() {
        let mut st = ReceiverStats::new(9);
        let v = feed(&mut st, &[10, 11, 12, 13]);
        assert_eq!(v[0], Arrival::First);
        assert!(v[1..].iter().all(|a| *a == Arrival::InOrder { missing: 0 }));
        assert_eq!(st.expected(), 4);
        assert_eq!(st.received(), 4);
        assert_eq!(st.cumulative_lost(), 0);
        assert_eq!(st.bytes(), 400);
        assert_eq!(st.jitter(), 0.0);
        let rb = st.report_block(0);
        assert_eq!(
            rb,
            ReportBlockData {
                ssrc: 9,
                fraction_lost: 0,
                cumulative_lost: 0,
                ext_highest_seq: 13,
                jitter: 0,
                lsr: 0,
                dlsr: 0
            }
        );
    }

    #[test]
    fn sequence_wrap_extends_the_highest() {
        let mut st = ReceiverStats::new(1);
        let v = feed(&mut st, &[65533, 65534, 65535, 0, 1]);
        assert_eq!(v[3], Arrival::InOrder { missing: 0 });
        assert_eq!(st.ext_highest_seq(), 0x0001_0001);
        assert_eq!(st.expected(), 5);
        assert_eq!(st.cumulative_lost(), 0);
        // A late packet from before the wrap is still recognised.
        assert_eq!(st.on_packet(65535, 0, 0, 0), Arrival::Duplicate);
        // Loss straddling the wrap.
        let mut st = ReceiverStats::new(1);
        feed(&mut st, &[65534]);
        assert_eq!(feed(&mut st, &[2]), [Arrival::InOrder { missing: 3 }]);
        assert_eq!(st.ext_highest_seq(), 0x0001_0002);
        assert_eq!(st.cumulative_lost(), 3);
    }

    #[test]
    fn loss_and_fraction_per_report() {
        let mut st = ReceiverStats::new(1);
        // 0..100 with 10 missing: 90 received of 100 expected.
        let seqs: Vec<u16> = (0..100).filter(|s| s % 10 != 5).collect();
        feed(&mut st, &seqs);
        assert_eq!(st.expected(), 100);
        let rb = st.report_block(0);
        assert_eq!(rb.cumulative_lost, 10);
        assert_eq!(rb.fraction_lost, (10 * 256 / 100) as u8);
        // Next interval: 100..200, all present.
        let seqs: Vec<u16> = (100..200).collect();
        feed(&mut st, &seqs);
        let rb = st.report_block(0);
        assert_eq!(rb.fraction_lost, 0);
        assert_eq!(rb.cumulative_lost, 10);
        assert_eq!(rb.ext_highest_seq, 199);
        // Next interval: half lost.
        let seqs: Vec<u16> = (200..300).step_by(2).collect();
        feed(&mut st, &seqs);
        let rb = st.report_block(0);
        assert_eq!(rb.fraction_lost, 126, "49 lost of 99 expected");
        // No packets at all since: fraction 0.
        assert_eq!(st.report_block(0).fraction_lost, 0);
    }

    #[test]
    fn late_and_duplicate_packets() {
        let mut st = ReceiverStats::new(1);
        let v = feed(&mut st, &[1, 2, 4, 3, 3, 4, 5]);
        assert_eq!(
            v,
            [
                Arrival::First,
                Arrival::InOrder { missing: 0 },
                Arrival::InOrder { missing: 1 },
                Arrival::Late,
                Arrival::Duplicate,
                Arrival::Duplicate,
                Arrival::InOrder { missing: 0 },
            ]
        );
        assert_eq!(st.reordered(), 1);
        assert_eq!(st.duplicates(), 2);
        assert_eq!(st.expected(), 5);
        assert_eq!(st.received(), 7);
        // RFC 3550: duplicates make the loss negative.
        assert_eq!(st.cumulative_lost(), -2);
        assert_eq!(st.report_block(0).cumulative_lost, -2);
    }

    #[test]
    fn packet_before_the_first_extends_expected() {
        let mut st = ReceiverStats::new(1);
        feed(&mut st, &[0, 1, 2]);
        assert_eq!(feed(&mut st, &[65535]), [Arrival::Late]);
        assert_eq!(st.expected(), 4);
        assert_eq!(st.cumulative_lost(), 0);
        assert_eq!(st.ext_highest_seq(), 2);
    }

    #[test]
    fn jump_then_restart() {
        let mut st = ReceiverStats::new(1);
        feed(&mut st, &[100, 101]);
        assert_eq!(feed(&mut st, &[30000]), [Arrival::Jump]);
        assert_eq!(st.received(), 2);
        // A lone jump is forgotten when the stream continues.
        assert_eq!(feed(&mut st, &[102]), [Arrival::InOrder { missing: 0 }]);
        assert_eq!(
            feed(&mut st, &[40000, 40001]),
            [Arrival::Jump, Arrival::Restart]
        );
        assert_eq!(st.restarts(), 1);
        assert_eq!(st.jumps(), 2);
        assert_eq!(st.expected(), 1);
        assert_eq!(st.received(), 1);
        assert_eq!(feed(&mut st, &[40002]), [Arrival::InOrder { missing: 0 }]);
        assert_eq!(st.ext_highest_seq(), 40002);
        // Far behind (more than MAX_MISORDER) is a jump too.
        assert_eq!(feed(&mut st, &[39000]), [Arrival::Jump]);
    }

    #[test]
    fn jitter_matches_hand_computation() {
        // 8 kHz audio, 20 ms packets: timestamps step 160. Arrivals (in 1/8000 s) give transit
        // times 1000, 1010, 990, 1000, so D = 10, 20, 10 and
        // J1 = 10/16 = 0.625
        // J2 = 0.625 + (20 - 0.625)/16 = 1.8359375
        // J3 = 1.8359375 + (10 - 1.8359375)/16 = 2.34619140625
        let mut st = ReceiverStats::new(1);
        for (seq, ts, arrival) in [(0, 0, 1000), (1, 160, 1170), (2, 320, 1310), (3, 480, 1480)] {
            st.on_packet(seq, ts, arrival, 160);
        }
        assert_eq!(st.jitter(), 2.34619140625);
        assert_eq!(st.report_block(0).jitter, 2);
    }

    #[test]
    fn jitter_across_timestamp_wrap() {
        // Timestamps and arrival clocks both wrap; constant transit must give zero jitter and
        // a one-tick wobble a small one, not 2^32.
        let mut st = ReceiverStats::new(1);
        let start = u32::MAX - 3000;
        for i in 0..10u32 {
            let ts = start.wrapping_add(i * 960);
            st.on_packet(i as u16, ts, ts.wrapping_add(7), 0);
        }
        assert_eq!(st.jitter(), 0.0);
        st.on_packet(
            10,
            start.wrapping_add(9600),
            start.wrapping_add(9600 + 8),
            0,
        );
        assert_eq!(st.jitter(), 1.0 / 16.0);
    }

    #[test]
    fn lsr_and_dlsr() {
        let mut st = ReceiverStats::new(1);
        feed(&mut st, &[1]);
        let sr_ntp = 0x1122_3344_5566_7788u64;
        let arrival = 0xe000_0000_0000_0000u64;
        st.on_sender_report(sr_ntp, arrival);
        assert_eq!(st.last_sender_report(), Some((sr_ntp, arrival)));
        // 1.5 s later.
        let rb = st.report_block(arrival + (3u64 << 31));
        assert_eq!(rb.lsr, 0x3344_5566);
        assert_eq!(rb.dlsr, 0x0001_8000);
        // A clock going backwards gives zero delay rather than garbage.
        assert_eq!(st.report_block(arrival - 1).dlsr, 0);
    }

    #[test]
    fn cumulative_lost_clamps_to_24_bits() {
        let mut st = ReceiverStats::new(1);
        st.on_packet(0, 0, 0, 0);
        // Jump ahead in steps below MAX_DROPOUT, losing ~2999 each time, until past 2^23 lost.
        let mut seq = 0u16;
        for _ in 0..3000 {
            seq = seq.wrapping_add(2999);
            st.on_packet(seq, 0, 0, 0);
        }
        assert!(st.cumulative_lost() > 0x7f_ffff);
        assert_eq!(st.report_block(0).cumulative_lost, 0x7f_ffff);
    }

    #[test]
    fn arrival_units() {
        assert_eq!(
            ReceiverStats::arrival_in_clock_units(Duration::from_millis(20), 8000),
            160
        );
        assert_eq!(
            ReceiverStats::arrival_in_clock_units(Duration::from_secs(1), 90000),
            90000
        );
        // Wraps like a timestamp: 2^32 ticks at 90 kHz plus one second.
        let wrap = Duration::from_nanos(4_294_967_296u64 * 1_000_000_000 / 90000);
        let t = ReceiverStats::arrival_in_clock_units(wrap + Duration::from_secs(1), 90000);
        assert!(t.abs_diff(90000) <= 1);
    }

    #[test]
    fn empty_stats_report_nothing_lost() {
        let mut st = ReceiverStats::new(3);
        assert_eq!(st.expected(), 0);
        let rb = st.report_block(0);
        assert_eq!((rb.fraction_lost, rb.cumulative_lost), (0, 0));
        assert_eq!(st.ssrc(), 3);
    }
}
