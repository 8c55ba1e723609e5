//! VP8 over RTP (RFC 7741): the payload descriptor, a packetizer and a depacketizer.
//!
//! Every VP8 RTP payload starts with a payload descriptor of one to six bytes:
//!
//! ```text
//!        0 1 2 3 4 5 6 7
//!       +-+-+-+-+-+-+-+-+
//!       |X|R|N|S|R| PID |   always
//!       +-+-+-+-+-+-+-+-+
//!  X:   |I|L|T|K| RSV   |   when X = 1
//!       +-+-+-+-+-+-+-+-+
//!  I:   |M| PictureID   |   when I = 1 (M = 1: a second byte follows, 15-bit PictureID)
//!       +-+-+-+-+-+-+-+-+
//!       |   PictureID   |
//!       +-+-+-+-+-+-+-+-+
//!  L:   |   TL0PICIDX   |   when L = 1
//!       +-+-+-+-+-+-+-+-+
//!  T/K: |TID|Y| KEYIDX  |   when T = 1 or K = 1
//!       +-+-+-+-+-+-+-+-+
//! ```
//!
//! The rest of the payload is a piece of the VP8 frame. A frame begins in the packet with S = 1 and
//! partition index 0; the RTP marker bit ends it. The first byte of a frame holds the inverse key
//! frame flag in its lowest bit (0 = key frame).

use std::fmt;

use super::{Depacketizer, DepacketizerStats, PacketizeError, Packetizer, PayloadList, PictureBuf};
use crate::frame::VideoCodec;

/// The longest descriptor: the required byte, the extension byte, a 15-bit PictureID, TL0PICIDX and
/// the TID/Y/KEYIDX byte.
pub const MAX_DESCRIPTOR_LEN: usize = 6;

/// Size of the descriptor the packetizer writes (X, I and a 15-bit PictureID).
const PACKETIZER_DESCRIPTOR_LEN: usize = 4;

const X_BIT: u8 = 0x80;
const N_BIT: u8 = 0x20;
const S_BIT: u8 = 0x10;
const PID_MASK: u8 = 0x07;
const I_BIT: u8 = 0x80;
const L_BIT: u8 = 0x40;
const T_BIT: u8 = 0x20;
const K_BIT: u8 = 0x10;
const M_BIT: u8 = 0x80;

/// A VP8 PictureID in its 7-bit or 15-bit form (the M bit chooses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureId {
    /// One byte on the wire, values 0..=127.
    Short(u8),
    /// Two bytes on the wire (M = 1), values 0..=32767.
    Long(u16),
}

impl PictureId {
    /// The numeric value, whatever the width.
    pub fn value(self) -> u16 {
        match self {
            PictureId::Short(v) => u16::from(v),
            PictureId::Long(v) => v,
        }
    }
}

/// The temporal-layer fields carried when the T bit is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemporalLayer {
    /// TID, the temporal layer index (0..=3).
    pub tid: u8,
    /// Y: this frame depends only on the base layer (layer sync).
    pub layer_sync: bool,
}

/// A parsed VP8 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    /// N: the frame is not used as a reference by any other frame.
    pub non_reference: bool,
    /// S: the payload starts a partition.
    pub start_of_partition: bool,
    /// PID: the index of the partition this payload belongs to (0..=7).
    pub partition_index: u8,
    /// I and the PictureID field.
    pub picture_id: Option<PictureId>,
    /// L and the TL0PICIDX field.
    pub tl0_pic_idx: Option<u8>,
    /// T and the TID/Y fields.
    pub temporal: Option<TemporalLayer>,
    /// K and the KEYIDX field (0..=31).
    pub key_idx: Option<u8>,
}

/// Why a descriptor could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Vp8Error {
    /// The payload ended inside the descriptor; `needed` bytes were required.
    Truncated {
        /// Bytes the descriptor needs.
        needed: usize,
        /// Bytes the payload had.
        available: usize,
    },
    /// A field does not fit its width on the wire (the name says which).
    FieldOutOfRange(&'static str),
    /// The output buffer is shorter than the descriptor.
    BufferTooSmall {
        /// Bytes the descriptor needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

impl fmt::Display for Vp8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vp8Error::Truncated { needed, available } => write!(
                f,
                "VP8 payload descriptor truncated: needs {needed} bytes, payload has {available}"
            ),
            Vp8Error::FieldOutOfRange(name) => {
                write!(f, "VP8 payload descriptor field {name} out of range")
            }
            Vp8Error::BufferTooSmall { needed, available } => write!(
                f,
                "VP8 payload descriptor needs {needed} bytes, buffer has {available}"
            ),
        }
    }
}

