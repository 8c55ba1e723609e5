//! RED, the redundant audio/video payload of RFC 2198: one RTP packet carries a primary block
//! and any number of older (redundant) blocks, each under its own payload type. Video uses it as
//! libwebrtc and GStreamer do: a wrapper with no redundant block at all, whose only job is to
//! let media and ULPFEC packets ([`super::fec`]) share one payload type and one sequence space
//! (the RED header's block payload type tells them apart).
//!
//! Wire format of the payload: a 4-byte header per redundant block (`F=1`, block PT, 14-bit
//! timestamp offset, 10-bit length), then a 1-byte header for the primary (`F=0`, block PT),
//! then the blocks' data in the same order, the primary's last and running to the end.

use std::fmt;
use std::ops::Range;

use super::packet::parse_rtp;

/// The most redundant blocks [`parse_red`] accepts in one packet (senders use one or two).
pub const MAX_RED_BLOCKS: usize = 8;

/// Why a RED payload cannot be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedError {
    /// The headers or blocks run past the end of the payload.
    Truncated,
    /// More redundant blocks than [`MAX_RED_BLOCKS`].
    TooManyBlocks,
    /// A redundant block longer than 1023 bytes or older than 16383 ticks cannot be written.
    BlockTooLarge,
    /// The packet around the RED payload is not RTP.
    NotRtp,
}

impl fmt::Display for RedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RedError::Truncated => "RED payload shorter than its block headers announce",
            RedError::TooManyBlocks => "RED payload with too many redundant blocks",
            RedError::BlockTooLarge => "RED block too long or too old for its 10/14-bit fields",
            RedError::NotRtp => "RED packet is not a valid RTP packet",
        })
    }
}

impl std::error::Error for RedError {}

/// One block of a RED payload, as a range of the payload it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedBlock {
    /// The block's payload type.
    pub pt: u8,
    /// How many ticks before the packet's timestamp the block was taken (0 for the primary).
    pub ts_offset: u16,
    /// Where its data lies in the RED payload.
    pub data: Range<usize>,
}

/// A parsed RED payload: its redundant blocks, oldest first, and its primary block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedPayload {
    redundant: [Option<RedBlock>; MAX_RED_BLOCKS],
    /// The primary block.
    pub primary: RedBlock,
}

impl RedPayload {
    /// The redundant blocks, in the order they are carried.
    pub fn redundant(&self) -> impl Iterator<Item = &RedBlock> {
        self.redundant.iter().flatten()
    }
}

