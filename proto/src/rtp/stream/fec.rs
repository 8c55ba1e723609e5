//! Forward error correction in the stream core (ULPFEC in RED, [`crate::rtp::fec`] and
//! [`crate::rtp::red`]): the sender numbers each picture's FEC packets right after packetizing
//! it, at a rate sized from the receiver's reports and the RTT, builds them from the packets as
//! they leave the pacer, and sends media and FEC wrapped in RED; the
//! receiver unwraps RED, lets each FEC packet fill its place in the jitter buffer, and hands the
//! packets it rebuilds to the media path before a NACK would ask for them (a rebuilt packet
//! counts as arrived for the NACK tracker, so its NACK is cancelled).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtp::fec::{
    fec_packets_for_picture, protection_rate, FecConfig, FecReceiver, FecSender,
};
use crate::rtp::pacer::Class;
use crate::rtp::packet::parse_rtp;
use crate::rtp::packet::RTP_HEADER_LEN;
use crate::rtp::receiver::ReceiverStats;
use crate::rtp::red::unwrap_red;
use crate::rtp::RtpMeta;

use super::send::Paced;
use super::StreamCore;

/// Receiver reports older than this no longer count as feedback: the path back is gone.
const FEEDBACK_STALE: Duration = Duration::from_secs(5);

/// The loss the sender sizes FEC from is measured over at least this long: a receiver that
/// sends NACKs sends a report with each, over a few milliseconds, whose own loss share is
/// mostly 0.
const LOSS_WINDOW: Duration = Duration::from_secs(1);

/// Packets NACK gave up on, with no repair seen, before the receiver decides the path back does
/// not work.
const NACK_FAILURES: u64 = 1;

/// Pictures whose FEC may wait in the pacer at once (more are a history's worth).
const MAX_PICTURES_PENDING: usize = 256;

/// The ULPFEC header and a level-0 header with the long mask: what an FEC payload adds to the
/// protected packets' length.
const ULPFEC_HEADERS_MAX: usize = 10 + 2 + 6;

/// The sender's FEC state.
#[derive(Debug)]
pub(super) struct FecOut {
    pub(super) cfg: FecConfig,
    sender: FecSender,
    /// When the receiver last reported on our stream.
    last_report: Option<Instant>,
    /// The report that opened the current loss window: when, cumulative lost, highest sequence
    /// number received.
    window_start: Option<(Instant, i64, u32)>,
    /// The loss share over the last full window.
    loss: f64,
    /// Pictures whose FEC is reserved but not yet built: their last sequence number and the
    /// rate they were sized at.
    rates: VecDeque<(u16, f64)>,
    /// The last media packet that left ended its picture.
    after_marker: bool,
    /// The RTP headers of FEC packets numbered but not yet built, oldest first.
    headers: VecDeque<[u8; RTP_HEADER_LEN]>,
}

impl FecOut {
    pub(super) fn new(cfg: FecConfig) -> Self {
        FecOut {
            cfg,
            sender: FecSender::new(),
            last_report: None,
            window_start: None,
            loss: 0.0,
            rates: VecDeque::new(),
            after_marker: true,
            headers: VecDeque::new(),
        }
    }

    /// A media packet leaving, whole, as the receiver will see it once RED is removed (with
    /// its transport-wide number, if any): it joins its picture's FEC groups.
    pub(super) fn on_media_out(&mut self, pkt: &[u8]) {
        let (Some(&b1), Some(seq)) = (pkt.get(1), pkt.get(2..4)) else {
            return;
        };
        let seq = u16::from_be_bytes([seq[0], seq[1]]);
        let marker = b1 & 0x80 != 0;
        if self.after_marker {
            // A new picture: FEC built for the last one but not sent has no number any more.
            while self.sender.poll_fec().is_some() {}
        }
        self.after_marker = marker;
        // Pictures wholly before this packet are done.
        while self
            .rates
            .front()
            .is_some_and(|&(last, _)| seq.wrapping_sub(last) as i16 > 0)
        {
            self.rates.pop_front();
        }
        let rate = self.rates.front().map_or(0.0, |&(_, r)| r);
        self.sender.add_media(pkt, marker, rate);
    }

    /// The header reserved for FEC packet `seq` and the next payload built, if both are there
    /// (headers of numbers passed over are dropped on the way).
    pub(super) fn next_fec(&mut self, seq: u16) -> Option<([u8; RTP_HEADER_LEN], Vec<u8>)> {
        while let Some(h) = self.headers.pop_front() {
            let s = u16::from_be_bytes([h[2], h[3]]);
            if s == seq {
                return Some((h, self.sender.poll_fec()?));
            }
            if seq.wrapping_sub(s) as i16 <= 0 {
                // Not reached yet: keep it.
                self.headers.push_front(h);
                return None;
            }
        }
        None
    }

