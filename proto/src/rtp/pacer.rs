//! Spreads a picture's packets over time so that a large key picture does not leave as one burst
//! that overflows a router queue or the receiver's socket buffer.
//!
//! A token bucket releases packets. Its rate is the largest of
//! - `multiplier` × the stream's recent rate (the last second), so ordinary pictures pass with
//!   little delay, and
//! - what meets every queued packet's deadline: each must have left `max_spread` after it was
//!   queued, so pacing adds at most `max_spread` to a picture however large it is (the packets
//!   queued together form a group; the rate is the largest of bytes-up-to-the-group over the time
//!   left to its deadline, so a retransmission queued later cannot stretch an earlier picture);
//!
//! capped by `max_rate` when one is configured (the cap wins over the deadline). Under congestion
//! control the owner sets a target rate instead ([`Pacer::set_target_rate`]): the bucket then runs
//! at that rate alone, deadlines and the recent rate aside, and the owner keeps the queue short
//! by not queueing what the rate cannot carry. The bucket holds
//! `burst_bytes`, or 5 ms at `multiplier` × the recent rate when that is more, so a burst is small
//! relative to the stream itself; an idle bucket is full again within a millisecond, so a stream
//! that sends large pictures back to back (a fast loopback link) learns within a few dozen
//! pictures that they may leave whole. Retransmissions wait in their own queue and go first: a receiver
//! is holding a picture for them. Pure: time is passed in, and [`Pacer::poll_timeout`] says when
//! the next packet may leave.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::rate::RateMeter;

/// How a stream paces its packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerConfig {
    /// Pace at all; off, every packet leaves as soon as it is queued.
    pub enabled: bool,
    /// The rate is at least this multiple of the stream's recent rate.
    pub multiplier: f64,
    /// No packet waits longer than this (unless `max_rate` forbids it).
    pub max_spread: Duration,
    /// Bytes that may leave back to back.
    pub burst_bytes: usize,
    /// A hard cap in bytes per second; `None` for none.
    pub max_rate: Option<f64>,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            enabled: true,
            multiplier: 2.5,
            max_spread: Duration::from_millis(20),
            burst_bytes: 6_000,
            max_rate: None,
        }
    }
}

/// How far back the stream's recent rate looks. Short, so that a stream that speeds up is let
/// through soon (the rate the pacer allows is what it measures, times the multiplier: a long
/// window would hold a faster stream back for as long).
const RATE_WINDOW: Duration = Duration::from_millis(200);
/// An idle bucket fills completely in this time.
const IDLE_REFILL: Duration = Duration::from_millis(1);
/// The time window the rate-scaled burst covers.
const BURST_WINDOW: Duration = Duration::from_millis(5);
/// The queue is planned to be empty this long before its deadline.
const DEADLINE_MARGIN: Duration = Duration::from_millis(1);
/// The rate never drops below this (bytes per second), so a queue always drains.
const MIN_RATE: f64 = 10_000.0;

/// Which queue a packet waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// New media.
    Media,
    /// A retransmission: leaves before any media.
    Retransmission,
}

#[derive(Debug)]
struct Queued<T> {
    item: T,
    len: usize,
    queued_at: Instant,
}

/// Counters of a [`Pacer`].
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PacerStats {
    /// Packets that left.
    pub sent: u64,
    /// Of those, packets that waited at all.
    pub delayed: u64,
    /// Longest wait of any packet.
    pub max_wait: Duration,
}

/// A paced queue of packets of type `T`; see the module documentation.
#[derive(Debug)]
pub struct Pacer<T> {
    cfg: PacerConfig,
    media: VecDeque<Queued<T>>,
    resend: VecDeque<Queued<T>>,
    /// Per queue, the packets queued at one instant: their deadline and bytes still waiting.
    media_groups: VecDeque<(Instant, usize)>,
    resend_groups: VecDeque<(Instant, usize)>,
    queued_bytes: usize,
    tokens: f64,
    last: Instant,
    meter: RateMeter,
    stats: PacerStats,
    /// The congestion controller's rate in bytes per second, when one steers the pacer.
    target_rate: Option<f64>,
}

