//! H.264 over RTP (RFC 6184), packetization modes 0 and 1.
//!
//! The packetizer never copies the picture: each payload is described as a few header bytes plus
//! ranges of the caller's buffer (see [`PayloadList`]). The depacketizer copies each received NAL
//! byte once, into the caller's [`PictureBuf`], and rolls back anything it cannot finish, so what
//! it leaves there is always whole NAL units.

use super::annexb::{
    is_framable, nal_type, nal_units, trim_trailing_zeros, NalUnits, NAL_AUD, NAL_IDR, NAL_SPS,
};
use super::{Depacketizer, DepacketizerStats, PacketizeError, Packetizer, PayloadList, PictureBuf};
use crate::frame::VideoCodec;

/// The default largest RTP payload, in bytes: leaves room for IP, UDP, RTP and SRTP headers and a
/// tunnel inside a 1500-byte Ethernet MTU.
pub const DEFAULT_MTU: usize = 1200;

/// Payload type of an aggregation packet carrying several whole NAL units (RFC 6184 5.7.1).
const STAP_A: u8 = 24;
/// Payload type of a fragment of one NAL unit (RFC 6184 5.8).
const FU_A: u8 = 28;
const FU_START: u8 = 0x80;
const FU_END: u8 = 0x40;
/// The F and NRI bits of a NAL header, which aggregation and fragmentation headers carry over.
const F_NRI: u8 = 0xe0;
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// The `packetization-mode` negotiated in SDP (RFC 6184 8.1). The interleaved mode (2) is not
/// supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PacketizationMode {
    /// Mode 0: one NAL unit per packet, no aggregation and no fragmentation.
    SingleNal,
    /// Mode 1: single NAL units, STAP-A and FU-A.
    #[default]
    NonInterleaved,
}

impl PacketizationMode {
    /// The mode for an SDP `packetization-mode` value; `None` for the interleaved mode or an
    /// unknown value.
    pub fn from_sdp(value: u8) -> Option<Self> {
        match value {
            0 => Some(PacketizationMode::SingleNal),
            1 => Some(PacketizationMode::NonInterleaved),
            _ => None,
        }
    }

    /// The SDP `packetization-mode` value.
    pub fn sdp_value(self) -> u8 {
        match self {
            PacketizationMode::SingleNal => 0,
            PacketizationMode::NonInterleaved => 1,
        }
    }
}

/// Splits H.264 pictures (Annex-B or a single raw NAL unit) into RTP payloads.
#[derive(Debug, Clone)]
pub struct H264Packetizer {
    mtu: usize,
    mode: PacketizationMode,
}

impl Default for H264Packetizer {
    fn default() -> Self {
        Self::new(DEFAULT_MTU, PacketizationMode::NonInterleaved)
    }
}

/// A run of consecutive NAL units that will share one packet (a single NAL packet when there is
/// only one). Holding the iterator positioned at its first unit lets the run be walked again when
/// it is written out, so no list of ranges is ever stored.
struct Run<'a> {
    first: NalUnits<'a>,
    count: usize,
    /// Size as a STAP-A payload: the STAP-A header plus a 2-byte size and the bytes of each unit.
    stap_len: usize,
    /// OR of the F bits and the largest NRI of the units (RFC 6184 5.7: the STAP-A header).
    f: u8,
    nri: u8,
}

impl H264Packetizer {
    /// A packetizer whose payloads are at most `mtu` bytes (RTP payload only, no headers).
    pub fn new(mtu: usize, mode: PacketizationMode) -> Self {
        H264Packetizer { mtu, mode }
    }

    /// The largest payload this packetizer produces.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The packetization mode.
    pub fn mode(&self) -> PacketizationMode {
        self.mode
    }

    fn write_run(run: &Run<'_>, out: &mut PayloadList) {
        let mut nals = run.first;
        out.begin_packet();
        if run.count == 1 {
            if let Some(r) = nals.next() {
                out.push_body(r);
            }
        } else {
            out.push_head(&[run.f | run.nri | STAP_A]);
            for r in nals.take(run.count) {
                out.push_head(&(r.len() as u16).to_be_bytes());
                out.push_body(r);
            }
        }
        out.end_packet(false);
    }

