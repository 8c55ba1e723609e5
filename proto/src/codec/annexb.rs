//! H.264 Annex-B byte streams: finding the NAL units in a buffer, and cutting a stream into access
//! units (pictures).
//!
//! Everything here hands out byte ranges into the caller's buffer rather than copies, so the send
//! path can describe RTP payloads as pieces of the picture it was given.

use std::ops::Range;

/// NAL unit type of an IDR slice: a picture a decoder can start from.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// The `nal_unit_type` field of a NAL header byte.
#[inline]
pub fn nal_type(header: u8) -> u8 {
    header & 0x1f
}

/// The type of a NAL unit given its bytes, or `None` for an empty slice.
#[inline]
pub fn nal_type_of(nal: &[u8]) -> Option<u8> {
    nal.first().map(|&h| nal_type(h))
}

/// Whether the NAL unit is an IDR slice, the only kind of picture a decoder can start from cold.
#[inline]
pub fn is_idr(nal: &[u8]) -> bool {
    nal_type_of(nal) == Some(NAL_IDR)
}

/// Whether a NAL type carries coded slice data (types 1 to 5), i.e. belongs to the picture itself
/// rather than to its parameters or metadata.
#[inline]
pub fn is_vcl(nal_type: u8) -> bool {
    (1..=5).contains(&nal_type)
}

/// Position of the next `00 00 01` at or after `from`.
///
/// Every byte of a picture has to be scanned, so this is what bounds packetizing speed. Coded
/// slice data seldom holds a zero byte and almost never two in a row (emulation prevention keeps
/// `00 00` from appearing except as `00 00 03`). So the scan skips sixteen bytes a step while a
/// cheap test says neither word can hold a zero byte, and where one might, marks the zero bytes of
/// the word exactly with a carry-free bit trick and stops only at two adjacent ones.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let word_at = |i: usize| {
        data.get(i..i + 8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
    };
    // May report a zero byte that is not there; never misses one.
    let maybe_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut i = from;
    loop {
        while let (Some(a), Some(b)) = (word_at(i), word_at(i + 8)) {
            if maybe_zero(a) || maybe_zero(b) {
                break;
            }
            i += 16;
        }
        let Some(v) = word_at(i) else { break };
        // High bit of each byte set exactly where that byte is zero.
        let zeros = !(((v & LOW7) + LOW7) | v | LOW7);
        // Byte k marked when bytes k and k + 1 are both zero.
        let pairs = zeros & (zeros >> 8);
        if pairs == 0 {
            // A start code can still begin at the last byte if it is zero (its pair is in the
            // next word).
            i += if zeros >> 56 == 0 { 8 } else { 7 };
            continue;
        }
        let k = i + (pairs.trailing_zeros() / 8) as usize;
        match data.get(k + 2) {
            Some(1) => return Some(k),
            Some(_) => i = k + 1,
            None => return None,
        }
    }
    // Fewer than eight bytes left.
    (i..data.len().saturating_sub(2))
        .find(|&k| data[k] == 0 && data[k + 1] == 0 && data[k + 2] == 1)
}

/// Whether Annex-B framing carries `nal` intact, so that a decoder splitting the stream finds
/// exactly this NAL unit: it is not empty, its forbidden bit is clear (H.264 7.4.1, RFC 6184
/// §5.3), it holds no `00 00 01` (which would start another unit) and does not end with a zero
/// byte (which would be read as trailing padding). An encoder's output always qualifies:
/// emulation prevention rules the first out, and the syntax ends every unit with a non-zero byte.
pub fn is_framable(nal: &[u8]) -> bool {
    match (nal.first(), nal.last()) {
        (Some(&header), Some(&last)) => {
            header & 0x80 == 0 && last != 0 && find_start_code(nal, 0).is_none()
        }
        _ => false,
    }
}

/// Iterator over the NAL units of a buffer, as byte ranges without start codes.
///
/// A buffer that begins with two zero bytes is read as Annex-B: 3- and 4-byte start codes are both
/// accepted, zero bytes after a NAL (`trailing_zero_8bits`, and the first byte of a 4-byte start
/// code) are not part of it, anything before the first start code is skipped, and empty NAL units
/// are skipped. Any other non-empty buffer is one raw NAL unit: a NAL header never starts with a
/// zero byte pair, so the two cases cannot be confused.
///
/// The iterator is `Copy`, which lets the packetizer go back over a run of NAL units it has
/// measured without storing their ranges.
#[derive(Debug, Clone, Copy)]
pub struct NalUnits<'a> {
    data: &'a [u8],
    /// Where the next NAL unit's bytes start, or `None` once finished.
    pos: Option<usize>,
    raw: bool,
}

/// `nal` without the zero bytes at its end: `trailing_zero_8bits` of a byte stream (or the first
/// byte of the next 4-byte start code), never part of a NAL unit, whose last byte is non-zero.
pub fn trim_trailing_zeros(nal: &[u8]) -> &[u8] {
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &nal[..end]
}

