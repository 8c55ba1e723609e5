//! Which packets a receiver is missing, and when to ask for them again (RFC 4585 generic NACK).
//!
//! A gap in sequence numbers puts its packets on the missing list. Each is NACKed after a short
//! reorder allowance (a packet the network merely reordered usually arrives within it), then again
//! whenever a retransmission has had time to come back — about 1.25 RTT, more when the RTT varies —
//! and given up on after `give_up_rtts` × RTT plus a margin, never later than `max_delay` (the RTT
//! estimator's high figure, [`RttEstimator::rtt_high`], sets the deadline: waiting too short is
//! the costly mistake). The
//! jitter buffer holds the picture behind a gap until the same deadline
//! ([`NackConfig::give_up_after`]), so the two agree on when a packet stops being worth waiting for.
//!
//! The list is bounded: a gap wider than [`crate::rtp::reorder::MAX_JUMP`] is a restart of the
//! sender, not loss, and at most `max_missing` packets are tracked (the oldest go first). Pure:
//! time and the RTT are passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::reorder::MAX_JUMP;
use super::rtt::RttEstimator;

/// How a receiver asks for lost packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NackConfig {
    /// Send NACKs at all (and hold pictures with a gap for recovery).
    pub enabled: bool,
    /// Wait this long after a gap appears before the first NACK.
    pub reorder_allowance: Duration,
    /// Most NACKs sent for one packet.
    pub max_nacks: u8,
    /// Give up on a missing packet this many RTTs after the gap appeared...
    pub give_up_rtts: f64,
    /// ...plus this margin (the sender's pacing and scheduling)...
    pub give_up_margin: Duration,
    /// ...but never later than this.
    pub max_delay: Duration,
    /// Shortest time between two NACKs for one packet.
    pub min_retry: Duration,
    /// Most missing packets tracked at once.
    pub max_missing: usize,
    /// Copies of each NACK sent (1 or more). A lost NACK costs a whole retry interval (over an
    /// RTT); a second copy, a few bytes, makes that rare on a lossy path. The sender resends a
    /// packet at most once per half RTT, so the copies never double a retransmission.
    pub copies: u8,
    /// When the newest packet ends no picture (no marker bit) and nothing follows it for this
    /// long, the next sequence number is taken as lost and asked for: a lost last packet of a
    /// picture would otherwise only show when the next picture starts, a frame interval later.
    /// Paced packets of one picture follow each other far closer than this. Zero: off.
    pub tail_probe: Duration,
}

impl Default for NackConfig {
    fn default() -> Self {
        NackConfig {
            enabled: true,
            reorder_allowance: Duration::from_millis(5),
            max_nacks: 10,
            give_up_rtts: 6.0,
            give_up_margin: Duration::from_millis(30),
            max_delay: Duration::from_millis(500),
            min_retry: Duration::from_millis(5),
            max_missing: 1000,
            copies: 2,
            tail_probe: Duration::from_millis(10),
        }
    }
}

impl NackConfig {
    /// How long after a gap appears its packets are still waited for, at round-trip time `rtt`.
    pub fn give_up_after(&self, rtt: Duration) -> Duration {
        rtt.mul_f64(self.give_up_rtts.max(0.0))
            .saturating_add(self.give_up_margin)
            .min(self.max_delay)
    }

    /// How long after a NACK to send the next one for the same packet: one RTT for the answer to
    /// come back, plus the larger of a quarter RTT and twice the RTT's spread.
    pub fn retry_after(&self, rtt: &RttEstimator) -> Duration {
        let r = rtt.rtt();
        (r + (r / 4).max(rtt.spread() * 2)).max(self.min_retry)
    }
}

/// What the tracker knew about an arriving packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Ahead of or next to everything seen.
    Fresh,
    /// A packet on the missing list: `nacks` NACKs had been sent for it, the first at
    /// `first_nack`.
    Recovered {
        nacks: u8,
        first_nack: Option<Instant>,
    },
    /// A packet given up on recently, arriving after all: `nacks` NACKs had been sent, the
    /// first at `first_nack`. Too late to use, but it still measures the round trip.
    Late {
        nacks: u8,
        first_nack: Option<Instant>,
    },
    /// Behind the highest and not missing: a duplicate, or a packet given up on long ago.
    Old,
    /// So far from the others that the sender must have restarted; the list was cleared.
    Restart,
}

