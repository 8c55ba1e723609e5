//! Round-trip time of a stream, from whatever measurements the stream gets.
//!
//! Two kinds of sample feed it:
//! - **exact**: a sender gets report blocks about its SSRC (RR or SR) echoing its last SR, and
//!   arrival minus LSR minus DLSR is the RTT (RFC 3550 §6.4.1, see
//!   [`crate::rtp::rtcp::round_trip_time`]); a receiver whose NACK was answered by an RTX packet
//!   (its own sequence space: it can only be the answer) measures NACK to arrival, when that
//!   packet was NACKed exactly once (Karn's rule);
//! - **ambiguous**: a retransmission that is not RTX carries the original sequence number, so a
//!   late original can pass for it and give a sample that is far too small. On a path that
//!   reorders about as often as it loses, half of these are bogus.
//!
//! An underestimate is the expensive mistake: repairs then arrive after the jitter buffer gave up
//! on them, and a sender of files never sends the key picture that would end the damage. So the
//! estimator keeps the two kinds apart. [`RttEstimator::rtt`] (retry timing) is the median of the
//! exact samples, or of the ambiguous ones when there are no exact ones; [`RttEstimator::rtt_high`]
//! (how long to wait before giving up) is the 80th percentile of the exact samples, or the 90th of
//! the ambiguous ones, which stays in the genuine cluster even when most samples are bogus. Until
//! an exact sample or three ambiguous ones have come, the initial value stands.

use std::time::Duration;

/// Samples kept of each kind.
const SAMPLES: usize = 15;
/// Ambiguous samples needed before they replace the initial value.
const TRUSTED_AFTER: usize = 3;
/// Shortest and longest RTT believed; anything outside is clamped.
const MIN_RTT: Duration = Duration::from_micros(100);
const MAX_RTT: Duration = Duration::from_secs(10);

/// The last samples of one kind.
#[derive(Debug, Clone)]
struct Ring {
    v: [Duration; SAMPLES],
    len: usize,
    next: usize,
}

impl Ring {
    fn new() -> Self {
        Ring {
            v: [Duration::ZERO; SAMPLES],
            len: 0,
            next: 0,
        }
    }

    fn push(&mut self, s: Duration) {
        self.v[self.next] = s;
        self.next = (self.next + 1) % SAMPLES;
        self.len = (self.len + 1).min(SAMPLES);
    }

    /// The `q` quantiles of the samples, in one sort.
    fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [Duration; N] {
        let mut sorted = self.v;
        let v = &mut sorted[..self.len];
        v.sort_unstable();
        qs.map(|q| v[((v.len() - 1) as f64 * q).round() as usize])
    }
}

/// Derived values: estimate, spread, high estimate.
#[derive(Debug, Clone, Copy)]
struct Derived {
    rtt: Duration,
    spread: Duration,
    high: Duration,
}

/// A robust RTT estimate; see the module documentation.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    initial: Duration,
    exact: Ring,
    ambiguous: Ring,
    total: u64,
    latest: Option<Duration>,
    derived: Option<Derived>,
}

impl RttEstimator {
    /// What the RTT is taken to be before any measurement: a typical wide-area figure, on the
    /// long side so that early retries are not premature.
    pub const DEFAULT_INITIAL: Duration = Duration::from_millis(100);

    /// An estimator that reports `initial` until measured.
    pub fn new(initial: Duration) -> Self {
        RttEstimator {
            initial: initial.clamp(MIN_RTT, MAX_RTT),
            exact: Ring::new(),
            ambiguous: Ring::new(),
            total: 0,
            latest: None,
            derived: None,
        }
    }

    /// Adds one exact measurement (from report blocks, or an RTX answer to a single NACK).
    pub fn on_sample(&mut self, sample: Duration) {
        let s = self.record(sample);
        self.exact.push(s);
        self.derive();
    }

    /// Adds one measurement that may be too small (a retransmission that could have been the
    /// late original).
    pub fn on_ambiguous_sample(&mut self, sample: Duration) {
        let s = self.record(sample);
        self.ambiguous.push(s);
        self.derive();
    }

