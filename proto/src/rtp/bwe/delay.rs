//! The delay-based half of the estimator's signal: is the bottleneck queue growing?
//!
//! Packets are grouped by send time ([`InterArrival`]); the change in one-way delay from group
//! to group is accumulated, smoothed and fitted with a line over a sliding window
//! ([`Trendline`]): a positive slope means a queue is building. [`OveruseDetector`] compares the
//! scaled slope with a threshold that adapts to the slope's own history, so the detector neither
//! starves against a loss-based flow (TCP) nor fires on jitter. The design follows
//! draft-ietf-rmcat-gcc-02 §5 and libwebrtc's trendline estimator; the code is our own.

use std::collections::VecDeque;

/// Packets sent within this span of the group's first are one group (a frame's burst).
const GROUP_SPAN_US: i64 = 5_000;
/// Packets in the fit's window.
const WINDOW: usize = 20;
/// Weight of the previous value in the exponential smoothing of the accumulated delay.
const SMOOTHING: f64 = 0.9;
/// Scales the fitted slope into the units the threshold is in.
const THRESHOLD_GAIN: f64 = 4.0;
/// Cap on the number of deltas the slope is multiplied by.
const MAX_DELTAS: f64 = 60.0;
/// The threshold's start, floor and ceiling (ms-scaled slope units).
const THRESHOLD_START: f64 = 12.5;
const THRESHOLD_MIN: f64 = 6.0;
const THRESHOLD_MAX: f64 = 600.0;
/// How fast the threshold moves toward the slope: up (slope above it) and down.
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
/// A slope this far beyond the threshold is an outlier the threshold does not follow.
const OUTLIER_MARGIN: f64 = 15.0;
/// The slope must stay above the threshold this long to count as overuse.
const OVERUSE_TIME_MS: f64 = 10.0;

/// What the detector concludes about the bottleneck queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BandwidthUsage {
    /// The queue is steady: the rate may grow.
    #[default]
    Normal,
    /// The queue is growing: the rate must drop.
    Overusing,
    /// The queue is draining: hold the rate and let it empty.
    Underusing,
}

/// A group of packets sent together: its last send time, last arrival and size.
#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_us: i64,
    last_send_us: i64,
    last_arrival_us: i64,
}

/// The difference between two consecutive groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupDelta {
    /// Send-time difference of the groups' last packets, ms.
    pub send_ms: f64,
    /// Arrival-time difference, ms.
    pub arrival_ms: f64,
    /// Arrival of the later group, ms (on the receiver's clock).
    pub arrival_time_ms: f64,
}

/// Groups packets by send time and yields the deltas between complete groups.
#[derive(Debug, Default)]
pub struct InterArrival {
    current: Option<Group>,
    previous: Option<Group>,
}

impl InterArrival {
    /// One received packet, in send order: its send time (sender's clock) and arrival
    /// (receiver's clock), µs. Returns the delta between the two groups before it when the
    /// packet starts a new group.
    pub fn on_packet(&mut self, send_us: i64, arrival_us: i64) -> Option<GroupDelta> {
        let Some(cur) = self.current.as_mut() else {
            self.current = Some(Group {
                first_send_us: send_us,
                last_send_us: send_us,
                last_arrival_us: arrival_us,
            });
            return None;
        };
        if send_us < cur.first_send_us {
            // Sent before the current group (reordered in the feedback): no information.
            return None;
        }
        if send_us - cur.first_send_us <= GROUP_SPAN_US {
            cur.last_send_us = cur.last_send_us.max(send_us);
            cur.last_arrival_us = cur.last_arrival_us.max(arrival_us);
            return None;
        }
        let done = *cur;
        let delta = self.previous.map(|prev| GroupDelta {
            send_ms: (done.last_send_us - prev.last_send_us) as f64 / 1000.0,
            arrival_ms: (done.last_arrival_us - prev.last_arrival_us) as f64 / 1000.0,
            arrival_time_ms: done.last_arrival_us as f64 / 1000.0,
        });
        self.previous = Some(done);
        self.current = Some(Group {
            first_send_us: send_us,
            last_send_us: send_us,
            last_arrival_us: arrival_us,
        });
        // A group that arrived before its predecessor (a reordered path) says nothing reliable.
        delta.filter(|d| d.arrival_ms >= 0.0)
    }
}

/// Fits a line through the smoothed accumulated delay over the last [`WINDOW`] groups.
#[derive(Debug, Default)]
pub struct Trendline {
    accumulated_ms: f64,
    smoothed_ms: f64,
    first_arrival_ms: Option<f64>,
    points: VecDeque<(f64, f64)>,
    deltas: u32,
    slope: f64,
}

impl Trendline {
    /// Adds one group delta; returns the scaled trend the detector compares with its threshold.
    pub fn update(&mut self, d: GroupDelta) -> f64 {
        self.deltas = self.deltas.saturating_add(1);
        self.accumulated_ms += d.arrival_ms - d.send_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let t0 = *self.first_arrival_ms.get_or_insert(d.arrival_time_ms);
        self.points
            .push_back((d.arrival_time_ms - t0, self.smoothed_ms));
        if self.points.len() > WINDOW {
            self.points.pop_front();
        }
        if self.points.len() == WINDOW {
            if let Some(s) = fit_slope(&self.points) {
                self.slope = s;
            }
        }
        f64::from(self.deltas).min(MAX_DELTAS) * self.slope * THRESHOLD_GAIN
    }

