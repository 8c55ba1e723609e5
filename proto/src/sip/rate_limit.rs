//! A token bucket per source IP address, for requests that start new work (RFC 6357 §4:
//! a server protects itself from one sender before it is overloaded by all of them).
//!
//! Pure: the time is passed in. Memory is bounded: the table holds at most `capacity`
//! sources. A source whose bucket has refilled is indistinguishable from one never seen, so
//! such entries are the first to go; when a flood from many (spoofed) addresses fills the
//! table with sources still being limited, the half seen least recently is forgotten. A
//! forgotten source starts again with a full bucket: the limit is per source, and an
//! attacker with more addresses than the table holds gets no more than it would from
//! `capacity` addresses each sending at the limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Per-source token buckets: `rate` requests per second sustained, `burst` at once.
#[derive(Debug)]
pub struct SourceRateLimiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    sources: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date (and the source last seen).
    at: Instant,
}

impl SourceRateLimiter {
    /// `rate` requests per second per source, bursts of `burst` (at least 1), a table of at
    /// most `capacity` sources (at least 2).
    pub fn new(rate: u32, burst: u32, capacity: usize) -> SourceRateLimiter {
        SourceRateLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            capacity: capacity.max(2),
            sources: HashMap::new(),
        }
    }

    /// Takes one token for a request from `source` at `now`: true when it may go on, false
    /// when the source is over its rate. Time going backwards adds no tokens.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if !self.sources.contains_key(&source) && self.sources.len() >= self.capacity {
            self.make_room(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.sources.entry(source).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sources the table holds now.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// True when no source is held.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Forgets the sources whose buckets are full again; if that frees less than half the
    /// table, also the least recently seen until half is free. Amortised O(1) per request:
    /// it runs at most once per `capacity / 2` new sources.
    fn make_room(&mut self, now: Instant) {
        let refill = Duration::from_secs_f64(self.burst / self.rate);
        self.sources
            .retain(|_, b| now.saturating_duration_since(b.at) < refill);
        let keep = self.capacity / 2;
        if self.sources.len() > keep {
            let mut seen: Vec<Instant> = self.sources.values().map(|b| b.at).collect();
            let cut = seen.len() - keep;
            let (_, nth, _) = seen.select_nth_unstable(cut);
            let oldest_kept = *nth;
            self.sources.retain(|_, b| b.at >= oldest_kept);
            // Equal times at the cut may keep a few more; trim whatever is over.
            while self.sources.len() > keep {
                let Some(k) = self.sources.keys().next().copied() else {
                    break;
                };
                self.sources.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut l = SourceRateLimiter::new(10, 5, 16);
        let allowed = (0..20).filter(|_| l.allow(ip(1), t0)).count();
        assert_eq!(allowed, 5, "the burst, no more, at one instant");
        // One second later: ten more tokens, capped at the burst.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..20).filter(|_| l.allow(ip(1), t1)).count(), 5);
        // A steady 10/s is all allowed: one request every 100 ms.
        let mut t = t1;
        for _ in 0..50 {
            t += Duration::from_millis(100);
            assert!(l.allow(ip(1), t));
        }
    }

    #[test]
    fn one_source_flooding_leaves_the_others_alone() {
        let t0 = Instant::now();
        let mut l = SourceRateLimiter::new(100, 100, 64);
        let (mut flood_ok, mut other_ok) = (0, 0);
        // 10 s: the flooder sends 10,000/s, the other 50/s.
        for ms in 0..10_000u64 {
            let now = t0 + Duration::from_millis(ms);
            for _ in 0..10 {
                flood_ok += usize::from(l.allow(ip(1), now));
            }
            if ms % 20 == 0 {
                other_ok += usize::from(l.allow(ip(2), now));
            }
        }
        assert_eq!(other_ok, 500, "every request of the polite source");
        assert!((1_000..=1_100).contains(&flood_ok), "{flood_ok}");
    }

    #[test]
    fn the_table_stays_bounded_under_a_spoofed_flood() {
        let t0 = Instant::now();
        let mut l = SourceRateLimiter::new(1, 1, 1000);
        for n in 0..100_000 {
            let now = t0 + Duration::from_micros(u64::from(n));
            assert!(
                l.allow(ip(n), now),
                "a new source starts with a full bucket"
            );
            assert!(l.len() <= 1000);
        }
        // A source that keeps sending is still limited after the churn, as long as it is
        // among the recently seen.
        let now = t0 + Duration::from_millis(200);
        assert!(l.allow(ip(7_000_000), now));
        assert!(!l.allow(ip(7_000_000), now));
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut l = SourceRateLimiter::new(1, 1, 4);
        assert!(l.allow(ip(1), t0));
        assert!(!l.allow(ip(1), t0 - Duration::from_secs(5)));
        assert!(!l.allow(ip(1), t0));
        assert!(l.allow(ip(1), t0 + Duration::from_secs(1)));
    }
}