    fn record(&mut self, sample: Duration) -> Duration {
        let s = sample.clamp(MIN_RTT, MAX_RTT);
        self.total += 1;
        self.latest = Some(s);
        s
    }

    fn derive(&mut self) {
        self.derived = if self.exact.len > 0 {
            let [p20, p50, p80] = self.exact.quantiles([0.2, 0.5, 0.8]);
            Some(Derived {
                rtt: p50,
                spread: (p80 - p20) / 2,
                high: p80,
            })
        } else if self.ambiguous.len >= TRUSTED_AFTER {
            let [p50, p80, p90] = self.ambiguous.quantiles([0.5, 0.8, 0.9]);
            Some(Derived {
                rtt: p50,
                // Bogus samples sit below the genuine ones: measure the spread above the median.
                spread: p80 - p50,
                high: p90,
            })
        } else {
            None
        };
    }

    /// The current estimate (the initial value until measured): what retries are timed by.
    pub fn rtt(&self) -> Duration {
        self.derived.map_or(self.initial, |d| d.rtt)
    }

    /// A high estimate (the initial value until measured): what giving up is timed by.
    pub fn rtt_high(&self) -> Duration {
        self.derived.map_or(self.initial, |d| d.high)
    }

    /// How much the RTT varies (half the initial value until measured, so early timers stay
    /// generous).
    pub fn spread(&self) -> Duration {
        self.derived.map_or(self.initial / 2, |d| d.spread)
    }

    /// Whether the estimate rests on measurements: an exact sample, or enough ambiguous ones.
    pub fn is_measured(&self) -> bool {
        self.derived.is_some()
    }

    /// Samples taken so far, of both kinds.
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
        assert_eq!(
            (e.rtt(), e.rtt_high(), e.spread()),
            (ms(100), ms(100), ms(50))
        );
        assert!(!e.is_measured());
        assert_eq!(e.latest(), None);
    }

    #[test]
    fn converges_on_exact_samples() {
        let mut e = RttEstimator::default();
        for v in [40, 42, 38, 41, 39] {
            e.on_sample(ms(v));
        }
        assert_eq!(e.rtt(), ms(40));
        assert!(e.spread() <= ms(2), "{:?}", e.spread());
        assert_eq!(e.rtt_high(), ms(41));
        assert_eq!(e.samples(), 5);
        assert_eq!(e.latest(), Some(ms(39)));
    }

    #[test]
    fn one_exact_sample_is_enough_one_ambiguous_is_not() {
        let mut e = RttEstimator::default();
        e.on_ambiguous_sample(ms(1));
        assert_eq!(e.rtt(), ms(100));
        assert!(!e.is_measured());
        e.on_ambiguous_sample(ms(40));
        e.on_ambiguous_sample(ms(41));
        assert!(e.is_measured());
        assert_eq!(e.rtt(), ms(40));
        let mut e = RttEstimator::default();
        e.on_sample(ms(30));
        assert_eq!((e.rtt(), e.rtt_high()), (ms(30), ms(30)));
    }

    #[test]
    fn the_high_estimate_survives_a_majority_of_bogus_samples() {
        let mut e = RttEstimator::default();
        for i in 0..30 {
            // Three in five are late originals mistaken for retransmissions.
            e.on_ambiguous_sample(if i % 5 < 3 {
                ms(2 + i % 4)
            } else {
                ms(40 + i % 3)
            });
        }
        assert!(e.rtt() < ms(10), "the median is fooled: {:?}", e.rtt());
        assert!(e.rtt_high() >= ms(40), "{:?}", e.rtt_high());
    }

    #[test]
    fn exact_samples_win_over_ambiguous_ones() {
        let mut e = RttEstimator::default();
        for _ in 0..10 {
            e.on_ambiguous_sample(ms(3));
        }
        e.on_sample(ms(40));
        assert_eq!((e.rtt(), e.rtt_high()), (ms(40), ms(40)));
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
    fn samples_are_clamped() {
        let mut e = RttEstimator::new(Duration::ZERO);
        assert_eq!(e.rtt(), MIN_RTT);
        e.on_sample(Duration::from_secs(3600));
        assert_eq!(e.rtt(), MAX_RTT);
    }
}
