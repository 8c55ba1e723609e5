//! G.711 µ-law (PCMU) and A-law (PCMA), bit-exact with ffmpeg's `pcm_mulaw` / `pcm_alaw`.
//!
//! Decoding is the ITU-T G.711 expansion, looked up in a 256-entry table. Encoding follows the
//! rule ffmpeg uses, so that files and streams we produce compare byte for byte with ffmpeg's: the
//! 16-bit sample is reduced to 14 bits (`(sample + 32768) >> 2`), and each 14-bit step maps to the
//! code whose decoded magnitude is nearest, where the boundary between two neighbouring codes lies
//! at `(a + b + 4) >> 3` in 14-bit steps (`a`, `b` the two decoded magnitudes). Both directions are
//! tables computed at compile time, so encoding is one shift and one load per sample.
//! `tests/interop/g711_ffmpeg.rs` checks every 16-bit value against ffmpeg itself.

/// Sampling rate of G.711 as carried over RTP (RFC 3551).
pub const G711_CLOCK_RATE: u32 = 8000;

/// Which G.711 law a stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// µ-law, static RTP payload type 0.
    Pcmu,
    /// A-law, static RTP payload type 8.
    Pcma,
}

impl G711 {
    /// The static RTP payload type (RFC 3551): 0 for PCMU, 8 for PCMA.
    pub fn payload_type(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }

    /// The law that a static payload type stands for, if it is 0 or 8.
    pub fn from_payload_type(pt: u8) -> Option<G711> {
        match pt {
            0 => Some(G711::Pcmu),
            8 => Some(G711::Pcma),
            _ => None,
        }
    }

    /// The SDP encoding name (`PCMU`, `PCMA`).
    pub fn encoding_name(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }

    /// Parses an SDP encoding name, case-insensitively.
    pub fn from_name(name: &str) -> Option<G711> {
        if name.eq_ignore_ascii_case("PCMU") {
            Some(G711::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(G711::Pcma)
        } else {
            None
        }
    }

    /// Appends the encoding of `pcm` to `out`, one byte per sample.
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        match self {
            G711::Pcmu => ulaw_encode(pcm, out),
            G711::Pcma => alaw_encode(pcm, out),
        }
    }

    /// Appends the decoding of `codes` to `out`, one sample per byte.
    pub fn decode(self, codes: &[u8], out: &mut Vec<i16>) {
        match self {
            G711::Pcmu => ulaw_decode(codes, out),
            G711::Pcma => alaw_decode(codes, out),
        }
    }
}

/// µ-law code bits are stored inverted; this mask turns the code of magnitude step `i` (0..=127,
/// positive) into its wire byte.
const ULAW_MASK: u8 = 0xff;
/// A-law stores every other bit inverted, with the sign bit set for positive values.
const ALAW_MASK: u8 = 0xd5;

const fn ulaw_expand(code: u8) -> i16 {
    let u = !code;
    let exponent = (u >> 4) & 0x07;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_expand(code: u8) -> i16 {
    let a = code ^ 0x55;
    let segment = (a >> 4) & 0x07;
    let mut magnitude = ((a & 0x0f) as i32) << 4;
    if segment == 0 {
        magnitude += 8;
    } else {
        magnitude = (magnitude + 0x108) << (segment - 1);
    }
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn decode_table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = if alaw {
            alaw_expand(c as u8)
        } else {
            ulaw_expand(c as u8)
        };
        c += 1;
    }
    t
}

/// Where the 14-bit step index changes from magnitude code `i` to `i + 1`.
const fn boundary(dec: &[i16; 256], mask: u8, i: u8) -> usize {
    let a = dec[(i ^ mask) as usize] as i32;
    let b = dec[((i + 1) ^ mask) as usize] as i32;
    ((a + b + 4) >> 3) as usize
}

/// The 14-bit encoder table: index `(sample + 32768) >> 2`, entry the wire byte. Index 8192 is
/// zero; index `8192 + j` and `8192 - j` are magnitude `j` positive and negative.
const fn encode_table(dec: &[i16; 256], mask: u8) -> [u8; 16384] {
    let negative = mask ^ 0x80;
    let mut t = [0u8; 16384];
    t[8192] = mask;
    let mut step: u8 = 0;
    let mut j = 1usize;
    while j < 8192 {
        while step < 127 && j >= boundary(dec, mask, step) {
            step += 1;
        }
        t[8192 + j] = step ^ mask;
        t[8192 - j] = step ^ negative;
        j += 1;
    }
    // -32768..=-32765 share the code of the next step up, the most negative code.
    t[0] = t[1];
    t
}

static ULAW_DECODE: [i16; 256] = decode_table(false);
static ALAW_DECODE: [i16; 256] = decode_table(true);
static ULAW_ENCODE: [u8; 16384] = encode_table(&decode_table(false), ULAW_MASK);
static ALAW_ENCODE: [u8; 16384] = encode_table(&decode_table(true), ALAW_MASK);

#[inline]
fn step_index(sample: i16) -> usize {
    ((i32::from(sample) + 32768) >> 2) as usize
}