    /// Groups seen so far.
    pub fn deltas(&self) -> u32 {
        self.deltas
    }
}

/// Least-squares slope of `points`; `None` when every x is the same.
fn fit_slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), &(x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    (den > f64::EPSILON).then(|| num / den)
}

/// Turns the trend into [`BandwidthUsage`] with an adaptive threshold.
#[derive(Debug)]
pub struct OveruseDetector {
    threshold: f64,
    last_update_ms: Option<f64>,
    /// How long the trend has been above the threshold; `None` when it is not.
    over_ms: Option<f64>,
    over_count: u32,
    previous_trend: f64,
    state: BandwidthUsage,
}

impl Default for OveruseDetector {
    fn default() -> Self {
        OveruseDetector {
            threshold: THRESHOLD_START,
            last_update_ms: None,
            over_ms: None,
            over_count: 0,
            previous_trend: 0.0,
            state: BandwidthUsage::Normal,
        }
    }
}

impl OveruseDetector {
    /// Compares `trend` (from [`Trendline::update`]) at `now_ms` (receiver's clock) with the
    /// threshold, `group_ms` being the time the last group delta spans.
    pub fn detect(
        &mut self,
        trend: f64,
        group_ms: f64,
        deltas: u32,
        now_ms: f64,
    ) -> BandwidthUsage {
        if deltas < 2 {
            return BandwidthUsage::Normal;
        }
        if trend > self.threshold {
            let over = match self.over_ms {
                None => group_ms / 2.0,
                Some(t) => t + group_ms,
            };
            self.over_ms = Some(over);
            self.over_count += 1;
            if over > OVERUSE_TIME_MS && self.over_count > 1 && trend >= self.previous_trend {
                self.over_ms = Some(0.0);
                self.over_count = 0;
                self.state = BandwidthUsage::Overusing;
            }
        } else if trend < -self.threshold {
            self.over_ms = None;
            self.over_count = 0;
            self.state = BandwidthUsage::Underusing;
        } else {
            self.over_ms = None;
            self.over_count = 0;
            self.state = BandwidthUsage::Normal;
        }
        self.previous_trend = trend;
        self.adapt(trend, now_ms);
        self.state
    }

    fn adapt(&mut self, trend: f64, now_ms: f64) {
        let last = *self.last_update_ms.get_or_insert(now_ms);
        let magnitude = trend.abs();
        if magnitude > self.threshold + OUTLIER_MARGIN {
            // A sudden spike (a route change, a burst): not a reason to move the threshold.
            self.last_update_ms = Some(now_ms);
            return;
        }
        let k = if magnitude < self.threshold {
            K_DOWN
        } else {
            K_UP
        };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold = (self.threshold + k * (magnitude - self.threshold) * dt)
            .clamp(THRESHOLD_MIN, THRESHOLD_MAX);
        self.last_update_ms = Some(now_ms);
    }

    /// The threshold now.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds groups every 10 ms whose one-way delay grows by `growth_us` per group.
    fn run(growth_us: i64, groups: i64) -> Vec<BandwidthUsage> {
        let mut ia = InterArrival::default();
        let mut tl = Trendline::default();
        let mut det = OveruseDetector::default();
        let mut out = Vec::new();
        for g in 0..groups {
            let send = g * 10_000;
            let arrival = send + 20_000 + g * growth_us;
            if let Some(d) = ia.on_packet(send, arrival) {
                let trend = tl.update(d);
                out.push(det.detect(trend, d.arrival_ms, tl.deltas(), d.arrival_time_ms));
            }
        }
        out
    }

    #[test]
    fn steady_delay_is_normal_growing_delay_is_overuse_shrinking_is_underuse() {
        assert!(run(0, 200).iter().all(|&u| u == BandwidthUsage::Normal));
        assert!(run(1_000, 100).contains(&BandwidthUsage::Overusing));
        assert_eq!(run(-500, 60).last(), Some(&BandwidthUsage::Underusing));
    }

    #[test]
    fn packets_of_one_burst_are_one_group() {
        let mut ia = InterArrival::default();
        assert_eq!(ia.on_packet(0, 100), None);
        assert_eq!(ia.on_packet(1_000, 900), None);
        assert_eq!(ia.on_packet(20_000, 21_000), None);
        let d = ia.on_packet(40_000, 45_000).unwrap();
        assert_eq!((d.send_ms, d.arrival_ms), (19.0, 20.1));
        // Sent before the current group: ignored.
        assert_eq!(ia.on_packet(10_000, 50_000), None);
    }

    #[test]
    fn threshold_stays_in_bounds() {
        let mut det = OveruseDetector::default();
        for i in 0..10_000 {
            let trend = if i % 2 == 0 { 1e9 } else { -3.0 };
            det.detect(trend, 5.0, 10, f64::from(i) * 5.0);
            assert!((THRESHOLD_MIN..=THRESHOLD_MAX).contains(&det.threshold()));
        }
    }
}
