//! ULPFEC, the generic forward error correction of RFC 5109, at protection level 0: one FEC
//! packet carries the XOR of up to 48 media packets of the same stream, so a receiver that got
//! all of them but one rebuilds that one (its RTP header fields, length and payload). Like
//! libwebrtc and GStreamer (`rtpulpfecenc`/`rtpulpfecdec`), the FEC packets travel in RED
//! ([`super::red`]) on the media's SSRC and sequence space, told apart by the RED block's
//! payload type.
//!
//! Per media packet, the bit string protected is: its first 8 header bytes (V/P/X/CC, M/PT,
//! sequence number, timestamp), then the 16-bit length of everything after the 12-byte fixed
//! header (CSRCs, extension, payload, padding), then those bytes. An FEC payload is:
//!
//! ```text
//! FEC header (10 bytes): E L P X CC | M PT | SN base | TS recovery | length recovery
//! level 0 header: protection length (16 bits), mask (16 bits, or 48 when L = 1)
//! level 0 payload: the XOR of the protected packets' bytes after the fixed header, each padded
//!                  with zeros to the protection length
//! ```
//! where mask bit `i` (most significant first) says the packet `SN base + i` is protected.
//!
//! [`FecSender`] groups the packets of each picture and emits FEC for them at the rate it is
//! given; [`FecReceiver`] keeps the recent media and FEC packets and hands out each packet it can
//! rebuild. Pure: no clock, no socket; every length is checked before use.

use std::collections::VecDeque;
use std::fmt;

use super::packet::RTP_HEADER_LEN;

/// Length of the FEC header.
pub const FEC_HEADER_LEN: usize = 10;
/// The most media packets one FEC packet protects (the long mask).
pub const MAX_PROTECTED: usize = 48;

/// Why an FEC packet cannot be read, built or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FecError {
    /// Shorter than its headers, or than the protection length it announces.
    Truncated,
    /// The E bit is set: a header extension RFC 5109 reserves, which we do not know.
    Extended,
    /// The media packets to protect are not RTP, repeat a sequence number, or span more than
    /// [`MAX_PROTECTED`] sequence numbers (or none at all).
    BadGroup,
    /// Recovery found a length larger than the FEC payload protects: a corrupt FEC packet.
    Inconsistent,
}

impl fmt::Display for FecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FecError::Truncated => "ULPFEC packet shorter than its headers announce",
            FecError::Extended => "ULPFEC packet with the reserved E bit set",
            FecError::BadGroup => "packets cannot be protected together by one ULPFEC packet",
            FecError::Inconsistent => "ULPFEC recovery length beyond its protection length",
        })
    }
}

impl std::error::Error for FecError {}

/// A parsed ULPFEC payload (level 0; any further levels are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UlpfecPacket<'a> {
    /// The first two bytes with the recovery bits of P, X, CC, M and PT (E and L as sent).
    pub bits: [u8; 2],
    /// The lowest sequence number the mask counts from.
    pub sn_base: u16,
    /// The XOR of the protected packets' timestamps.
    pub ts_recovery: u32,
    /// The XOR of their lengths after the fixed header.
    pub length_recovery: u16,
    /// Bit `47 - i` protects `sn_base + i` (a short mask fills the top 16 of the 48 bits).
    pub mask: u64,
    /// The level 0 payload (the protection length's bytes).
    pub payload: &'a [u8],
}

impl UlpfecPacket<'_> {
    /// Whether this packet protects sequence number `seq`.
    pub fn protects(&self, seq: u16) -> bool {
        let i = usize::from(seq.wrapping_sub(self.sn_base));
        i < MAX_PROTECTED && self.mask >> (47 - i) & 1 == 1
    }

    /// The sequence numbers it protects, lowest first.
    pub fn protected(&self) -> impl Iterator<Item = u16> + '_ {
        (0..MAX_PROTECTED as u16)
            .map(|i| self.sn_base.wrapping_add(i))
            .filter(|&s| self.protects(s))
    }
}