/// Encodes one sample to µ-law.
#[inline]
pub fn ulaw_encode_sample(sample: i16) -> u8 {
    ULAW_ENCODE[step_index(sample)]
}

/// Decodes one µ-law byte.
#[inline]
pub fn ulaw_decode_sample(code: u8) -> i16 {
    ULAW_DECODE[usize::from(code)]
}

/// Encodes one sample to A-law.
#[inline]
pub fn alaw_encode_sample(sample: i16) -> u8 {
    ALAW_ENCODE[step_index(sample)]
}

/// Decodes one A-law byte.
#[inline]
pub fn alaw_decode_sample(code: u8) -> i16 {
    ALAW_DECODE[usize::from(code)]
}

/// Appends the µ-law encoding of `pcm` to `out`.
pub fn ulaw_encode(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| ulaw_encode_sample(s)));
}

/// Appends the samples of the µ-law bytes `codes` to `out`.
pub fn ulaw_decode(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| ulaw_decode_sample(c)));
}

/// Appends the A-law encoding of `pcm` to `out`.
pub fn alaw_encode(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&s| alaw_encode_sample(s)));
}

/// Appends the samples of the A-law bytes `codes` to `out`.
pub fn alaw_decode(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| alaw_decode_sample(c)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_decoded_values() {
        // Silence and the extremes of each law.
        assert_eq!(ulaw_decode_sample(0xff), 0);
        assert_eq!(ulaw_decode_sample(0x7f), 0);
        assert_eq!(ulaw_decode_sample(0x80), 32124);
        assert_eq!(ulaw_decode_sample(0x00), -32124);
        assert_eq!(alaw_decode_sample(0xd5), 8);
        assert_eq!(alaw_decode_sample(0x55), -8);
        assert_eq!(alaw_decode_sample(0xaa), 32256);
        assert_eq!(alaw_decode_sample(0x2a), -32256);
    }

    #[test]
    fn silence_encodes_to_the_usual_bytes() {
        assert_eq!(ulaw_encode_sample(0), 0xff);
        assert_eq!(alaw_encode_sample(0), 0xd5);
        assert_eq!(ulaw_encode_sample(i16::MAX), 0x80);
        assert_eq!(ulaw_encode_sample(i16::MIN), 0x00);
        assert_eq!(alaw_encode_sample(i16::MAX), 0xaa);
        assert_eq!(alaw_encode_sample(i16::MIN), 0x2a);
    }

    #[test]
    fn every_code_survives_a_round_trip() {
        for c in 0..=255u8 {
            let u = ulaw_decode_sample(c);
            let back = ulaw_encode_sample(u);
            // µ-law has two zeros (0x7f and 0xff); both decode to 0, which encodes as 0xff.
            if u == 0 {
                assert_eq!(back, 0xff);
            } else {
                assert_eq!(back, c, "µ-law code {c:#04x}");
            }
            let a = alaw_decode_sample(c);
            assert_eq!(alaw_encode_sample(a), c, "A-law code {c:#04x}");
        }
    }

    #[test]
    fn encoding_error_is_bounded_and_monotonic() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_decode_sample(ulaw_encode_sample(s));
            let a = alaw_decode_sample(alaw_encode_sample(s));
            assert!(u >= prev_u && a >= prev_a, "not monotonic at {s}");
            prev_u = u;
            prev_a = a;
            // The quantisation step is at most 1024 (µ-law) / 1024 (A-law) at full scale.
            let tol = (i32::from(s).abs() / 16).max(16) + 8;
            assert!(
                (i32::from(u) - i32::from(s)).abs() <= tol,
                "µ-law {s} -> {u}"
            );
            assert!(
                (i32::from(a) - i32::from(s)).abs() <= tol,
                "A-law {s} -> {a}"
            );
        }
    }

    #[test]
    fn buffers_and_enum() {
        let pcm = [0i16, 1000, -1000, 32000, -32000];
        let mut enc = Vec::new();
        G711::Pcmu.encode(&pcm, &mut enc);
        assert_eq!(enc.len(), pcm.len());
        let mut dec = Vec::new();
        G711::Pcmu.decode(&enc, &mut dec);
        assert_eq!(dec.len(), pcm.len());
        for (a, b) in pcm.iter().zip(&dec) {
            assert!((i32::from(*a) - i32::from(*b)).abs() < 1100);
        }
        enc.clear();
        G711::Pcma.encode(&pcm, &mut enc);
        let mut dec2 = Vec::new();
        alaw_decode(&enc, &mut dec2);
        for (a, b) in pcm.iter().zip(&dec2) {
            assert!((i32::from(*a) - i32::from(*b)).abs() < 1100);
        }

        assert_eq!(G711::Pcmu.payload_type(), 0);
        assert_eq!(G711::Pcma.payload_type(), 8);
        assert_eq!(G711::from_payload_type(8), Some(G711::Pcma));
        assert_eq!(G711::from_payload_type(9), None);
        assert_eq!(G711::from_name("pcmu"), Some(G711::Pcmu));
        assert_eq!(G711::Pcma.encoding_name(), "PCMA");
        assert_eq!(G711::from_name("G722"), None);
    }
}
