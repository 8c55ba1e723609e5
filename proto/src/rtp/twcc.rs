//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01,
//! RTCP RTPFB FMT 15): the wire format both ways, and [`TwccRecorder`], the receiver's record of
//! which transport-wide sequence numbers arrived when.
//!
//! A feedback packet reports, from a base sequence number on, one status per packet (not
//! received; received with a small delta; received with a large or negative delta), packed in
//! 16-bit chunks — run-length (one status repeated up to 8191 times) or status vectors (14
//! one-bit or 7 two-bit statuses) — followed by one receive delta per received packet in 250 µs
//! units: one unsigned byte when small, two signed bytes otherwise. Deltas chain from a 24-bit
//! signed reference time in 64 ms units, so the sender learns each packet's arrival on the
//! receiver's clock to 250 µs.
//!
//! Parsing checks every length and count before use and bounds what it allocates
//! ([`MAX_STATUS_COUNT`]); building splits a report that would not fit one packet.

use std::collections::BTreeMap;
use std::time::Instant;

use super::rtcp::RtcpError;

/// RTCP packet type of transport-layer feedback (RFC 4585 RTPFB).
pub const PT_RTPFB: u8 = 205;
/// The RTPFB format of transport-wide CC feedback.
pub const FMT_TWCC: u8 = 15;
/// Most packet statuses one parsed feedback may announce: a bound on what an untrusted packet
/// makes us allocate. Real feedback (one packet every 50–250 ms) reports far fewer.
pub const MAX_STATUS_COUNT: usize = 8192;
/// Most bytes of feedback information (after the 12-byte RTCP header) a built packet carries,
/// so a packet stays well inside any MTU.
pub const MAX_FCI_BYTES: usize = 1100;

/// One delta unit: 250 µs.
const DELTA_US: i64 = 250;
/// One reference-time unit: 64 ms.
const REFERENCE_US: i64 = 64_000;

/// A parsed transport-wide feedback packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwccFeedback {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    /// The transport-wide sequence number of the first packet reported.
    pub base_seq: u16,
    /// The receiver's count of feedback packets (wraps at 256): how a sender notices lost feedback.
    pub fb_count: u8,
    /// The 24-bit reference time, sign-extended, in 64 ms units.
    pub reference_time: i32,
    /// One entry per packet from `base_seq` on: its arrival in µs on the receiver's clock
    /// (`reference_time` × 64 ms plus the deltas), or `None` when it was not received.
    pub arrivals: Vec<Option<i64>>,
}

/// Status symbols of the packet status chunks.
const NOT_RECEIVED: u8 = 0;
const SMALL: u8 = 1;
const LARGE: u8 = 2;

/// Parses the feedback control information of an RTPFB FMT 15 packet (the bytes after its
/// 12-byte header; trailing padding is allowed). `Err` names what is wrong.
pub fn parse_fci(
    sender_ssrc: u32,
    media_ssrc: u32,
    fci: &[u8],
) -> Result<TwccFeedback, &'static str> {
    let [b0, b1, c0, c1, r0, r1, r2, fb_count, rest @ ..] = fci else {
        return Err("transport-cc feedback shorter than its fixed fields");
    };
    let base_seq = u16::from_be_bytes([*b0, *b1]);
    let count = usize::from(u16::from_be_bytes([*c0, *c1]));
    if count > MAX_STATUS_COUNT {
        return Err("transport-cc feedback reports too many packets");
    }
    // Sign-extend the 24-bit field.
    let reference_time = i32::from_be_bytes([*r0, *r1, *r2, 0]) >> 8;
    let mut symbols: Vec<u8> = Vec::with_capacity(count);
    let mut data = rest;
    while symbols.len() < count {
        let [h, l, tail @ ..] = data else {
            return Err("transport-cc packet status chunks truncated");
        };
        data = tail;
        let chunk = u16::from_be_bytes([*h, *l]);
        let left = count - symbols.len();
        if chunk & 0x8000 == 0 {
            let symbol = ((chunk >> 13) & 0x3) as u8;
            let run = usize::from(chunk & 0x1fff).min(left);
            symbols.extend(std::iter::repeat_n(symbol, run));
        } else if chunk & 0x4000 == 0 {
            symbols.extend((0..14).rev().map(|i| ((chunk >> i) & 1) as u8).take(left));
        } else {
            symbols.extend(
                (0..7)
                    .rev()
                    .map(|i| ((chunk >> (2 * i)) & 3) as u8)
                    .take(left),
            );
        }
    }
    if symbols.contains(&3) {
        return Err("transport-cc packet status uses the reserved symbol");
    }
    let mut arrivals = Vec::with_capacity(count);
    let mut t = i64::from(reference_time) * REFERENCE_US;
    for &s in &symbols {
        let delta = match (s, data) {
            (NOT_RECEIVED, _) => {
                arrivals.push(None);
                continue;
            }
            (SMALL, [d, tail @ ..]) => {
                data = tail;
                i64::from(*d)
            }
            (LARGE, [h, l, tail @ ..]) => {
                data = tail;
                i64::from(i16::from_be_bytes([*h, *l]))
            }
            _ => return Err("transport-cc receive deltas truncated"),
        };
        t += delta * DELTA_US;
        arrivals.push(Some(t));
    }
    if data.len() > 3 {
        return Err("transport-cc feedback longer than its contents");
    }
    Ok(TwccFeedback {
        sender_ssrc,
        media_ssrc,
        base_seq,
        fb_count: *fb_count,
        reference_time,
        arrivals,
    })
}

