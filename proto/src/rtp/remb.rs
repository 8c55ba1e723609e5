//! Receiver Estimated Maximum Bitrate (`goog-remb`, draft-alvestrand-rmcat-remb-03): an
//! application-layer feedback message (RTCP PSFB FMT 15) carrying the bitrate a receiver
//! estimates the path allows, as an 18-bit mantissa and a 6-bit exponent, and the media sources
//! it applies to.

use super::rtcp::RtcpError;

/// RTCP packet type of payload-specific feedback (RFC 4585 PSFB).
pub const PT_PSFB: u8 = 206;
/// The PSFB format of application-layer feedback, which REMB uses.
pub const FMT_AFB: u8 = 15;
/// The four bytes that open a REMB message's feedback information.
const IDENTIFIER: &[u8; 4] = b"REMB";

/// A parsed REMB message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remb {
    pub sender_ssrc: u32,
    /// The estimate in bits per second (saturated at `u64::MAX` for an absurd exponent).
    pub bitrate_bps: u64,
    /// The media sources the estimate applies to.
    pub ssrcs: Vec<u32>,
}

/// Parses the feedback control information of a PSFB FMT 15 packet. `Ok(None)` for
/// application-layer feedback that is not REMB; `Err` for a REMB message that is inconsistent.
pub fn parse_fci(sender_ssrc: u32, fci: &[u8]) -> Result<Option<Remb>, &'static str> {
    let Some(rest) = fci.strip_prefix(IDENTIFIER) else {
        return Ok(None);
    };
    let [n, e, m1, m2, list @ ..] = rest else {
        return Err("REMB shorter than its fixed fields");
    };
    let count = usize::from(*n);
    if list.len() < count * 4 {
        return Err("REMB lists more sources than it carries");
    }
    if list.len() > count * 4 + 3 {
        return Err("REMB longer than its contents");
    }
    let exp = u32::from(e >> 2);
    let mantissa = (u64::from(e & 3) << 16) | (u64::from(*m1) << 8) | u64::from(*m2);
    let bitrate_bps = if mantissa == 0 {
        0
    } else if exp > mantissa.leading_zeros() {
        u64::MAX
    } else {
        mantissa << exp
    };
    let ssrcs = list[..count * 4]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Some(Remb {
        sender_ssrc,
        bitrate_bps,
        ssrcs,
    }))
}

/// Appends a REMB message: `bitrate_bps` (rounded down to what 18 bits of mantissa carry) for
/// `ssrcs` (at most 255). Returns the bytes written.
pub fn build(
    out: &mut Vec<u8>,
    sender_ssrc: u32,
    bitrate_bps: u64,
    ssrcs: &[u32],
) -> Result<usize, RtcpError> {
    let count = u8::try_from(ssrcs.len())
        .map_err(|_| RtcpError::Unencodable("REMB lists at most 255 sources".into()))?;
    let exp = (64 - bitrate_bps.leading_zeros()).saturating_sub(18);
    let mantissa = bitrate_bps >> exp;
    let start = out.len();
    let words = 4 + ssrcs.len();
    out.push(0x80 | FMT_AFB);
    out.push(PT_PSFB);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(IDENTIFIER);
    out.push(count);
    out.push(((exp as u8) << 2) | ((mantissa >> 16) as u8 & 3));
    out.extend_from_slice(&(mantissa as u16).to_be_bytes());
    for s in ssrcs {
        out.extend_from_slice(&s.to_be_bytes());
    }
    Ok(out.len() - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_precision() {
        for bps in [0u64, 1, 262_143, 262_144, 1_500_000, 123_456_789, 1 << 40] {
            let mut out = Vec::new();
            let n = build(&mut out, 7, bps, &[1, 2]).unwrap();
            assert_eq!(n, 24 + 4);
            let r = parse_fci(7, &out[12..]).unwrap().unwrap();
            assert_eq!(r.ssrcs, vec![1, 2]);
            assert!(
                r.bitrate_bps <= bps && bps - r.bitrate_bps <= bps >> 17,
                "{bps} {r:?}"
            );
        }
    }

    #[test]
    fn known_bytes() {
        // Exponent 3, mantissa 187500 → 1.5 Mbit/s, one source.
        let m = 187_500u32;
        let fci = [
            b'R',
            b'E',
            b'M',
            b'B',
            1,
            (3 << 2) | (m >> 16) as u8,
            (m >> 8) as u8,
            m as u8,
            0,
            0,
            0,
            9,
        ];
        let r = parse_fci(3, &fci).unwrap().unwrap();
        assert_eq!(
            (r.sender_ssrc, r.bitrate_bps, r.ssrcs),
            (3, 1_500_000, vec![9])
        );
    }

    #[test]
    fn other_afb_and_bad_remb() {
        assert_eq!(parse_fci(0, b"XYZW1234"), Ok(None));
        assert!(parse_fci(0, b"REMB").is_err());
        assert!(parse_fci(0, &[b'R', b'E', b'M', b'B', 2, 0, 0, 1, 0, 0, 0, 1]).is_err());
        assert!(parse_fci(0, &[b'R', b'E', b'M', b'B', 0, 0, 0, 1, 0, 0, 0, 1]).is_err());
        // An exponent of 63 saturates rather than overflowing.
        let r = parse_fci(0, &[b'R', b'E', b'M', b'B', 0, 0xfc, 0, 1])
            .unwrap()
            .unwrap();
        assert_eq!(r.bitrate_bps, 1 << 63);
        let r = parse_fci(0, &[b'R', b'E', b'M', b'B', 0, 0xfc, 0, 3])
            .unwrap()
            .unwrap();
        assert_eq!(r.bitrate_bps, u64::MAX);
        assert!(build(&mut Vec::new(), 0, 1, &[0; 256]).is_err());
    }
}