/// Reads an ULPFEC payload (the RTP payload, or the RED block, that carries it).
pub fn parse_ulpfec(p: &[u8]) -> Result<UlpfecPacket<'_>, FecError> {
    let h = p.get(..FEC_HEADER_LEN).ok_or(FecError::Truncated)?;
    if h[0] & 0x80 != 0 {
        return Err(FecError::Extended);
    }
    let long = h[0] & 0x40 != 0;
    let mask_len = if long { 6 } else { 2 };
    let l0 = p
        .get(FEC_HEADER_LEN..FEC_HEADER_LEN + 2 + mask_len)
        .ok_or(FecError::Truncated)?;
    let protection_len = usize::from(u16::from_be_bytes([l0[0], l0[1]]));
    let mut mask = 0u64;
    for &b in &l0[2..] {
        mask = mask << 8 | u64::from(b);
    }
    if !long {
        mask <<= 32;
    }
    let start = FEC_HEADER_LEN + 2 + mask_len;
    let payload = p
        .get(start..start + protection_len)
        .ok_or(FecError::Truncated)?;
    Ok(UlpfecPacket {
        bits: [h[0], h[1]],
        sn_base: u16::from_be_bytes([h[2], h[3]]),
        ts_recovery: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        length_recovery: u16::from_be_bytes([h[8], h[9]]),
        mask,
        payload,
    })
}

/// A media packet's sequence number, if it is long enough to be RTP version 2.
fn rtp_seq(pkt: &[u8]) -> Option<u16> {
    (pkt.len() >= RTP_HEADER_LEN && pkt[0] >> 6 == 2).then(|| u16::from_be_bytes([pkt[2], pkt[3]]))
}

/// Appends to `out` the ULPFEC payload protecting `media` (whole RTP packets of one stream,
/// at most [`MAX_PROTECTED`] sequence numbers apart, any order).
pub fn build_ulpfec(media: &[&[u8]], out: &mut Vec<u8>) -> Result<(), FecError> {
    let seqs: Vec<u16> = media
        .iter()
        .map(|p| rtp_seq(p).ok_or(FecError::BadGroup))
        .collect::<Result<_, _>>()?;
    let first = *seqs.first().ok_or(FecError::BadGroup)?;
    // The base is the packet furthest behind the first (sequence numbers wrap).
    let base = seqs
        .iter()
        .copied()
        .min_by_key(|&s| s.wrapping_sub(first) as i16)
        .unwrap_or(first);
    let mut mask = 0u64;
    for &s in &seqs {
        let i = usize::from(s.wrapping_sub(base));
        if i >= MAX_PROTECTED || mask >> (47 - i) & 1 == 1 {
            return Err(FecError::BadGroup);
        }
        mask |= 1 << (47 - i);
    }
    let long = mask & 0xffff_ffff != 0;
    let protection_len = media
        .iter()
        .map(|p| p.len() - RTP_HEADER_LEN)
        .max()
        .unwrap_or(0);
    let protection_len = u16::try_from(protection_len).map_err(|_| FecError::BadGroup)?;
    let mut head = [0u8; FEC_HEADER_LEN];
    let mut payload = vec![0u8; usize::from(protection_len)];
    for p in media {
        for (h, b) in head.iter_mut().zip(&p[..8]) {
            *h ^= b;
        }
        let len = (p.len() - RTP_HEADER_LEN) as u16;
        head[8] ^= (len >> 8) as u8;
        head[9] ^= len as u8;
        for (x, b) in payload.iter_mut().zip(&p[RTP_HEADER_LEN..]) {
            *x ^= b;
        }
    }
    head[0] = (head[0] & 0x3f) | if long { 0x40 } else { 0 };
    head[2..4].copy_from_slice(&base.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&protection_len.to_be_bytes());
    if long {
        out.extend_from_slice(&mask.to_be_bytes()[2..8]);
    } else {
        out.extend_from_slice(&((mask >> 32) as u16).to_be_bytes());
    }
    out.extend_from_slice(&payload);
    Ok(())
}

