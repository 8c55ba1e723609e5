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
use std::time::Duration;

use super::packet::RTP_HEADER_LEN;

/// Length of the FEC header.
pub const FEC_HEADER_LEN: usize = 10;
/// The most media packets one FEC packet protects (the long mask).
pub const MAX_PROTECTED: usize = 48;

/// Forward error correction on a video stream: ULPFEC in RED, both ways. Off unless set (or
/// negotiated in SDP: `a=rtpmap:PT red/90000` and `a=rtpmap:PT ulpfec/90000`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FecConfig {
    /// Payload type of the RED packets that carry media and FEC.
    pub red_payload_type: u8,
    /// Payload type of the ULPFEC blocks inside RED.
    pub ulpfec_payload_type: u8,
    /// FEC packets per media packet while the receiver reports nothing (a one-way path, or
    /// before its first report): NACK cannot work there, so FEC does the whole job.
    pub rate_without_feedback: f64,
    /// The most FEC packets per media packet when reports come.
    pub max_rate: f64,
}

impl Default for FecConfig {
    /// RED 123 and ULPFEC 122 (GStreamer's and many examples' choice), half a packet of FEC per
    /// media packet without feedback, at most half with.
    fn default() -> Self {
        FecConfig {
            red_payload_type: 123,
            ulpfec_payload_type: 122,
            rate_without_feedback: 0.5,
            max_rate: 0.5,
        }
    }
}

/// RTT up to which NACK repairs in time, so FEC only thins the losses out.
const RTT_NACK_ENOUGH: Duration = Duration::from_millis(50);
/// RTT from which a repair comes too late for the jitter buffer, so FEC does the whole job.
const RTT_NACK_TOO_SLOW: Duration = Duration::from_millis(150);
/// FEC packets per media packet for each unit of reported loss share (times the RTT's share
/// below): with interleaved groups of `1 / rate` packets, a loss share `l` leaves about
/// `(l / rate)² / 2` of the groups with two losses; four times the loss keeps that near 3 %.
const LOSS_FACTOR: f64 = 4.0;
/// With a short RTT, this share of that (NACK repairs the rest).
const SHORT_RTT_SHARE: f64 = 0.25;
/// With a long RTT, this multiple of it: a repair a round trip later misses its picture, and
/// the key-picture gate then costs the rest of the group of pictures, so FEC has to catch
/// nearly every loss (measured: 300 ms RTT, 3 % loss, `tests/pure/fec.rs`).
const LONG_RTT_SHARE: f64 = 3.0;

/// The FEC packets per media packet to send: the hybrid NACK/FEC idea of libwebrtc, in our
/// terms. `loss` is the receiver's last reported loss share (`None`: no report, or reports
/// stopped) and `rtt` the round-trip time if measured. No feedback: the configured rate. With
/// feedback: proportional to the loss, 12 × it at an RTT too long for NACK, 1 × where NACK
/// repairs in time, linear in between; never above `max_rate`.
pub fn protection_rate(cfg: &FecConfig, loss: Option<f64>, rtt: Option<Duration>) -> f64 {
    let Some(loss) = loss.filter(|l| l.is_finite()) else {
        return cfg.rate_without_feedback.clamp(0.0, 1.0);
    };
    let long = match rtt {
        None => 1.0,
        Some(r) => {
            let span = (RTT_NACK_TOO_SLOW - RTT_NACK_ENOUGH).as_secs_f64();
            ((r.as_secs_f64() - RTT_NACK_ENOUGH.as_secs_f64()) / span).clamp(0.0, 1.0)
        }
    };
    let share = SHORT_RTT_SHARE + (LONG_RTT_SHARE - SHORT_RTT_SHARE) * long;
    (loss.clamp(0.0, 1.0) * LOSS_FACTOR * share).clamp(0.0, cfg.max_rate.clamp(0.0, 1.0))
}

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
        xor_packet(&mut head, &mut payload, p);
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