    /// A receiver report block about our stream.
    pub(super) fn on_report(&mut self, now: Instant, cumulative_lost: i32, ext_highest_seq: u32) {
        if self.last_report.is_none() {
            // Until a window is full, the first report's own share stands in.
            self.loss = 0.0;
        }
        self.last_report = Some(now);
        let lost = i64::from(cumulative_lost);
        match self.window_start {
            Some((t, l0, h0)) if now.saturating_duration_since(t) >= LOSS_WINDOW => {
                let expected = ext_highest_seq.wrapping_sub(h0);
                if expected > 0 && expected < 1 << 31 {
                    self.loss = ((lost - l0) as f64 / f64::from(expected)).clamp(0.0, 1.0);
                }
                self.window_start = Some((now, lost, ext_highest_seq));
            }
            Some(_) => {}
            None => self.window_start = Some((now, lost, ext_highest_seq)),
        }
    }
}

/// The receiver's FEC state.
#[derive(Debug)]
pub(super) struct FecIn {
    pub(super) cfg: FecConfig,
    rx: FecReceiver,
    buf: Vec<u8>,
    /// A packet we NACKed came back over the network: the path back works, so lost FEC
    /// packets after a picture's last one are left to NACK rather than guessed.
    pub(super) repairs_seen: bool,
}

impl FecIn {
    pub(super) fn new(cfg: FecConfig) -> Self {
        FecIn {
            cfg,
            rx: FecReceiver::new(),
            buf: Vec::new(),
            repairs_seen: false,
        }
    }
}

impl StreamCore {
    /// The FEC packets per media packet to send now.
    fn fec_rate(&self, now: Instant) -> Option<f64> {
        let f = self.video_out.as_ref()?.fec.as_ref()?;
        let fresh = f
            .last_report
            .is_some_and(|t| now.saturating_duration_since(t) < FEEDBACK_STALE);
        let loss = fresh.then_some(f.loss);
        let rtt = self.rtt.is_measured().then(|| self.rtt.rtt());
        Some(protection_rate(&f.cfg, loss, rtt))
    }

    /// Reserves the FEC of the picture just packetized (sequence numbers `first`.. `first +
    /// count`, RTP timestamp `ts`): its FEC packets take the next sequence numbers and wait in
    /// the pacer behind the picture, but are built only as the picture leaves
    /// ([`FecOut::on_media_out`]), from the packets exactly as they go on the wire: with
    /// congestion control the transport-wide number is stamped on each packet as it leaves the
    /// pacer, and the receiver rebuilds what was sent, number included (libwebrtc protects at
    /// egress for the same reason).
    pub(super) fn protect_picture(&mut self, now: Instant, ts: u32, first: u16, count: u16) {
        let Some(rate) = self.fec_rate(now) else {
            return;
        };
        let Some(v) = self.video_out.as_mut() else {
            return;
        };
        let Some(f) = v.fec.as_mut() else {
            return;
        };
        let last = first.wrapping_add(count).wrapping_sub(1);
        f.rates.push_back((last, rate));
        while f.rates.len() > MAX_PICTURES_PENDING {
            f.rates.pop_front();
        }
        let largest = (0..count)
            .filter_map(|i| v.history.get(first.wrapping_add(i)))
            .map(<[u8]>::len)
            .max()
            .unwrap_or(RTP_HEADER_LEN);
        // An FEC payload is its headers and the longest protected packet after its fixed header.
        let payload = largest.saturating_sub(RTP_HEADER_LEN) + ULPFEC_HEADERS_MAX;
        for _ in 0..fec_packets_for_picture(usize::from(count), rate) {
            // A history slot still waiting in the pacer is not reused: the FEC packet is
            // left out instead (the media matters more).
            if v.pacer.media_len() >= v.history.capacity() {
                break;
            }
            let media_pt = self.rtp.payload_type();
            self.rtp.set_payload_type(f.cfg.ulpfec_payload_type);
            let header = self.rtp.next_header(ts, false);
            self.rtp.set_payload_type(media_pt);
            self.rtp.count_payload(payload);
            let seq = u16::from_be_bytes([header[2], header[3]]);
            // The header waits for its payload, built on the way out; the history gets the
            // whole packet then (a NACK before that finds nothing to resend).
            f.headers.push_back(header);
            while f.headers.len() > v.history.capacity().max(1) {
                f.headers.pop_front();
            }
            // One byte more on the wire: the RED header.
            let wire = RTP_HEADER_LEN + payload + 1;
            v.pacer.push(now, Paced::Fec(seq), wire, Class::Media);
        }
    }

    /// Whether payload type `pt` is the RED of a stream that receives FEC.
    pub(super) fn is_red(&self, pt: u8) -> bool {
        self.video_in
            .as_ref()
            .and_then(|v| v.fec.as_ref())
            .is_some_and(|f| f.cfg.red_payload_type == pt)
    }

