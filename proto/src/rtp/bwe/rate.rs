//! The rates the estimator controls: the delay-based rate (additive-increase,
//! multiplicative-decrease on the detector's signal, [`AimdRate`]), the loss-based bound
//! ([`LossBound`]) and the measured receive rate both lean on ([`AckedRate`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::delay::BandwidthUsage;

/// On overuse the rate drops to this share of what the receiver measured (draft-ietf-rmcat-gcc-02
/// allows 0.8–0.95; 0.9 keeps light random loss, which lowers the measured rate, from pulling
/// the rate under 80 % of the link).
const BETA: f64 = 0.9;
/// Multiplicative growth per second while the link's capacity is unknown.
const RAMP_PER_SECOND: f64 = 1.5;
/// Additive growth near a known capacity: this many bits per response time (about one packet).
const ADDITIVE_BITS: f64 = 1200.0 * 8.0;
/// The rate never grows further ahead of what was acknowledged than this (it may already be
/// above: a probe lifted it, or the application sends less than it could; it then holds).
const MAX_OVER_ACKED: f64 = 1.5;
/// Longest growth step taken at once (feedback after a pause must not jump the rate).
const MAX_STEP: Duration = Duration::from_secs(1);

/// Receive rate over a sliding window of arrivals, from transport-wide feedback.
#[derive(Debug)]
pub struct AckedRate {
    window_us: i64,
    samples: VecDeque<(i64, usize)>,
    bytes: usize,
    /// The latest arrival seen (feedback may report packets out of arrival order).
    newest: Option<i64>,
}

impl AckedRate {
    /// A meter averaging over `window`.
    pub fn new(window: Duration) -> Self {
        AckedRate {
            window_us: window.as_micros() as i64,
            samples: VecDeque::new(),
            bytes: 0,
            newest: None,
        }
    }

    /// A packet of `bytes` arrived at `arrival_us` (receiver's clock).
    pub fn on_received(&mut self, arrival_us: i64, bytes: usize) {
        self.samples.push_back((arrival_us, bytes));
        self.bytes += bytes;
        let newest = self.newest.map_or(arrival_us, |n| n.max(arrival_us));
        self.newest = Some(newest);
        while let Some(&(t, b)) = self.samples.front() {
            if newest - t <= self.window_us {
                break;
            }
            self.samples.pop_front();
            self.bytes -= b;
        }
    }

    /// Bits per second over the window; `None` until the arrivals span a tenth of it.
    pub fn bps(&self) -> Option<u64> {
        let first = self.samples.front()?.0;
        let span = self.newest? - first;
        (span >= self.window_us / 10).then(|| {
            // The first packet's bytes arrived before the span began.
            let bytes = self.bytes - self.samples.front().map_or(0, |s| s.1);
            (bytes as f64 * 8.0 * 1e6 / span as f64) as u64
        })
    }
}

/// The delay-based rate: a state machine of increase, hold and decrease driven by the detector.
#[derive(Debug)]
pub struct AimdRate {
    rate: f64,
    min: f64,
    max: f64,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    /// The receive rate at decreases, averaged: where the link's capacity lies.
    capacity: Option<f64>,
    /// Its variance, normalised by the capacity.
    capacity_var: f64,
    hold: bool,
    /// A rate the path was measured to carry apart from the receive rate (a recent probe, for
    /// an application-limited sender): decreases go no lower than [`BETA`] × this.
    backoff_floor: Option<f64>,
}

impl AimdRate {
    /// Starts at `start`, never leaving `min..=max` (bits per second).
    pub fn new(start: u64, min: u64, max: u64) -> Self {
        AimdRate {
            rate: start as f64,
            min: min as f64,
            max: max as f64,
            last_update: None,
            last_decrease: None,
            capacity: None,
            capacity_var: 0.4,
            hold: false,
            backoff_floor: None,
        }
    }

    /// The rate now, bits per second.
    pub fn bps(&self) -> u64 {
        self.rate as u64
    }

    /// Whether the link's capacity is known (a decrease has happened and the rate has not run
    /// far past it since).
    pub fn capacity_known(&self) -> bool {
        self.capacity.is_some()
    }

    /// The capacity's standard deviation, bits per second (the variance is kept in kbit/s
    /// units, normalised by the capacity, as libwebrtc keeps it).
    fn capacity_std(&self, cap: f64) -> f64 {
        (self.capacity_var * cap / 1000.0).sqrt() * 1000.0
    }

    /// Sets (or clears) the rate decreases may not go below [`BETA`] × of: what a recent probe
    /// measured while the sender is application-limited, whose own receive rate says nothing
    /// about the link (a probe's own queue would otherwise sink the rate toward it).
    pub fn set_backoff_floor(&mut self, bps: Option<u64>) {
        self.backoff_floor = bps.map(|b| b as f64);
    }

