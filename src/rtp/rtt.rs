//! Round-trip time of a stream, from whatever measurements the stream gets.
//!
//! Two sources feed it:
//! - a sender gets report blocks about its SSRC (RR or SR) echoing its last SR: arrival minus
//!   LSR minus DLSR is an exact RTT (RFC 3550 §6.4.1), see [`crate::rtp::rtcp::round_trip_time`];
//! - a receiver that only receives never gets those, so it measures the time from its first NACK
//!   for a packet to the retransmission's arrival. Only unambiguous cases count (Karn's rule): the
//!   packet was NACKed exactly once, so the retransmission answers that NACK.
//!
//! A retransmission that is not RTX carries the original sequence number, so a late original
//! can pass for it and give a sample that is far too small. The estimate is therefore the median
//! of the recent samples rather than a running mean: a minority of bogus samples cannot drag it.
//! For the same reason one such ambiguous sample is not believed on its own: until an exact
//! sample (RTCP, or RTX) or three samples in all have come, the initial value stands. The spread
//! (for retry timers) is half the distance between the 80th and 20th percentiles.

use std::time::Duration;

/// Samples kept for the median.
const SAMPLES: usize = 15;
/// Ambiguous samples needed before the estimate replaces the initial value.
const TRUSTED_AFTER: u64 = 3;
/// Shortest and longest RTT believed; anything outside is clamped.
const MIN_RTT: Duration = Duration::from_micros(100);
const MAX_RTT: Duration = Duration::from_secs(10);

/// A robust RTT estimate; see the module documentation.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    initial: Duration,
    ring: [Duration; SAMPLES],
    len: usize,
    next: usize,
    total: u64,
    exact: u64,
    latest: Option<Duration>,
    cached: (Duration, Duration),
}

impl RttEstimator {
    /// What the RTT is taken to be before any measurement: a typical wide-area figure, on the
    /// long side so that early retries are not premature.
    pub const DEFAULT_INITIAL: Duration = Duration::from_millis(100);

    /// An estimator that reports `initial` until the first sample.
    pub fn new(initial: Duration) -> Self {
        let initial = initial.clamp(MIN_RTT, MAX_RTT);
        RttEstimator {
            initial,
            ring: [Duration::ZERO; SAMPLES],
            len: 0,
            next: 0,
            total: 0,
            exact: 0,
            latest: None,
            cached: (initial, initial / 2),
        }
    }

    /// Adds one exact measurement (from report blocks, or an RTX answer to a single NACK).
    pub fn on_sample(&mut self, sample: Duration) {
        self.exact += 1;
        self.add(sample);
    }

    /// Adds one measurement that may be too small (a retransmission that could have been the
    /// late original).
    pub fn on_ambiguous_sample(&mut self, sample: Duration) {
        self.add(sample);
    }

    fn add(&mut self, sample: Duration) {
        let s = sample.clamp(MIN_RTT, MAX_RTT);
        self.ring[self.next] = s;
        self.next = (self.next + 1) % SAMPLES;
        self.len = (self.len + 1).min(SAMPLES);
        self.total += 1;
        self.latest = Some(s);
        let mut sorted = [Duration::ZERO; SAMPLES];
        sorted[..self.len].copy_from_slice(&self.ring[..self.len]);
        let v = &mut sorted[..self.len];
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        let median = at(0.5);
        let spread = (at(0.8) - at(0.2)) / 2;
        self.cached = (median, spread);
    }

    /// The current estimate (the initial value until measured).
    pub fn rtt(&self) -> Duration {
        if self.is_measured() {
            self.cached.0
        } else {
            self.initial
        }
    }

    /// How much the RTT varies: half the 20th–80th percentile range (half the initial value
    /// until measured, so early timers stay generous).
    pub fn spread(&self) -> Duration {
        if self.is_measured() {
            self.cached.1
        } else {
            self.initial / 2
        }
    }

    /// Whether the estimate rests on measurements: an exact sample, or enough ambiguous ones.
    pub fn is_measured(&self) -> bool {
        self.exact > 0 || self.total >= TRUSTED_AFTER
    }

    /// Samples taken so far.
    pub fn samples(&self) -> u64 {
        self.total
    }

    /// The last sample, clamped.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }

    /// The value reported before any measurement.
    pub fn initial(&self) -> Duration {
        self.initial
    }
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator::new(Self::DEFAULT_INITIAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn initial_until_measured() {
        let e = RttEstimator::default();
        assert_eq!(e.rtt(), ms(100));
        assert_eq!(e.spread(), ms(50));
        assert!(!e.is_measured());
        assert_eq!(e.latest(), None);
    }

    #[test]
    fn converges_on_samples() {
        let mut e = RttEstimator::default();
        for v in [40, 42, 38, 41, 39] {
            e.on_sample(ms(v));
        }
        assert_eq!(e.rtt(), ms(40));
        assert!(e.spread() <= ms(2), "{:?}", e.spread());
        assert_eq!(e.samples(), 5);
        assert_eq!(e.latest(), Some(ms(39)));
    }

    #[test]
    fn a_minority_of_bogus_small_samples_does_not_drag_it() {
        let mut e = RttEstimator::default();
        for i in 0..30 {
            // One in four is a late original mistaken for a retransmission.
            e.on_sample(if i % 4 == 0 { ms(6) } else { ms(40 + i % 3) });
        }
        assert!(e.rtt() >= ms(40) && e.rtt() <= ms(42), "{:?}", e.rtt());
    }

    #[test]
    fn follows_a_change_within_a_window() {
        let mut e = RttEstimator::default();
        for _ in 0..SAMPLES {
            e.on_sample(ms(40));
        }
        for _ in 0..SAMPLES / 2 + 1 {
            e.on_sample(ms(200));
        }
        assert_eq!(e.rtt(), ms(200));
    }

    #[test]
    fn one_ambiguous_sample_is_not_believed() {
        let mut e = RttEstimator::default();
        e.on_ambiguous_sample(ms(1));
        assert_eq!(e.rtt(), ms(100));
        assert!(!e.is_measured());
        e.on_ambiguous_sample(ms(40));
        e.on_ambiguous_sample(ms(41));
        assert!(e.is_measured());
        assert_eq!(e.rtt(), ms(40));
    }

    #[test]
    fn samples_are_clamped() {
        let mut e = RttEstimator::new(Duration::ZERO);
        assert_eq!(e.rtt(), MIN_RTT);
        e.on_sample(Duration::from_secs(3600));
        assert_eq!(e.rtt(), MAX_RTT);
    }
}