impl<T> Pacer<T> {
    /// An empty pacer with a full bucket.
    pub fn new(cfg: PacerConfig, now: Instant) -> Self {
        Pacer {
            media: VecDeque::new(),
            resend: VecDeque::new(),
            media_groups: VecDeque::new(),
            resend_groups: VecDeque::new(),
            queued_bytes: 0,
            tokens: cfg.burst_bytes as f64,
            last: now,
            meter: RateMeter::new(RATE_WINDOW, now),
            stats: PacerStats::default(),
            target_rate: None,
            cfg,
        }
    }

    /// The configuration in use.
    #[cfg(any(test, feature = "_internals"))]
    pub fn config(&self) -> &PacerConfig {
        &self.cfg
    }

    /// Counters so far.
    #[cfg(any(test, feature = "_internals"))]
    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.media.len() + self.resend.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Media packets waiting.
    pub fn media_len(&self) -> usize {
        self.media.len()
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The stream's recent media rate in bytes per second (what was queued over the last second).
    pub fn media_rate(&self, now: Instant) -> f64 {
        self.meter.rate(now)
    }

    /// Runs the bucket at `rate` bytes per second from `now` on (`None`: the usual rule from
    /// the recent rate and the deadlines). `max_rate` still caps it.
    pub fn set_target_rate(&mut self, now: Instant, rate: Option<f64>) {
        self.refill(now);
        self.target_rate = rate;
    }

    /// The rate set by [`Self::set_target_rate`], bytes per second.
    pub fn target_rate(&self) -> Option<f64> {
        self.target_rate
    }

    /// Queues a packet of `len` bytes at `now`.
    pub fn push(&mut self, now: Instant, item: T, len: usize, class: Class) {
        self.refill(now);
        let q = Queued {
            item,
            len,
            queued_at: now,
        };
        let (queue, groups) = match class {
            Class::Media => {
                self.meter.add(now, len);
                (&mut self.media, &mut self.media_groups)
            }
            Class::Retransmission => (&mut self.resend, &mut self.resend_groups),
        };
        queue.push_back(q);
        let deadline = now + self.cfg.max_spread;
        match groups.back_mut() {
            Some((d, bytes)) if *d == deadline => *bytes += len,
            _ => groups.push_back((deadline, len)),
        }
        self.queued_bytes += len;
    }

    /// Takes the next packet of one queue, keeping the group and byte counts right.
    fn take(&mut self, class: Class, now: Instant) -> Option<(T, Duration)> {
        let (queue, groups) = match class {
            Class::Media => (&mut self.media, &mut self.media_groups),
            Class::Retransmission => (&mut self.resend, &mut self.resend_groups),
        };
        let q = queue.pop_front()?;
        if let Some((_, bytes)) = groups.front_mut() {
            *bytes = bytes.saturating_sub(q.len);
            if *bytes == 0 {
                groups.pop_front();
            }
        }
        self.tokens -= q.len as f64;
        self.queued_bytes -= q.len;
        let waited = now.saturating_duration_since(q.queued_at);
        self.stats.sent += 1;
        if !waited.is_zero() {
            self.stats.delayed += 1;
            self.stats.max_wait = self.stats.max_wait.max(waited);
        }
        Some((q.item, waited))
    }

    /// Whether the bucket holds packets back: pacing is on, or a congestion controller steers it.
    fn paces(&self) -> bool {
        self.cfg.enabled || self.target_rate.is_some()
    }

    /// The next packet allowed to leave at `now`, with how long it waited.
    pub fn pop(&mut self, now: Instant) -> Option<(T, Duration)> {
        self.refill(now);
        if self.is_empty() {
            return None;
        }
        if self.paces() && self.tokens < 0.0 {
            return None;
        }
        if self.resend.is_empty() {
            self.take(Class::Media, now)
        } else {
            self.take(Class::Retransmission, now)
        }
    }

    /// The oldest media packet, whatever the bucket says (the caller needs its slot back).
    pub fn pop_media_now(&mut self, now: Instant) -> Option<(T, Duration)> {
        self.take(Class::Media, now)
    }

    /// The earliest deadline of anything queued.
    fn first_deadline(&self) -> Option<Instant> {
        match (self.resend_groups.front(), self.media_groups.front()) {
            (Some(a), Some(b)) => Some(a.0.min(b.0)),
            (a, b) => a.or(b).map(|g| g.0),
        }
    }

    /// When the next packet may leave; `None` when nothing waits.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        if !self.paces() || self.tokens >= 0.0 {
            return Some(self.last);
        }
        let rate = self.rate(self.last);
        // At least a microsecond, so that a deficit of a fraction of a byte still moves time on.
        let wait = Duration::from_secs_f64(-self.tokens / rate).max(Duration::from_micros(1));
        let at = self.last + wait;
        // The rate rises as a deadline nears; never sleep beyond it (once it has passed, the
        // rate is already at its highest and `at` is close).
        Some(match (self.first_deadline(), self.cfg.max_rate) {
            (Some(d), None) if d > self.last && self.target_rate.is_none() => at.min(d),
            _ => at,
        })
    }

    /// The current release rate in bytes per second.
    pub fn rate(&self, now: Instant) -> f64 {
        if let Some(target) = self.target_rate {
            let r = target.max(MIN_RATE);
            return self.cfg.max_rate.map_or(r, |cap| r.min(cap.max(MIN_RATE)));
        }
        let recent = self.cfg.multiplier * self.meter.rate(now);
        // Everything up to and including each group must leave by the group's deadline
        // (retransmissions leave first, then media).
        let mut needed = 0.0f64;
        let mut ahead = 0usize;
        for &(deadline, bytes) in self.resend_groups.iter().chain(&self.media_groups) {
            ahead += bytes;
            // Aim a millisecond early: the last packet's own deficit is paid after it.
            let left = deadline
                .saturating_duration_since(now)
                .saturating_sub(DEADLINE_MARGIN)
                .max(Duration::from_micros(100));
            needed = needed.max(ahead as f64 / left.as_secs_f64());
        }
        let r = recent.max(needed).max(MIN_RATE);
        match self.cfg.max_rate {
            Some(cap) => r.min(cap.max(MIN_RATE)),
            None => r,
        }
    }

    fn depth(&self, now: Instant) -> f64 {
        let rate = match self.target_rate {
            Some(t) => t,
            None => self.cfg.multiplier * self.meter.rate(now),
        };
        let scaled = rate * BURST_WINDOW.as_secs_f64();
        scaled.max(self.cfg.burst_bytes as f64)
    }

    fn refill(&mut self, now: Instant) {
        if now <= self.last {
            return;
        }
        let dt = (now - self.last).as_secs_f64();
        let depth = self.depth(now);
        // Idle, the bucket is full again within a millisecond: pacing spreads what is queued,
        // it does not ration a stream that sends big pictures often (a fast loopback stream).
        let rate = if self.is_empty() {
            self.rate(now).max(depth / IDLE_REFILL.as_secs_f64())
        } else {
            self.rate(now)
        };
        self.tokens = (self.tokens + rate * dt).min(depth);
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Runs the pacer to empty, returning when each packet left.
    fn drain(p: &mut Pacer<u32>, mut now: Instant) -> Vec<(u32, Instant)> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            while let Some((id, _)) = p.pop(now) {
                out.push((id, now));
            }
            match p.poll_timeout() {
                Some(t) => now = t.max(now),
                None => break,
            }
        }
        out
    }

    #[test]
    fn a_small_picture_leaves_at_once() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default(), t0);
        for i in 0..4 {
            p.push(t0, i, 1200, Class::Media);
        }
        let out = drain(&mut p, t0);
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|&(_, t)| t == t0));
        assert_eq!(p.stats().delayed, 0);
    }

    #[test]
    fn a_key_picture_is_spread_over_at_most_max_spread() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default(), t0);
        // 100 packets of 1200 bytes (120 kB) on a stream that has sent nothing yet.
        for i in 0..100 {
            p.push(t0, i, 1200, Class::Media);
        }
        let out = drain(&mut p, t0);
        assert_eq!(out.len(), 100);
        let last = out.last().unwrap().1 - t0;
        assert!(last <= ms(20), "{last:?}");
        assert!(last >= ms(15), "spread, not a burst: {last:?}");
        // Never more than a small burst at once: the bucket's 6 kB, then a packet at a time.
        let at_once = out.iter().filter(|&&(_, t)| t == t0).count();
        assert_eq!(at_once, 6);
        for w in out.windows(10) {
            assert!(
                w[9].1 - w[0].1 >= Duration::from_micros(700),
                "{:?}",
                w[9].1 - w[0].1
            );
        }
        // In order.
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn retransmissions_go_first() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default(), t0);
        for i in 0..20 {
            p.push(t0, i, 1200, Class::Media);
        }
        p.push(t0, 1000, 1200, Class::Retransmission);
        let out = drain(&mut p, t0);
        assert_eq!(out[0].0, 1000);
        assert_eq!(p.stats().sent, 21);
    }

    #[test]
    fn a_high_rate_stream_gets_a_proportional_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default(), t0);
        // 50 MB/s for a second, pictures of 100 kB every 2 ms.
        let mut now = t0;
        for pic in 0..500u32 {
            for i in 0..85 {
                p.push(now, pic * 100 + i, 1200, Class::Media);
            }
            drain(&mut p, now);
            now += ms(2);
        }
        for i in 0..85 {
            p.push(now, i, 1200, Class::Media);
        }
        let out = drain(&mut p, now);
        let spread = out.last().unwrap().1 - now;
        assert!(spread <= ms(1), "{spread:?}");
    }

    #[test]
    fn disabled_pacer_releases_everything() {
        let t0 = Instant::now();
        let mut p = Pacer::new(
            PacerConfig {
                enabled: false,
                ..PacerConfig::default()
            },
            t0,
        );
        for i in 0..100 {
            p.push(t0, i, 1200, Class::Media);
        }
        assert_eq!(drain(&mut p, t0).len(), 100);
        assert!(p.is_empty());
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn a_cap_wins_over_the_spread() {
        let t0 = Instant::now();
        let mut p = Pacer::new(
            PacerConfig {
                max_rate: Some(120_000.0),
                burst_bytes: 1200,
                ..PacerConfig::default()
            },
            t0,
        );
        for i in 0..100 {
            p.push(t0, i, 1200, Class::Media);
        }
        let out = drain(&mut p, t0);
        let last = out.last().unwrap().1 - t0;
        // 120 kB at 120 kB/s, less the first packet's burst.
        assert!(last >= ms(980) && last <= ms(1000), "{last:?}");
    }

    #[test]
    fn a_later_retransmission_does_not_stretch_a_queued_picture() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default(), t0);
        for i in 0..100 {
            p.push(t0, i, 1200, Class::Media);
        }
        let mut out = Vec::new();
        let mut now = t0;
        let mut resent = false;
        while let Some(t) = p.poll_timeout() {
            now = t.max(now);
            if !resent && now >= t0 + ms(15) {
                p.push(now, 1000, 1200, Class::Retransmission);
                resent = true;
            }
            while let Some((id, _)) = p.pop(now) {
                out.push((id, now));
            }
        }
        let last_media = out.iter().filter(|x| x.0 < 100).map(|x| x.1).max().unwrap();
        assert!(last_media - t0 <= ms(20), "{:?}", last_media - t0);
        assert_eq!(out.len(), 101);
    }

    #[test]
    fn forced_pop_ignores_the_bucket() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default(), t0);
        for i in 0..50 {
            p.push(t0, i, 1200, Class::Media);
        }
        while p.pop(t0).is_some() {}
        assert_eq!(p.pop_media_now(t0).map(|x| x.0), Some(6));
        assert_eq!(p.media_len(), 43);
    }
}