impl std::error::Error for Vp8Error {}

impl Vp8Descriptor {
    /// Reads the descriptor at the start of `payload`, returning it and its length in bytes (the VP8
    /// data follows). Reserved bits are ignored, as RFC 7741 asks of receivers.
    pub fn parse(payload: &[u8]) -> Result<(Vp8Descriptor, usize), Vp8Error> {
        let need = |needed: usize| -> Result<(), Vp8Error> {
            if payload.len() < needed {
                Err(Vp8Error::Truncated {
                    needed,
                    available: payload.len(),
                })
            } else {
                Ok(())
            }
        };
        need(1)?;
        let b0 = payload[0];
        let mut d = Vp8Descriptor {
            non_reference: b0 & N_BIT != 0,
            start_of_partition: b0 & S_BIT != 0,
            partition_index: b0 & PID_MASK,
            ..Vp8Descriptor::default()
        };
        if b0 & X_BIT == 0 {
            return Ok((d, 1));
        }
        need(2)?;
        let x = payload[1];
        let mut pos = 2;
        if x & I_BIT != 0 {
            need(pos + 1)?;
            let p0 = payload[pos];
            if p0 & M_BIT != 0 {
                need(pos + 2)?;
                let v = (u16::from(p0 & 0x7f) << 8) | u16::from(payload[pos + 1]);
                d.picture_id = Some(PictureId::Long(v));
                pos += 2;
            } else {
                d.picture_id = Some(PictureId::Short(p0));
                pos += 1;
            }
        }
        if x & L_BIT != 0 {
            need(pos + 1)?;
            d.tl0_pic_idx = Some(payload[pos]);
            pos += 1;
        }
        if x & (T_BIT | K_BIT) != 0 {
            need(pos + 1)?;
            let tk = payload[pos];
            pos += 1;
            if x & T_BIT != 0 {
                d.temporal = Some(TemporalLayer {
                    tid: tk >> 6,
                    layer_sync: tk & 0x20 != 0,
                });
            }
            if x & K_BIT != 0 {
                d.key_idx = Some(tk & 0x1f);
            }
        }
        Ok((d, pos))
    }

    /// True when any field of the extension byte is present, so X must be set.
    fn has_extension(&self) -> bool {
        self.picture_id.is_some()
            || self.tl0_pic_idx.is_some()
            || self.temporal.is_some()
            || self.key_idx.is_some()
    }

    /// The number of bytes [`Self::write`] produces.
    pub fn encoded_len(&self) -> usize {
        if !self.has_extension() {
            return 1;
        }
        let mut n = 2;
        n += match self.picture_id {
            None => 0,
            Some(PictureId::Short(_)) => 1,
            Some(PictureId::Long(_)) => 2,
        };
        n += usize::from(self.tl0_pic_idx.is_some());
        n += usize::from(self.temporal.is_some() || self.key_idx.is_some());
        n
    }