    fn write_fragments(&self, picture: &[u8], nal: std::ops::Range<usize>, out: &mut PayloadList) {
        let header = picture[nal.start];
        let indicator = (header & F_NRI) | FU_A;
        let kind = nal_type(header);
        let chunk = self.mtu - 2;
        let mut pos = nal.start + 1;
        let mut flags = FU_START;
        while pos < nal.end {
            let end = (pos + chunk).min(nal.end);
            if end == nal.end {
                flags |= FU_END;
            }
            out.begin_packet();
            out.push_head(&[indicator, flags | kind]);
            out.push_body(pos..end);
            out.end_packet(false);
            flags = 0;
            pos = end;
        }
    }
}

impl Packetizer for H264Packetizer {
    fn packetize(&mut self, picture: &[u8], out: &mut PayloadList) -> Result<(), PacketizeError> {
        let before = out.len();
        if self.mode == PacketizationMode::SingleNal {
            // Checked up front so an error never leaves half a picture in `out`.
            if self.mtu == 0 {
                return Err(PacketizeError::MtuTooSmall(self.mtu));
            }
            if let Some(r) = nal_units(picture).find(|r| r.len() > self.mtu) {
                return Err(PacketizeError::NalTooLarge {
                    nal_len: r.len(),
                    mtu: self.mtu,
                });
            }
            for r in nal_units(picture) {
                out.begin_packet();
                out.push_body(r);
                out.end_packet(false);
            }
        } else {
            // Fragmenting needs room for the two FU bytes and at least one byte of the NAL.
            if self.mtu < 3 && nal_units(picture).any(|r| r.len() > self.mtu) {
                return Err(PacketizeError::MtuTooSmall(self.mtu));
            }
            // STAP-A sizes are 16-bit, which only matters for jumbo MTUs.
            let stap_limit = self.mtu.min(u16::MAX as usize);
            let mut nals = nal_units(picture);
            let mut run: Option<Run<'_>> = None;
            loop {
                let at = nals;
                let Some(r) = nals.next() else { break };
                let len = r.len();
                let header = picture[r.start];
                if len > self.mtu {
                    if let Some(done) = run.take() {
                        Self::write_run(&done, out);
                    }
                    self.write_fragments(picture, r, out);
                    continue;
                }
                if let Some(open) = run.as_mut() {
                    if open.stap_len + 2 + len <= stap_limit {
                        open.count += 1;
                        open.stap_len += 2 + len;
                        open.f |= header & 0x80;
                        open.nri = open.nri.max(header & 0x60);
                        continue;
                    }
                    let done = run.take().expect("run is open");
                    Self::write_run(&done, out);
                }
                run = Some(Run {
                    first: at,
                    count: 1,
                    stap_len: 1 + 2 + len,
                    f: header & 0x80,
                    nri: header & 0x60,
                });
            }
            if let Some(done) = run.take() {
                Self::write_run(&done, out);
            }
        }
        if out.len() == before {
            return Err(PacketizeError::Empty);
        }
        out.set_last_marker(true);
        Ok(())
    }
}

/// Reassembles H.264 pictures from RTP payloads (packetization modes 0 and 1).
///
/// Output is Annex-B with a 4-byte start code before every NAL unit. A fragmented NAL unit is
/// written in place as its pieces arrive and cut back off the buffer if one goes missing, so a
/// partial NAL is never visible to the caller.
#[derive(Debug, Default, Clone)]
pub struct H264Depacketizer {
    /// Offset in `PictureBuf::data` of the start code of the FU-A unit being reassembled.
    open_fu: Option<usize>,
    stats: DepacketizerStats,
}

