//! Fuzzer bytes as a stream of RTP packets (sequence numbers that step, jump, repeat and wrap;
//! timestamps that stay, step or leap; markers; SSRC changes; time passing) into the video receive
//! path: reorder window, depacketizer, picture assembly. Every frame that comes out must be
//! well-formed for a decoder.
//!
//! Input layout: one configuration byte, then records of `ctl, seq_delta, ts_step, dt_ms, len`
//! followed by `len` payload bytes (see [`Packet`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use roomkit_media::codec::annexb::{nal_type, nal_units};
use roomkit_media::codec::vp8::{is_vp8_keyframe, Vp8Depacketizer};
use roomkit_media::frame::{Delivery, VideoCodec, VideoFrame};
use roomkit_media::rtp::reorder::ReorderConfig;
use roomkit_media::rtp::video::{VideoReceiver, VideoReceiverConfig};
use roomkit_media::rtp::RtpMeta;

use super::Cursor;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// How the receiver is set up, from the first input byte.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub delivery: Delivery,
    pub wait_for_keyframe: bool,
    pub deliver_incomplete: bool,
    /// A small window and a short wait, so that giving up on gaps is exercised often.
    pub tight_window: bool,
}

impl Setup {
    fn from_byte(b: u8) -> Setup {
        Setup {
            delivery: if b & 1 != 0 {
                Delivery::NalUnit
            } else {
                Delivery::AccessUnit
            },
            wait_for_keyframe: b & 2 != 0,
            deliver_incomplete: b & 4 != 0,
            tight_window: b & 8 != 0,
        }
    }

    /// The configuration byte for this setup (for writing seeds).
    pub fn to_byte(self) -> u8 {
        u8::from(self.delivery == Delivery::NalUnit)
            | u8::from(self.wait_for_keyframe) << 1
            | u8::from(self.deliver_incomplete) << 2
            | u8::from(self.tight_window) << 3
    }

    fn config(self) -> VideoReceiverConfig {
        let mut cfg = VideoReceiverConfig {
            delivery: self.delivery,
            wait_for_keyframe: self.wait_for_keyframe,
            deliver_incomplete: self.deliver_incomplete,
            ..VideoReceiverConfig::default()
        };
        if self.tight_window {
            cfg.reorder = ReorderConfig {
                window: 4,
                max_delay: Duration::from_millis(5),
            };
        }
        cfg
    }
}

/// One packet record.
#[derive(Debug, Clone, Default)]
pub struct Packet {
    /// Bit 0 marker, bit 1 second SSRC, bit 2 poll after it, bit 3 hand the payload over owned,
    /// bit 4 take the keyframe request, bit 5 make `ts_step` a leap of `ts_step << 24`.
    pub ctl: u8,
    /// Added to the previous sequence number, as a signed byte (1 = in order).
    pub seq_delta: i8,
    /// Timestamp step in units of 1500 (2 = the next picture at 30 fps).
    pub ts_step: u8,
    /// Milliseconds that pass after the packet.
    pub dt_ms: u8,
    pub payload: Vec<u8>,
}

impl Packet {
    /// Appends this record in the input layout (payloads longer than 255 bytes are cut).
    pub fn write(&self, out: &mut Vec<u8>) {
        let len = self.payload.len().min(255);
        out.extend_from_slice(&[
            self.ctl,
            self.seq_delta as u8,
            self.ts_step,
            self.dt_ms,
            len as u8,
        ]);
        out.extend_from_slice(&self.payload[..len]);
    }
}

/// Feeds the packets of `data` to `rx` and returns every frame, the timestamps sent and the
/// payload bytes offered.
fn drive(rx: &mut VideoReceiver, input: &mut Cursor<'_>) -> (Vec<VideoFrame>, HashSet<u32>, usize) {
    let mut now = Instant::now();
    let mut seq: u16 = 65530;
    let mut ts: u32 = u32::MAX - 5999;
    let mut out = Vec::new();
    let mut sent_ts = HashSet::new();
    let mut offered = 0;
    // Bounded by the input: every record consumes at least one byte.
    while !input.is_empty() {
        let ctl = input.u8();
        seq = seq.wrapping_add(input.u8() as i8 as i16 as u16);
        let step = u32::from(input.u8());
        ts = if ctl & 32 != 0 {
            ts.wrapping_add(step << 24)
        } else {
            ts.wrapping_add(step * 1500)
        };
        let dt = u64::from(input.u8());
        let len = usize::from(input.u8());
        let payload = input.bytes(len);
        offered += payload.len();
        sent_ts.insert(ts);
        let meta = RtpMeta {
            payload_type: 96,
            marker: ctl & 1 != 0,
            sequence: seq,
            timestamp: ts,
            ssrc: 0x1000 + u32::from(ctl >> 1 & 1),
        };
        if ctl & 8 != 0 {
            rx.push_owned(meta, payload.to_vec(), now, &mut out);
        } else {
            rx.push(meta, payload, now, &mut out);
        }
        now += Duration::from_millis(dt);
        if ctl & 4 != 0 || rx.next_deadline().is_some_and(|d| d <= now) {
            rx.poll(now, &mut out);
        }
        if ctl & 16 != 0 {
            let _ = rx.take_keyframe_request(now);
        }
    }
    rx.flush(now + Duration::from_secs(1), &mut out);
    (out, sent_ts, offered)
}

