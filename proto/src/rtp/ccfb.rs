//! RFC 8888 congestion control feedback (CCFB, RTCP RTPFB FMT 11, `a=rtcp-fb:* ack ccfb`): the
//! receiver reports, per media source, which of a run of sequence numbers arrived, when (an
//! offset before the report's own timestamp, in 1/1024 s) and with which ECN mark. Unlike
//! transport-cc it needs no header extension: packets are named by (SSRC, sequence number).
//!
//! ```text
//!  |V=2|P| FMT=11  |   PT = 205    |          length               |
//!  |                 SSRC of RTCP packet sender                    |
//!  |                   SSRC of 1st RTP Stream                      |  \
//!  |          begin_seq            |          num_reports          |   | one block
//!  |R|ECN|  Arrival time offset    | ...  (16 bits a packet, padded |   | per source
//!  |  to a 32-bit word)                                            |  /
//!  |                        Report Timestamp (32 bits)             |
//! ```
//!
//! The report timestamp is the middle 32 bits of an NTP time (16.16 seconds); any clock does, as
//! long as it is the receiver's one clock. An arrival time offset of 0x1FFF means "received, time
//! unknown", 0x1FFE "received, more than 8 s before the report". Parsing never panics.

use std::collections::BTreeMap;
use std::time::Instant;

use super::rtcp::RtcpError;
use super::twcc::unwrap_seq;

/// The RTPFB format of CCFB.
pub const FMT_CCFB: u8 = 11;
/// RTCP packet type of transport-layer feedback (RFC 4585 RTPFB).
const PT_RTPFB: u8 = 205;
/// Arrival time offset: received, but the time is not known.
pub const ATO_UNAVAILABLE: u16 = 0x1fff;
/// Arrival time offset: received longer ago than the field carries.
pub const ATO_OVER_RANGE: u16 = 0x1ffe;
/// RFC 8888 §3.1: a block reports on at most this many packets.
pub const MAX_REPORTS: usize = 16_384;
/// The packets one block we build reports on at most (keeps a report near 1,000 bytes).
pub const MAX_BUILT_REPORTS: usize = 480;
/// The sources one report we build covers at most.
const MAX_SOURCES: usize = 4;
/// Arrivals a recorder keeps per source before the oldest are dropped unreported.
const MAX_PENDING: usize = 8_192;

/// One received packet's metric block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The ECN bits the packet arrived with (0–3).
    pub ecn: u8,
    /// The arrival time offset before the report timestamp, 1/1024 s (13 bits).
    pub ato: u16,
}

impl Metric {
    /// The arrival time offset in µs, when the report carries one.
    pub fn offset_us(&self) -> Option<i64> {
        (self.ato < ATO_OVER_RANGE).then(|| i64::from(self.ato) * 1_000_000 / 1024)
    }
}

/// The reports on one source: `metrics[i]` is about `begin_seq + i`; `None`: not received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub ssrc: u32,
    pub begin_seq: u16,
    pub metrics: Vec<Option<Metric>>,
}

/// A parsed CCFB packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ccfb {
    pub sender_ssrc: u32,
    pub blocks: Vec<Block>,
    /// The middle 32 bits of the receiver's NTP-format clock when it sent the report.
    pub report_timestamp: u32,
}

/// Parses what follows the sender SSRC of an RTPFB FMT 11 packet (padding removed): the blocks
/// and the report timestamp.
pub fn parse_body(sender_ssrc: u32, body: &[u8]) -> Result<Ccfb, &'static str> {
    let split = body
        .len()
        .checked_sub(4)
        .ok_or("CCFB shorter than its report timestamp")?;
    let (mut rest, ts) = body.split_at(split);
    let report_timestamp = u32::from_be_bytes([ts[0], ts[1], ts[2], ts[3]]);
    let mut blocks = Vec::new();
    while !rest.is_empty() {
        let [s0, s1, s2, s3, b0, b1, n0, n1, tail @ ..] = rest else {
            return Err("CCFB block shorter than its header");
        };
        let count = usize::from(u16::from_be_bytes([*n0, *n1]));
        if count > MAX_REPORTS {
            return Err("CCFB block reports on more than 16384 packets");
        }
        let bytes = (count * 2).div_ceil(4) * 4;
        if tail.len() < bytes {
            return Err("CCFB block longer than the packet");
        }
        let metrics = tail[..count * 2]
            .chunks_exact(2)
            .map(|m| {
                let v = u16::from_be_bytes([m[0], m[1]]);
                // R = 0: not received; the other bits mean nothing (RFC 8888 §3.1).
                (v & 0x8000 != 0).then_some(Metric {
                    ecn: ((v >> 13) & 3) as u8,
                    ato: v & 0x1fff,
                })
            })
            .collect();
        blocks.push(Block {
            ssrc: u32::from_be_bytes([*s0, *s1, *s2, *s3]),
            begin_seq: u16::from_be_bytes([*b0, *b1]),
            metrics,
        });
        rest = &tail[bytes..];
    }
    Ok(Ccfb {
        sender_ssrc,
        blocks,
        report_timestamp,
    })
}