/// Rebuilds packet `missing` from `fec` and the other packets it protects (`present`, whole
/// RTP packets), as an RTP packet of SSRC `ssrc` written to `out` (cleared first).
pub fn recover(
    fec: &UlpfecPacket<'_>,
    ssrc: u32,
    missing: u16,
    present: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), FecError> {
    let mut head = [0u8; FEC_HEADER_LEN];
    head[..2].copy_from_slice(&fec.bits);
    head[4..8].copy_from_slice(&fec.ts_recovery.to_be_bytes());
    head[8..10].copy_from_slice(&fec.length_recovery.to_be_bytes());
    out.clear();
    out.resize(RTP_HEADER_LEN + fec.payload.len(), 0);
    out[RTP_HEADER_LEN..].copy_from_slice(fec.payload);
    for p in present {
        if p.len() < RTP_HEADER_LEN {
            return Err(FecError::BadGroup);
        }
        for (h, b) in head.iter_mut().zip(&p[..8]) {
            *h ^= b;
        }
        let len = (p.len() - RTP_HEADER_LEN) as u16;
        head[8] ^= (len >> 8) as u8;
        head[9] ^= len as u8;
        for (x, b) in out[RTP_HEADER_LEN..].iter_mut().zip(&p[RTP_HEADER_LEN..]) {
            *x ^= b;
        }
    }
    let len = usize::from(u16::from_be_bytes([head[8], head[9]]));
    if len > fec.payload.len() {
        return Err(FecError::Inconsistent);
    }
    out.truncate(RTP_HEADER_LEN + len);
    out[0] = 0x80 | (head[0] & 0x3f);
    out[1] = head[1];
    out[2..4].copy_from_slice(&missing.to_be_bytes());
    out[4..8].copy_from_slice(&head[4..8]);
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Ok(())
}

/// The sender's side: groups each picture's packets and turns them into FEC payloads.
#[derive(Debug, Default)]
pub struct FecSender {
    group: Vec<Vec<u8>>,
    ready: VecDeque<Vec<u8>>,
    /// FEC payloads built so far.
    pub built: u64,
}

impl FecSender {
    /// A sender with nothing pending.
    pub fn new() -> Self {
        FecSender::default()
    }

    /// A media packet (whole RTP, before any RED wrapping) was sent. `end_of_picture` closes the
    /// group; `rate` is the FEC packets wanted per media packet (0-1): a closed group of `n`
    /// packets gets `round(n × rate)` FEC packets, at least one when `rate` is above zero,
    /// packet `i` protected by FEC packet `i mod k` (interleaved, so a burst of up to `k`
    /// losses in a row is still recovered).
    pub fn add_media(&mut self, pkt: &[u8], end_of_picture: bool, rate: f64) {
        let Some(seq) = rtp_seq(pkt) else { return };
        let too_far = self
            .group
            .first()
            .and_then(|p| rtp_seq(p))
            .is_some_and(|first| usize::from(seq.wrapping_sub(first)) >= MAX_PROTECTED);
        if too_far {
            self.flush(rate);
        }
        self.group.push(pkt.to_vec());
        if end_of_picture || self.group.len() >= MAX_PROTECTED {
            self.flush(rate);
        }
    }

    fn flush(&mut self, rate: f64) {
        let n = self.group.len();
        let group = std::mem::take(&mut self.group);
        if n == 0 || rate.is_nan() || rate <= 0.0 {
            return;
        }
        let k = ((n as f64 * rate.min(1.0)).round() as usize).clamp(1, n);
        for j in 0..k {
            let members: Vec<&[u8]> = group.iter().skip(j).step_by(k).map(Vec::as_slice).collect();
            let mut out = Vec::new();
            if build_ulpfec(&members, &mut out).is_ok() {
                self.built += 1;
                self.ready.push_back(out);
            }
        }
    }

    /// The next FEC payload to send (after the media of its group), if any.
    #[must_use]
    pub fn poll_fec(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }
}

/// Media packets a [`FecReceiver`] keeps, by sequence number modulo this.
const MEDIA_SLOTS: usize = 256;
/// FEC packets a [`FecReceiver`] keeps; the oldest goes first.
const MAX_FEC_KEPT: usize = 64;
/// An FEC packet whose last protected packet is this far behind the newest media is given up.
const FEC_HORIZON: u16 = 192;

/// What a [`FecReceiver`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FecReceiverStats {
    /// FEC packets accepted.
    pub fec_packets: u64,
    /// FEC packets that did not parse (dropped, counted).
    pub fec_malformed: u64,
    /// Media packets rebuilt.
    pub recovered: u64,
    /// FEC packets given up with two or more of their packets still missing.
    pub unrecoverable: u64,
}