    /// Writes the descriptor to the start of `out` and returns its length. Fields wider than the wire
    /// allows are an error, never truncated silently.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, Vp8Error> {
        if self.partition_index > PID_MASK {
            return Err(Vp8Error::FieldOutOfRange("PID"));
        }
        match self.picture_id {
            Some(PictureId::Short(v)) if v > 0x7f => {
                return Err(Vp8Error::FieldOutOfRange("PictureID (7-bit)"))
            }
            Some(PictureId::Long(v)) if v > 0x7fff => {
                return Err(Vp8Error::FieldOutOfRange("PictureID (15-bit)"))
            }
            _ => {}
        }
        if self.temporal.is_some_and(|t| t.tid > 3) {
            return Err(Vp8Error::FieldOutOfRange("TID"));
        }
        if self.key_idx.is_some_and(|k| k > 0x1f) {
            return Err(Vp8Error::FieldOutOfRange("KEYIDX"));
        }
        let len = self.encoded_len();
        if out.len() < len {
            return Err(Vp8Error::BufferTooSmall {
                needed: len,
                available: out.len(),
            });
        }
        let mut b0 = self.partition_index;
        if self.non_reference {
            b0 |= N_BIT;
        }
        if self.start_of_partition {
            b0 |= S_BIT;
        }
        if !self.has_extension() {
            out[0] = b0;
            return Ok(1);
        }
        out[0] = b0 | X_BIT;
        let mut x = 0u8;
        let mut pos = 2;
        match self.picture_id {
            Some(PictureId::Short(v)) => {
                x |= I_BIT;
                out[pos] = v;
                pos += 1;
            }
            Some(PictureId::Long(v)) => {
                x |= I_BIT;
                out[pos..pos + 2].copy_from_slice(&(v | 0x8000).to_be_bytes());
                pos += 2;
            }
            None => {}
        }
        if let Some(t) = self.tl0_pic_idx {
            x |= L_BIT;
            out[pos] = t;
            pos += 1;
        }
        if self.temporal.is_some() || self.key_idx.is_some() {
            let mut tk = 0u8;
            if let Some(t) = self.temporal {
                x |= T_BIT;
                tk |= t.tid << 6;
                if t.layer_sync {
                    tk |= 0x20;
                }
            }
            if let Some(k) = self.key_idx {
                x |= K_BIT;
                tk |= k;
            }
            out[pos] = tk;
            pos += 1;
        }
        out[1] = x;
        Ok(pos)
    }
}

/// True when `frame` (a whole VP8 frame, starting with its frame tag) is a key frame: the lowest bit
/// of the first byte, the inverse key-frame flag, is 0. An empty slice is not a key frame.
pub fn is_vp8_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// Splits VP8 frames into RTP payloads of at most `mtu` bytes.
///
/// Each payload carries a 4-byte descriptor (X = 1, I = 1, a 15-bit PictureID that advances by one
/// per frame from a random start, PID = 0; S = 1 on the first payload of a frame). The frame itself
/// is referenced, never copied: only the descriptors go into the list's head bytes.
#[derive(Debug, Clone)]
pub struct Vp8Packetizer {
    mtu: usize,
    picture_id: u16,
}

impl Vp8Packetizer {
    /// A packetizer for payloads of at most `mtu` bytes, with a random first PictureID.
    pub fn new(mtu: usize) -> Self {
        Self::with_picture_id(mtu, rand::random::<u16>())
    }

    /// A packetizer whose first frame gets PictureID `first & 0x7fff` (deterministic tests, or
    /// continuing an earlier stream).
    pub fn with_picture_id(mtu: usize, first: u16) -> Self {
        Vp8Packetizer {
            mtu,
            picture_id: first & 0x7fff,
        }
    }

    /// The PictureID the next frame will carry.
    pub fn next_picture_id(&self) -> u16 {
        self.picture_id
    }
}

impl Packetizer for Vp8Packetizer {
    fn packetize(&mut self, picture: &[u8], out: &mut PayloadList) -> Result<(), PacketizeError> {
        if picture.is_empty() {
            return Err(PacketizeError::Empty);
        }
        if self.mtu <= PACKETIZER_DESCRIPTOR_LEN {
            return Err(PacketizeError::MtuTooSmall(self.mtu));
        }
        let room = self.mtu - PACKETIZER_DESCRIPTOR_LEN;
        let mut desc = Vp8Descriptor {
            start_of_partition: true,
            picture_id: Some(PictureId::Long(self.picture_id)),
            ..Vp8Descriptor::default()
        };
        let mut head = [0u8; MAX_DESCRIPTOR_LEN];
        let mut off = 0;
        while off < picture.len() {
            let end = picture.len().min(off + room);
            let n = desc
                .write(&mut head)
                .map_err(|_| PacketizeError::Malformed("VP8 descriptor field out of range"))?;
            out.begin_packet();
            out.push_head(&head[..n]);
            out.push_body(off..end);
            out.end_packet(end == picture.len());
            desc.start_of_partition = false;
            off = end;
        }
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        Ok(())
    }
}