    /// A RED packet: its media goes the media path, its FEC fills its place and may rebuild.
    pub(super) fn on_red(&mut self, now: Instant, meta: RtpMeta, data: &[u8]) {
        let Some(f) = self.video_in.as_mut().and_then(|v| v.fec.as_mut()) else {
            return;
        };
        let mut inner = std::mem::take(&mut f.buf);
        let block = unwrap_red(data, &mut inner);
        let fec_pt = f.cfg.ulpfec_payload_type;
        match block {
            Ok(pt) if pt == self.rtp.payload_type() => match parse_rtp(&inner) {
                Ok((m, range)) => {
                    self.on_rtp_packet(now, m, &inner, range, false);
                    self.fec_media(now, &inner);
                }
                Err(_) => self.stats.malformed += 1,
            },
            Ok(pt) if pt == fec_pt => self.on_fec_packet(now, meta, &inner, data.len()),
            Ok(_) => self.stats.unknown_payload_type += 1,
            Err(_) => self.stats.malformed += 1,
        }
        if let Some(f) = self.video_in.as_mut().and_then(|v| v.fec.as_mut()) {
            f.buf = inner;
        }
    }

    /// An FEC packet (unwrapped from RED, `len` bytes on the wire): it counts as a packet of
    /// the stream, fills its sequence number in the jitter buffer, and may rebuild a packet.
    fn on_fec_packet(&mut self, now: Instant, meta: RtpMeta, inner: &[u8], len: usize) {
        let Ok((_, range)) = parse_rtp(inner) else {
            self.stats.malformed += 1;
            return;
        };
        self.stats.packets_received += 1;
        self.stats.bytes_received += len as u64;
        if self
            .rx_stats
            .as_ref()
            .is_some_and(|s| s.ssrc() == meta.ssrc)
        {
            let arrival = ReceiverStats::arrival_in_clock_units(
                now.saturating_duration_since(self.origin),
                self.clock_rate,
            );
            if let Some(s) = self.rx_stats.as_mut() {
                s.on_packet(meta.sequence, meta.timestamp, arrival, range.len());
            }
        }
        // FEC follows its picture's last packet: it ends the picture for the NACK tracker's tail
        // probe (else the next picture's first packet is asked for before it is due).
        let _ = self.note_for_nack(now, meta.sequence, true);
        if let Some(v) = self.video_in.as_mut() {
            let _ = v.rx.push_filler(meta, now, &mut v.frames);
            // Guess where lost FEC packets sat past a picture's last one only where NACK cannot
            // do better: it is off, or it has given up on packets and no repair ever came.
            let nack_fails = v
                .nack
                .as_ref()
                .is_none_or(|n| n.stats().given_up >= NACK_FAILURES);
            if let Some(f) = v.fec.as_mut() {
                f.rx.set_place_trailing(nack_fails && !f.repairs_seen);
                f.rx.handle_fec_packet(inner);
            }
        }
        // Lost FEC packets found from this one's position: no media is missing there.
        while let Some(seq) = self
            .video_in
            .as_mut()
            .and_then(|v| v.fec.as_mut())
            .and_then(|f| f.rx.poll_filler())
        {
            let _ = self.note_for_nack(now, seq, true);
            if let Some(v) = self.video_in.as_mut() {
                let filler = RtpMeta {
                    sequence: seq,
                    marker: false,
                    ..meta
                };
                let _ = v.rx.push_filler(filler, now, &mut v.frames);
            }
        }
        self.after_video(now);
        self.fec_drain(now);
    }

    /// A media packet of the stream (whole RTP, RED removed) for the FEC receiver.
    pub(super) fn fec_media(&mut self, now: Instant, pkt: &[u8]) {
        let Some(f) = self.video_in.as_mut().and_then(|v| v.fec.as_mut()) else {
            return;
        };
        f.rx.handle_media(pkt);
        self.fec_drain(now);
    }

    /// Hands what the FEC receiver rebuilt to the media path (each at most once: bounded).
    fn fec_drain(&mut self, now: Instant) {
        loop {
            let Some(f) = self.video_in.as_mut().and_then(|v| v.fec.as_mut()) else {
                return;
            };
            let s = f.rx.stats();
            self.stats.fec_received = s.fec_packets;
            self.stats.fec_recovered = s.recovered;
            self.stats.fec_unrecoverable = s.unrecoverable;
            let Some(pkt) = f.rx.poll_recovered() else {
                return;
            };
            match parse_rtp(&pkt) {
                Ok((m, range)) if m.payload_type == self.rtp.payload_type() => {
                    self.on_rtp_packet(now, m, &pkt, range, true);
                }
                _ => self.stats.malformed += 1,
            }
        }
    }
}