/// Reads a RED payload (the RTP payload, headers stripped). Every length is checked against
/// the payload; bad input is an error, never a panic.
pub fn parse_red(payload: &[u8]) -> Result<RedPayload, RedError> {
    let mut redundant: [Option<RedBlock>; MAX_RED_BLOCKS] = Default::default();
    let mut at = 0;
    let mut lens = [(0u8, 0u16, 0usize); MAX_RED_BLOCKS];
    let mut n = 0;
    loop {
        let first = *payload.get(at).ok_or(RedError::Truncated)?;
        if first & 0x80 == 0 {
            at += 1;
            break;
        }
        let h = payload.get(at..at + 4).ok_or(RedError::Truncated)?;
        if n == MAX_RED_BLOCKS {
            return Err(RedError::TooManyBlocks);
        }
        let ts_offset = (u16::from(h[1]) << 6) | u16::from(h[2] >> 2);
        let len = (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        lens[n] = (h[0] & 0x7f, ts_offset, len);
        n += 1;
        at += 4;
    }
    let primary_pt = payload[at - 1] & 0x7f;
    for (slot, &(pt, ts_offset, len)) in redundant.iter_mut().zip(&lens[..n]) {
        let end = at.checked_add(len).filter(|&e| e <= payload.len());
        let end = end.ok_or(RedError::Truncated)?;
        *slot = Some(RedBlock {
            pt,
            ts_offset,
            data: at..end,
        });
        at = end;
    }
    Ok(RedPayload {
        redundant,
        primary: RedBlock {
            pt: primary_pt,
            ts_offset: 0,
            data: at..payload.len(),
        },
    })
}

/// Appends a RED payload to `out`: `redundant` as (pt, timestamp offset, data), then the
/// primary block `primary` of payload type `primary_pt`.
pub fn write_red(
    redundant: &[(u8, u16, &[u8])],
    primary_pt: u8,
    primary: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RedError> {
    if redundant.len() > MAX_RED_BLOCKS {
        return Err(RedError::TooManyBlocks);
    }
    for &(pt, ts_offset, data) in redundant {
        if data.len() > 0x3ff || ts_offset > 0x3fff {
            return Err(RedError::BlockTooLarge);
        }
        out.push(0x80 | (pt & 0x7f));
        out.push((ts_offset >> 6) as u8);
        out.push((((ts_offset & 0x3f) as u8) << 2) | (data.len() >> 8) as u8);
        out.push(data.len() as u8);
    }
    out.push(primary_pt & 0x7f);
    for &(_, _, data) in redundant {
        out.extend_from_slice(data);
    }
    out.extend_from_slice(primary);
    Ok(())
}

/// Wraps an RTP packet in RED without redundant blocks: the same header (CSRCs and extension
/// kept) under payload type `red_pt`, then a 1-byte RED header naming the packet's own payload
/// type, then its payload. Written to `out` (cleared first).
pub fn wrap_red(rtp: &[u8], red_pt: u8, out: &mut Vec<u8>) -> Result<(), RedError> {
    let (meta, payload) = parse_rtp(rtp).map_err(|_| RedError::NotRtp)?;
    out.clear();
    out.extend_from_slice(&rtp[..payload.start]);
    // Padding is not carried over: the RED packet has its own length.
    out[0] &= !0x20;
    out[1] = (out[1] & 0x80) | (red_pt & 0x7f);
    write_red(&[], meta.payload_type, &rtp[payload], out)
}

/// The packet a RED packet's primary block stands for: the RED packet's header (CSRCs and
/// extension kept) under the primary block's payload type, then the block's data. Written to
/// `out` (cleared first); returns the primary block's payload type.
pub fn unwrap_red(rtp: &[u8], out: &mut Vec<u8>) -> Result<u8, RedError> {
    let (_, payload) = parse_rtp(rtp).map_err(|_| RedError::NotRtp)?;
    let red = parse_red(&rtp[payload.clone()])?;
    out.clear();
    out.extend_from_slice(&rtp[..payload.start]);
    out[0] &= !0x20;
    out[1] = (out[1] & 0x80) | red.primary.pt;
    let data = payload.start + red.primary.data.start..payload.start + red.primary.data.end;
    out.extend_from_slice(&rtp[data]);
    Ok(red.primary.pt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::{write_rtp_header, RTP_HEADER_LEN};

    #[test]
    fn rfc2198_example_parses_and_writes_back() {
        // RFC 2198 §3's layout: one redundant block (PT 0, offset 160, 4 bytes), primary PT 5.
        let payload = [
            0x80, 0x02, 0x80, 0x04, // F=1 PT 0, offset 160, length 4
            0x05, // F=0, PT 5
            1, 2, 3, 4, // redundant data
            9, 9, // primary data
        ];
        let red = parse_red(&payload).unwrap();
        let blocks: Vec<_> = red.redundant().cloned().collect();
        assert_eq!(
            blocks,
            vec![RedBlock {
                pt: 0,
                ts_offset: 160,
                data: 5..9
            }]
        );
        assert_eq!(red.primary.pt, 5);
        assert_eq!(&payload[red.primary.data.clone()], &[9, 9]);
        let mut out = Vec::new();
        write_red(&[(0, 160, &[1, 2, 3, 4])], 5, &[9, 9], &mut out).unwrap();
        assert_eq!(out, payload);
    }

    #[test]
    fn wrap_and_unwrap_round_trip_a_packet() {
        let mut pkt = [0u8; RTP_HEADER_LEN].to_vec();
        let mut h = [0u8; RTP_HEADER_LEN];
        write_rtp_header(&mut h, 96, true, 77, 9000, 0x1234);
        pkt[..].copy_from_slice(&h);
        pkt.extend_from_slice(b"picture");
        let mut red = Vec::new();
        wrap_red(&pkt, 120, &mut red).unwrap();
        assert_eq!(red[1], 0x80 | 120);
        assert_eq!(red[RTP_HEADER_LEN], 96);
        let mut back = Vec::new();
        assert_eq!(unwrap_red(&red, &mut back), Ok(96));
        assert_eq!(back, pkt);
    }

    #[test]
    fn bad_payloads_are_errors() {
        assert_eq!(parse_red(&[]), Err(RedError::Truncated));
        assert_eq!(parse_red(&[0x80, 0, 0]), Err(RedError::Truncated));
        // A redundant block longer than what follows.
        assert_eq!(
            parse_red(&[0x80, 0, 0, 9, 0x05, 1]),
            Err(RedError::Truncated)
        );
        let many: Vec<u8> = std::iter::repeat_n([0x80, 0, 0, 0], MAX_RED_BLOCKS + 1)
            .flatten()
            .chain([0x05])
            .collect();
        assert_eq!(parse_red(&many), Err(RedError::TooManyBlocks));
        // An empty primary is fine.
        assert_eq!(parse_red(&[0x05]).unwrap().primary.data, 1..1);
        let mut out = Vec::new();
        assert_eq!(
            write_red(&[(0, 0x4000, &[])], 5, &[], &mut out),
            Err(RedError::BlockTooLarge)
        );
        assert_eq!(unwrap_red(&[0x80], &mut out), Err(RedError::NotRtp));
    }
}