/// The NAL units of `data` (Annex-B, or one raw NAL unit), as ranges of `data`.
pub fn nal_units(data: &[u8]) -> NalUnits<'_> {
    let annexb = data.len() >= 2 && data[0] == 0 && data[1] == 0;
    if annexb {
        NalUnits {
            data,
            pos: find_start_code(data, 0).map(|i| i + 3),
            raw: false,
        }
    } else {
        NalUnits {
            data,
            pos: if data.is_empty() { None } else { Some(0) },
            raw: true,
        }
    }
}

impl Iterator for NalUnits<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.raw {
            let start = self.pos.take()?;
            return Some(start..self.data.len());
        }
        loop {
            let start = self.pos?;
            let next_sc = find_start_code(self.data, start);
            let end = next_sc.unwrap_or(self.data.len());
            let end = start + trim_trailing_zeros(&self.data[start..end]).len();
            self.pos = next_sc.map(|i| i + 3);
            // Empty NAL units (two start codes in a row, only zeros after the last one) are skipped.
            if end > start {
                return Some(start..end);
            }
        }
    }
}

/// Iterator over the access units of an Annex-B stream, as contiguous ranges of the stream.
///
/// The ranges tile the stream from its first byte to its last (each one begins with the zero bytes
/// and start code of its first NAL unit), so every range can be handed to the packetizer as one
/// picture. A new access unit begins, once the current one holds a slice, at an access unit
/// delimiter, SPS, PPS, SEI or NAL types 14 to 18 (H.264 7.4.1.2.3), or at a slice whose
/// `first_mb_in_slice` is 0 — the Exp-Golomb code for 0 is a single 1 bit, so that is the top bit
/// of the byte after the NAL header.
#[derive(Debug, Clone)]
pub struct AccessUnits<'a> {
    nals: NalUnits<'a>,
    /// Where the current access unit starts.
    start: usize,
    /// The first NAL unit of the next access unit, already read.
    pending: Option<Range<usize>>,
    done: bool,
}

/// The access units of an Annex-B stream (see [`AccessUnits`]).
pub fn access_units(stream: &[u8]) -> AccessUnits<'_> {
    AccessUnits {
        nals: nal_units(stream),
        start: 0,
        pending: None,
        done: stream.is_empty(),
    }
}

/// Whether the NAL unit `nal` opens a new access unit, given that the current one already holds a
/// slice.
fn starts_access_unit(nal: &[u8]) -> bool {
    let t = nal_type(nal[0]);
    match t {
        NAL_SEI | NAL_SPS | NAL_PPS | NAL_AUD | 14..=18 => true,
        1..=5 => nal.len() > 1 && nal[1] & 0x80 != 0,
        _ => false,
    }
}

impl Iterator for AccessUnits<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.done {
            return None;
        }
        let data = self.nals.data;
        let mut has_vcl = false;
        let mut any = false;
        if let Some(first) = self.pending.take() {
            has_vcl = is_vcl(nal_type(data[first.start]));
            any = true;
        }
        while let Some(nal) = self.nals.next() {
            let bytes = &data[nal.clone()];
            if has_vcl && starts_access_unit(bytes) {
                // This access unit ends where the previous NAL unit's bytes ended; the zeros and
                // start code in between lead into the next one.
                let end = self.prev_end_before(nal.start);
                let au = self.start..end;
                self.start = end;
                self.pending = Some(nal);
                return Some(au);
            }
            has_vcl |= is_vcl(nal_type(bytes[0]));
            any = true;
        }
        self.done = true;
        // Zeros after the last NAL unit belong to it; a stream with no NAL unit at all has no
        // access unit.
        any.then_some(self.start..data.len())
    }
}