/// Reassembles VP8 frames from RTP payloads fed in sequence order.
///
/// A frame starts with a payload that has S = 1 and partition index 0; payloads before such a start
/// are orphans and are dropped. A loss inside a frame, or a malformed descriptor, discards what was
/// gathered of the frame. Every drop is counted and marks the picture damaged.
#[derive(Debug, Default, Clone)]
pub struct Vp8Depacketizer {
    in_frame: bool,
    stats: DepacketizerStats,
}

impl Vp8Depacketizer {
    /// A depacketizer waiting for the start of a frame.
    pub fn new() -> Self {
        Self::default()
    }

    fn discard_partial(&mut self, pic: &mut PictureBuf) {
        if self.in_frame {
            self.stats.discarded_partial += 1;
            self.in_frame = false;
            pic.data.clear();
            pic.units.clear();
            pic.keyframe = false;
            pic.damaged = true;
        }
    }
}

impl Depacketizer for Vp8Depacketizer {
    fn codec(&self) -> VideoCodec {
        VideoCodec::Vp8
    }

    /// The start of partition 0 is the start of a frame (RFC 7741 §4.2).
    fn starts_picture(&self, payload: &[u8]) -> bool {
        Vp8Descriptor::parse(payload)
            .is_ok_and(|(d, _)| d.start_of_partition && d.partition_index == 0)
    }

    fn push(&mut self, payload: &[u8], lost_before: bool, pic: &mut PictureBuf) {
        if lost_before {
            self.discard_partial(pic);
        }
        let (desc, hlen) = match Vp8Descriptor::parse(payload) {
            Ok(v) => v,
            Err(_) => {
                self.stats.malformed += 1;
                self.discard_partial(pic);
                pic.damaged = true;
                return;
            }
        };
        let data = &payload[hlen..];
        if desc.start_of_partition && desc.partition_index == 0 {
            // A new frame begins; anything gathered without an end is incomplete.
            self.discard_partial(pic);
            pic.data.clear();
            pic.units.clear();
            pic.keyframe = false;
            self.in_frame = true;
        } else if !self.in_frame {
            self.stats.orphaned += 1;
            pic.damaged = true;
            return;
        }
        pic.data.extend_from_slice(data);
    }

    fn finish(&mut self, pic: &mut PictureBuf) {
        if !self.in_frame {
            return;
        }
        self.in_frame = false;
        if pic.data.is_empty() {
            // Descriptors without any frame data: nothing a decoder could use.
            self.stats.malformed += 1;
            pic.damaged = true;
            return;
        }
        pic.units.clear();
        pic.units.push(0..pic.data.len());
        pic.keyframe = is_vp8_keyframe(&pic.data);
    }

    fn stats(&self) -> DepacketizerStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(b: &[u8]) -> (Vp8Descriptor, usize) {
        Vp8Descriptor::parse(b).expect("descriptor parses")
    }

    #[test]
    fn minimal_descriptor() {
        let (d, n) = parse_ok(&[0x10, 0xaa]);
        assert_eq!(n, 1);
        assert!(d.start_of_partition);
        assert_eq!(d.partition_index, 0);
        assert!(!d.non_reference);
        assert_eq!(d.picture_id, None);

        let (d, n) = parse_ok(&[0x25]);
        assert_eq!(n, 1);
        assert!(d.non_reference);
        assert!(!d.start_of_partition);
        assert_eq!(d.partition_index, 5);
    }

    #[test]
    fn reserved_bits_ignored() {
        let (d, n) = parse_ok(&[0x40 | 0x08 | 0x10]);
        assert_eq!(n, 1);
        assert!(d.start_of_partition);
        assert_eq!(d.partition_index, 0);
    }

    #[test]
    fn seven_bit_picture_id() {
        let (d, n) = parse_ok(&[0x90, 0x80, 0x55, 0x9d]);
        assert_eq!(n, 3);
        assert_eq!(d.picture_id, Some(PictureId::Short(0x55)));
        assert_eq!(d.picture_id.map(PictureId::value), Some(0x55));
    }

    #[test]
    fn fifteen_bit_picture_id() {
        let (d, n) = parse_ok(&[0x90, 0x80, 0x81, 0x23, 0x9d]);
        assert_eq!(n, 4);
        assert_eq!(d.picture_id, Some(PictureId::Long(0x0123)));
        let (d, _) = parse_ok(&[0x90, 0x80, 0xff, 0xff]);
        assert_eq!(d.picture_id, Some(PictureId::Long(0x7fff)));
    }