/// What holds for frames of either codec: numbered in order from 0, timestamps that were sent,
/// completeness as configured, and no more bytes out than could have come from the input.
fn check_common(
    setup: Setup,
    codec: VideoCodec,
    frames: &[VideoFrame],
    sent: &HashSet<u32>,
    offered: usize,
) {
    let mut total = 0;
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.codec, codec);
        assert!(!f.data.is_empty(), "empty frame delivered");
        assert_eq!(f.sequence, i as u64, "frame numbering");
        assert!(sent.contains(&f.rtp_timestamp), "timestamp never sent");
        assert!(
            f.complete || setup.deliver_incomplete,
            "incomplete frame delivered"
        );
        assert!(f.timestamp_ms.is_finite());
        total += f.data.len();
    }
    // Each payload byte lands in at most one frame; H.264 adds a 4-byte start code per NAL unit,
    // and a NAL unit takes at least one payload byte.
    assert!(total <= 5 * offered, "{total} bytes out of {offered} in");
}

/// A NAL unit a decoder reads back as exactly itself: a header with the forbidden bit clear
/// and a type that is a NAL unit rather than an RTP packetization structure.
fn check_nal(nal: &[u8]) {
    let header = *nal.first().expect("empty NAL unit");
    assert_eq!(
        header & 0x80,
        0,
        "forbidden bit set in a delivered NAL unit"
    );
    assert!(
        (1..=23).contains(&nal_type(header)),
        "NAL type {} delivered",
        nal_type(header)
    );
}

/// An H.264 access unit (or, per NAL, one unit): Annex-B that splits back into exactly the NAL
/// units it was built from, each one whole.
fn check_h264(setup: Setup, f: &VideoFrame) {
    let stream: Vec<u8> = match setup.delivery {
        Delivery::AccessUnit => f.data.clone(),
        Delivery::NalUnit => [&START_CODE[..], &f.data].concat(),
        other => panic!("no check for delivery {other:?}"),
    };
    assert!(
        stream.starts_with(&START_CODE),
        "access unit without a leading start code"
    );
    let nals: Vec<&[u8]> = nal_units(&stream).map(|r| &stream[r]).collect();
    let rebuilt: Vec<u8> = nals
        .iter()
        .flat_map(|n| START_CODE.iter().chain(n.iter()))
        .copied()
        .collect();
    assert_eq!(
        rebuilt, stream,
        "the frame does not split back into the NAL units it holds"
    );
    for nal in &nals {
        check_nal(nal);
    }
    let key = match setup.delivery {
        Delivery::AccessUnit => nals.iter().any(|n| nal_type(n[0]) == 5),
        Delivery::NalUnit => {
            assert_eq!(nals.len(), 1, "one NAL unit per frame");
            matches!(nal_type(nals[0][0]), 5 | 7 | 8)
        }
        other => panic!("no check for delivery {other:?}"),
    };
    assert_eq!(f.keyframe, key, "keyframe flag");
}

/// Runs fuzzer bytes through an H.264 receiver.
pub fn h264(data: &[u8]) {
    let mut input = Cursor::new(data);
    let setup = Setup::from_byte(input.u8());
    let mut rx = VideoReceiver::h264(setup.config());
    let (frames, sent, offered) = drive(&mut rx, &mut input);
    check_common(setup, VideoCodec::H264, &frames, &sent, offered);
    for f in &frames {
        check_h264(setup, f);
    }
}

/// Runs fuzzer bytes through a VP8 receiver (always one frame per picture).
pub fn vp8(data: &[u8]) {
    let mut input = Cursor::new(data);
    let setup = Setup::from_byte(input.u8());
    let mut rx = VideoReceiver::new(setup.config(), Box::new(Vp8Depacketizer::new()));
    let (frames, sent, offered) = drive(&mut rx, &mut input);
    check_common(setup, VideoCodec::Vp8, &frames, &sent, offered);
    for f in &frames {
        assert_eq!(f.keyframe, is_vp8_keyframe(&f.data), "keyframe flag");
    }
}