/// Appends a CCFB packet. Returns the bytes written; nothing is written on error.
pub fn build(
    out: &mut Vec<u8>,
    sender_ssrc: u32,
    blocks: &[Block],
    report_timestamp: u32,
) -> Result<usize, RtcpError> {
    if blocks.iter().any(|b| b.metrics.len() > MAX_REPORTS) {
        return Err(RtcpError::Unencodable(
            "a CCFB block reports on at most 16384 packets".into(),
        ));
    }
    let bytes: usize = 8
        + blocks
            .iter()
            .map(|b| 8 + (b.metrics.len() * 2).div_ceil(4) * 4)
            .sum::<usize>()
        + 4;
    let words = u16::try_from(bytes / 4 - 1)
        .map_err(|_| RtcpError::Unencodable("CCFB packet too long".into()))?;
    let start = out.len();
    out.push(0x80 | FMT_CCFB);
    out.push(PT_RTPFB);
    out.extend_from_slice(&words.to_be_bytes());
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    for b in blocks {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        out.extend_from_slice(&b.begin_seq.to_be_bytes());
        out.extend_from_slice(&(b.metrics.len() as u16).to_be_bytes());
        for m in &b.metrics {
            let v = m.map_or(0, |m| {
                0x8000 | (u16::from(m.ecn & 3) << 13) | (m.ato & 0x1fff)
            });
            out.extend_from_slice(&v.to_be_bytes());
        }
        if b.metrics.len() % 2 == 1 {
            out.extend_from_slice(&[0, 0]);
        }
    }
    out.extend_from_slice(&report_timestamp.to_be_bytes());
    debug_assert_eq!(out.len() - start, bytes);
    Ok(bytes)
}

/// µs on a clock as the 16.16 "middle of NTP" format the report timestamp uses (wrapping).
pub fn compact_ntp(us: i64) -> u32 {
    ((i128::from(us) << 16) / 1_000_000) as u32
}

/// The receiver's side: records (SSRC, sequence number, arrival) and builds reports.
#[derive(Debug, Default)]
pub struct CcfbRecorder {
    origin: Option<Instant>,
    sources: Vec<Source>,
}

#[derive(Debug)]
struct Source {
    ssrc: u32,
    highest: Option<u64>,
    /// The first sequence number not reported yet.
    next: Option<u64>,
    /// Arrivals not reported yet: µs since the origin, by extended sequence number.
    arrivals: BTreeMap<u64, i64>,
}

