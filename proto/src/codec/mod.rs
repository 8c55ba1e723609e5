//! Payload formats and audio codecs: pure code, bytes in and packets or frames out.
//!
//! Video packetizers describe each RTP payload as a list of segments: small header bytes the
//! packetizer wrote, and ranges of the caller's picture. The sender hands those segments to the
//! kernel by scatter-gather, so the picture itself is never copied on the way out.
//! Depacketizers write reassembled media straight into a [`PictureBuf`], so each received byte is
//! copied once.

// A pure layer: any `unsafe` the engine needs lives in engine/ (or ffi/), never here.
#![forbid(unsafe_code)]

pub mod annexb;
pub mod dtmf;
pub mod g711;
pub mod g722;
pub mod h264;
pub mod ivf;
pub mod opus;
pub mod resample;
pub mod testclip;
pub mod tone;
pub mod voice;
pub mod vp8;

use std::ops::Range;

use crate::frame::VideoCodec;

/// One piece of an RTP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Bytes the packetizer wrote, at `heads[off..off + len]` of the [`PayloadList`].
    Head {
        /// Offset in the heads buffer.
        off: u32,
        /// Length in bytes.
        len: u32,
    },
    /// Bytes of the picture being packetized, `picture[off..off + len]`.
    Body {
        /// Offset in the picture.
        off: u32,
        /// Length in bytes.
        len: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PacketDesc {
    segs: Range<u32>,
    len: u32,
    marker: bool,
}

/// The RTP payloads of one picture, as segment lists. Reusable: [`PayloadList::clear`] keeps the
/// allocations, so a warmed-up sender does not allocate per picture.
#[derive(Debug, Default, Clone)]
pub struct PayloadList {
    heads: Vec<u8>,
    segs: Vec<Segment>,
    packets: Vec<PacketDesc>,
    open: Option<(u32, u32)>,
}

impl PayloadList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every packet, keeping the allocations.
    pub fn clear(&mut self) {
        self.heads.clear();
        self.segs.clear();
        self.packets.clear();
        self.open = None;
    }

    /// Number of payloads (RTP packets).
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True when there are no payloads.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Whether payload `i` carries the RTP marker bit (the last packet of a picture).
    pub fn marker(&self, i: usize) -> bool {
        self.packets[i].marker
    }

    /// Length in bytes of payload `i`.
    pub fn payload_len(&self, i: usize) -> usize {
        self.packets[i].len as usize
    }

    /// The segments of payload `i`, as byte slices; `picture` must be the buffer that was packetized.
    pub fn segments<'s>(
        &'s self,
        i: usize,
        picture: &'s [u8],
    ) -> impl Iterator<Item = &'s [u8]> + 's {
        let r = self.packets[i].segs.clone();
        self.segs[r.start as usize..r.end as usize]
            .iter()
            .map(move |s| match *s {
                Segment::Head { off, len } => &self.heads[off as usize..(off + len) as usize],
                Segment::Body { off, len } => &picture[off as usize..(off + len) as usize],
            })
    }

    /// Appends payload `i` as contiguous bytes to `out`.
    pub fn copy_payload(&self, i: usize, picture: &[u8], out: &mut Vec<u8>) {
        out.reserve(self.payload_len(i));
        for s in self.segments(i, picture) {
            out.extend_from_slice(s);
        }
    }

    /// Payload `i` as a new vector (tests and tools; the send path uses [`Self::segments`]).
    pub fn payload(&self, i: usize, picture: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        self.copy_payload(i, picture, &mut v);
        v
    }

    /// Starts a new payload. Packetizers call this, then `push_head`/`push_body`, then `end_packet`.
    pub fn begin_packet(&mut self) {
        debug_assert!(self.open.is_none(), "begin_packet with a packet open");
        self.open = Some((self.segs.len() as u32, 0));
    }

    /// Appends bytes written by the packetizer to the open payload.
    pub fn push_head(&mut self, bytes: &[u8]) {
        let off = self.heads.len() as u32;
        self.heads.extend_from_slice(bytes);
        self.segs.push(Segment::Head {
            off,
            len: bytes.len() as u32,
        });
        if let Some((_, len)) = self.open.as_mut() {
            *len += bytes.len() as u32;
        }
    }

    /// Appends `picture[range]` to the open payload.
    pub fn push_body(&mut self, range: Range<usize>) {
        let len = (range.end - range.start) as u32;
        self.segs.push(Segment::Body {
            off: range.start as u32,
            len,
        });
        if let Some((_, l)) = self.open.as_mut() {
            *l += len;
        }
    }

    /// Closes the open payload.
    pub fn end_packet(&mut self, marker: bool) {
        if let Some((start, len)) = self.open.take() {
            self.packets.push(PacketDesc {
                segs: start..self.segs.len() as u32,
                len,
                marker,
            });
        }
    }

    /// Sets or clears the marker bit of the last payload.
    pub fn set_last_marker(&mut self, marker: bool) {
        if let Some(p) = self.packets.last_mut() {
            p.marker = marker;
        }
    }
}

