//! RTP header extension elements (RFC 8285): reading the elements out of the extension block
//! `rtp-types` hands us, and writing a block of elements for packets we send.
//!
//! RFC 3550 allows one extension block per packet; RFC 8285 packs several small elements into it,
//! each named by a local ID that SDP's `a=extmap` binds to a URI. Two forms exist:
//! - **one-byte** (profile `0xBEDE`): a byte `ID(4) | L(4)` then `L + 1` bytes of data; IDs 1–14;
//!   ID 0 is a padding byte, ID 15 ends the block;
//! - **two-byte** (profile `0x100X`, the low nibble "appbits"): a byte ID, a byte length, then the
//!   data (0–255 bytes); IDs 1–255; a zero byte is padding.
//!
//! Reading never panics: an element that runs past the block ends the walk (RFC 8285 §4.2 says to
//! stop at anything unparseable, keeping what came before).

use std::fmt;

/// The profile value of the one-byte form.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// The profile value of the two-byte form (without appbits).
pub const TWO_BYTE_PROFILE: u16 = 0x1000;
/// The URI `a=extmap` binds to the transport-wide sequence number
/// (draft-holmer-rmcat-transport-wide-cc-extensions-01): a 16-bit counter shared by every
/// stream of a transport, which transport-wide feedback reports on.
pub const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The URI `a=extmap` binds to the MID (RFC 9143 §15): the `a=mid` of the m-line a packet
/// belongs to, which lets one transport carry the m-lines of a BUNDLE group.
pub const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// The ID we offer [`MID_URI`] under (what browsers use too; clear of the IDs we give
/// abs-send-time, 2, and the transport-wide sequence number, 3).
pub const DEFAULT_MID_ID: u8 = 4;

/// One element of a header extension block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtElement<'a> {
    /// The local ID (`a=extmap`).
    pub id: u8,
    /// The element's data.
    pub data: &'a [u8],
}

/// Why a block of elements cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtWriteError {
    /// ID 0 is padding in both forms; it names no element.
    ZeroId,
    /// Data longer than the two-byte form's 255 bytes.
    TooLong(usize),
    /// The block would exceed the 16-bit word count of the RTP extension header.
    BlockTooLong,
}

impl fmt::Display for ExtWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtWriteError::ZeroId => f.write_str("header extension ID 0 is reserved for padding"),
            ExtWriteError::TooLong(n) => {
                write!(f, "header extension element of {n} bytes (at most 255)")
            }
            ExtWriteError::BlockTooLong => f.write_str("header extension block too long"),
        }
    }
}

impl std::error::Error for ExtWriteError {}

/// Walks the elements of an extension block whose profile is `profile` (as `rtp-types`'
/// `RtpPacket::extension` returns it). A profile of neither form yields nothing.
pub fn elements(profile: u16, data: &[u8]) -> ExtElements<'_> {
    let form = if profile == ONE_BYTE_PROFILE {
        Some(false)
    } else if profile & 0xfff0 == TWO_BYTE_PROFILE {
        Some(true)
    } else {
        None
    };
    ExtElements {
        data: if form.is_some() { data } else { &[] },
        two_byte: form == Some(true),
    }
}

/// The data of the element with `id`, if the block carries one (the first, if several).
pub fn find(profile: u16, data: &[u8], id: u8) -> Option<&[u8]> {
    elements(profile, data).find(|e| e.id == id).map(|e| e.data)
}

/// The transport-wide sequence number carried under `id`: exactly two bytes, big-endian.
pub fn transport_cc_seq(profile: u16, data: &[u8], id: u8) -> Option<u16> {
    match find(profile, data, id)? {
        [a, b] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Iterator over the elements of a block; see [`elements`].
#[derive(Debug, Clone)]
pub struct ExtElements<'a> {
    data: &'a [u8],
    two_byte: bool,
}

impl<'a> Iterator for ExtElements<'a> {
    type Item = ExtElement<'a>;

    fn next(&mut self) -> Option<ExtElement<'a>> {
        loop {
            let (&first, rest) = self.data.split_first()?;
            if first == 0 {
                // Padding, in either form.
                self.data = rest;
                continue;
            }
            let (id, len, rest) = if self.two_byte {
                let Some((&len, rest)) = rest.split_first() else {
                    self.data = &[];
                    return None;
                };
                (first, usize::from(len), rest)
            } else {
                let id = first >> 4;
                if id == 15 {
                    // RFC 8285 §4.2: ID 15 stops the processing of the block.
                    self.data = &[];
                    return None;
                }
                (id, usize::from(first & 0x0f) + 1, rest)
            };
            if rest.len() < len {
                self.data = &[];
                return None;
            }
            let (elem, rest) = rest.split_at(len);
            self.data = rest;
            return Some(ExtElement { id, data: elem });
        }
    }
}