impl CcfbRecorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A packet of `ssrc` with sequence number `seq` arrived at `now`.
    pub fn on_packet(&mut self, now: Instant, ssrc: u32, seq: u16) {
        let origin = *self.origin.get_or_insert(now);
        let at = now.saturating_duration_since(origin).as_micros() as i64;
        let i = match self.sources.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => i,
            None if self.sources.len() < MAX_SOURCES => {
                self.sources.push(Source {
                    ssrc,
                    highest: None,
                    next: None,
                    arrivals: BTreeMap::new(),
                });
                self.sources.len() - 1
            }
            None => return,
        };
        let s = &mut self.sources[i];
        let ext = unwrap_seq(s.highest, seq);
        s.highest = Some(s.highest.map_or(ext, |h| h.max(ext)));
        if s.next.is_some_and(|n| ext < n) {
            // Already reported as missing: too late to take back.
            return;
        }
        s.arrivals.insert(ext, at);
        while s.arrivals.len() > MAX_PENDING {
            s.arrivals.pop_first();
        }
    }

    /// Whether arrivals wait to be reported.
    pub fn has_pending(&self) -> bool {
        self.sources.iter().any(|s| !s.arrivals.is_empty())
    }

    /// Appends a report on everything not reported yet (the newest [`MAX_BUILT_REPORTS`] of
    /// each source at most), timestamped `now`. `None` when there is nothing to report.
    pub fn poll_feedback(
        &mut self,
        now: Instant,
        out: &mut Vec<u8>,
        sender_ssrc: u32,
    ) -> Option<usize> {
        let origin = self.origin?;
        let now_us = now.saturating_duration_since(origin).as_micros() as i64;
        let mut blocks = Vec::new();
        for s in &mut self.sources {
            let (Some(&first), Some(highest)) = (s.arrivals.keys().next(), s.highest) else {
                continue;
            };
            let begin = s
                .next
                .unwrap_or(first)
                .max((highest + 1).saturating_sub(MAX_BUILT_REPORTS as u64));
            let metrics = (begin..=highest)
                .map(|seq| {
                    s.arrivals.get(&seq).map(|&at| Metric {
                        ecn: 0,
                        ato: ((now_us - at).max(0) * 1024 / 1_000_000)
                            .min(i64::from(ATO_OVER_RANGE)) as u16,
                    })
                })
                .collect();
            blocks.push(Block {
                ssrc: s.ssrc,
                begin_seq: begin as u16,
                metrics,
            });
            s.next = Some(highest + 1);
            s.arrivals.clear();
        }
        if blocks.is_empty() {
            return None;
        }
        build(out, sender_ssrc, &blocks, compact_ntp(now_us)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_bytes_odd_count_padding_and_lost_packets() {
        let blocks = [Block {
            ssrc: 0x0102_0304,
            begin_seq: 0xfffe,
            metrics: vec![
                Some(Metric { ecn: 2, ato: 1024 }),
                None,
                Some(Metric {
                    ecn: 0,
                    ato: ATO_UNAVAILABLE,
                }),
            ],
        }];
        let mut out = Vec::new();
        let n = build(&mut out, 9, &blocks, 0x0001_8000).unwrap();
        #[rustfmt::skip]
        let want = [
            0x8b, 205, 0, 6,
            0, 0, 0, 9,
            1, 2, 3, 4,
            0xff, 0xfe, 0, 3,
            0xc4, 0x00, 0x00, 0x00, // R=1 ECN=2 ATO=1024; R=0
            0x9f, 0xff, 0, 0,       // R=1 ATO=0x1FFF; padding
            0, 1, 0x80, 0,          // 1.5 s
        ];
        assert_eq!((n, &out[..]), (want.len(), &want[..]));
        let back = parse_body(9, &out[8..]).unwrap();
        assert_eq!(back.blocks, blocks);
        assert_eq!(back.report_timestamp, 0x0001_8000);
        assert_eq!(
            back.blocks[0].metrics[0].unwrap().offset_us(),
            Some(1_000_000)
        );
        assert_eq!(back.blocks[0].metrics[2].unwrap().offset_us(), None);
        assert_eq!(compact_ntp(1_500_000), 0x0001_8000);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(parse_body(0, &[1, 2, 3]).is_err());
        assert_eq!(parse_body(0, &[0, 0, 0, 7]).unwrap().blocks, vec![]);
        // A block announcing two reports with none present.
        assert!(parse_body(0, &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 7]).is_err());
        // A block header cut short.
        assert!(parse_body(0, &[0, 0, 0, 1, 0, 0, 0, 0, 7]).is_err());
        let big = Block {
            ssrc: 1,
            begin_seq: 0,
            metrics: vec![None; MAX_REPORTS + 1],
        };
        assert!(build(&mut Vec::new(), 0, &[big], 0).is_err());
    }

    #[test]
    fn the_recorder_reports_each_packet_once_with_gaps_as_lost() {
        let t0 = Instant::now();
        let mut r = CcfbRecorder::new();
        let mut out = Vec::new();
        assert_eq!(r.poll_feedback(t0, &mut out, 1), None);
        for (i, seq) in [65_534u16, 65_535, 1].into_iter().enumerate() {
            r.on_packet(t0 + Duration::from_millis(10 * i as u64), 7, seq);
        }
        let at = t0 + Duration::from_millis(100);
        r.poll_feedback(at, &mut out, 1).unwrap();
        let fb = parse_body(1, &out[8..]).unwrap();
        let b = &fb.blocks[0];
        assert_eq!((b.ssrc, b.begin_seq, b.metrics.len()), (7, 65_534, 4));
        assert_eq!(b.metrics[2], None);
        // 100 ms and 80 ms before the report, in 1/1024 s.
        assert_eq!(b.metrics[0].unwrap().ato, 102);
        assert_eq!(b.metrics[3].unwrap().ato, 81);
        // A late packet already reported missing is not reported again; the next report starts
        // after the last one.
        r.on_packet(at, 7, 0);
        r.on_packet(at, 7, 3);
        out.clear();
        r.poll_feedback(at, &mut out, 1).unwrap();
        let b = &parse_body(1, &out[8..]).unwrap().blocks[0];
        assert_eq!((b.begin_seq, b.metrics.len()), (2, 2));
        assert!(!r.has_pending());
    }
}