    /// Applies the detector's verdict at `now`, with the receive rate `acked` and the round-trip
    /// time `rtt`. Returns true when the rate was decreased.
    pub fn update(
        &mut self,
        now: Instant,
        usage: BandwidthUsage,
        acked: Option<u64>,
        rtt: Duration,
    ) -> bool {
        let dt = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(MAX_STEP);
        self.last_update = Some(now);
        let acked = acked.map(|a| a as f64);
        if let (Some(a), Some(cap)) = (acked, self.capacity) {
            // Far above the capacity we believed in: the link got wider, forget it.
            if a > cap + 3.0 * self.capacity_std(cap) {
                self.capacity = None;
            }
        }
        let mut decreased = false;
        match usage {
            BandwidthUsage::Overusing => {
                // At most one decrease per round trip: the previous one has not shown yet.
                let wait = rtt.clamp(Duration::from_millis(10), Duration::from_millis(200));
                let may = self
                    .last_decrease
                    .is_none_or(|t| now.saturating_duration_since(t) >= wait);
                if let (true, Some(a)) = (may, acked) {
                    let a = a.max(self.backoff_floor.unwrap_or(0.0));
                    let target = (BETA * a).min(self.rate);
                    self.learn_capacity(a);
                    self.rate = target;
                    self.last_decrease = Some(now);
                    decreased = true;
                }
                self.hold = true;
            }
            BandwidthUsage::Underusing => self.hold = true,
            BandwidthUsage::Normal => {
                if self.hold {
                    self.hold = false;
                } else {
                    let secs = dt.as_secs_f64();
                    let grown = match self.capacity {
                        Some(_) => {
                            let response = rtt.as_secs_f64() + 0.1;
                            self.rate + ADDITIVE_BITS / response * secs
                        }
                        None => self.rate * RAMP_PER_SECOND.powf(secs),
                    };
                    // Growth stops at 1.5 × what arrives, but a rate above that holds: an
                    // application sending little says nothing against it (no runaway, no
                    // sinking toward what is sent).
                    let limit = acked.map_or(f64::INFINITY, |a| MAX_OVER_ACKED * a + 10_000.0);
                    if self.rate < limit {
                        self.rate = grown.min(limit);
                    }
                }
            }
        }
        self.rate = self.rate.clamp(self.min, self.max);
        decreased
    }

    /// A probe measured `bps` at `now`: the rate rises to it (within `max`), forgetting a
    /// capacity it is far above. Returns true when it rose.
    pub fn raise_to(&mut self, now: Instant, bps: u64) -> bool {
        let bps = (bps as f64).min(self.max);
        if bps <= self.rate {
            return false;
        }
        if let Some(cap) = self.capacity {
            if bps > cap + 3.0 * self.capacity_std(cap) {
                self.capacity = None;
            }
        }
        self.rate = bps;
        self.last_update = Some(now);
        self.hold = false;
        true
    }

    fn learn_capacity(&mut self, acked: f64) {
        let cap = match self.capacity {
            Some(cap) if acked < cap - 3.0 * self.capacity_std(cap) => {
                // Far below: the link got narrower; start over.
                acked
            }
            Some(cap) => 0.95 * cap + 0.05 * acked,
            None => acked,
        };
        let err = (cap - acked) / cap.max(1.0);
        self.capacity_var =
            (0.95 * self.capacity_var + 0.05 * err * err * cap / 1000.0).clamp(0.4, 2.5);
        self.capacity = Some(cap);
    }
}

/// The loss-based bound: holds under light loss, backs off above [`LossBound::HIGH`], grows
/// back slowly once loss is gone.
#[derive(Debug)]
pub struct LossBound {
    bound: f64,
    max: f64,
    lost: u64,
    total: u64,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    last_fraction: f64,
    batch_start: Option<Instant>,
}

impl LossBound {
    /// Loss above this share lowers the bound.
    pub const HIGH: f64 = 0.10;
    /// Loss below this share lets it grow.
    pub const LOW: f64 = 0.02;
    /// Packets counted before a verdict, and the least time they span: enough that 2 % random
    /// loss seldom looks like 10 % by chance (at 20 packets it would, every few seconds).
    const BATCH: u64 = 20;
    const BATCH_TIME: Duration = Duration::from_millis(200);

    /// No bound at first (`max`).
    pub fn new(max: u64) -> Self {
        LossBound {
            bound: max as f64,
            max: max as f64,
            lost: 0,
            total: 0,
            last_update: None,
            last_decrease: None,
            last_fraction: 0.0,
            batch_start: None,
        }
    }