/// Counters of a [`NackTracker`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NackStats {
    /// Sequence numbers requested (each retry counts).
    pub requested: u64,
    /// Missing packets that arrived after at least one NACK.
    pub recovered: u64,
    /// Missing packets given up on (deadline, NACK count, or the jitter buffer moved past them).
    pub given_up: u64,
    /// Missing packets dropped from a full list.
    pub overflowed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    ext: i64,
    /// When the first NACK is due (the reorder allowance after the gap showed).
    first_due: Instant,
    give_up_at: Instant,
    nacks: u8,
    first_nack: Option<Instant>,
    last_nack: Option<Instant>,
}

impl Missing {
    /// Packet `ext`, not asked for yet: first asked for at `first_due`, given up at `give_up_at`.
    fn new(ext: i64, first_due: Instant, give_up_at: Instant) -> Self {
        Missing {
            ext,
            first_due,
            give_up_at,
            nacks: 0,
            first_nack: None,
            last_nack: None,
        }
    }

    /// When the next NACK for it is due, `retry` after the last one: computed from the RTT
    /// known now, so a retry scheduled before the first measurement (at a cautious initial
    /// guess) comes as soon as the real RTT is known.
    fn due(&self, retry: Duration) -> Instant {
        self.last_nack.map_or(self.first_due, |t| t + retry)
    }
}

/// The missing list of one media source; see the module documentation.
#[derive(Debug, Clone)]
pub struct NackTracker {
    cfg: NackConfig,
    highest: Option<i64>,
    missing: VecDeque<Missing>,
    /// The last packets given up on after a NACK, so a repair that comes too late still gives
    /// an RTT sample (otherwise an RTT underestimate, which makes every repair late, could never
    /// be corrected).
    given_up: VecDeque<Missing>,
    /// When to take the packet after the newest as lost (the newest ended no picture).
    tail_probe_at: Option<Instant>,
    stats: NackStats,
}

/// Given-up packets remembered for late RTT samples.
const GIVEN_UP_MEMORY: usize = 64;

/// Most sequence numbers handed out by one [`NackTracker::poll`] (one RTCP packet's worth).
pub const MAX_PER_POLL: usize = 256;
/// A poll also takes packets due this soon, so that the holes of one picture share a NACK.
const BATCH: Duration = Duration::from_millis(2);

impl NackTracker {
    /// An empty tracker.
    pub fn new(cfg: NackConfig) -> Self {
        NackTracker {
            cfg,
            highest: None,
            missing: VecDeque::new(),
            given_up: VecDeque::with_capacity(GIVEN_UP_MEMORY),
            tail_probe_at: None,
            stats: NackStats::default(),
        }
    }

    fn remember_given_up(&mut self, m: Missing) {
        self.stats.given_up += 1;
        if m.nacks == 0 {
            return;
        }
        if self.given_up.len() == GIVEN_UP_MEMORY {
            self.given_up.pop_front();
        }
        self.given_up.push_back(m);
    }

    /// The configuration in use.
    pub fn config(&self) -> &NackConfig {
        &self.cfg
    }

    /// Counters so far.
    pub fn stats(&self) -> NackStats {
        self.stats
    }

    /// Packets on the missing list.
    #[cfg(any(test, feature = "_internals"))]
    pub fn missing(&self) -> usize {
        self.missing.len()
    }

    fn ext_of(&self, seq: u16) -> Option<i64> {
        self.highest
            .map(|h| h + i64::from(seq.wrapping_sub(h as u16) as i16))
    }