#[derive(Debug)]
struct KeptFec {
    ssrc: u32,
    payload: Vec<u8>,
    /// The last sequence number it protects.
    last: u16,
}

/// The receiver's side: recent media and FEC packets of one stream, and what they rebuild.
#[derive(Debug)]
pub struct FecReceiver {
    media: Vec<Option<(u16, Vec<u8>)>>,
    fec: VecDeque<KeptFec>,
    newest: Option<u16>,
    recovered: VecDeque<Vec<u8>>,
    stats: FecReceiverStats,
}

impl Default for FecReceiver {
    fn default() -> Self {
        FecReceiver::new()
    }
}

impl FecReceiver {
    /// An empty receiver.
    pub fn new() -> Self {
        FecReceiver {
            media: vec![None; MEDIA_SLOTS],
            fec: VecDeque::new(),
            newest: None,
            recovered: VecDeque::new(),
            stats: FecReceiverStats::default(),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> FecReceiverStats {
        self.stats
    }

    fn has(&self, seq: u16) -> bool {
        matches!(&self.media[usize::from(seq) % MEDIA_SLOTS], Some((s, _)) if *s == seq)
    }

    fn store(&mut self, seq: u16, pkt: &[u8]) {
        if self.newest.is_none_or(|n| (seq.wrapping_sub(n) as i16) > 0) {
            self.newest = Some(seq);
        }
        let slot = &mut self.media[usize::from(seq) % MEDIA_SLOTS];
        match slot {
            Some((s, buf)) => {
                *s = seq;
                buf.clear();
                buf.extend_from_slice(pkt);
            }
            None => *slot = Some((seq, pkt.to_vec())),
        }
    }

    /// A media packet of the protected stream arrived (whole RTP, after RED is removed).
    pub fn handle_media(&mut self, pkt: &[u8]) {
        let Some(seq) = rtp_seq(pkt) else { return };
        // A packet from before the window would take the slot of a newer one.
        let stale = self
            .newest
            .is_some_and(|n| n.wrapping_sub(seq) as i16 >= FEC_HORIZON as i16);
        if stale || self.has(seq) {
            return;
        }
        self.store(seq, pkt);
        self.try_recover();
    }

    /// An FEC payload arrived on SSRC `ssrc` (the stream's). A malformed one is counted and
    /// dropped.
    pub fn handle_fec(&mut self, ssrc: u32, payload: &[u8]) {
        let last = match parse_ulpfec(payload) {
            Ok(f) => match f.protected().last() {
                Some(last) => last,
                None => {
                    self.stats.fec_malformed += 1;
                    return;
                }
            },
            Err(_) => {
                self.stats.fec_malformed += 1;
                return;
            }
        };
        self.stats.fec_packets += 1;
        if self.fec.len() == MAX_FEC_KEPT {
            self.give_up(0);
        }
        self.fec.push_back(KeptFec {
            ssrc,
            payload: payload.to_vec(),
            last,
        });
        self.try_recover();
    }

    /// The next packet rebuilt, to be handled as if it had arrived.
    #[must_use]
    pub fn poll_recovered(&mut self) -> Option<Vec<u8>> {
        self.recovered.pop_front()
    }

    fn give_up(&mut self, i: usize) {
        if let Some(k) = self.fec.remove(i) {
            let Ok(f) = parse_ulpfec(&k.payload) else {
                return;
            };
            if f.protected().filter(|&s| !self.has(s)).count() >= 2 {
                self.stats.unrecoverable += 1;
            }
        }
    }

    /// Rebuilds what the kept FEC packets can; each success may enable another, so it goes
    /// round until a pass changes nothing (each success removes an FEC packet: bounded).
    fn try_recover(&mut self) {
        // Forget FEC packets that have fallen out of the media window.
        while let (Some(newest), Some(front)) = (self.newest, self.fec.front()) {
            let behind = newest.wrapping_sub(front.last) as i16;
            if behind < FEC_HORIZON as i16 {
                break;
            }
            self.give_up(0);
        }
        let mut buf = Vec::new();
        'pass: loop {
            for i in 0..self.fec.len() {
                let k = &self.fec[i];
                let Ok(f) = parse_ulpfec(&k.payload) else {
                    self.fec.remove(i);
                    continue 'pass;
                };
                let mut missing = None;
                let mut n_missing = 0;
                for s in f.protected() {
                    if !self.has(s) {
                        n_missing += 1;
                        missing = Some(s);
                    }
                }
                match (n_missing, missing) {
                    (0, _) => {
                        self.fec.remove(i);
                        continue 'pass;
                    }
                    (1, Some(seq)) => {
                        let present: Vec<&[u8]> = f
                            .protected()
                            .filter(|&s| s != seq)
                            .filter_map(|s| {
                                self.media[usize::from(s) % MEDIA_SLOTS]
                                    .as_ref()
                                    .map(|(_, p)| p.as_slice())
                            })
                            .collect();
                        let ok = recover(&f, k.ssrc, seq, &present, &mut buf).is_ok();
                        self.fec.remove(i);
                        if ok {
                            self.stats.recovered += 1;
                            self.store(seq, &buf);
                            self.recovered.push_back(buf.clone());
                        } else {
                            self.stats.fec_malformed += 1;
                        }
                        continue 'pass;
                    }
                    _ => {}
                }
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::write_rtp_header;

    fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut h = [0u8; RTP_HEADER_LEN];
        write_rtp_header(&mut h, 96, marker, seq, ts, 0xdead_beef);
        let mut v = h.to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn fec_header_vector_for_two_packets() {
        // Two packets, worked by hand: the header XOR, the lengths 3 and 1, base 100, mask
        // 0b11 << 14, protection length 3.
        let a = pkt(100, 0x0000_1000, false, &[1, 2, 3]);
        let b = pkt(101, 0x0000_2000, true, &[0xf0]);
        let mut out = Vec::new();
        build_ulpfec(&[&a, &b], &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                0x00,
                0x80, // E=0 L=0 P X CC: 0x80^0x80 masked; M: 0 ^ 1, PT 96 ^ 96
                0x00,
                100, // SN base
                0x00,
                0x00,
                0x30,
                0x00, // TS 0x1000 ^ 0x2000
                0x00,
                0x02, // length 3 ^ 1
                0x00,
                0x03, // protection length
                0xc0,
                0x00, // mask: base and base + 1
                1 ^ 0xf0,
                2,
                3,
            ]
        );
        let f = parse_ulpfec(&out).unwrap();
        assert_eq!(f.protected().collect::<Vec<_>>(), vec![100, 101]);
        let mut back = Vec::new();
        recover(&f, 0xdead_beef, 101, &[&a], &mut back).unwrap();
        assert_eq!(back, b);
        recover(&f, 0xdead_beef, 100, &[&b], &mut back).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn long_mask_and_wrapping_sequence_numbers() {
        let media: Vec<Vec<u8>> = (0..40u16)
            .map(|i| {
                pkt(
                    65_530u16.wrapping_add(i),
                    77,
                    i == 39,
                    &vec![i as u8; 10 + usize::from(i)],
                )
            })
            .collect();
        let refs: Vec<&[u8]> = media.iter().map(Vec::as_slice).collect();
        let mut out = Vec::new();
        build_ulpfec(&refs, &mut out).unwrap();
        assert_eq!(out[0] & 0x40, 0x40, "L set past 16 packets");
        let f = parse_ulpfec(&out).unwrap();
        assert_eq!(f.sn_base, 65_530);
        assert_eq!(f.protected().count(), 40);
        let present: Vec<&[u8]> = refs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 17)
            .map(|(_, p)| *p)
            .collect();
        let mut back = Vec::new();
        recover(
            &f,
            0xdead_beef,
            65_530u16.wrapping_add(17),
            &present,
            &mut back,
        )
        .unwrap();
        assert_eq!(back, media[17]);
        // More than 48 apart, repeated or not RTP: refused.
        let far = pkt(65_530u16.wrapping_add(48), 1, false, &[]);
        assert_eq!(
            build_ulpfec(&[&media[0], &far], &mut out),
            Err(FecError::BadGroup)
        );
        assert_eq!(
            build_ulpfec(&[&media[0], &media[0]], &mut out),
            Err(FecError::BadGroup)
        );
        assert_eq!(
            build_ulpfec(&[&[0u8; 3][..]], &mut out),
            Err(FecError::BadGroup)
        );
        assert_eq!(build_ulpfec(&[], &mut out), Err(FecError::BadGroup));
    }

    #[test]
    fn bad_fec_payloads_are_errors() {
        assert_eq!(parse_ulpfec(&[0; 9]), Err(FecError::Truncated));
        assert_eq!(parse_ulpfec(&[0x80; 14]), Err(FecError::Extended));
        // Protection length 5 with 2 bytes after the headers.
        let mut p = vec![0u8; 10];
        p.extend_from_slice(&[0, 5, 0x80, 0, 1, 2]);
        assert_eq!(parse_ulpfec(&p), Err(FecError::Truncated));
        // A recovery length past the protection length.
        let mut q = vec![0u8; 10];
        q[9] = 9;
        q.extend_from_slice(&[0, 1, 0x80, 0, 0]);
        let f = parse_ulpfec(&q).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            recover(&f, 1, 0, &[], &mut out),
            Err(FecError::Inconsistent)
        );
        let mut r = FecReceiver::new();
        r.handle_fec(1, &[1, 2, 3]);
        r.handle_fec(1, &q[..12]);
        assert_eq!(r.stats().fec_malformed, 2);
    }

    #[test]
    fn sender_and_receiver_rebuild_single_losses_per_fec_packet() {
        let mut tx = FecSender::new();
        let mut rx = FecReceiver::new();
        let mut seq = 1000u16;
        let mut lost = Vec::new();
        for pic in 0..20u32 {
            let n = 1 + (pic as usize % 9);
            let mut group = Vec::new();
            for i in 0..n {
                let p = pkt(
                    seq,
                    pic * 3000,
                    i + 1 == n,
                    &vec![(pic + i as u32) as u8; 100 + i * 7],
                );
                seq = seq.wrapping_add(1);
                tx.add_media(&p, i + 1 == n, 0.5);
                group.push(p);
            }
            let mut fecs = Vec::new();
            while let Some(f) = tx.poll_fec() {
                seq = seq.wrapping_add(1); // the FEC packet takes a sequence number
                fecs.push(f);
            }
            assert_eq!(fecs.len(), ((n as f64 * 0.5).round() as usize).max(1));
            // Lose one packet of each FEC packet's share: packet j for j < k.
            let k = fecs.len();
            for (i, p) in group.iter().enumerate() {
                if i < k {
                    lost.push(p.clone());
                } else {
                    rx.handle_media(p);
                }
            }
            for f in &fecs {
                rx.handle_fec(0xdead_beef, f);
            }
        }
        let mut got = Vec::new();
        while let Some(p) = rx.poll_recovered() {
            got.push(p);
        }
        assert_eq!(got, lost);
        assert_eq!(rx.stats().recovered, lost.len() as u64);
        assert_eq!(tx.built, rx.stats().fec_packets);
    }

    #[test]
    fn two_losses_under_one_fec_are_unrecoverable_and_counted() {
        let mut tx = FecSender::new();
        let mut rx = FecReceiver::new();
        let group: Vec<Vec<u8>> = (0..4u16)
            .map(|i| pkt(i, 0, i == 3, &[i as u8; 20]))
            .collect();
        for (i, p) in group.iter().enumerate() {
            tx.add_media(p, i == 3, 0.25);
        }
        let f = tx.poll_fec().unwrap();
        rx.handle_media(&group[0]);
        rx.handle_media(&group[3]);
        rx.handle_fec(0xdead_beef, &f);
        assert_eq!(rx.poll_recovered(), None);
        // The window moves on: the FEC packet is given up.
        for s in 4..300u16 {
            rx.handle_media(&pkt(s, 0, false, &[]));
        }
        assert_eq!(rx.stats().unrecoverable, 1);
        // A late arrival of one of the two then is no use: the FEC packet is gone.
        rx.handle_media(&group[1]);
        assert_eq!(rx.poll_recovered(), None);
    }
}