impl H264Depacketizer {
    /// A depacketizer with nothing in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one whole NAL unit, or counts it malformed when a decoder would not read it back
    /// as the same unit (forbidden bit, a start code inside) or it is not a NAL unit type at all
    /// (0, or an RTP packetization type nested in a STAP-A). Zero bytes at its end are
    /// `trailing_zero_8bits` of a byte stream, which some packetizers (baresip's among them) leave
    /// on the unit before a 4-byte start code: they are not part of the unit and are dropped.
    fn push_nal(&mut self, pic: &mut PictureBuf, nal: &[u8]) {
        let nal = trim_trailing_zeros(nal);
        if !is_framable(nal) || !(1..=23).contains(&nal_type(nal[0])) {
            return self.malformed(pic);
        }
        pic.data.extend_from_slice(&START_CODE);
        let start = pic.data.len();
        pic.data.extend_from_slice(nal);
        pic.units.push(start..pic.data.len());
        if nal_type(nal[0]) == NAL_IDR {
            pic.keyframe = true;
        }
    }

    /// Throws away an unfinished fragmented unit.
    fn discard_open(&mut self, pic: &mut PictureBuf) {
        if let Some(start) = self.open_fu.take() {
            pic.data.truncate(start.min(pic.data.len()));
            self.stats.discarded_partial += 1;
            pic.damaged = true;
        }
    }

    fn malformed(&mut self, pic: &mut PictureBuf) {
        self.stats.malformed += 1;
        pic.damaged = true;
    }

    /// A STAP-A payload: every size is checked before any unit is written, so a truncated or
    /// inconsistent packet contributes nothing rather than some of its units. A unit that is
    /// well-sized but not framable is left out on its own (see `push_nal`).
    fn push_stap_a(&mut self, payload: &[u8], pic: &mut PictureBuf) {
        let body = &payload[1..];
        let mut pos = 0;
        let mut count = 0;
        while pos < body.len() {
            if body.len() - pos < 2 {
                return self.malformed(pic);
            }
            let size = u16::from_be_bytes([body[pos], body[pos + 1]]) as usize;
            pos += 2;
            if size == 0 || size > body.len() - pos {
                return self.malformed(pic);
            }
            pos += size;
            count += 1;
        }
        if count == 0 {
            return self.malformed(pic);
        }
        let mut pos = 0;
        while pos < body.len() {
            let size = u16::from_be_bytes([body[pos], body[pos + 1]]) as usize;
            self.push_nal(pic, &body[pos + 2..pos + 2 + size]);
            pos += 2 + size;
        }
    }

    fn push_fu_a(&mut self, payload: &[u8], pic: &mut PictureBuf) {
        if payload.len() < 2 {
            self.discard_open(pic);
            return self.malformed(pic);
        }
        let fu = payload[1];
        let kind = fu & 0x1f;
        if !(1..=23).contains(&kind) {
            // A fragment claiming to carry an aggregation or fragmentation packet.
            self.discard_open(pic);
            return self.malformed(pic);
        }
        let piece = &payload[2..];
        if fu & FU_START != 0 {
            self.discard_open(pic);
            let start = pic.data.len();
            pic.data.extend_from_slice(&START_CODE);
            pic.data.push((payload[0] & F_NRI) | kind);
            pic.data.extend_from_slice(piece);
            self.open_fu = Some(start);
        } else {
            match self.open_fu {
                // Every fragment of a unit names the same NAL type (RFC 6184 5.8); one that does
                // not belongs to something else, and the unit cannot be trusted.
                Some(start)
                    if start + 5 <= pic.data.len() && nal_type(pic.data[start + 4]) != kind =>
                {
                    self.discard_open(pic);
                    return self.malformed(pic);
                }
                // The start must still be in the buffer; if the caller cleared it under us, the
                // unit is as good as lost.
                Some(start) if start + 5 <= pic.data.len() => {
                    pic.data.extend_from_slice(piece);
                }
                Some(_) => {
                    self.open_fu = None;
                    self.stats.orphaned += 1;
                    pic.damaged = true;
                    return;
                }
                None => {
                    self.stats.orphaned += 1;
                    pic.damaged = true;
                    return;
                }
            }
        }
        // RFC 6184 forbids S and E in one fragment; such a packet still carries a whole NAL unit,
        // so it is accepted rather than thrown away.
        if fu & FU_END != 0 {
            if let Some(start) = self.open_fu.take() {
                let nal = start + START_CODE.len();
                // The unit is only known whole here: its pieces may join into a start code.
                let kept = nal + trim_trailing_zeros(&pic.data[nal..]).len();
                pic.data.truncate(kept);
                if !is_framable(&pic.data[nal..]) {
                    pic.data.truncate(start);
                    return self.malformed(pic);
                }
                pic.units.push(nal..pic.data.len());
                if nal_type(pic.data[nal]) == NAL_IDR {
                    pic.keyframe = true;
                }
            }
        }
    }
}