    /// Records an arriving packet at `now`; `rtt` sets the deadlines of the gaps it reveals.
    pub fn on_packet(&mut self, seq: u16, now: Instant, rtt: &RttEstimator) -> Arrival {
        let Some(ext) = self.ext_of(seq) else {
            self.highest = Some(1 << 32 | i64::from(seq));
            return Arrival::Fresh;
        };
        let highest = self.highest.unwrap_or(ext);
        if (ext - highest).abs() > MAX_JUMP {
            self.stats.given_up += self.missing.len() as u64;
            self.missing.clear();
            self.given_up.clear();
            self.highest = Some(1 << 32 | i64::from(seq));
            return Arrival::Restart;
        }
        if ext > highest {
            self.tail_probe_at = None;
            // The packet after the newest may be on the list already (a tail probe).
            let probed = match self.missing.back() {
                Some(m) if m.ext == ext => self.missing.pop_back(),
                _ => None,
            };
            let give_up_at = now + self.cfg.give_up_after(rtt.rtt_high());
            let first_due = now + self.cfg.reorder_allowance;
            for gap in highest + 1..ext {
                if self.missing.back().is_some_and(|m| m.ext >= gap) {
                    continue;
                }
                if self.missing.len() >= self.cfg.max_missing.max(1) {
                    self.missing.pop_front();
                    self.stats.overflowed += 1;
                }
                self.missing
                    .push_back(Missing::new(gap, first_due, give_up_at));
            }
            self.highest = Some(ext);
            return match probed {
                Some(m) if m.nacks > 0 => {
                    self.stats.recovered += 1;
                    Arrival::Recovered {
                        nacks: m.nacks,
                        first_nack: m.first_nack,
                    }
                }
                _ => Arrival::Fresh,
            };
        }
        match self.missing.binary_search_by_key(&ext, |m| m.ext) {
            Ok(i) => {
                let m = self.missing.remove(i).expect("index from the search");
                if m.nacks > 0 {
                    self.stats.recovered += 1;
                }
                Arrival::Recovered {
                    nacks: m.nacks,
                    first_nack: m.first_nack,
                }
            }
            Err(_) => match self.given_up.iter().position(|m| m.ext == ext) {
                Some(i) => {
                    let m = self.given_up.remove(i).expect("index from the search");
                    Arrival::Late {
                        nacks: m.nacks,
                        first_nack: m.first_nack,
                    }
                }
                None => Arrival::Old,
            },
        }
    }

    /// Says whether packet `seq`, just recorded, ends a picture (`marker`). When the newest
    /// packet does not, the next one is asked for if nothing follows within `tail_probe`.
    pub fn note_marker(&mut self, seq: u16, marker: bool, now: Instant) {
        if self.cfg.tail_probe.is_zero() || self.ext_of(seq) != self.highest {
            return;
        }
        self.tail_probe_at = (!marker).then(|| now + self.cfg.tail_probe);
    }

    /// Puts the `count` sequence numbers before `first` (a source's first packet, already seen)
    /// on the missing list until `give_up_at`: packets of the first picture may have gone before
    /// it. Asking for packets that were never sent costs the sender a refused lookup.
    pub fn expect_before(&mut self, first: u16, count: u16, now: Instant, give_up_at: Instant) {
        let Some(ext) = self.ext_of(first) else {
            return;
        };
        for gap in (ext - i64::from(count)..ext).rev() {
            if self.missing.front().is_some_and(|m| m.ext <= gap) {
                continue;
            }
            if self.missing.len() >= self.cfg.max_missing.max(1) {
                break;
            }
            self.missing.push_front(Missing::new(
                gap,
                now + self.cfg.reorder_allowance,
                give_up_at,
            ));
        }
    }