    /// The bound, bits per second.
    pub fn bps(&self) -> u64 {
        self.bound as u64
    }

    /// The share lost in the last complete batch.
    pub fn fraction(&self) -> f64 {
        self.last_fraction
    }

    /// Counts `lost` of `total` packets reported at `now`, with the target in force and the
    /// round-trip time. Returns true when the bound was lowered.
    pub fn update(
        &mut self,
        now: Instant,
        lost: u64,
        total: u64,
        target: u64,
        rtt: Duration,
    ) -> bool {
        self.lost += lost;
        self.total += total;
        let began = *self.batch_start.get_or_insert(now);
        if self.total < Self::BATCH || now.saturating_duration_since(began) < Self::BATCH_TIME {
            return false;
        }
        self.batch_start = Some(now);
        let fraction = self.lost as f64 / self.total as f64;
        self.last_fraction = fraction;
        self.lost = 0;
        self.total = 0;
        let dt = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(MAX_STEP);
        self.last_update = Some(now);
        if fraction > Self::HIGH {
            let wait = Duration::from_millis(300) + rtt;
            if self
                .last_decrease
                .is_none_or(|t| now.saturating_duration_since(t) >= wait)
            {
                self.bound = self.bound.min(target as f64) * (1.0 - 0.5 * fraction);
                self.last_decrease = Some(now);
                return true;
            }
        } else if fraction < Self::LOW {
            self.bound = (self.bound * 1.08f64.powf(dt.as_secs_f64()) + 1000.0 * dt.as_secs_f64())
                .min(self.max);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acked_rate_measures_the_window() {
        let mut a = AckedRate::new(Duration::from_millis(500));
        assert_eq!(a.bps(), None);
        // 1250 bytes every 10 ms = 1 Mbit/s, for 2 s.
        for i in 0..200 {
            a.on_received(i * 10_000, 1250);
        }
        let bps = a.bps().unwrap();
        assert!((980_000..=1_020_000).contains(&bps), "{bps}");
    }

    #[test]
    fn aimd_ramps_decreases_to_beta_of_acked_then_adds_slowly() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(50);
        let mut r = AimdRate::new(300_000, 50_000, 10_000_000);
        let ms = |n| t0 + Duration::from_millis(n);
        r.update(ms(0), BandwidthUsage::Normal, None, rtt);
        r.update(ms(1000), BandwidthUsage::Normal, None, rtt);
        assert_eq!(r.bps(), 450_000);
        assert!(r.update(ms(1100), BandwidthUsage::Overusing, Some(400_000), rtt));
        assert_eq!(r.bps(), 360_000);
        // Too soon for a second decrease.
        assert!(!r.update(ms(1120), BandwidthUsage::Overusing, Some(300_000), rtt));
        assert!(r.capacity_known());
        r.update(ms(1200), BandwidthUsage::Normal, Some(360_000), rtt);
        r.update(ms(2200), BandwidthUsage::Normal, Some(360_000), rtt);
        // One packet per response time (150 ms) for one second: +64 kbit/s.
        assert_eq!(r.bps(), 424_000);
        // Never beyond 1.5 × acked; never below min.
        r.update(ms(5000), BandwidthUsage::Overusing, Some(1_000), rtt);
        assert_eq!(r.bps(), 50_000);
    }

    #[test]
    fn loss_bound_holds_under_light_loss_and_backs_off_under_heavy() {
        let t0 = Instant::now();
        let rtt = Duration::from_millis(50);
        let mut l = LossBound::new(5_000_000);
        for i in 0..50 {
            l.update(t0 + Duration::from_millis(i * 100), 3, 60, 2_000_000, rtt);
        }
        assert_eq!(l.bps(), 5_000_000);
        // The batch began with the last verdict (at 4.8 s): 3 of 60 then 20 of 100 lost.
        assert!(l.update(t0 + Duration::from_secs(6), 20, 100, 2_000_000, rtt));
        assert!((l.fraction() - 23.0 / 160.0).abs() < 1e-9);
        assert_eq!(l.bps(), (2_000_000.0 * (1.0 - 0.5 * 23.0 / 160.0)) as u64);
        // Too few packets for a verdict; then enough; then too short a time.
        assert!(!l.update(t0 + Duration::from_secs(7), 19, 19, 2_000_000, rtt));
        assert!(l.update(t0 + Duration::from_millis(7_100), 10, 10, 2_000_000, rtt));
        assert!(!l.update(t0 + Duration::from_millis(7_200), 50, 50, 2_000_000, rtt));
    }
}