/// Appends a complete RTP extension block (profile, length in words, elements, padding to a
/// word) carrying `elements`, in the one-byte form when every element allows it (ID 1–14, 1–16
/// bytes), else in the two-byte form. Returns the bytes written. Nothing is written on error.
pub fn write_block(out: &mut Vec<u8>, elements: &[ExtElement<'_>]) -> Result<usize, ExtWriteError> {
    if elements.iter().any(|e| e.id == 0) {
        return Err(ExtWriteError::ZeroId);
    }
    if let Some(e) = elements.iter().find(|e| e.data.len() > 255) {
        return Err(ExtWriteError::TooLong(e.data.len()));
    }
    let one_byte = elements
        .iter()
        .all(|e| (1..=14).contains(&e.id) && (1..=16).contains(&e.data.len()));
    let body: usize = elements
        .iter()
        .map(|e| e.data.len() + if one_byte { 1 } else { 2 })
        .sum();
    let words = body.div_ceil(4);
    let words16 = u16::try_from(words).map_err(|_| ExtWriteError::BlockTooLong)?;
    let start = out.len();
    let profile = if one_byte {
        ONE_BYTE_PROFILE
    } else {
        TWO_BYTE_PROFILE
    };
    out.extend_from_slice(&profile.to_be_bytes());
    out.extend_from_slice(&words16.to_be_bytes());
    for e in elements {
        if one_byte {
            out.push((e.id << 4) | (e.data.len() as u8 - 1));
        } else {
            out.push(e.id);
            out.push(e.data.len() as u8);
        }
        out.extend_from_slice(e.data);
    }
    out.resize(start + 4 + words * 4, 0);
    Ok(out.len() - start)
}

/// The extension block of a whole RTP packet: its profile and data. `None` when the packet has
/// none or is too short for the one it announces. Never panics, whatever the bytes.
pub fn packet_block(packet: &[u8]) -> Option<(u16, &[u8])> {
    let first = *packet.first()?;
    if first & 0x10 == 0 {
        return None;
    }
    let at = 12 + 4 * usize::from(first & 0x0f);
    let head = packet.get(at..at + 4)?;
    let profile = u16::from_be_bytes([head[0], head[1]]);
    let words = usize::from(u16::from_be_bytes([head[2], head[3]]));
    Some((profile, packet.get(at + 4..at + 4 + 4 * words)?))
}

/// The transport-wide sequence number a whole RTP packet carries under `id`, if any.
pub fn packet_transport_cc_seq(packet: &[u8], id: u8) -> Option<u16> {
    let (profile, data) = packet_block(packet)?;
    transport_cc_seq(profile, data, id)
}

/// Puts a transport-wide sequence number (one-byte form, `id` 1–14) into an RTP packet we built,
/// which has no extension block yet: the block goes after the CSRCs and the X bit is set.
/// Returns false, leaving the packet as it was, when the packet already has a block, is shorter
/// than its header or `id` does not fit the one-byte form.
pub fn insert_transport_cc_seq(packet: &mut Vec<u8>, id: u8, seq: u16) -> bool {
    insert_one_byte(
        packet,
        &[ExtElement {
            id,
            data: &seq.to_be_bytes(),
        }],
    )
}

/// The longest one-byte block [`insert_one_byte`] writes: four elements of up to four bytes.
const MAX_INSERTED: usize = 4 + 4 * 5 + 3;

/// Puts a one-byte-form block of small elements (IDs 1–14, 1–4 bytes each, at most four) into
/// an RTP packet we built, which has no extension block yet: after the CSRCs, X bit set. Returns
/// false, leaving the packet as it was, when the packet already has a block, is shorter than its
/// header, or an element does not fit. No allocation: it runs for every packet sent.
pub fn insert_one_byte(packet: &mut Vec<u8>, elements: &[ExtElement<'_>]) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    let at = 12 + 4 * usize::from(first & 0x0f);
    let fits = |e: &ExtElement<'_>| (1..=14).contains(&e.id) && (1..=4).contains(&e.data.len());
    if first & 0x10 != 0
        || packet.len() < at
        || elements.is_empty()
        || elements.len() > 4
        || !elements.iter().all(fits)
    {
        return false;
    }
    let mut block = [0u8; MAX_INSERTED];
    let mut n = 4;
    for e in elements {
        block[n] = (e.id << 4) | (e.data.len() as u8 - 1);
        block[n + 1..n + 1 + e.data.len()].copy_from_slice(e.data);
        n += 1 + e.data.len();
    }
    let words = (n - 4).div_ceil(4);
    block[..2].copy_from_slice(&ONE_BYTE_PROFILE.to_be_bytes());
    block[2..4].copy_from_slice(&(words as u16).to_be_bytes());
    packet.splice(at..at, block[..4 + 4 * words].iter().copied());
    packet[0] |= 0x10;
    true
}

/// The URI `a=extmap` binds to abs-send-time (webrtc.org): when the packet left the sender, as
/// 24 bits of 6.18 fixed-point seconds (it wraps every 64 s; only differences mean anything).
pub const ABS_SEND_TIME_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";

/// Fraction bits of abs-send-time.
const ABS_SEND_TIME_FRACTION_BITS: u32 = 18;
/// One wrap of abs-send-time in µs (64 s).
pub const ABS_SEND_TIME_WRAP_US: i64 = 64_000_000;

/// The abs-send-time of `at` since an origin: 6.18 fixed-point seconds, wrapped to 24 bits.
pub fn abs_send_time(since_origin: std::time::Duration) -> [u8; 3] {
    let units = (since_origin.as_nanos() << ABS_SEND_TIME_FRACTION_BITS) / 1_000_000_000;
    let v = (units & 0x00ff_ffff) as u32;
    let [_, a, b, c] = v.to_be_bytes();
    [a, b, c]
}

/// The abs-send-time carried under `id`, in µs within its 64 s wrap: exactly three bytes.
pub fn abs_send_time_us(profile: u16, data: &[u8], id: u8) -> Option<i64> {
    match find(profile, data, id)? {
        [a, b, c] => {
            let v = u64::from(u32::from_be_bytes([0, *a, *b, *c]));
            Some(((v * 1_000_000) >> ABS_SEND_TIME_FRACTION_BITS) as i64)
        }
        _ => None,
    }
}

/// The abs-send-time a whole RTP packet carries under `id`, µs within its wrap, if any.
pub fn packet_abs_send_time_us(packet: &[u8], id: u8) -> Option<i64> {
    let (profile, data) = packet_block(packet)?;
    abs_send_time_us(profile, data, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_types::{RtpPacket, RtpPacketBuilder};

    fn collect(profile: u16, data: &[u8]) -> Vec<(u8, Vec<u8>)> {
        elements(profile, data)
            .map(|e| (e.id, e.data.to_vec()))
            .collect()
    }

    #[test]
    fn one_byte_form_with_padding_and_stop() {
        // id 1 len 2, a padding byte, id 14 len 1, then ID 15 (stop) and garbage after it.
        let block = [0x11, 0xaa, 0xbb, 0x00, 0xe0, 0xcc, 0xf0, 0x31, 9, 9];
        assert_eq!(
            collect(ONE_BYTE_PROFILE, &block),
            vec![(1, vec![0xaa, 0xbb]), (14, vec![0xcc])]
        );
    }

    #[test]
    fn two_byte_form_allows_empty_and_long_elements_and_appbits() {
        let mut block = vec![0x05, 0x00, 0x00, 0xff, 3];
        block.extend_from_slice(&[7; 3]);
        assert_eq!(
            collect(0x1007, &block),
            vec![(5, vec![]), (255, vec![7, 7, 7])]
        );
    }

    #[test]
    fn truncated_or_unknown_blocks_stop_without_panicking() {
        assert!(collect(ONE_BYTE_PROFILE, &[0x13, 1, 2]).is_empty());
        assert_eq!(
            collect(ONE_BYTE_PROFILE, &[0x10, 1, 0x23, 1]),
            vec![(1, vec![1])]
        );
        assert!(collect(TWO_BYTE_PROFILE, &[0x05]).is_empty());
        assert!(collect(TWO_BYTE_PROFILE, &[0x05, 4, 1]).is_empty());
        assert!(collect(0x1234, &[0x10, 1]).is_empty());
        assert!(collect(ONE_BYTE_PROFILE, &[]).is_empty());
    }

    #[test]
    fn written_blocks_read_back_through_rtp_types() {
        let seq = 0xabcd_u16.to_be_bytes();
        let long = [1u8; 17];
        let cases: [&[ExtElement<'_>]; 3] = [
            &[ExtElement { id: 3, data: &seq }],
            &[
                ExtElement { id: 3, data: &seq },
                ExtElement { id: 14, data: &[9] },
            ],
            // Too long for the one-byte form, so the whole block is two-byte.
            &[
                ExtElement { id: 3, data: &seq },
                ExtElement { id: 4, data: &long },
            ],
        ];
        for elems in cases {
            let mut block = Vec::new();
            let n = write_block(&mut block, elems).unwrap();
            assert_eq!(n, block.len());
            assert_eq!(n % 4, 0);
            let profile = u16::from_be_bytes([block[0], block[1]]);
            let pkt = RtpPacketBuilder::<&[u8], &[u8]>::new()
                .payload_type(96)
                .extension(profile, &block[4..])
                .payload(b"x".as_slice())
                .write_vec()
                .unwrap();
            let parsed = RtpPacket::parse(&pkt).unwrap();
            let (p, data) = parsed.extension().unwrap();
            let back: Vec<_> = elements(p, data).collect();
            assert_eq!(back, elems);
            assert_eq!(transport_cc_seq(p, data, 3), Some(0xabcd));
            assert_eq!(transport_cc_seq(p, data, 9), None);
        }
    }

    #[test]
    fn write_refuses_what_no_form_carries() {
        let mut out = vec![1];
        assert_eq!(
            write_block(&mut out, &[ExtElement { id: 0, data: &[1] }]),
            Err(ExtWriteError::ZeroId)
        );
        let big = [0u8; 256];
        assert_eq!(
            write_block(&mut out, &[ExtElement { id: 1, data: &big }]),
            Err(ExtWriteError::TooLong(256))
        );
        assert_eq!(out, vec![1]);
        assert!(ExtWriteError::TooLong(300).to_string().contains("300"));
    }

    #[test]
    fn transport_cc_needs_exactly_two_bytes() {
        assert_eq!(transport_cc_seq(ONE_BYTE_PROFILE, &[0x20, 7], 2), None);
        assert_eq!(
            transport_cc_seq(ONE_BYTE_PROFILE, &[0x21, 0, 7, 0], 2),
            Some(7)
        );
    }

    #[test]
    fn transport_seq_is_inserted_and_found_again() {
        let mut pkt = RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(96)
            .sequence_number(7)
            .add_csrc(0x1234)
            .payload(b"abc".as_slice())
            .write_vec()
            .unwrap();
        assert_eq!(packet_transport_cc_seq(&pkt, 3), None);
        assert!(insert_transport_cc_seq(&mut pkt, 3, 0xfeed));
        assert_eq!(packet_transport_cc_seq(&pkt, 3), Some(0xfeed));
        let parsed = RtpPacket::parse(&pkt).unwrap();
        assert_eq!(
            (parsed.sequence_number(), parsed.payload()),
            (7, &b"abc"[..])
        );
        assert_eq!(parsed.csrc().collect::<Vec<_>>(), vec![0x1234]);
        // A second block is refused, as are bad IDs and truncated packets.
        assert!(!insert_transport_cc_seq(&mut pkt, 3, 1));
        assert!(!insert_transport_cc_seq(&mut vec![0x80, 96], 3, 1));
        assert!(!insert_transport_cc_seq(&mut vec![0x80; 12], 15, 1));
        assert_eq!(
            packet_block(&pkt[..pkt.len() - 3]).map(|b| b.0),
            Some(ONE_BYTE_PROFILE)
        );
        assert_eq!(packet_block(&pkt[..23]), None);
    }

    #[test]
    fn abs_send_time_layout_and_round_trip() {
        use std::time::Duration;
        // 1.5 s is 0x06_0000 in 6.18 fixed point; 64 s wraps to 0.
        assert_eq!(
            abs_send_time(Duration::from_millis(1_500)),
            [0x06, 0x00, 0x00]
        );
        assert_eq!(abs_send_time(Duration::from_secs(64)), [0, 0, 0]);
        assert_eq!(abs_send_time(Duration::from_secs(63)), [0xfc, 0, 0]);
        let block = [0x22, 0x06, 0x00, 0x00];
        assert_eq!(
            abs_send_time_us(ONE_BYTE_PROFILE, &block, 2),
            Some(1_500_000)
        );
        assert_eq!(abs_send_time_us(ONE_BYTE_PROFILE, &[0x21, 6, 0], 2), None);
        for ms in [0u64, 1, 33, 999, 12_345, 63_999] {
            let d = Duration::from_millis(ms);
            let b = abs_send_time(d);
            let mut pkt = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 0xaa];
            let seq = 0x0102u16.to_be_bytes();
            assert!(insert_one_byte(
                &mut pkt,
                &[
                    ExtElement { id: 3, data: &seq },
                    ExtElement { id: 5, data: &b }
                ]
            ));
            assert_eq!(packet_transport_cc_seq(&pkt, 3), Some(0x0102));
            let us = packet_abs_send_time_us(&pkt, 5).unwrap();
            assert!((us - ms as i64 * 1000).abs() <= 4, "{ms} {us}");
            assert_eq!(pkt.last(), Some(&0xaa));
            assert_eq!(pkt.len(), 13 + 12);
        }
        let mut pkt = vec![0x80; 12];
        assert!(!insert_one_byte(
            &mut pkt,
            &[ExtElement {
                id: 3,
                data: &[1; 5]
            }]
        ));
        assert!(!insert_one_byte(&mut pkt, &[]));
    }
}