    /// Appends to `out` the sequence numbers to NACK at `now` (at most [`MAX_PER_POLL`]; those due
    /// within the next 2 ms come along) and schedules their next retry; drops packets whose time
    /// is up.
    pub fn poll(&mut self, now: Instant, rtt: &RttEstimator, out: &mut Vec<u16>) {
        if let (Some(at), Some(h)) = (self.tail_probe_at, self.highest) {
            if at <= now {
                self.tail_probe_at = None;
                if self.missing.back().is_none_or(|m| m.ext <= h)
                    && self.missing.len() < self.cfg.max_missing.max(1)
                {
                    self.missing.push_back(Missing::new(
                        h + 1,
                        now,
                        now + self.cfg.give_up_after(rtt.rtt_high()),
                    ));
                }
            }
        }
        let max_nacks = self.cfg.max_nacks;
        let retry = self.cfg.retry_after(rtt);
        let mut i = 0;
        while i < self.missing.len() {
            let m = self.missing[i];
            if m.give_up_at <= now || (m.nacks >= max_nacks && m.due(retry) <= now) {
                self.missing.remove(i);
                self.remember_given_up(m);
            } else {
                i += 1;
            }
        }
        let mut taken = 0;
        for m in self
            .missing
            .iter_mut()
            .filter(|m| m.due(retry) <= now + BATCH)
        {
            if taken == MAX_PER_POLL {
                break;
            }
            out.push(m.ext as u16);
            m.nacks += 1;
            m.first_nack.get_or_insert(now);
            // The last allowed NACK waits one retry interval before the packet is dropped.
            m.last_nack = Some(now);
            taken += 1;
        }
        self.stats.requested += taken as u64;
    }

    /// When [`Self::poll`] next has something to do, at round-trip time `rtt`.
    #[must_use]
    pub fn poll_timeout(&self, rtt: &RttEstimator) -> Option<Instant> {
        let retry = self.cfg.retry_after(rtt);
        self.missing
            .iter()
            .map(|m| m.due(retry).min(m.give_up_at))
            .chain(self.tail_probe_at)
            .min()
    }

    /// The jitter buffer has moved on to `seq`: nothing before it is worth asking for.
    pub fn forget_before(&mut self, seq: u16) {
        let Some(ext) = self.ext_of(seq) else { return };
        while let Some(m) = self.missing.front().copied().filter(|m| m.ext < ext) {
            self.missing.pop_front();
            self.remember_given_up(m);
        }
    }