    #[test]
    fn l_t_k_fields() {
        // I (15-bit), L, T and K all present.
        let b = [0x90, 0xf0, 0x80, 0x07, 0x2a, 0b1010_0101, 0xee];
        let (d, n) = parse_ok(&b);
        assert_eq!(n, 6);
        assert_eq!(d.picture_id, Some(PictureId::Long(7)));
        assert_eq!(d.tl0_pic_idx, Some(0x2a));
        assert_eq!(
            d.temporal,
            Some(TemporalLayer {
                tid: 2,
                layer_sync: true
            })
        );
        assert_eq!(d.key_idx, Some(5));

        // K alone: TID/Y are not meaningful.
        let (d, n) = parse_ok(&[0x80, 0x10, 0xff]);
        assert_eq!(n, 3);
        assert_eq!(d.temporal, None);
        assert_eq!(d.key_idx, Some(0x1f));

        // T alone: KEYIDX is not meaningful.
        let (d, n) = parse_ok(&[0x80, 0x20, 0x40]);
        assert_eq!(n, 3);
        assert_eq!(
            d.temporal,
            Some(TemporalLayer {
                tid: 1,
                layer_sync: false
            })
        );
        assert_eq!(d.key_idx, None);

        // L alone.
        let (d, n) = parse_ok(&[0x80, 0x40, 0x09]);
        assert_eq!(n, 3);
        assert_eq!(d.tl0_pic_idx, Some(9));
        assert_eq!(d.picture_id, None);

        // X set with an empty extension byte.
        let (d, n) = parse_ok(&[0x80, 0x00]);
        assert_eq!(n, 2);
        assert_eq!(d, Vp8Descriptor::default());
    }

    #[test]
    fn truncated_descriptors() {
        let cases: &[&[u8]] = &[
            &[],
            &[0x80],
            &[0x80, 0x80],
            &[0x80, 0x80, 0x80],
            &[0x80, 0x40],
            &[0x80, 0x20],
            &[0x80, 0x10],
            &[0x80, 0xf0, 0x80, 0x01, 0x02],
            &[0x80, 0xc0, 0x05],
        ];
        for c in cases {
            match Vp8Descriptor::parse(c) {
                Err(Vp8Error::Truncated { available, needed }) => {
                    assert_eq!(available, c.len());
                    assert!(needed > c.len());
                }
                other => panic!("{c:02x?}: expected truncation, got {other:?}"),
            }
        }
    }

    #[test]
    fn write_parse_round_trip() {
        let descs = [
            Vp8Descriptor::default(),
            Vp8Descriptor {
                non_reference: true,
                start_of_partition: true,
                partition_index: 7,
                ..Default::default()
            },
            Vp8Descriptor {
                picture_id: Some(PictureId::Short(127)),
                ..Default::default()
            },
            Vp8Descriptor {
                start_of_partition: true,
                picture_id: Some(PictureId::Long(0x7fff)),
                tl0_pic_idx: Some(200),
                temporal: Some(TemporalLayer {
                    tid: 3,
                    layer_sync: true,
                }),
                key_idx: Some(31),
                ..Default::default()
            },
            Vp8Descriptor {
                key_idx: Some(3),
                ..Default::default()
            },
        ];
        for d in descs {
            let mut buf = [0u8; MAX_DESCRIPTOR_LEN];
            let n = d.write(&mut buf).unwrap();
            assert_eq!(n, d.encoded_len());
            assert_eq!(Vp8Descriptor::parse(&buf[..n]), Ok((d, n)));
        }
    }

