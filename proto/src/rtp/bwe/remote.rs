//! The receive-side estimate behind REMB (`goog-remb`): when the peer offers REMB and not
//! transport-cc, there is no per-packet feedback, so the receiver runs the delay filter itself
//! and tells the sender the bitrate it may use.
//!
//! The filter and the rate controller are the sender's own ([`BandwidthEstimator::on_reports`]):
//! here a packet's send time is its abs-send-time when that was negotiated, else the RTP
//! timestamp of its picture, and its arrival is our clock; the same estimator also measures the
//! incoming rate, which bounds how far the estimate runs ahead of what actually arrives. Arrivals
//! are fed in batches (every feedback interval, as transport-wide feedback would bring them), and
//! a REMB is due once a second, or at once when the estimate fell by more than 3 % since the last
//! one (libwebrtc's rule).

use std::time::{Duration, Instant};

use super::{BandwidthEstimator, BweConfig, Report};
use crate::rtp::hdrext::{packet_abs_send_time_us, ABS_SEND_TIME_WRAP_US};

/// A REMB goes out at least this often.
pub const REMB_INTERVAL: Duration = Duration::from_secs(1);
/// A fall of the estimate by more than this share since the last REMB sends one at once.
pub const REMB_DROP_SHARE: f64 = 0.03;
/// Arrivals held between two batches at most (a burst beyond it is dropped from the estimate).
const MAX_PENDING: usize = 4096;

/// Where the receiver reads a packet's send time from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendClock {
    /// The abs-send-time header extension under this ID (packets without it are skipped).
    AbsSendTime(u8),
    /// The RTP timestamp (the picture's capture time) at this clock rate.
    RtpTimestamp(u32),
}

/// Unwraps a counter that wraps at `modulus` into a rising `i64`.
#[derive(Debug, Clone, Copy)]
struct Unwrapper {
    modulus: i64,
    last: Option<i64>,
    base: i64,
}

impl Unwrapper {
    fn new(modulus: i64) -> Self {
        Unwrapper {
            modulus,
            last: None,
            base: 0,
        }
    }

    fn unwrap(&mut self, raw: i64) -> i64 {
        let half = self.modulus / 2;
        let Some(last) = self.last else {
            self.last = Some(raw);
            return raw;
        };
        let diff = raw - last;
        if diff < -half {
            // Wrapped forward.
            self.base += self.modulus;
            self.last = Some(raw);
            self.base + raw
        } else if diff > half {
            // An older value from before the last wrap.
            self.base - self.modulus + raw
        } else {
            if diff > 0 {
                self.last = Some(raw);
            }
            self.base + raw
        }
    }
}

/// The receiver's estimate for REMB; see the module documentation.
#[derive(Debug)]
pub struct ReceiveEstimator {
    bwe: BandwidthEstimator,
    clock: SendClock,
    unwrap: Unwrapper,
    origin: Option<Instant>,
    pending: Vec<Report>,
    /// The last estimate sent, and when the next is due regardless.
    last_sent: Option<u64>,
    next_due: Option<Instant>,
    /// The media source whose sequence numbers show losses (the first one heard), and its
    /// highest sequence number, unwrapped.
    seq: Option<(u32, Unwrapper, i64)>,
    /// Packets that carried no send time the clock could read.
    pub skipped: u64,
}

/// Losses reported at once for one gap at most (a jump beyond it is a restart, not a loss).
const MAX_GAP: i64 = 1_000;

impl ReceiveEstimator {
    /// An estimator within `cfg` (starting at its start bitrate) reading send times from `clock`.
    pub fn new(cfg: BweConfig, clock: SendClock) -> Self {
        let modulus = match clock {
            SendClock::AbsSendTime(_) => ABS_SEND_TIME_WRAP_US,
            SendClock::RtpTimestamp(_) => 1 << 32,
        };
        ReceiveEstimator {
            bwe: BandwidthEstimator::new(cfg),
            clock,
            unwrap: Unwrapper::new(modulus),
            origin: None,
            pending: Vec::new(),
            last_sent: None,
            next_due: None,
            seq: None,
            skipped: 0,
        }
    }