    /// Forgets everything (the source changed); counters are kept.
    pub fn reset(&mut self) {
        self.highest = None;
        self.tail_probe_at = None;
        self.missing.clear();
        self.given_up.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn rtt(v: u64) -> RttEstimator {
        let mut r = RttEstimator::default();
        for _ in 0..5 {
            r.on_sample(ms(v));
        }
        r
    }

    fn poll(t: &mut NackTracker, now: Instant, r: &RttEstimator) -> Vec<u16> {
        let mut v = Vec::new();
        t.poll(now, r, &mut v);
        v
    }

    #[test]
    fn a_picture_without_its_last_packet_asks_for_the_next_one() {
        let t0 = Instant::now();
        let r = rtt(40);
        let mut t = NackTracker::new(NackConfig::default());
        for seq in 0..3u16 {
            t.on_packet(seq, t0, &r);
            t.note_marker(seq, false, t0);
        }
        // Nothing follows packet 2, which ends no picture: 3 is asked for after 10 ms.
        assert_eq!(t.poll_timeout(&r), Some(t0 + ms(10)));
        assert!(poll(&mut t, t0 + ms(9), &r).is_empty());
        assert_eq!(poll(&mut t, t0 + ms(10), &r), vec![3]);
        // The repair arrives: recovered; then a gap behind it is tracked as usual.
        assert!(matches!(
            t.on_packet(3, t0 + ms(50), &r),
            Arrival::Recovered { nacks: 1, .. }
        ));
        t.note_marker(3, true, t0 + ms(50));
        assert_eq!(t.missing(), 0);
        assert_eq!(t.poll_timeout(&r), None, "a picture's end needs no probe");
        // A probe for 5 (4 ends no picture), then 7 arrives: 5 stays asked for, 6 joins.
        t.on_packet(4, t0 + ms(60), &r);
        t.note_marker(4, false, t0 + ms(60));
        assert_eq!(poll(&mut t, t0 + ms(70), &r), vec![5]);
        assert_eq!(t.on_packet(7, t0 + ms(80), &r), Arrival::Fresh);
        assert_eq!(t.missing(), 2);
        assert_eq!(poll(&mut t, t0 + ms(85), &r), vec![6]);
        // Off when configured so.
        let mut off = NackTracker::new(NackConfig {
            tail_probe: Duration::ZERO,
            ..NackConfig::default()
        });
        off.on_packet(0, t0, &r);
        off.note_marker(0, false, t0);
        assert_eq!(off.poll_timeout(&r), None);
    }

    #[test]
    fn deadlines_follow_the_rtt() {
        let c = NackConfig::default();
        assert_eq!(c.give_up_after(ms(40)), ms(270));
        assert_eq!(c.give_up_after(ms(100)), ms(500));
        assert_eq!(c.retry_after(&rtt(40)), ms(50));
        assert_eq!(c.retry_after(&rtt(0)), ms(5));
        // Unmeasured: 100 ms with a 50 ms spread.
        assert_eq!(c.retry_after(&RttEstimator::default()), ms(200));
    }

    #[test]
    fn gap_is_nacked_after_the_allowance_then_retried_then_dropped() {
        let t0 = Instant::now();
        let r = rtt(40);
        let mut t = NackTracker::new(NackConfig::default());
        assert_eq!(t.on_packet(10, t0, &r), Arrival::Fresh);
        assert_eq!(t.on_packet(13, t0, &r), Arrival::Fresh);
        assert_eq!(t.missing(), 2);
        assert_eq!(t.poll_timeout(&r), Some(t0 + ms(5)));
        assert!(poll(&mut t, t0 + ms(2), &r).is_empty());
        assert_eq!(poll(&mut t, t0 + ms(5), &r), vec![11, 12]);
        assert_eq!(t.poll_timeout(&r), Some(t0 + ms(55)));
        assert_eq!(poll(&mut t, t0 + ms(55), &r), vec![11, 12]);
        let mut sent = 2;
        let mut now = t0 + ms(55);
        while let Some(next) = t.poll_timeout(&r) {
            now = next;
            sent += poll(&mut t, now, &r).len() / 2;
        }
        // Given up 270 ms after the gap: NACKs at 5, 55, 105, 155, 205, 255.
        assert_eq!(now, t0 + ms(270));
        assert_eq!(sent, 6);
        assert_eq!(t.stats().given_up, 2);
        assert_eq!(t.stats().requested, 12);
        // A repair after the deadline: useless, but it was NACKed, so it is reported as late.
        assert!(matches!(
            t.on_packet(11, now, &r),
            Arrival::Late {
                nacks: 6,
                first_nack: Some(_)
            }
        ));
        assert_eq!(t.on_packet(11, now, &r), Arrival::Old);
    }

    #[test]
    fn a_retry_follows_the_rtt_measured_after_the_nack() {
        // The first NACK goes out before any measurement (100 ms initial, 50 ms spread: a
        // 200 ms retry); a 40 ms RTT measured meanwhile brings the retry to 50 ms after it.
        let t0 = Instant::now();
        let unmeasured = RttEstimator::default();
        let mut t = NackTracker::new(NackConfig::default());
        t.on_packet(10, t0, &unmeasured);
        t.on_packet(12, t0, &unmeasured);
        assert_eq!(poll(&mut t, t0 + ms(5), &unmeasured), vec![11]);
        assert_eq!(t.poll_timeout(&unmeasured), Some(t0 + ms(205)));
        let r = rtt(40);
        assert_eq!(t.poll_timeout(&r), Some(t0 + ms(55)));
        assert!(poll(&mut t, t0 + ms(50), &r).is_empty());
        assert_eq!(poll(&mut t, t0 + ms(55), &r), vec![11]);
    }

    #[test]
    fn recovery_reports_the_nack_history() {
        let t0 = Instant::now();
        let r = rtt(40);
        let mut t = NackTracker::new(NackConfig::default());
        t.on_packet(1, t0, &r);
        t.on_packet(4, t0, &r);
        // 3 turns up before any NACK: merely reordered.
        assert_eq!(
            t.on_packet(3, t0 + ms(2), &r),
            Arrival::Recovered {
                nacks: 0,
                first_nack: None
            }
        );
        assert_eq!(poll(&mut t, t0 + ms(5), &r), vec![2]);
        assert_eq!(
            t.on_packet(2, t0 + ms(45), &r),
            Arrival::Recovered {
                nacks: 1,
                first_nack: Some(t0 + ms(5))
            }
        );
        assert_eq!(t.stats().recovered, 1);
        assert_eq!(t.on_packet(2, t0 + ms(46), &r), Arrival::Old);
        assert_eq!(t.on_packet(4, t0 + ms(46), &r), Arrival::Old);
        assert_eq!(t.poll_timeout(&r), None);
    }

    #[test]
    fn sequence_wrap_inside_a_gap() {
        let t0 = Instant::now();
        let r = rtt(40);
        let mut t = NackTracker::new(NackConfig::default());
        t.on_packet(65533, t0, &r);
        t.on_packet(2, t0, &r);
        assert_eq!(poll(&mut t, t0 + ms(5), &r), vec![65534, 65535, 0, 1]);
        assert!(matches!(
            t.on_packet(0, t0 + ms(40), &r),
            Arrival::Recovered { nacks: 1, .. }
        ));
        assert!(matches!(
            t.on_packet(65535, t0 + ms(41), &r),
            Arrival::Recovered { nacks: 1, .. }
        ));
        assert_eq!(poll(&mut t, t0 + ms(55), &r), vec![65534, 1]);
    }

    #[test]
    fn the_list_is_bounded_and_a_jump_restarts() {
        let t0 = Instant::now();
        let r = rtt(40);
        let mut t = NackTracker::new(NackConfig {
            max_missing: 100,
            ..NackConfig::default()
        });
        t.on_packet(0, t0, &r);
        t.on_packet(500, t0, &r);
        assert_eq!(t.missing(), 100);
        assert_eq!(t.stats().overflowed, 399);
        // The newest are kept.
        let v = poll(&mut t, t0 + ms(5), &r);
        assert_eq!((v[0], v[99]), (400, 499));
        assert_eq!(t.on_packet(40_000, t0, &r), Arrival::Restart);
        assert_eq!(t.missing(), 0);
        assert_eq!(t.on_packet(40_001, t0, &r), Arrival::Fresh);
    }

    #[test]
    fn forget_before_drops_what_the_buffer_passed() {
        let t0 = Instant::now();
        let r = rtt(40);
        let mut t = NackTracker::new(NackConfig::default());
        t.on_packet(0, t0, &r);
        t.on_packet(10, t0, &r);
        t.forget_before(5);
        assert_eq!(t.missing(), 5);
        assert_eq!(poll(&mut t, t0 + ms(5), &r), vec![5, 6, 7, 8, 9]);
        t.reset();
        assert_eq!(t.on_packet(3, t0, &r), Arrival::Fresh);
    }

    #[test]
    fn packets_before_the_first_can_be_asked_for() {
        let t0 = Instant::now();
        let r = rtt(40);
        let mut t = NackTracker::new(NackConfig::default());
        t.on_packet(1, t0, &r);
        t.expect_before(1, 3, t0, t0 + ms(100));
        assert_eq!(poll(&mut t, t0 + ms(5), &r), vec![65534, 65535, 0]);
        assert!(matches!(
            t.on_packet(0, t0 + ms(45), &r),
            Arrival::Recovered { nacks: 1, .. }
        ));
        assert_eq!(poll(&mut t, t0 + ms(55), &r), vec![65534, 65535]);
        poll(&mut t, t0 + ms(100), &r);
        assert_eq!(t.missing(), 0);
    }

    #[test]
    fn one_poll_hands_out_a_bounded_batch() {
        let t0 = Instant::now();
        let r = rtt(40);
        let mut t = NackTracker::new(NackConfig::default());
        t.on_packet(0, t0, &r);
        t.on_packet(600, t0, &r);
        assert_eq!(poll(&mut t, t0 + ms(5), &r).len(), MAX_PER_POLL);
        assert_eq!(t.poll_timeout(&r), Some(t0 + ms(5)));
        assert_eq!(poll(&mut t, t0 + ms(5), &r).len(), MAX_PER_POLL);
        assert_eq!(poll(&mut t, t0 + ms(5), &r).len(), 599 - 2 * MAX_PER_POLL);
    }
}