/// The chunks and deltas of one feedback packet, before the header is written.
struct Encoded {
    chunks: Vec<u16>,
    deltas: Vec<u8>,
}

/// Symbol and encoded delta of each of `arrivals`, up to the first whose delta no form can
/// carry (more than ±8.19 s from the previous arrival).
fn symbols_and_deltas(arrivals: &[Option<i64>], reference_us: i64) -> (Vec<u8>, Vec<(u8, i16)>) {
    let mut symbols = Vec::with_capacity(arrivals.len());
    let mut deltas = Vec::new();
    // Deltas chain from the previous *encoded* time, so rounding never accumulates.
    let mut prev = reference_us;
    for a in arrivals {
        let Some(t) = *a else {
            symbols.push(NOT_RECEIVED);
            continue;
        };
        // Round to the nearest 250 µs step.
        let ticks = (t - prev + DELTA_US / 2).div_euclid(DELTA_US);
        let (symbol, value) = if (0..=255).contains(&ticks) {
            (SMALL, ticks as i16)
        } else if let Ok(v) = i16::try_from(ticks) {
            (LARGE, v)
        } else {
            break;
        };
        prev += ticks * DELTA_US;
        symbols.push(symbol);
        deltas.push((symbol, value));
    }
    (symbols, deltas)
}

/// Packs `symbols` into chunks: long runs as run-length chunks, the rest as one-bit vectors
/// where every status fits one bit, two-bit vectors otherwise.
fn pack_chunks(symbols: &[u8]) -> Vec<u16> {
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < symbols.len() {
        let s = symbols[i];
        let run = symbols[i..]
            .iter()
            .take(0x1fff)
            .take_while(|&&x| x == s)
            .count();
        let window = &symbols[i..symbols.len().min(i + 14)];
        if run >= 14 || run == symbols.len() - i {
            chunks.push((u16::from(s) << 13) | run as u16);
            i += run;
        } else if window.iter().all(|&x| x <= SMALL) {
            let bits = window
                .iter()
                .enumerate()
                .fold(0u16, |acc, (k, &x)| acc | (u16::from(x) << (13 - k)));
            chunks.push(0x8000 | bits);
            i += window.len();
        } else if run >= 7 {
            chunks.push((u16::from(s) << 13) | run as u16);
            i += run;
        } else {
            let window = &symbols[i..symbols.len().min(i + 7)];
            let bits = window
                .iter()
                .enumerate()
                .fold(0u16, |acc, (k, &x)| acc | (u16::from(x) << (2 * (6 - k))));
            chunks.push(0xc000 | bits);
            i += window.len();
        }
    }
    chunks
}