/// Why a picture could not be packetized.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketizeError {
    /// packetization-mode 0 allows only single NAL unit packets, and this NAL does not fit.
    NalTooLarge {
        /// Size of the NAL unit in bytes.
        nal_len: usize,
        /// The MTU it had to fit.
        mtu: usize,
    },
    /// The input holds no media (empty, or only start codes).
    Empty,
    /// The MTU is too small to carry any payload of this format.
    MtuTooSmall(usize),
    /// The input is not a valid unit of this format (the message says why).
    Malformed(&'static str),
}

impl std::fmt::Display for PacketizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PacketizeError::NalTooLarge { nal_len, mtu } => write!(
                f,
                "NAL unit of {nal_len} bytes does not fit the {mtu}-byte MTU and packetization-mode 0 forbids fragmentation"
            ),
            PacketizeError::Empty => f.write_str("nothing to send: the picture is empty"),
            PacketizeError::MtuTooSmall(m) => write!(f, "MTU of {m} bytes is too small"),
            PacketizeError::Malformed(why) => write!(f, "malformed input: {why}"),
        }
    }
}

impl std::error::Error for PacketizeError {}

/// Splits one picture into RTP payloads.
pub trait Packetizer: Send {
    /// Appends the payloads of `picture` to `out` (which the caller cleared), the marker bit set on
    /// the last one.
    fn packetize(&mut self, picture: &[u8], out: &mut PayloadList) -> Result<(), PacketizeError>;
}

/// Where a depacketizer writes the picture being reassembled.
#[derive(Debug, Default, Clone)]
pub struct PictureBuf {
    /// H.264: Annex-B, a 4-byte start code before every NAL. VP8: the frame.
    pub data: Vec<u8>,
    /// The complete units in `data`: H.264 NAL units without their start codes; VP8 the whole frame.
    pub units: Vec<Range<usize>>,
    /// An IDR NAL (H.264) or a key frame (VP8) is in the picture.
    pub keyframe: bool,
    /// Something of the picture is missing or was unusable.
    pub damaged: bool,
}

impl PictureBuf {
    /// Empties the buffer for the next picture, keeping the allocations.
    pub fn clear(&mut self) {
        self.data.clear();
        self.units.clear();
        self.keyframe = false;
        self.damaged = false;
    }
}

/// What a depacketizer counted: packets it could not use.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Packets of a format we do not handle (H.264 STAP-B, MTAP, FU-B, NAL type 0 or 30/31).
    pub unsupported: u64,
    /// Packets that were truncated or inconsistent.
    pub malformed: u64,
    /// Fragments dropped because the start of their unit was lost.
    pub orphaned: u64,
    /// Partial units discarded because a packet inside them was lost.
    pub discarded_partial: u64,
}

/// Reassembles pictures from RTP payloads fed in sequence order.
pub trait Depacketizer: Send {
    /// The codec this depacketizer handles.
    fn codec(&self) -> VideoCodec;
    /// Feeds the payload of the next packet of the current picture. `lost_before` says that one or
    /// more packets are missing between the previous payload fed and this one.
    fn push(&mut self, payload: &[u8], lost_before: bool, pic: &mut PictureBuf);
    /// The current picture has ended (marker bit seen, or the timestamp moved on): anything still
    /// unfinished is discarded, and `pic.damaged` is set when that lost data.
    fn finish(&mut self, pic: &mut PictureBuf);
    /// Counters of unusable input.
    fn stats(&self) -> DepacketizerStats;
    /// Whether a payload certainly begins a picture, judged from its bytes alone (without
    /// changing any state). A receiver that joins a stream uses it to tell whether packets of the
    /// first picture may have gone before the first one it got. `false` when unsure.
    fn starts_picture(&self, _payload: &[u8]) -> bool {
        false
    }
}
