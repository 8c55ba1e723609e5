//! RFC 4588 retransmission payload format, SSRC-multiplexed: a retransmitted packet travels in
//! the same RTP session on its own SSRC and payload type (`a=rtpmap:<pt> rtx/90000`,
//! `a=fmtp:<pt> apt=<original pt>`), with its own sequence numbers, and its payload is the
//! original sequence number (OSN, 2 bytes) followed by the original payload (§4).
//!
//! Because the RTX stream numbers its packets separately, a receiver can tell a retransmission
//! from a late original, and the sender's own sequence space is not disturbed.

use super::packet::{parse_rtp, RtpError};
use super::RtpMeta;

/// Length of the original sequence number that starts an RTX payload.
pub const RTX_OSN_LEN: usize = 2;

/// The RTX parameters of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxConfig {
    /// RTP payload type of the RTX packets (`a=rtpmap:<pt> rtx/<clock>`).
    pub payload_type: u8,
    /// The payload type they retransmit (`apt=`): the stream's media payload type.
    pub apt: u8,
    /// Our RTX SSRC; `None` draws a random one.
    pub ssrc: Option<u32>,
}

/// Writes the RTX packet carrying `original` (a whole RTP packet as it was sent) into `out`:
/// the original header with the RTX payload type, sequence number and SSRC, then the OSN, then
/// the original payload. CSRCs and header extensions are kept; padding is not.
pub fn wrap_rtx(
    original: &[u8],
    rtx_pt: u8,
    rtx_ssrc: u32,
    rtx_seq: u16,
    out: &mut Vec<u8>,
) -> Result<(), RtpError> {
    let (meta, payload) = parse_rtp(original)?;
    out.clear();
    out.reserve(original.len() + RTX_OSN_LEN);
    out.extend_from_slice(&original[..payload.start]);
    out[0] &= !0x20;
    out[1] = (rtx_pt & 0x7f) | if meta.marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&rtx_seq.to_be_bytes());
    out[8..12].copy_from_slice(&rtx_ssrc.to_be_bytes());
    out.extend_from_slice(&meta.sequence.to_be_bytes());
    out.extend_from_slice(&original[payload]);
    Ok(())
}

/// Splits an RTX payload into the original sequence number and the original payload. `None`
/// when the payload is too short to hold an OSN (RTX padding-only probes have no OSN).
pub fn unwrap_rtx(payload: &[u8]) -> Option<(u16, &[u8])> {
    let (osn, rest) = payload.split_first_chunk::<RTX_OSN_LEN>()?;
    Some((u16::from_be_bytes(*osn), rest))
}

/// The header fields of the original packet an RTX packet carries: `media_ssrc` and `apt` come
/// from the stream (the RTX packet has its own), timestamp and marker from the RTX header.
pub fn original_meta(rtx: &RtpMeta, osn: u16, media_ssrc: u32, apt: u8) -> RtpMeta {
    RtpMeta {
        payload_type: apt,
        marker: rtx.marker,
        sequence: osn,
        timestamp: rtx.timestamp,
        ssrc: media_ssrc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::packet::write_rtp_header;
    use rtp_types::RtpPacketBuilder;

    #[test]
    fn wrap_then_unwrap_gives_the_original_back() {
        let mut h = [0u8; 12];
        write_rtp_header(&mut h, 96, true, 65535, 90_000, 0xaaaa);
        let mut original = h.to_vec();
        original.extend_from_slice(b"payload bytes");
        let mut out = Vec::new();
        wrap_rtx(&original, 97, 0xbbbb, 7, &mut out).unwrap();
        let (meta, range) = parse_rtp(&out).unwrap();
        assert_eq!(
            meta,
            RtpMeta {
                payload_type: 97,
                marker: true,
                sequence: 7,
                timestamp: 90_000,
                ssrc: 0xbbbb
            }
        );
        let (osn, payload) = unwrap_rtx(&out[range]).unwrap();
        assert_eq!(osn, 65535);
        assert_eq!(payload, b"payload bytes");
        let orig = original_meta(&meta, osn, 0xaaaa, 96);
        assert_eq!(parse_rtp(&original).unwrap().0, orig);
    }

    #[test]
    fn csrcs_and_extensions_are_kept_padding_is_not() {
        let original = RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(100)
            .sequence_number(42)
            .timestamp(5)
            .ssrc(1)
            .add_csrc(9)
            .extension(0xbede, &[1, 2, 3, 4])
            .payload(b"abc".as_slice())
            .padding(3)
            .write_vec()
            .unwrap();
        let mut out = Vec::new();
        wrap_rtx(&original, 101, 2, 3, &mut out).unwrap();
        let p = rtp_types::RtpPacket::parse(&out).unwrap();
        assert_eq!(p.csrc().collect::<Vec<_>>(), vec![9]);
        assert_eq!(p.extension(), Some((0xbede, &[1u8, 2, 3, 4][..])));
        assert!(!p.padding_bit());
        assert_eq!(p.payload(), &[0, 42, b'a', b'b', b'c']);
    }

    #[test]
    fn short_or_broken_input() {
        assert_eq!(unwrap_rtx(&[]), None);
        assert_eq!(unwrap_rtx(&[1]), None);
        assert_eq!(unwrap_rtx(&[1, 2]), Some((0x0102, &[][..])));
        let mut out = vec![1, 2, 3];
        assert!(wrap_rtx(&[0x80, 96], 97, 1, 1, &mut out).is_err());
    }
}