fn encode(symbols: &[u8], deltas: &[(u8, i16)]) -> Encoded {
    let mut bytes = Vec::with_capacity(deltas.len() * 2);
    for &(symbol, v) in deltas {
        if symbol == SMALL {
            bytes.push(v as u8);
        } else {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
    }
    Encoded {
        chunks: pack_chunks(symbols),
        deltas: bytes,
    }
}

/// Appends one transport-wide feedback packet reporting `arrivals` (µs on the receiver's clock,
/// `None` for a packet not received) of the packets numbered from `base_seq` on. Reports as many
/// as fit one packet ([`MAX_FCI_BYTES`], 65535 statuses, deltas within ±8.19 s of each other)
/// and returns how many it reported; the caller reports the rest in the next packet. An empty
/// `arrivals` is an error.
pub fn build(
    out: &mut Vec<u8>,
    sender_ssrc: u32,
    media_ssrc: u32,
    base_seq: u16,
    fb_count: u8,
    arrivals: &[Option<i64>],
) -> Result<usize, RtcpError> {
    if arrivals.is_empty() {
        return Err(RtcpError::Unencodable(
            "transport-cc feedback needs at least one packet".into(),
        ));
    }
    let reference = arrivals
        .iter()
        .flatten()
        .next()
        .map_or(0, |&t| t.div_euclid(REFERENCE_US));
    let reference_us = reference * REFERENCE_US;
    let mut take = arrivals.len().min(0xffff);
    let (encoded, n) = loop {
        let (symbols, deltas) = symbols_and_deltas(&arrivals[..take], reference_us);
        let n = symbols.len();
        let enc = encode(&symbols, &deltas);
        let size = 8 + enc.chunks.len() * 2 + enc.deltas.len();
        if size <= MAX_FCI_BYTES || n <= 1 {
            break (enc, n);
        }
        // Too big: shrink in proportion (and by at least one packet), then encode again.
        take = (n * MAX_FCI_BYTES / size).clamp(1, n - 1);
    };
    let fci_len = 8 + encoded.chunks.len() * 2 + encoded.deltas.len();
    let padded = fci_len.div_ceil(4) * 4;
    let words = (12 + padded) / 4 - 1;
    out.push(0x80 | FMT_TWCC);
    out.push(PT_RTPFB);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    out.extend_from_slice(&base_seq.to_be_bytes());
    out.extend_from_slice(&(n as u16).to_be_bytes());
    // The reference time's low 24 bits (two's complement), then the feedback count.
    out.extend_from_slice(&((reference as i32) << 8 | i32::from(fb_count)).to_be_bytes());
    for c in &encoded.chunks {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&encoded.deltas);
    // Zero bytes up to the next word, inside the length and without the P bit (which RFC 3550
    // keeps for the last packet of a compound). Not yet tried against a real peer's parser.
    out.extend(std::iter::repeat_n(0, padded - fci_len));
    Ok(n)
}

/// Extends a 16-bit sequence number to 64 bits next to `highest`, the largest seen so far.
pub(crate) fn unwrap_seq(highest: Option<u64>, seq: u16) -> u64 {
    match highest {
        None => u64::from(seq),
        Some(h) => {
            let diff = i64::from(seq.wrapping_sub(h as u16) as i16);
            (h as i64 + diff).max(0) as u64
        }
    }
}

/// The receive side: records the transport-wide sequence number and arrival time of each packet
/// and turns them into feedback packets. Pure: arrivals carry the time.
#[derive(Debug, Default)]
pub struct TwccRecorder {
    /// The clock feedback times are counted on: the first arrival.
    epoch: Option<Instant>,
    highest: Option<u64>,
    /// Arrivals not yet reported, by extended sequence number, in µs since `epoch`.
    pending: BTreeMap<u64, i64>,
    /// The first sequence number the next feedback reports.
    next_base: Option<u64>,
    fb_count: u8,
    /// Packets that arrived after the feedback covering them was built.
    late: u64,
}

impl TwccRecorder {
    /// A recorder that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A packet carrying transport-wide sequence number `seq` arrived at `now`.
    pub fn on_packet(&mut self, now: Instant, seq: u16) {
        let epoch = *self.epoch.get_or_insert(now);
        let ext = unwrap_seq(self.highest, seq);
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        if self.next_base.is_some_and(|b| ext < b) {
            self.late += 1;
            return;
        }
        let us = now.saturating_duration_since(epoch).as_micros() as i64;
        self.pending.entry(ext).or_insert(us);
        // A receiver whose feedback is never polled keeps a bounded record.
        while self.pending.len() > MAX_STATUS_COUNT {
            self.pending.pop_first();
        }
    }

    /// Packets that arrived too late to be reported.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Appends one feedback packet for what arrived since the last one (from the first packet
    /// not yet reported to the highest received); `None` when there is nothing new. Call again
    /// while it returns `Some`: a long report is split across packets.
    #[must_use]
    pub fn poll_feedback(
        &mut self,
        out: &mut Vec<u8>,
        sender_ssrc: u32,
        media_ssrc: u32,
    ) -> Option<usize> {
        let (&first, _) = self.pending.first_key_value()?;
        let (&last, _) = self.pending.last_key_value()?;
        let mut base = self.next_base.unwrap_or(first);
        // Never report a gap longer than a parser would take: start closer to the end.
        if last - base >= MAX_STATUS_COUNT as u64 {
            base = last + 1 - MAX_STATUS_COUNT as u64;
        }
        let arrivals: Vec<Option<i64>> = (base..=last)
            .map(|s| self.pending.get(&s).copied())
            .collect();
        let start = out.len();
        let n = build(
            out,
            sender_ssrc,
            media_ssrc,
            base as u16,
            self.fb_count,
            &arrivals,
        )
        .ok()?;
        self.fb_count = self.fb_count.wrapping_add(1);
        let next = base + n as u64;
        self.next_base = Some(next);
        self.pending = self.pending.split_off(&next);
        Some(out.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn roundtrip(base: u16, arrivals: &[Option<i64>]) -> (usize, TwccFeedback, Vec<u8>) {
        let mut out = Vec::new();
        let n = build(&mut out, 1, 2, base, 9, arrivals).unwrap();
        assert_eq!(out.len() % 4, 0);
        assert_eq!(
            usize::from(u16::from_be_bytes([out[2], out[3]])) * 4 + 4,
            out.len()
        );
        let fb = parse_fci(1, 2, &out[12..]).unwrap();
        (n, fb, out)
    }

    fn assert_close(got: &[Option<i64>], want: &[Option<i64>]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            match (g, w) {
                (Some(g), Some(w)) => assert!((g - w).abs() <= 125, "{g} vs {w}"),
                (None, None) => {}
                _ => panic!("{got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn small_deltas_and_losses_round_trip() {
        let arrivals: Vec<Option<i64>> = (0..40)
            .map(|i| (i % 5 != 3).then_some(1_000_000 + i * 1_250))
            .collect();
        let (n, fb, _) = roundtrip(65_530, &arrivals);
        assert_eq!(n, 40);
        assert_eq!(
            (fb.base_seq, fb.fb_count, fb.sender_ssrc, fb.media_ssrc),
            (65_530, 9, 1, 2)
        );
        assert_eq!(fb.reference_time, 1_000_000 / 64_000);
        assert_close(&fb.arrivals, &arrivals);
    }

    #[test]
    fn large_and_negative_deltas_use_two_bytes() {
        // Reordered arrival (earlier than the one before), then a 2 s gap.
        let arrivals = [
            Some(500_000),
            Some(490_000),
            Some(2_490_000),
            None,
            Some(2_490_250),
        ];
        let (n, fb, _) = roundtrip(7, &arrivals);
        assert_eq!(n, 5);
        assert_close(&fb.arrivals, &arrivals);
    }

    #[test]
    fn long_runs_use_run_length_chunks() {
        let mut arrivals = vec![None; 3000];
        arrivals.extend((0..100).map(|i| Some(64_000 * 10 + i * 250)));
        let (n, fb, out) = roundtrip(0, &arrivals);
        assert_eq!(n, 3100);
        assert_close(&fb.arrivals, &arrivals);
        // One run chunk of 3000 losses, one of 100 receptions, 100 one-byte deltas.
        assert_eq!(out.len(), 12 + 8 + 4 + 100);
    }

    #[test]
    fn first_packet_lost_and_negative_reference_time() {
        let arrivals = [None, Some(-130_000), Some(-129_000)];
        let (_, fb, _) = roundtrip(1, &arrivals);
        assert_eq!(fb.reference_time, -3);
        assert_close(&fb.arrivals, &arrivals);
        let (_, fb, _) = roundtrip(1, &[None, None]);
        assert_eq!(fb.arrivals, vec![None, None]);
    }

    #[test]
    fn delta_too_large_for_any_form_ends_the_packet() {
        let arrivals = [Some(0), Some(1_000), Some(20_000_000), Some(20_001_000)];
        let (n, fb, _) = roundtrip(0, &arrivals);
        assert_eq!(n, 2);
        assert_close(&fb.arrivals, &arrivals[..2]);
    }

    #[test]
    fn big_reports_are_split_to_fit_a_packet() {
        // Alternating large deltas defeat run-length coding: 2 bytes each plus vector chunks.
        let arrivals: Vec<Option<i64>> = (0..2000)
            .map(|i| {
                Some(if i % 2 == 0 {
                    i * 100_000
                } else {
                    i * 100_000 - 80_000
                })
            })
            .collect();
        let mut out = Vec::new();
        let n = build(&mut out, 0, 0, 0, 0, &arrivals).unwrap();
        assert!(n > 100 && n < 2000, "{n}");
        assert!(out.len() - 12 <= MAX_FCI_BYTES + 3);
        let fb = parse_fci(0, 0, &out[12..]).unwrap();
        assert_close(&fb.arrivals, &arrivals[..n]);
    }

    #[test]
    fn hand_made_packet_with_every_chunk_kind() {
        // base 100, 1 + 14 + 7 = 22 statuses, reference 1 (64 ms), count 5.
        let mut fci = vec![0, 100, 0, 22, 0, 0, 1, 5];
        fci.extend_from_slice(&0x2001u16.to_be_bytes()); // run: 1 × small
        fci.extend_from_slice(&(0x8000u16 | 0x2001).to_be_bytes()); // 1-bit: #1 and #14 received
        fci.extend_from_slice(&(0xc000u16 | 0b10_00_01_00_00_00_00).to_be_bytes()); // large, -, small
        fci.extend_from_slice(&[4, 4, 4]); // small deltas: 1 ms each
        fci.extend_from_slice(&(-8i16).to_be_bytes()); // large: -2 ms
        fci.push(1); // small: 250 µs
        fci.push(0); // padding
        let fb = parse_fci(0, 0, &fci).unwrap();
        assert_eq!(fb.arrivals.len(), 22);
        let got: Vec<(usize, i64)> = fb
            .arrivals
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.map(|t| (i, t)))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 65_000),
                (1, 66_000),
                (14, 67_000),
                (15, 65_000),
                (17, 65_250)
            ]
        );
    }

    #[test]
    fn bad_packets_are_errors_not_panics() {
        assert!(parse_fci(0, 0, &[0; 7]).is_err());
        // Announces 5 statuses, no chunk.
        assert!(parse_fci(0, 0, &[0, 0, 0, 5, 0, 0, 0, 0]).is_err());
        // One small status, no delta byte.
        assert!(parse_fci(0, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0x20, 1]).is_err());
        // Reserved symbol in a run.
        assert!(parse_fci(0, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0x60, 1]).is_err());
        // Too many statuses.
        assert!(parse_fci(0, 0, &[0, 0, 0xff, 0xff, 0, 0, 0, 0, 0x1f, 0xff]).is_err());
        // Trailing junk.
        assert!(parse_fci(0, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0x00, 1, 1, 2, 3, 4]).is_err());
        // A zero-length run does not loop forever.
        assert!(parse_fci(0, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(build(&mut Vec::new(), 0, 0, 0, 0, &[]).is_err());
    }

    #[test]
    fn recorder_reports_each_packet_once_across_wrap_and_loss() {
        let t0 = Instant::now();
        let mut r = TwccRecorder::new();
        let mut out = Vec::new();
        assert!(r.poll_feedback(&mut out, 1, 2).is_none());
        for (i, seq) in [65_534u16, 65_535, 1, 2].into_iter().enumerate() {
            r.on_packet(t0 + Duration::from_millis(i as u64 * 10), seq);
        }
        let n = r.poll_feedback(&mut out, 1, 2).unwrap();
        assert_eq!(n, out.len());
        let fb = parse_fci(1, 2, &out[12..]).unwrap();
        assert_eq!(fb.base_seq, 65_534);
        assert_eq!(fb.arrivals.len(), 5);
        assert_eq!(fb.arrivals[2], None);
        assert_eq!(fb.arrivals[4].unwrap() - fb.arrivals[0].unwrap(), 30_000);
        assert!(r.poll_feedback(&mut out, 1, 2).is_none());
        // Seq 0 arriving now is late; 3 is new.
        r.on_packet(t0 + Duration::from_millis(50), 0);
        r.on_packet(t0 + Duration::from_millis(50), 3);
        assert_eq!(r.late(), 1);
        out.clear();
        r.poll_feedback(&mut out, 1, 2).unwrap();
        let fb = parse_fci(1, 2, &out[12..]).unwrap();
        assert_eq!((fb.base_seq, fb.fb_count, fb.arrivals.len()), (3, 1, 1));
    }
}