impl AccessUnits<'_> {
    /// The end of the last nonzero byte before the start code that precedes `nal_start`.
    fn prev_end_before(&self, nal_start: usize) -> usize {
        let data = self.nals.data;
        // `nal_start` follows a `00 00 01`; step back over it and the zero bytes before it.
        let mut end = nal_start.saturating_sub(3);
        while end > self.start && data[end - 1] == 0 {
            end -= 1;
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nals(data: &[u8]) -> Vec<Vec<u8>> {
        nal_units(data).map(|r| data[r].to_vec()).collect()
    }

    #[test]
    fn three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        assert_eq!(
            nals(&data),
            vec![vec![0x67, 1, 2], vec![0x68, 3], vec![0x65, 4, 5]]
        );
    }

    #[test]
    fn trailing_zeros_are_stripped() {
        let data = [0, 0, 1, 0x41, 9, 0, 0, 0, 0, 0, 0, 1, 0x41, 8, 0, 0];
        assert_eq!(nals(&data), vec![vec![0x41, 9], vec![0x41, 8]]);
    }

    #[test]
    fn empty_nals_and_leading_zeros_are_skipped() {
        let data = [0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1];
        assert_eq!(nals(&data), vec![vec![0x09, 0xf0]]);
        assert_eq!(nals(&[0, 0, 0, 1]), Vec::<Vec<u8>>::new());
        assert_eq!(nals(&[0, 0, 0, 0]), Vec::<Vec<u8>>::new());
        assert_eq!(nals(&[]), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn no_start_code_is_one_raw_nal() {
        assert_eq!(nals(&[0x65, 1, 2, 3]), vec![vec![0x65, 1, 2, 3]]);
        assert_eq!(nals(&[0x65]), vec![vec![0x65]]);
        // A raw NAL keeps its bytes as given, even ones that look like a start code.
        assert_eq!(nals(&[0x65, 0, 0, 1, 7]), vec![vec![0x65, 0, 0, 1, 7]]);
    }

    #[test]
    fn one_byte_nal_and_start_code_at_end() {
        let data = [0, 0, 1, 0x09, 0, 0, 1];
        assert_eq!(nals(&data), vec![vec![0x09]]);
    }

    #[test]
    fn start_code_found_at_every_alignment() {
        for pad in 0..6 {
            let mut data = vec![0, 0, 1, 0x41];
            data.extend(std::iter::repeat_n(0x55, pad));
            data.extend([0, 0, 1, 0x42, 7]);
            let got = nals(&data);
            assert_eq!(got.len(), 2, "pad {pad}");
            assert_eq!(got[1], vec![0x42, 7]);
            assert_eq!(got[0].len(), 1 + pad);
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(nal_type(0x65), 5);
        assert!(is_idr(&[0x65, 0]));
        assert!(!is_idr(&[0x41]));
        assert!(!is_idr(&[]));
        assert_eq!(nal_type_of(&[]), None);
        assert!(is_vcl(1) && is_vcl(5) && !is_vcl(6) && !is_vcl(0));
    }

    fn aus(stream: &[u8]) -> Vec<Vec<Vec<u8>>> {
        access_units(stream).map(|r| nals(&stream[r])).collect()
    }

    #[test]
    fn access_units_split_on_parameter_sets_and_first_slice() {
        let stream = [
            0, 0, 0, 1, 0x09, 0xf0, // AUD
            0, 0, 0, 1, 0x67, 0x42, // SPS
            0, 0, 0, 1, 0x68, 0xce, // PPS
            0, 0, 1, 0x65, 0x88, 0x11, // IDR, first_mb 0
            0, 0, 1, 0x65, 0x40, 0x22, // IDR, second slice (first_mb != 0)
            0, 0, 0, 1, 0x41, 0x9a, // P, first_mb 0: new picture
            0, 0, 0, 1, 0x41, 0x9b, 0, 0, // P, new picture, trailing zeros
            0, 0, 0, 1, 0x06, 0x05, // SEI: new picture
            0, 0, 1, 0x41, 0x80, // P belonging with the SEI
        ];
        let got = aus(&stream);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].len(), 5);
        assert_eq!(got[0][0], vec![0x09, 0xf0]);
        assert_eq!(got[1], vec![vec![0x41, 0x9a]]);
        assert_eq!(got[2], vec![vec![0x41, 0x9b]]);
        assert_eq!(got[3], vec![vec![0x06, 0x05], vec![0x41, 0x80]]);
        // The ranges tile the stream and each starts with zeros leading into a start code.
        let ranges: Vec<_> = access_units(&stream).collect();
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges.last().unwrap().end, stream.len());
        for w in ranges.windows(2) {
            assert_eq!(w[0].end, w[1].start);
            assert_eq!(&stream[w[1].start..w[1].start + 2], &[0, 0]);
        }
    }

    #[test]
    fn access_units_of_empty_and_slice_only_streams() {
        assert!(access_units(&[]).next().is_none());
        assert!(access_units(&[0, 0, 0, 1, 0, 0]).next().is_none());
        let stream = [0, 0, 1, 0x41, 0x80, 0, 0, 1, 0x41, 0x80, 0, 0, 1, 0x01];
        // Two pictures; the 1-byte slice cannot be shown to start a picture, so it stays.
        let got = aus(&stream);
        assert_eq!(
            got,
            vec![vec![vec![0x41, 0x80]], vec![vec![0x41, 0x80], vec![0x01]]]
        );
    }
}

#[cfg(test)]
mod scan_tests {
    use super::find_start_code;
    use proptest::prelude::*;

    fn naive(data: &[u8], from: usize) -> Option<usize> {
        (from..data.len().saturating_sub(2))
            .find(|&i| data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1)
    }

    proptest! {
        /// The word-at-a-time scan finds exactly what a byte-by-byte search finds, on data dense
        /// in zeros and ones (where the fast path is taken least) and from every offset.
        #[test]
        fn word_scan_matches_naive(data in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..200), from in 0usize..200) {
            let from = from.min(data.len());
            prop_assert_eq!(find_start_code(&data, from), naive(&data, from));
        }
    }
}
