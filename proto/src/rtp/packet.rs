//! The RTP fixed header on the wire: parsing received packets, writing the 12-byte header of
//! packets we send, and telling RTP from RTCP when both share one port (rtcp-mux).
//!
//! Parsing goes through `rtp-types`, which checks every length before reading it; this module adds
//! our error type and hands back the payload as a range so the caller keeps ownership of the
//! buffer and nothing is copied.

use std::fmt;
use std::ops::Range;

use rtp_types::{RtpPacket, RtpParseError};

use super::RtpMeta;

/// Length of the fixed RTP header (no CSRCs, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    /// The datagram ends before the header, CSRC list, extension or padding it announces.
    Truncated {
        /// Bytes the header says are needed.
        needed: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The version field is not 2.
    BadVersion(u8),
    /// The padding bit is set but the padding count is zero or larger than the packet allows.
    BadPadding(u8),
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtpError::Truncated { needed, got } => write!(
                f,
                "truncated RTP packet: the header announces {needed} bytes, {got} arrived"
            ),
            RtpError::BadVersion(v) => write!(f, "RTP version {v} (only version 2 is RTP)"),
            RtpError::BadPadding(p) => write!(f, "invalid RTP padding count {p}"),
        }
    }
}

impl std::error::Error for RtpError {}

impl From<RtpParseError> for RtpError {
    fn from(e: RtpParseError) -> Self {
        match e {
            RtpParseError::UnsupportedVersion(v) => RtpError::BadVersion(v),
            RtpParseError::Truncated { expected, actual } => RtpError::Truncated {
                needed: expected,
                got: actual,
            },
            RtpParseError::PaddingInvalid(p) => RtpError::BadPadding(p),
        }
    }
}

/// Parses an RTP packet and returns its header fields and where its payload lies in `data`
/// (after CSRCs and header extension, before padding). Never panics, whatever the bytes.
pub fn parse_rtp(data: &[u8]) -> Result<(RtpMeta, Range<usize>), RtpError> {
    let pkt = RtpPacket::parse(data)?;
    let start = pkt.payload_offset();
    let pad = pkt.padding().map_or(0, usize::from);
    // rtp-types already checked these, but a wrong range here would be a panic later in the
    // caller, so the arithmetic is re-checked rather than trusted.
    let end = data
        .len()
        .checked_sub(pad)
        .filter(|&end| end >= start)
        .ok_or(RtpError::BadPadding(pad as u8))?;
    let meta = RtpMeta {
        payload_type: pkt.payload_type(),
        marker: pkt.marker_bit(),
        sequence: pkt.sequence_number(),
        timestamp: pkt.timestamp(),
        ssrc: pkt.ssrc(),
    };
    Ok((meta, start..end))
}