    #[test]
    fn write_rejects_out_of_range_fields() {
        let mut buf = [0u8; MAX_DESCRIPTOR_LEN];
        let bad = [
            Vp8Descriptor {
                partition_index: 8,
                ..Default::default()
            },
            Vp8Descriptor {
                picture_id: Some(PictureId::Short(128)),
                ..Default::default()
            },
            Vp8Descriptor {
                picture_id: Some(PictureId::Long(0x8000)),
                ..Default::default()
            },
            Vp8Descriptor {
                temporal: Some(TemporalLayer {
                    tid: 4,
                    layer_sync: false,
                }),
                ..Default::default()
            },
            Vp8Descriptor {
                key_idx: Some(32),
                ..Default::default()
            },
        ];
        for d in bad {
            assert!(matches!(
                d.write(&mut buf),
                Err(Vp8Error::FieldOutOfRange(_))
            ));
        }
        let d = Vp8Descriptor {
            picture_id: Some(PictureId::Long(1)),
            ..Default::default()
        };
        assert_eq!(
            d.write(&mut buf[..3]),
            Err(Vp8Error::BufferTooSmall {
                needed: 4,
                available: 3
            })
        );
    }

    #[test]
    fn keyframe_flag() {
        assert!(is_vp8_keyframe(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]));
        assert!(!is_vp8_keyframe(&[0x11, 0x02, 0x00]));
        assert!(!is_vp8_keyframe(&[]));
    }

    fn packets(p: &mut Vp8Packetizer, frame: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let mut list = PayloadList::new();
        p.packetize(frame, &mut list).unwrap();
        (0..list.len())
            .map(|i| (list.payload(i, frame), list.marker(i)))
            .collect()
    }

    #[test]
    fn packetizer_shape() {
        let mut p = Vp8Packetizer::with_picture_id(100, 0x7ffe);
        let frame: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        let pk = packets(&mut p, &frame);
        // 96 bytes of frame per packet: 96 + 96 + 58.
        assert_eq!(pk.len(), 3);
        for (i, (pl, marker)) in pk.iter().enumerate() {
            assert!(pl.len() <= 100);
            assert_eq!(*marker, i == 2);
            let (d, n) = parse_ok(pl);
            assert_eq!(n, 4);
            assert_eq!(d.start_of_partition, i == 0);
            assert_eq!(d.partition_index, 0);
            assert_eq!(d.picture_id, Some(PictureId::Long(0x7ffe)));
        }
        let joined: Vec<u8> = pk.iter().flat_map(|(pl, _)| pl[4..].to_vec()).collect();
        assert_eq!(joined, frame);

        // The PictureID advances per frame and wraps at 15 bits.
        let pk = packets(&mut p, &[0x00]);
        assert_eq!(
            parse_ok(&pk[0].0).0.picture_id,
            Some(PictureId::Long(0x7fff))
        );
        let pk = packets(&mut p, &[0x00]);
        assert_eq!(parse_ok(&pk[0].0).0.picture_id, Some(PictureId::Long(0)));
        assert_eq!(p.next_picture_id(), 1);
    }

    #[test]
    fn packetizer_references_the_frame() {
        let mut p = Vp8Packetizer::with_picture_id(10, 0);
        let frame = [1u8; 13];
        let mut list = PayloadList::new();
        p.packetize(&frame, &mut list).unwrap();
        assert_eq!(list.len(), 3);
        for i in 0..list.len() {
            let segs: Vec<&[u8]> = list.segments(i, &frame).collect();
            assert_eq!(segs.len(), 2);
            assert_eq!(segs[0].len(), 4);
        }
    }

    #[test]
    fn packetizer_errors() {
        let mut list = PayloadList::new();
        assert_eq!(
            Vp8Packetizer::new(1200).packetize(&[], &mut list),
            Err(PacketizeError::Empty)
        );
        assert_eq!(
            Vp8Packetizer::new(4).packetize(&[0], &mut list),
            Err(PacketizeError::MtuTooSmall(4))
        );
        assert!(list.is_empty());
        let mut p = Vp8Packetizer::new(5);
        p.packetize(&[0, 1, 2], &mut list).unwrap();
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn depacketize_keyframe_and_delta() {
        let mut d = Vp8Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x90, 0x80, 0x85, 0x00, 0x50, 0x01], false, &mut pic);
        d.push(&[0x80, 0x80, 0x85, 0x00, 0x02, 0x03], false, &mut pic);
        d.finish(&mut pic);
        assert_eq!(pic.data, [0x50, 0x01, 0x02, 0x03]);
        assert_eq!(pic.units, vec![0..4]);
        assert!(pic.keyframe);
        assert!(!pic.damaged);

        pic.clear();
        d.push(&[0x10, 0x51, 0x09], false, &mut pic);
        d.finish(&mut pic);
        assert_eq!(pic.data, [0x51, 0x09]);
        assert!(!pic.keyframe);
        assert_eq!(d.stats(), DepacketizerStats::default());
    }

    #[test]
    fn partitions_after_the_first_continue_the_frame() {
        let mut d = Vp8Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x10, 0x00, 0x01], false, &mut pic);
        d.push(&[0x11, 0x02], false, &mut pic);
        d.push(&[0x01, 0x03], false, &mut pic);
        d.finish(&mut pic);
        assert_eq!(pic.data, [0x00, 0x01, 0x02, 0x03]);
        assert!(pic.keyframe);
        assert!(!pic.damaged);
    }

    #[test]
    fn orphans_until_next_start() {
        let mut d = Vp8Depacketizer::new();
        let mut pic = PictureBuf::default();
        // Continuations, and the start of partition 1, without a frame start.
        d.push(&[0x00, 0xaa], true, &mut pic);
        d.push(&[0x11, 0xbb], false, &mut pic);
        d.finish(&mut pic);
        assert!(pic.units.is_empty());
        assert!(pic.data.is_empty());
        assert!(pic.damaged);
        assert_eq!(d.stats().orphaned, 2);

        pic.clear();
        d.push(&[0x10, 0x01], false, &mut pic);
        d.finish(&mut pic);
        assert_eq!(pic.data, [0x01]);
        assert!(!pic.damaged);
        assert!(!pic.keyframe);
    }

    #[test]
    fn loss_mid_frame_discards() {
        let mut d = Vp8Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x10, 0x00, 0x01], false, &mut pic);
        d.push(&[0x00, 0x02], true, &mut pic);
        d.push(&[0x00, 0x03], false, &mut pic);
        d.finish(&mut pic);
        assert!(pic.units.is_empty());
        assert!(pic.data.is_empty());
        assert!(pic.damaged);
        let s = d.stats();
        assert_eq!(s.discarded_partial, 1);
        assert_eq!(s.orphaned, 2);
    }

    #[test]
    fn loss_before_a_start_is_harmless() {
        let mut d = Vp8Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x10, 0x00], true, &mut pic);
        d.finish(&mut pic);
        assert_eq!(pic.units, vec![0..1]);
        assert!(!pic.damaged);
        assert!(pic.keyframe);
    }

    #[test]
    fn malformed_descriptor_damages() {
        let mut d = Vp8Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x10, 0x00, 0x01], false, &mut pic);
        d.push(&[0x80, 0x80], false, &mut pic);
        d.push(&[0x00, 0x02], false, &mut pic);
        d.finish(&mut pic);
        assert!(pic.units.is_empty());
        assert!(pic.damaged);
        let s = d.stats();
        assert_eq!(s.malformed, 1);
        assert_eq!(s.discarded_partial, 1);
        assert_eq!(s.orphaned, 1);

        pic.clear();
        d.push(&[], false, &mut pic);
        assert_eq!(d.stats().malformed, 2);
        assert!(pic.damaged);
    }

    #[test]
    fn restart_without_end_discards_previous() {
        let mut d = Vp8Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x10, 0x01, 0x01], false, &mut pic);
        d.push(&[0x10, 0x00, 0x07], false, &mut pic);
        d.finish(&mut pic);
        assert_eq!(pic.data, [0x00, 0x07]);
        assert_eq!(pic.units, vec![0..2]);
        assert!(pic.keyframe);
        assert!(pic.damaged);
        assert_eq!(d.stats().discarded_partial, 1);
    }

    #[test]
    fn descriptor_only_frame_is_not_delivered() {
        let mut d = Vp8Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.push(&[0x90, 0x80, 0x01], false, &mut pic);
        d.finish(&mut pic);
        assert!(pic.units.is_empty());
        assert!(pic.damaged);
        assert_eq!(d.stats().malformed, 1);
        assert_eq!(d.codec(), VideoCodec::Vp8);
    }

    #[test]
    fn finish_without_data_is_quiet() {
        let mut d = Vp8Depacketizer::new();
        let mut pic = PictureBuf::default();
        d.finish(&mut pic);
        assert!(!pic.damaged);
        assert_eq!(d.stats(), DepacketizerStats::default());
    }
}
