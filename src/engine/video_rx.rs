//! Receive half of a video stream: the pure [`VideoReceiver`] driven by the stream thread, its
//! frames turned into events and its keyframe wishes into PLIs.

use std::time::Instant;

use super::event::{EngineEvent, SessionId};
use super::media::{RxOutput, VideoParams};
use crate::codec::h264::H264Depacketizer;
use crate::codec::vp8::Vp8Depacketizer;
use crate::codec::Depacketizer;
use crate::frame::{VideoCodec, VideoFrame};
use crate::rtp::video::{VideoReceiver, VideoReceiverConfig};
use crate::rtp::RtpMeta;

/// A video stream's receiver and the frames it produced but the stream has not yet posted.
pub struct VideoRx {
    session: SessionId,
    payload_type: u8,
    rx: VideoReceiver,
    frames: Vec<VideoFrame>,
}

impl VideoRx {
    pub fn new(p: &VideoParams, session: SessionId) -> VideoRx {
        let cfg = VideoReceiverConfig {
            clock_rate: p.clock_rate,
            delivery: p.delivery,
            deliver_incomplete: p.deliver_incomplete,
            wait_for_keyframe: p.wait_for_keyframe,
            ..VideoReceiverConfig::default()
        };
        let depack: Box<dyn Depacketizer> = match p.codec {
            VideoCodec::H264 => Box::new(H264Depacketizer::new()),
            VideoCodec::Vp8 => Box::new(Vp8Depacketizer::new()),
        };
        VideoRx {
            session,
            payload_type: p.payload_type,
            rx: VideoReceiver::new(cfg, depack),
            frames: Vec::new(),
        }
    }

    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// One accepted RTP packet of the video payload type.
    pub fn on_rtp(&mut self, meta: &RtpMeta, payload: &[u8], now: Instant, out: &mut RxOutput) {
        self.rx.push(*meta, payload, now, &mut self.frames);
        self.collect(now, out);
    }

    /// Gives up on overdue gaps (and retries a rate-limited keyframe request).
    pub fn poll(&mut self, now: Instant, out: &mut RxOutput) {
        self.rx.poll(now, &mut self.frames);
        self.collect(now, out);
    }

    /// When [`VideoRx::poll`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.rx.next_deadline()
    }

    fn collect(&mut self, now: Instant, out: &mut RxOutput) {
        for f in self.frames.drain(..) {
            out.events.push(EngineEvent::Video(self.session, f));
        }
        if self.rx.take_keyframe_request(now) {
            out.want_keyframe = true;
        }
        let s = self.rx.stats();
        let c = &mut out.counters;
        c.frames = s.frames;
        c.keyframes = s.keyframes;
        c.dropped_incomplete = s.incomplete_dropped;
        c.dropped_gated = s.gated_dropped;
        c.malformed = s.depacketizer.malformed + s.depacketizer.unsupported;
    }
}