impl Depacketizer for H264Depacketizer {
    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }

    /// An access unit delimiter or a sequence parameter set opens an access unit (H.264
    /// 7.4.1.2.3 puts them first), alone or first in a STAP-A.
    fn starts_picture(&self, payload: &[u8]) -> bool {
        let first_nal = match payload.first().map(|h| h & 0x1f) {
            Some(24) => payload.get(3),
            Some(1..=23) => payload.first(),
            _ => None,
        };
        matches!(first_nal.map(|h| h & 0x1f), Some(NAL_SPS | NAL_AUD))
    }

    fn push(&mut self, payload: &[u8], lost_before: bool, pic: &mut PictureBuf) {
        if lost_before {
            self.discard_open(pic);
            pic.damaged = true;
        }
        let Some(&header) = payload.first() else {
            self.discard_open(pic);
            return self.malformed(pic);
        };
        let kind = nal_type(header);
        if kind != FU_A {
            // Fragments of one unit travel back to back; anything else in between ends it.
            self.discard_open(pic);
        }
        match kind {
            1..=23 => self.push_nal(pic, payload),
            STAP_A => self.push_stap_a(payload, pic),
            FU_A => self.push_fu_a(payload, pic),
            // STAP-B, MTAP16, MTAP24 and FU-B belong to the interleaved mode; 0, 30 and 31 are
            // undefined.
            _ => {
                self.stats.unsupported += 1;
                pic.damaged = true;
            }
        }
    }

    fn finish(&mut self, pic: &mut PictureBuf) {
        self.discard_open(pic);
    }

    fn stats(&self) -> DepacketizerStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packetize(
        p: &mut H264Packetizer,
        pic: &[u8],
    ) -> Result<Vec<(Vec<u8>, bool)>, PacketizeError> {
        let mut out = PayloadList::new();
        p.packetize(pic, &mut out)?;
        Ok((0..out.len())
            .map(|i| (out.payload(i, pic), out.marker(i)))
            .collect())
    }

    fn nal(kind: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0x60 | kind];
        v.extend((1..len).map(|i| (i % 251) as u8 | 1));
        v
    }

    fn annexb(nals: &[Vec<u8>]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&START_CODE);
            v.extend_from_slice(n);
        }
        v
    }

    fn depacketize(payloads: &[(Vec<u8>, bool)]) -> (PictureBuf, H264Depacketizer) {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        for (p, _) in payloads {
            d.push(p, false, &mut pic);
        }
        d.finish(&mut pic);
        (pic, d)
    }

    fn units(pic: &PictureBuf) -> Vec<Vec<u8>> {
        pic.units
            .iter()
            .map(|r| pic.data[r.clone()].to_vec())
            .collect()
    }

    /// Found by the property test: a FU-A end fragment naming another NAL type than its start
    /// once completed an IDR unit without flagging the picture as a keyframe. Such a unit is now
    /// refused as malformed, and nothing of it stays in the picture.
    #[test]
    fn fu_a_fragments_must_agree_on_the_nal_type() {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x7c, 0x85, 1, 2], false, &mut pic); // FU-A start, IDR
        d.push(&[0x7c, 0x41, 3], false, &mut pic); // FU-A end claiming a non-IDR slice
        d.finish(&mut pic);
        assert!(pic.units.is_empty() && pic.data.is_empty());
        assert!(!pic.keyframe && pic.damaged);
        assert_eq!(d.stats().malformed, 1);
    }

    /// Found by the `h264_rx` fuzz target: NAL units a decoder would not read back as themselves
    /// (forbidden bit set, a start code inside, or fragments that join into a start code), and
    /// types that are not NAL units inside a STAP-A, were delivered as they came. They are now
    /// dropped as malformed. (A unit that is nothing but zero bytes is dropped too.)
    #[test]
    fn units_that_annex_b_cannot_frame_are_dropped() {
        let bad: [&[u8]; 5] = [
            &[0x7e, 1, 2],       // type 30, found inside a STAP-A
            &[0xe1, 1, 2],       // forbidden bit
            &[0x61, 0, 0, 1, 9], // a start code inside
            &[0, 0],             // nothing but trailing zero bytes
            &[0x61, 0, 0, 0, 1], // a 4-byte start code inside
        ];
        for nal in bad {
            let mut d = H264Depacketizer::new();
            let mut pic = PictureBuf::default();
            d.push(nal, false, &mut pic);
            let mut stap = vec![0x78, 0, nal.len() as u8];
            stap.extend_from_slice(nal);
            stap.extend_from_slice(&[0, 2, 0x61, 7]);
            d.push(&stap, false, &mut pic);
            d.finish(&mut pic);
            assert_eq!(pic.data, [0, 0, 0, 1, 0x61, 7], "{nal:?}");
            assert!(pic.damaged);
            // Alone, type 30 is counted as an unsupported packet type rather than malformed.
            let st = d.stats();
            assert_eq!(st.malformed + st.unsupported, 2, "{nal:?}");
        }
        // Two fragments that are each clean but join into `00 00 01`.
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x7c, 0x81, 4, 0], false, &mut pic);
        d.push(&[0x7c, 0x41, 0, 1, 4], false, &mut pic);
        d.finish(&mut pic);
        assert!(pic.data.is_empty() && pic.units.is_empty() && pic.damaged);
    }

    /// baresip's packetizer splits its encoder's output on 3-byte start codes, so the unit
    /// before a 4-byte start code keeps that code's first zero byte (`trailing_zero_8bits`). Such
    /// units were once refused whole, and no picture from baresip ever arrived; the zeros are
    /// now dropped, alone, in single-unit, STAP-A and FU-A packets.
    #[test]
    fn trailing_zero_bytes_are_trimmed_not_refused() {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x67, 1, 2, 0], false, &mut pic); // SPS + one trailing zero
        d.push(&[0x78, 0, 3, 0x68, 3, 0, 0, 2, 0x06, 4], false, &mut pic); // STAP-A: PPS + 0, SEI
        d.push(&[0x7c, 0x85, 5, 0], false, &mut pic); // FU-A start (IDR), a zero inside
        d.push(&[0x7c, 0x45, 6, 0, 0], false, &mut pic); // FU-A end, two zeros at the end
        d.finish(&mut pic);
        assert_eq!(
            units(&pic),
            vec![
                vec![0x67, 1, 2],
                vec![0x68, 3],
                vec![0x06, 4],
                vec![0x65, 5, 0, 6]
            ]
        );
        assert!(pic.keyframe && !pic.damaged);
        assert_eq!(d.stats().malformed, 0);
    }

    #[test]
    fn nal_of_exactly_mtu_is_a_single_packet() {
        let mut p = H264Packetizer::new(100, PacketizationMode::NonInterleaved);
        let n = nal(5, 100);
        let pkts = packetize(&mut p, &n).unwrap();
        assert_eq!(pkts, vec![(n.clone(), true)]);
        let (pic, _) = depacketize(&pkts);
        assert_eq!(pic.data, annexb(&[n]));
        assert!(pic.keyframe && !pic.damaged);
    }

    #[test]
    fn nal_of_mtu_plus_one_is_fragmented() {
        let mut p = H264Packetizer::new(100, PacketizationMode::NonInterleaved);
        let n = nal(5, 101);
        let pkts = packetize(&mut p, &n).unwrap();
        assert_eq!(pkts.len(), 2);
        assert_eq!(pkts[0].0[0], 0x60 | FU_A);
        assert_eq!(pkts[0].0[1], FU_START | 5);
        assert_eq!(pkts[1].0[1], FU_END | 5);
        // The first fragment fills the MTU.
        assert_eq!(pkts[0].0.len(), 100);
        assert!(pkts.iter().all(|(p, _)| p.len() <= 100));
        assert_eq!(pkts.iter().map(|p| p.1).collect::<Vec<_>>(), [false, true]);
        let (pic, _) = depacketize(&pkts);
        assert_eq!(units(&pic), vec![n]);
        assert!(pic.keyframe);
    }

    #[test]
    fn marker_only_on_last_packet() {
        let mut p = H264Packetizer::new(200, PacketizationMode::NonInterleaved);
        let pic = annexb(&[
            nal(7, 10),
            nal(8, 5),
            nal(5, 1000),
            nal(1, 150),
            nal(1, 150),
        ]);
        let pkts = packetize(&mut p, &pic).unwrap();
        let markers: Vec<bool> = pkts.iter().map(|p| p.1).collect();
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert!(*markers.last().unwrap());
        assert!(pkts.iter().all(|(p, _)| p.len() <= 200));
    }

    #[test]
    fn small_nals_share_a_stap_a() {
        let mut p = H264Packetizer::new(1200, PacketizationMode::NonInterleaved);
        let sps = vec![0x67, 0x42, 0xc0, 0x1f];
        let pps = vec![0x68, 0xce, 0x3c, 0x80];
        let idr = nal(5, 300);
        let input = [
            vec![0, 0, 1],
            sps.clone(),
            vec![0, 0, 0, 1],
            pps.clone(),
            vec![0, 0, 1],
            idr.clone(),
        ]
        .concat();
        let pkts = packetize(&mut p, &input).unwrap();
        assert_eq!(pkts.len(), 1);
        let stap = &pkts[0].0;
        // F clear, NRI = max (IDR has 3), type 24.
        assert_eq!(stap[0], 0x60 | STAP_A);
        assert_eq!(&stap[1..3], &[0, 4]);
        assert_eq!(stap.len(), 1 + 2 + 4 + 2 + 4 + 2 + 300);
        let (pic, _) = depacketize(&pkts);
        assert_eq!(units(&pic), vec![sps, pps, idr]);
        assert_eq!(pic.data, annexb(&units(&pic)));
    }

    #[test]
    fn stap_a_header_ors_f_and_takes_max_nri() {
        let mut p = H264Packetizer::new(1200, PacketizationMode::NonInterleaved);
        let a = vec![0x86, 1];
        let b = vec![0x21, 2];
        let pkts = packetize(&mut p, &annexb(&[a, b])).unwrap();
        assert_eq!(pkts[0].0[0], 0x80 | 0x20 | STAP_A);
    }

    #[test]
    fn stap_a_stops_at_mtu() {
        // Two 50-byte NALs need 1 + 2*52 = 105 bytes as a STAP-A.
        let mut p = H264Packetizer::new(104, PacketizationMode::NonInterleaved);
        let pic = annexb(&[nal(1, 50), nal(1, 50)]);
        let pkts = packetize(&mut p, &pic).unwrap();
        assert_eq!(pkts.len(), 2);
        let mut p = H264Packetizer::new(105, PacketizationMode::NonInterleaved);
        let pkts = packetize(&mut p, &pic).unwrap();
        assert_eq!(pkts.len(), 1);
        assert_eq!(pkts[0].0.len(), 105);
    }

    #[test]
    fn one_byte_nal_round_trips() {
        let mut p = H264Packetizer::default();
        let pkts = packetize(&mut p, &[0x09]).unwrap();
        assert_eq!(pkts, vec![(vec![0x09], true)]);
        let (pic, _) = depacketize(&pkts);
        assert_eq!(pic.data, vec![0, 0, 0, 1, 0x09]);
    }

    #[test]
    fn mode_0_refuses_to_fragment() {
        let mut p = H264Packetizer::new(100, PacketizationMode::SingleNal);
        let pic = annexb(&[nal(7, 10), nal(5, 101)]);
        let mut out = PayloadList::new();
        assert_eq!(
            p.packetize(&pic, &mut out),
            Err(PacketizeError::NalTooLarge {
                nal_len: 101,
                mtu: 100
            })
        );
        assert!(out.is_empty(), "nothing written on error");
        // Mode 0 never aggregates either.
        let pkts = packetize(&mut p, &annexb(&[nal(7, 10), nal(8, 5), nal(5, 100)])).unwrap();
        assert_eq!(pkts.len(), 3);
        assert_eq!(pkts[2].0.len(), 100);
        assert_eq!(pkts.iter().filter(|p| p.1).count(), 1);
    }

    #[test]
    fn empty_and_tiny_mtu_errors() {
        let mut p = H264Packetizer::default();
        let mut out = PayloadList::new();
        assert_eq!(p.packetize(&[], &mut out), Err(PacketizeError::Empty));
        assert_eq!(
            p.packetize(&[0, 0, 0, 1, 0, 0], &mut out),
            Err(PacketizeError::Empty)
        );
        let mut p = H264Packetizer::new(2, PacketizationMode::NonInterleaved);
        assert_eq!(
            p.packetize(&nal(1, 3), &mut out),
            Err(PacketizeError::MtuTooSmall(2))
        );
        let mut p = H264Packetizer::new(3, PacketizationMode::NonInterleaved);
        let pkts = packetize(&mut p, &nal(1, 4)).unwrap();
        assert_eq!(pkts.len(), 3);
        let (pic, _) = depacketize(&pkts);
        assert_eq!(units(&pic), vec![nal(1, 4)]);
    }

    #[test]
    fn packetizing_again_into_a_cleared_list_gives_the_same_payloads() {
        let mut p = H264Packetizer::new(500, PacketizationMode::NonInterleaved);
        let pic = annexb(&[nal(7, 10), nal(8, 5), nal(5, 3000), nal(6, 20)]);
        let mut out = PayloadList::new();
        p.packetize(&pic, &mut out).unwrap();
        let first: Vec<_> = (0..out.len()).map(|i| out.payload(i, &pic)).collect();
        out.clear();
        p.packetize(&pic, &mut out).unwrap();
        let second: Vec<_> = (0..out.len()).map(|i| out.payload(i, &pic)).collect();
        assert_eq!(first, second);
    }

    #[test]
    fn stap_a_truncated_is_rejected_whole() {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        // First unit fine, second claims 10 bytes but has 3.
        d.push(&[STAP_A, 0, 2, 0x67, 1, 0, 10, 0x68, 1, 2], false, &mut pic);
        assert!(pic.data.is_empty() && pic.units.is_empty());
        assert!(pic.damaged);
        assert_eq!(d.stats().malformed, 1);
        // A dangling single size byte, a zero size and an empty STAP-A are malformed too.
        for bad in [
            &[STAP_A, 0, 1, 0x67, 0][..],
            &[STAP_A, 0, 0, 0, 1, 0x67],
            &[STAP_A],
        ] {
            d.push(bad, false, &mut pic);
        }
        assert!(pic.data.is_empty());
        assert_eq!(d.stats().malformed, 4);
    }

    #[test]
    fn fu_a_without_start_is_orphaned() {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x7c, 0x05, 1, 2, 3], false, &mut pic);
        d.push(&[0x7c, FU_END | 5, 4], false, &mut pic);
        d.finish(&mut pic);
        assert!(pic.data.is_empty() && pic.damaged);
        assert_eq!(d.stats().orphaned, 2);
    }

    #[test]
    fn fu_a_with_lost_middle_is_discarded() {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x09, 0xf0], false, &mut pic);
        d.push(&[0x7c, FU_START | 5, 1, 2], false, &mut pic);
        d.push(&[0x7c, FU_END | 5, 5], true, &mut pic);
        d.finish(&mut pic);
        assert_eq!(pic.data, vec![0, 0, 0, 1, 0x09, 0xf0]);
        assert_eq!(units(&pic), vec![vec![0x09, 0xf0]]);
        assert!(pic.damaged && !pic.keyframe);
        assert_eq!(d.stats().discarded_partial, 1);
        assert_eq!(d.stats().orphaned, 1);
    }

    #[test]
    fn fu_a_three_fragments_and_restart() {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x7c, FU_START | 5, 1], false, &mut pic);
        // A new start while one is open: the first is discarded.
        d.push(&[0x7c, FU_START | 5, 0x10], false, &mut pic);
        d.push(&[0x7c, 5, 0x11], false, &mut pic);
        d.push(&[0x7c, FU_END | 5, 0x12], false, &mut pic);
        d.finish(&mut pic);
        assert_eq!(units(&pic), vec![vec![0x65, 0x10, 0x11, 0x12]]);
        assert_eq!(d.stats().discarded_partial, 1);
        assert!(pic.keyframe && pic.damaged);
    }

    #[test]
    fn unfinished_fu_a_is_cut_at_finish() {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x61, 7], false, &mut pic);
        d.push(&[0x7c, FU_START | 5, 1, 2, 3], false, &mut pic);
        d.finish(&mut pic);
        assert_eq!(pic.data, vec![0, 0, 0, 1, 0x61, 7]);
        assert!(!pic.keyframe && pic.damaged);
    }

    #[test]
    fn odd_fu_a_packets() {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        // S and E together: a whole NAL unit.
        d.push(&[0x7c, FU_START | FU_END | 5, 9], false, &mut pic);
        assert_eq!(units(&pic), vec![vec![0x65, 9]]);
        // A 1-byte FU and a FU carrying type 24 are malformed.
        d.push(&[0x7c], false, &mut pic);
        d.push(&[0x7c, FU_START | 24, 1], false, &mut pic);
        assert_eq!(d.stats().malformed, 2);
        // FU header with S and an empty body, then the end.
        d.push(&[0x5c, FU_START | 1], false, &mut pic);
        d.push(&[0x5c, FU_END | 1, 3], false, &mut pic);
        assert_eq!(units(&pic).last().unwrap(), &vec![0x41, 3]);
    }

    #[test]
    fn unsupported_types_are_counted() {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        for t in [0u8, 25, 26, 27, 29, 30, 31] {
            d.push(&[t, 0, 1, 2, 3, 4, 5], false, &mut pic);
        }
        d.push(&[], false, &mut pic);
        assert!(pic.data.is_empty() && pic.damaged);
        assert_eq!(d.stats().unsupported, 7);
        assert_eq!(d.stats().malformed, 1);
    }

    #[test]
    fn interrupted_fu_is_discarded() {
        let mut d = H264Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x7c, FU_START | 5, 1], false, &mut pic);
        d.push(&[0x41, 2], false, &mut pic);
        d.push(&[0x7c, FU_END | 5, 3], false, &mut pic);
        assert_eq!(units(&pic), vec![vec![0x41, 2]]);
        assert_eq!(pic.data, annexb(&[vec![0x41, 2]]));
        assert_eq!(d.stats().discarded_partial, 1);
        assert_eq!(d.stats().orphaned, 1);
    }

    #[test]
    fn mode_parsing() {
        assert_eq!(
            PacketizationMode::from_sdp(0),
            Some(PacketizationMode::SingleNal)
        );
        assert_eq!(
            PacketizationMode::from_sdp(1),
            Some(PacketizationMode::NonInterleaved)
        );
        assert_eq!(PacketizationMode::from_sdp(2), None);
        assert_eq!(PacketizationMode::SingleNal.sdp_value(), 0);
    }
}