/// Folds one whole RTP packet `p` (at least a fixed header long) into an FEC sum, as RFC 5109
/// §6.2 builds it and §8 inverts it: its first 8 header bytes into `head[..8]`, its payload length
/// into `head[8..10]`, its payload into `payload`.
fn xor_packet(head: &mut [u8; FEC_HEADER_LEN], payload: &mut [u8], p: &[u8]) {
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
        xor_packet(&mut head, &mut out[RTP_HEADER_LEN..], p);
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

/// FEC packets one closed group of `n` media packets gets at `rate` (0 when `rate` is not
/// above zero).
fn group_fec_count(n: usize, rate: f64) -> usize {
    if n == 0 || rate.is_nan() || rate <= 0.0 {
        return 0;
    }
    ((n as f64 * rate.min(1.0)).round() as usize).clamp(1, n)
}

/// FEC packets [`FecSender`] builds for a picture of `n` consecutive packets at `rate`: its
/// groups of at most [`MAX_PROTECTED`], each counted as [`FecSender::add_media`] closes it. A
/// sender that numbers FEC packets before it builds them reserves this many.
#[must_use]
pub fn fec_packets_for_picture(n: usize, rate: f64) -> usize {
    let mut left = n;
    let mut total = 0;
    while left > 0 {
        let g = left.min(MAX_PROTECTED);
        total += group_fec_count(g, rate);
        left -= g;
    }
    total
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
    /// packets gets `k = round(n × rate)` FEC packets, at least one when `rate` is above zero:
    /// up to three interleave (packet `i` in the `i mod k`-th); from four on, half of them
    /// interleave and half take runs of neighbours, so every packet is protected twice.
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
        let k = group_fec_count(n, rate);
        // Up to three FEC packets interleave; from four on, two layers: `cols` packets that each protect
        // every `cols`-th media packet (interleaved), and `rows` that each protect a run of
        // neighbours. Each media packet is then in two groups that share no other packet, so
        // two losses in one group are rebuilt through the other layer (a 2-D parity code).
        let (cols, rows) = if k >= 4 { (k / 2, k - k / 2) } else { (k, 0) };
        let mut groups: Vec<Vec<&[u8]>> = (0..cols)
            .map(|j| {
                group
                    .iter()
                    .skip(j)
                    .step_by(cols)
                    .map(Vec::as_slice)
                    .collect()
            })
            .collect();
        for j in 0..rows {
            let (lo, hi) = (j * n / rows, (j + 1) * n / rows);
            groups.push(group[lo..hi].iter().map(Vec::as_slice).collect());
        }
        for members in groups.into_iter().filter(|m| !m.is_empty()) {
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

/// Where an FEC packet sat in the stream: its own sequence number and timestamp, and the
/// media it protects.
#[derive(Debug, Clone, Copy)]
struct FecPosition {
    seq: u16,
    ts: u32,
    base: u16,
    mask: u64,
}

/// FEC positions and media markers remembered to tell a lost FEC packet from lost media.
const POSITIONS_KEPT: usize = 64;

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
    /// Sequence numbers of FEC packets that arrived, by sequence number modulo [`MEDIA_SLOTS`].
    fec_seen: Vec<Option<u16>>,
    /// Sequence numbers already handed out as fillers, the same way.
    filled: Vec<Option<u16>>,
    positions: VecDeque<FecPosition>,
    /// (sequence number, timestamp) of recent media packets with the marker bit.
    markers: VecDeque<(u16, u32)>,
    fillers: VecDeque<u16>,
    /// Whether a lost FEC packet after a picture's last FEC packet received is placed too (see
    /// [`Self::set_place_trailing`]).
    place_trailing: bool,
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
            fec_seen: vec![None; MEDIA_SLOTS],
            filled: vec![None; MEDIA_SLOTS],
            positions: VecDeque::new(),
            markers: VecDeque::new(),
            fillers: VecDeque::new(),
            place_trailing: true,
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
        if pkt[1] & 0x80 != 0 {
            if self.markers.len() == POSITIONS_KEPT {
                self.markers.pop_front();
            }
            self.markers
                .push_back((seq, u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]])));
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

    /// A whole FEC packet (RTP, RED removed) arrived: besides [`Self::handle_fec`], its place
    /// in the stream is remembered, from which lost FEC packets are told apart from lost media
    /// ([`Self::poll_filler`]).
    pub fn handle_fec_packet(&mut self, pkt: &[u8]) {
        let Ok((meta, range)) = super::packet::parse_rtp(pkt) else {
            self.stats.fec_malformed += 1;
            return;
        };
        let payload = &pkt[range];
        if let Ok(f) = parse_ulpfec(payload) {
            self.fec_seen[usize::from(meta.sequence) % MEDIA_SLOTS] = Some(meta.sequence);
            if self.positions.len() == POSITIONS_KEPT {
                self.positions.pop_front();
            }
            self.positions.push_back(FecPosition {
                seq: meta.sequence,
                ts: meta.timestamp,
                base: f.sn_base,
                mask: f.mask,
            });
        }
        self.handle_fec(meta.ssrc, payload);
        self.find_fillers();
    }

    /// Whether to place a lost FEC packet that follows a picture's last FEC packet received
    /// (on by default). That guess can take the lost first packet of the next picture for FEC
    /// when the FEC packet protecting it is lost too; where NACK repairs arrive, the gap is
    /// better left to them (the stream core turns it off once one has).
    pub fn set_place_trailing(&mut self, on: bool) {
        self.place_trailing = on;
    }

    /// The next sequence number found to have been an FEC packet that was lost: it carried no
    /// media, so the jitter buffer should not wait for it nor count it as a media loss.
    ///
    /// FEC packets follow the media of their picture (our sender, GStreamer and libwebrtc all
    /// send them so). A missing number is taken for a lost FEC packet when it lies after the
    /// marker packet (or an FEC packet) of a picture and before a later FEC packet of the same
    /// picture, or after the picture's last FEC packet received and before the first packet the
    /// next protected picture's FEC packets protect with no media received in between (else an
    /// unprotected picture lies there), and no FEC packet received protects it. (Losing both
    /// the first packet of a picture and the FEC packet that protects it can make that first
    /// packet look like FEC; an H.264 picture whose first packet is a fragment is still found
    /// damaged by its depacketizer.)
    #[must_use]
    pub fn poll_filler(&mut self) -> Option<u16> {
        self.fillers.pop_front()
    }

    fn find_fillers(&mut self) {
        let Some(newest) = self.positions.back().map(|p| p.seq) else {
            return;
        };
        // Positions in stream order, as offsets behind the newest FEC packet.
        let mut pos: Vec<FecPosition> = self.positions.iter().copied().collect();
        pos.sort_by_key(|p| std::cmp::Reverse(newest.wrapping_sub(p.seq) as i16));
        let mut i = 0;
        while i < pos.len() {
            let ts = pos[i].ts;
            let mut j = i;
            while j + 1 < pos.len() && pos[j + 1].ts == ts {
                j += 1;
            }
            // The picture's FEC packets are pos[i..=j]; its marker packet, if it arrived, opens
            // the run of FEC sequence numbers.
            let marker = self
                .markers
                .iter()
                .rev()
                .find(|(_, t)| *t == ts)
                .map(|(s, _)| *s);
            let start = marker.unwrap_or(pos[i].seq);
            self.fill_between(start, pos[j].seq, &pos);
            if let Some(next_base) = pos.get(j + 1..).and_then(|rest| {
                let next_ts = rest.first()?.ts;
                rest.iter()
                    .take_while(|p| p.ts == next_ts)
                    .map(|p| p.base)
                    .min_by_key(|b| b.wrapping_sub(pos[j].seq) as i16)
            }) {
                // Only when nothing arrived in between: media there means a picture without
                // FEC lies between the two, and its losses are media.
                let gap = next_base.wrapping_sub(pos[j].seq);
                let media_between = (1..gap.min(MAX_PROTECTED as u16 + 1))
                    .any(|k| self.has(pos[j].seq.wrapping_add(k)));
                if !media_between && self.place_trailing {
                    self.fill_between(pos[j].seq, next_base, &pos);
                }
            }
            i = j + 1;
        }
    }

    /// Reports as fillers the numbers strictly between `from` and `to` that nothing received
    /// accounts for.
    fn fill_between(&mut self, from: u16, to: u16, pos: &[FecPosition]) {
        let span = to.wrapping_sub(from) as i16;
        if !(2..=MAX_PROTECTED as i16).contains(&span) {
            return;
        }
        for k in 1..span as u16 {
            let s = from.wrapping_add(k);
            let slot = usize::from(s) % MEDIA_SLOTS;
            // The mask scan last: most numbers here are FEC packets that arrived, and checking
            // every remembered mask for each of them was most of what FEC cost a receiver.
            let protected = || {
                pos.iter().any(|p| {
                    let i = usize::from(s.wrapping_sub(p.base));
                    i < MAX_PROTECTED && p.mask >> (47 - i) & 1 == 1
                })
            };
            if self.has(s)
                || self.fec_seen[slot] == Some(s)
                || self.filled[slot] == Some(s)
                || protected()
            {
                continue;
            }
            self.filled[slot] = Some(s);
            self.fillers.push_back(s);
        }
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
    fn protection_follows_feedback_loss_and_rtt() {
        let c = FecConfig::default();
        let ms = Duration::from_millis;
        assert_eq!(
            protection_rate(&c, None, None),
            0.5,
            "no feedback: the configured rate"
        );
        assert_eq!(
            protection_rate(&c, Some(0.0), Some(ms(300))),
            0.0,
            "no loss, no FEC"
        );
        let long = protection_rate(&c, Some(0.03), Some(ms(300)));
        let short = protection_rate(&c, Some(0.03), Some(ms(20)));
        let mid = protection_rate(&c, Some(0.03), Some(ms(100)));
        assert!((long - 0.36).abs() < 1e-9, "{long}");
        assert!((short - 0.03).abs() < 1e-9, "{short}");
        assert!(short < mid && mid < long);
        assert_eq!(protection_rate(&c, Some(0.5), Some(ms(300))), 0.5, "capped");
        assert_eq!(protection_rate(&c, Some(f64::NAN), None), 0.5);
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
    fn the_count_reserved_ahead_is_what_the_sender_builds() {
        for rate in [0.0, 0.03, 0.2, 0.5, 1.0] {
            let mut tx = FecSender::new();
            let mut seq = 65_500u16;
            for n in 1..=150usize {
                for i in 0..n {
                    tx.add_media(&pkt(seq, 0, i + 1 == n, &[1, 2, 3]), i + 1 == n, rate);
                    seq = seq.wrapping_add(1);
                }
                let built = std::iter::from_fn(|| tx.poll_fec()).count();
                assert_eq!(built, fec_packets_for_picture(n, rate), "n {n} rate {rate}");
                seq = seq.wrapping_add(built as u16);
            }
        }
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
            // Lose the first packet and, in pictures of 4 or more, the second too: two losses in
            // one run of neighbours, rebuilt through the interleaved layer.
            let k = if n >= 4 { 2 } else { 1 };
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
        assert!(got == lost, "{} rebuilt of {} lost", got.len(), lost.len());
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