/// Writes a fixed 12-byte RTP header (version 2, no padding, no extension, no CSRCs). The send
/// path puts it in front of the payload segments; `pt` above 127 is masked to 7 bits.
pub fn write_rtp_header(
    buf: &mut [u8; RTP_HEADER_LEN],
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
) {
    buf[0] = 0x80;
    buf[1] = (pt & 0x7f) | if marker { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// What a datagram on a port shared by RTP and RTCP is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxedKind {
    /// An RTP packet (by its first two bytes; it may still fail [`parse_rtp`]).
    Rtp,
    /// An RTCP packet (second byte, the RTCP packet type, is 192..=223).
    Rtcp,
    /// Neither: too short or not version 2 (STUN, DTLS or junk).
    Other,
}

/// Classifies a datagram received on an rtcp-mux port. RFC 5761 §4: RTCP packet types 192..=223
/// occupy the byte where RTP keeps marker bit and payload type, and RTP payload types that would
/// collide with them (64..=95) are not used when muxing.
pub fn classify_muxed(data: &[u8]) -> MuxedKind {
    match data {
        [b0, b1, ..] if b0 >> 6 == 2 => {
            if (192..=223).contains(b1) {
                MuxedKind::Rtcp
            } else {
                MuxedKind::Rtp
            }
        }
        _ => MuxedKind::Other,
    }
}

/// True when a datagram on an rtcp-mux port is RTCP (see [`classify_muxed`]).
#[cfg(any(test, feature = "_internals"))]
pub fn is_rtcp(data: &[u8]) -> bool {
    classify_muxed(data) == MuxedKind::Rtcp
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_types::RtpPacketBuilder;

    fn header(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> [u8; 12] {
        let mut h = [0u8; 12];
        write_rtp_header(&mut h, pt, marker, seq, ts, ssrc);
        h
    }

    #[test]
    fn written_header_round_trips_through_rtp_types() {
        for &(pt, marker, seq, ts, ssrc) in &[
            (96u8, true, 0u16, 0u32, 0u32),
            (0, false, 65535, u32::MAX, u32::MAX),
            (127, true, 0x1234, 0xdead_beef, 0x0102_0304),
        ] {
            let h = header(pt, marker, seq, ts, ssrc);
            let p = RtpPacket::parse(&h).unwrap();
            assert_eq!(p.version(), 2);
            assert_eq!(p.payload_type(), pt);
            assert_eq!(p.marker_bit(), marker);
            assert_eq!(p.sequence_number(), seq);
            assert_eq!(p.timestamp(), ts);
            assert_eq!(p.ssrc(), ssrc);
            assert_eq!(p.n_csrcs(), 0);
            assert!(!p.extension_bit() && !p.padding_bit());
            assert!(p.payload().is_empty());

            // And byte for byte what the crate's own builder writes.
            let built = RtpPacketBuilder::<&[u8], &[u8]>::new()
                .payload_type(pt)
                .marker_bit(marker)
                .sequence_number(seq)
                .timestamp(ts)
                .ssrc(ssrc)
                .write_vec()
                .unwrap();
            assert_eq!(built, h);
        }
    }

    #[test]
    fn parse_plain_packet() {
        let mut pkt = header(96, true, 7, 9000, 0xabcd).to_vec();
        pkt.extend_from_slice(b"hello");
        let (meta, range) = parse_rtp(&pkt).unwrap();
        assert_eq!(
            meta,
            RtpMeta {
                payload_type: 96,
                marker: true,
                sequence: 7,
                timestamp: 9000,
                ssrc: 0xabcd
            }
        );
        assert_eq!(&pkt[range], b"hello");
    }

    #[test]
    fn parse_with_csrcs_extension_and_padding() {
        let pkt = RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(100)
            .sequence_number(42)
            .timestamp(1)
            .ssrc(2)
            .add_csrc(10)
            .add_csrc(11)
            .extension(0xbede, &[1, 2, 3, 4, 5, 6, 7, 8])
            .payload(b"xyz".as_slice())
            .padding(5)
            .write_vec()
            .unwrap();
        let (meta, range) = parse_rtp(&pkt).unwrap();
        assert_eq!(meta.sequence, 42);
        assert_eq!(range.start, 12 + 8 + 4 + 8);
        assert_eq!(&pkt[range], b"xyz");
    }

    #[test]
    fn empty_payload_with_only_padding() {
        let mut pkt = header(96, false, 1, 1, 1).to_vec();
        pkt[0] |= 0x20;
        pkt.extend_from_slice(&[0, 0, 0, 4]);
        let (_, range) = parse_rtp(&pkt).unwrap();
        assert!(range.is_empty());
        assert_eq!(range.start, 12);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            parse_rtp(&[0x80; 11]),
            Err(RtpError::Truncated {
                needed: 12,
                got: 11
            })
        );
        assert_eq!(
            parse_rtp(&[]),
            Err(RtpError::Truncated { needed: 12, got: 0 })
        );

        let mut v1 = header(96, false, 1, 1, 1);
        v1[0] = 0x40;
        assert_eq!(parse_rtp(&v1), Err(RtpError::BadVersion(1)));

        // Two CSRCs announced, one present.
        let mut csrc = header(96, false, 1, 1, 1).to_vec();
        csrc[0] |= 2;
        csrc.extend_from_slice(&[0; 4]);
        assert!(matches!(parse_rtp(&csrc), Err(RtpError::Truncated { .. })));

        // Extension of 0xffff words announced (the 24-byte case that panics rtp-parser).
        let mut ext = header(96, false, 1, 1, 1).to_vec();
        ext[0] |= 0x10;
        ext.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(parse_rtp(&ext), Err(RtpError::Truncated { .. })));

        // Padding count zero, and padding longer than the packet.
        let mut pad0 = header(96, false, 1, 1, 1).to_vec();
        pad0[0] |= 0x20;
        pad0.push(0);
        assert_eq!(parse_rtp(&pad0), Err(RtpError::BadPadding(0)));
        let mut pad_big = header(96, false, 1, 1, 1).to_vec();
        pad_big[0] |= 0x20;
        pad_big.extend_from_slice(&[1, 2, 200]);
        assert!(parse_rtp(&pad_big).is_err());
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let e = RtpError::Truncated {
            needed: 20,
            got: 13,
        };
        assert!(e.to_string().contains("20") && e.to_string().contains("13"));
        assert!(RtpError::BadVersion(3).to_string().contains("version 3"));
        assert!(RtpError::BadPadding(0).to_string().contains("padding"));
    }

    #[test]
    fn demux_rtp_and_rtcp() {
        assert_eq!(classify_muxed(&header(96, true, 1, 1, 1)), MuxedKind::Rtp);
        assert_eq!(classify_muxed(&header(0, false, 1, 1, 1)), MuxedKind::Rtp);
        // Payload type 111 with the marker bit: second byte 239, still RTP.
        assert_eq!(classify_muxed(&header(111, true, 1, 1, 1)), MuxedKind::Rtp);
        for pt in [192u8, 200, 201, 202, 203, 205, 206, 223] {
            assert_eq!(classify_muxed(&[0x80, pt, 0, 1]), MuxedKind::Rtcp);
            assert!(is_rtcp(&[0x81, pt, 0, 1]));
        }
        assert_eq!(classify_muxed(&[0x80, 224]), MuxedKind::Rtp);
        assert_eq!(classify_muxed(&[0x80, 191]), MuxedKind::Rtp);
        assert_eq!(classify_muxed(&[0x80]), MuxedKind::Other);
        assert_eq!(classify_muxed(&[]), MuxedKind::Other);
        // STUN binding request starts with 0x00 0x01.
        assert_eq!(classify_muxed(&[0x00, 0x01, 0, 0]), MuxedKind::Other);
    }
}
