//! A sliding-window byte-rate meter: how many bytes per second a stream sent over the last second.
//!
//! The pacer scales its rate with it and the retransmission budget is a share of it. The window is
//! a ring of fixed time buckets, so adding and reading are O(buckets) with no allocation after
//! construction, and the figure forgets old traffic within one window. Pure: time is passed in.

use std::time::{Duration, Instant};

/// Buckets in the window; more buckets make the window slide more smoothly.
const BUCKETS: usize = 20;

/// Bytes per second over a sliding window (one second by default).
#[derive(Debug, Clone)]
pub struct RateMeter {
    window: Duration,
    bucket: Duration,
    origin: Instant,
    /// Per bucket: the index of the time slot it holds, and its bytes.
    slots: [(u64, u64); BUCKETS],
}

impl RateMeter {
    /// The window used by the streams.
    #[cfg(any(test, feature = "_internals"))]
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(1);

    /// An empty meter over `window` (at least 20 ms), starting at `now`.
    pub fn new(window: Duration, now: Instant) -> Self {
        let window = window.max(Duration::from_millis(BUCKETS as u64));
        RateMeter {
            window,
            bucket: window / BUCKETS as u32,
            origin: now,
            slots: [(u64::MAX, 0); BUCKETS],
        }
    }

    fn slot_index(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        (since / self.bucket.as_nanos().max(1)) as u64
    }

    /// Records `bytes` sent at `now`.
    pub fn add(&mut self, now: Instant, bytes: usize) {
        let idx = self.slot_index(now);
        let slot = &mut self.slots[(idx % BUCKETS as u64) as usize];
        if slot.0 != idx {
            *slot = (idx, 0);
        }
        slot.1 += bytes as u64;
    }

    /// Bytes per second over the window ending at `now`. The sum is divided by the whole window
    /// even at the start of a stream, so a first burst is not mistaken for a high rate.
    pub fn rate(&self, now: Instant) -> f64 {
        let idx = self.slot_index(now);
        let oldest = idx.saturating_sub(BUCKETS as u64 - 1);
        let sum: u64 = self
            .slots
            .iter()
            .filter(|(i, _)| *i != u64::MAX && *i >= oldest && *i <= idx)
            .map(|(_, b)| *b)
            .sum();
        sum as f64 / self.window.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_stream_reads_its_rate() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(RateMeter::DEFAULT_WINDOW, t0);
        // 1000 bytes every 10 ms for 2 s: 100 kB/s.
        for i in 0..200 {
            m.add(t0 + Duration::from_millis(i * 10), 1000);
        }
        let r = m.rate(t0 + Duration::from_millis(1995));
        assert!((r - 100_000.0).abs() < 6_000.0, "{r}");
    }

    #[test]
    fn old_traffic_is_forgotten() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(RateMeter::DEFAULT_WINDOW, t0);
        m.add(t0, 50_000);
        assert_eq!(m.rate(t0), 50_000.0);
        assert_eq!(m.rate(t0 + Duration::from_millis(500)), 50_000.0);
        assert_eq!(m.rate(t0 + Duration::from_millis(1100)), 0.0);
        // A bucket reused after wrapping the ring starts from zero.
        m.add(t0 + Duration::from_secs(3), 10);
        assert_eq!(m.rate(t0 + Duration::from_secs(3)), 10.0);
    }

    #[test]
    fn a_tiny_window_is_raised() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::ZERO, t0);
        m.add(t0, 20);
        assert_eq!(m.rate(t0), 1000.0);
    }
}