    /// A whole RTP packet arrived at `now`. Never panics, whatever the bytes.
    pub fn on_packet(&mut self, now: Instant, packet: &[u8]) {
        let raw = match self.clock {
            SendClock::AbsSendTime(id) => packet_abs_send_time_us(packet, id),
            SendClock::RtpTimestamp(_) => packet
                .get(4..8)
                .filter(|_| packet.len() >= 12)
                .map(|b| i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        };
        let Some(raw) = raw else {
            self.skipped += 1;
            return;
        };
        if self.pending.len() >= MAX_PENDING {
            return;
        }
        let send = self.unwrap.unwrap(raw);
        let send_us = match self.clock {
            SendClock::AbsSendTime(_) => send,
            SendClock::RtpTimestamp(rate) => {
                (i128::from(send) * 1_000_000 / i128::from(rate.max(1))) as i64
            }
        };
        // Sequence gaps of the media source are losses: the loss-based bound backs the estimate
        // off when a full queue drops what the delay signal missed.
        let (ssrc, raw_seq) = match packet.get(..12) {
            Some(h) => (
                u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
                i64::from(u16::from_be_bytes([h[2], h[3]])),
            ),
            None => (0, 0),
        };
        let tracked = self
            .seq
            .get_or_insert((ssrc, Unwrapper::new(1 << 16), raw_seq - 1));
        if tracked.0 == ssrc {
            let ext = tracked.1.unwrap(raw_seq);
            let gap = ext - tracked.2 - 1;
            tracked.2 = tracked.2.max(ext);
            for _ in 0..gap.clamp(0, MAX_GAP) {
                self.pending.push(Report {
                    send_us,
                    size: 0,
                    arrival_us: None,
                });
            }
        }
        let origin = *self.origin.get_or_insert(now);
        self.pending.push(Report {
            send_us,
            size: packet.len(),
            arrival_us: Some(now.saturating_duration_since(origin).as_micros() as i64),
        });
    }

    /// The round-trip time, when we know it.
    pub fn on_rtt(&mut self, rtt: Duration) {
        self.bwe.on_rtt(rtt);
    }

    /// Whether arrivals wait to be fed.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Feeds the arrivals since the last call to the estimator at `now`; returns the bitrate to
    /// send in a REMB when one is due (the first as soon as anything arrived).
    pub fn poll(&mut self, now: Instant) -> Option<u64> {
        // Send order is what the filter wants; a packet the path reordered takes its place.
        self.pending.sort_by_key(|r| r.send_us);
        self.bwe.on_reports(now, self.pending.drain(..));
        if self.bwe.stats().feedback == 0 {
            return None;
        }
        let estimate = self.estimate_bps();
        let fell = self
            .last_sent
            .is_some_and(|s| (estimate as f64) < s as f64 * (1.0 - REMB_DROP_SHARE));
        let due = self.next_due.is_none_or(|t| now >= t);
        (fell || due).then(|| self.sent(now, estimate))
    }

    fn sent(&mut self, now: Instant, bps: u64) -> u64 {
        self.last_sent = Some(bps);
        self.next_due = Some(now + REMB_INTERVAL);
        bps
    }

    /// The estimate now, bits per second.
    pub fn estimate_bps(&self) -> u64 {
        self.bwe.target_bps()
    }

    /// The estimator inside (its counters and signals).
    pub fn estimator(&self) -> &BandwidthEstimator {
        &self.bwe
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::hdrext::{abs_send_time, insert_one_byte, ExtElement};

    fn packet(ts: u32, abs: Option<Duration>, len: usize) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 1];
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 9]);
        p.resize(len, 0);
        if let Some(a) = abs {
            let b = abs_send_time(a);
            assert!(insert_one_byte(&mut p, &[ExtElement { id: 2, data: &b }]));
        }
        p
    }

    #[test]
    fn unwrapper_follows_wraps_and_late_values() {
        let mut u = Unwrapper::new(100);
        assert_eq!(u.unwrap(90), 90);
        assert_eq!(u.unwrap(10), 110);
        assert_eq!(u.unwrap(95), 95);
        assert_eq!(u.unwrap(30), 130);
        assert_eq!(u.unwrap(20), 120);
    }

    /// 1 Mbit/s of packets every 5 ms through a path whose delay is flat, then may grow.
    fn run(clock: SendClock, growth_us: i64) -> (ReceiveEstimator, Vec<u64>, Vec<u32>) {
        let t0 = Instant::now();
        let mut e = ReceiveEstimator::new(
            BweConfig {
                start_bps: 800_000,
                ..BweConfig::default()
            },
            clock,
        );
        let mut rembs = Vec::new();
        let mut at_packet = Vec::new();
        for i in 0..2_000u32 {
            let send = Duration::from_millis(5 * u64::from(i));
            // Flat for five seconds, then (with `growth_us`) a queue building.
            let delay = 20_000 + i64::from(i.saturating_sub(1_000)) * growth_us;
            let at = t0 + send + Duration::from_micros(delay as u64);
            // abs-send-time starts near its wrap to cross it.
            let abs = Duration::from_secs(60) + send;
            e.on_packet(at, &packet(i * 450, Some(abs), 625));
            if i % 10 == 9 {
                if let Some(r) = e.poll(at) {
                    rembs.push(r);
                    at_packet.push(i);
                }
            }
        }
        (e, rembs, at_packet)
    }

    #[test]
    fn flat_delay_grows_the_estimate_growing_delay_cuts_it_at_once() {
        for clock in [SendClock::AbsSendTime(2), SendClock::RtpTimestamp(90_000)] {
            let (e, rembs, _) = run(clock, 0);
            assert_eq!(e.skipped, 0);
            // Ten seconds: a REMB a second (and the first at once), the estimate near what
            // arrives (1 Mbit/s) or above it, never far above.
            assert!((10..=13).contains(&rembs.len()), "{clock:?} {rembs:?}");
            let last = *rembs.last().unwrap();
            assert!((900_000..=1_700_000).contains(&last), "{clock:?} {rembs:?}");
            let (e, rembs, at) = run(clock, 200);
            assert!(e.estimator().stats().delay_decreases > 0, "{clock:?}");
            // A decrease goes out without waiting for the second (200 packets).
            assert!(
                at.windows(2).any(|w| w[1] - w[0] < 200),
                "{clock:?} {at:?} {rembs:?}"
            );
            assert!(*rembs.last().unwrap() < 1_000_000, "{clock:?} {rembs:?}");
        }
    }

    #[test]
    fn packets_without_a_send_time_are_skipped() {
        let mut e = ReceiveEstimator::new(BweConfig::default(), SendClock::AbsSendTime(2));
        let now = Instant::now();
        e.on_packet(now, &packet(0, None, 100));
        e.on_packet(now, &[0x90, 1, 2]);
        assert_eq!((e.skipped, e.has_pending()), (2, false));
        assert_eq!(e.poll(now), None);
    }
}
