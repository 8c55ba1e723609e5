//! A network impairment model: delay, jitter, random or bursty loss, reordering, duplicates and
//! aimed drops, for one direction of a path. Pure: no sockets, threads or clock reads; every call
//! takes the time, and every random choice comes from a generator seeded by the caller, so the
//! same seed and the same inputs give the same run.
//!
//! The tests and benchmarks drive it on virtual time (`rtp::sim`'s two-stream harness, the SIP
//! core's tests), and `roomkit-media netsim` drives it on the wall clock between real sockets.
//! It is generic over the packet it carries: a datagram with addresses, a bare `Vec<u8>`, an
//! index into the caller's own buffers.
//!
//! # What it models
//!
//! Each packet that enters draws, in this order:
//! 1. whether a [`DropFilter`] claims it (no draw: the test decides);
//! 2. with [`BurstLoss`], whether the two-state (Gilbert–Elliott) chain changes state;
//! 3. whether it is lost (`loss`, or the bad state's `loss_in_bad`);
//! 4. its delay: `delay` plus a uniform draw in ±`jitter`, never below zero. Packets keep their
//!    order through jitter, as on a router's queue: one never leaves before the one in front;
//! 5. whether it is held back (`reorder`): then it leaves later by a uniform draw in
//!    `reorder_hold_min..=reorder_hold_max` and the packets behind it overtake it;
//! 6. whether it is duplicated (`duplicate`): the copy leaves after a uniform gap in
//!    `duplicate_gap_min..=duplicate_gap_max`.
//!
//! A path with `max_in_flight` turns away a packet (and its copy) that would overfill it.
//!
//! A path with a [`Bottleneck`] models a narrow link: after the loss draw, a packet joins a
//! drop-tail queue that drains at `rate_bps` (a packet's size, given to
//! [`Netem::handle_input_sized`], sets how long it occupies the link) and is turned away when
//! the queue already holds more than `queue_limit` of transmission time; it then travels
//! `delay` (plus jitter) from the moment it leaves the queue. The queue consumes no random draw,
//! so a path without a bottleneck replays as before; [`Netem::set_config`] changes the rate
//! mid-run (a rate step), the queue keeping what it holds.
//!
//! # How to drive it
//!
//! ```
//! # // Run in roomkit-media-proto's doc tests, shown in roomkit-media's docs: one name for both.
//! # extern crate roomkit_media_proto as roomkit_media;
//! use std::time::{Duration, Instant};
//! use roomkit_media::netem::{Netem, NetemConfig};
//!
//! let t0 = Instant::now();
//! let mut path: Netem<Vec<u8>> = Netem::new(NetemConfig::clean(Duration::from_millis(20)), 7);
//! path.handle_input(t0, vec![1, 2, 3]);
//! // Nothing leaves before its time...
//! assert_eq!(path.poll_output(t0), None);
//! // ...and poll_timeout says when to look again.
//! let due = path.poll_timeout().unwrap();
//! assert_eq!(due, t0 + Duration::from_millis(20));
//! assert_eq!(path.poll_output(due), Some(vec![1, 2, 3]));
//! assert_eq!(path.poll_timeout(), None);
//! ```
//!
//! After any input, drain [`Netem::poll_output`] until it returns `None`, then sleep (or move
//! virtual time) until [`Netem::poll_timeout`]. Inputs may carry times a little earlier than the
//! last poll (a socket thread stamps a packet before the loop sees it): such a packet is simply
//! due at once.

// Pure, like the layers below the engine: no `unsafe` here.
#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Two-state (Gilbert–Elliott) loss: bursts of loss rather than independent drops.
///
/// A chain with mean burst length `b` and overall loss share `l` has `leave_bad = 1 / b`,
/// `loss_in_bad = 1` and `enter_bad = l / (b (1 - l))`: [`NetemConfig::with_loss`] sets it up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstLoss {
    /// Chance per packet of entering the bad state.
    pub enter_bad: f64,
    /// Chance per packet of leaving it.
    pub leave_bad: f64,
    /// Loss probability while in the bad state (the path's `loss` applies in the good one).
    pub loss_in_bad: f64,
}

/// A narrow link in front of the path's delay: a drop-tail queue drained at a fixed rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bottleneck {
    /// The link's rate, bits per second (at least 1).
    pub rate_bps: u64,
    /// The most transmission time the queue holds; a packet arriving to a fuller queue is
    /// dropped.
    pub queue_limit: Duration,
}

/// How a [`Netem`] treats packets; see the module documentation for the order of the draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetemConfig {
    /// One-way base delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly in ±`jitter` (never below zero in total); order is kept.
    pub jitter: Duration,
    /// Probability (0–1) that a packet is lost (in the good state when `burst` is set).
    pub loss: f64,
    /// Bursty loss, if any.
    pub burst: Option<BurstLoss>,
    /// Probability (0–1) that a packet is held back and overtaken by later ones.
    pub reorder: f64,
    /// The least a held-back packet is held back.
    pub reorder_hold_min: Duration,
    /// The most a held-back packet is held back.
    pub reorder_hold_max: Duration,
    /// Probability (0–1) that a packet arrives twice.
    pub duplicate: f64,
    /// The least time between a packet and its copy.
    pub duplicate_gap_min: Duration,
    /// The most time between a packet and its copy.
    pub duplicate_gap_max: Duration,
    /// Most packets in flight; one that would exceed it is turned away (a full queue).
    pub max_in_flight: Option<usize>,
    /// A rate-limited drop-tail queue in front of the delay, if any.
    pub bottleneck: Option<Bottleneck>,
}

impl NetemConfig {
    /// A perfect path with `delay`.
    pub fn clean(delay: Duration) -> Self {
        NetemConfig {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            reorder: 0.0,
            reorder_hold_min: Duration::from_millis(1),
            reorder_hold_max: Duration::from_millis(10),
            duplicate: 0.0,
            duplicate_gap_min: Duration::ZERO,
            duplicate_gap_max: Duration::from_millis(2),
            max_in_flight: None,
            bottleneck: None,
        }
    }

    /// The path the media-resilience measurements use: `loss` random loss, 20 ± 3 ms, 1 %
    /// reordering and 1 % duplicates (40 ms RTT with the same path back).
    pub fn lossy(loss: f64) -> Self {
        NetemConfig {
            jitter: Duration::from_millis(3),
            loss,
            reorder: 0.01,
            duplicate: 0.01,
            ..NetemConfig::clean(Duration::from_millis(20))
        }
    }

    /// This path losing `share` (0–1) of its packets in the long run, in bursts of `mean_burst`
    /// packets on average: independently (`loss`) when `mean_burst` is 1 or less, otherwise by a
    /// [`BurstLoss`] chain that loses every packet while it is in the bad state.
    pub fn with_loss(self, share: f64, mean_burst: f64) -> Self {
        let l = share.clamp(0.0, 1.0);
        if mean_burst <= 1.0 || l <= 0.0 {
            return NetemConfig {
                loss: l,
                burst: None,
                ..self
            };
        }
        let b = mean_burst;
        // The chain spends 1 / b of a bad stretch's packets leaving it; entering at
        // l / (b (1 - l)) makes the bad state's long-run share, and so the loss, exactly l.
        NetemConfig {
            loss: 0.0,
            burst: Some(BurstLoss {
                enter_bad: (l / (b * (1.0 - l))).min(1.0),
                leave_bad: 1.0 / b,
                loss_in_bad: 1.0,
            }),
            ..self
        }
    }
}

/// What a [`Netem`] did so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetemStats {
    /// Packets that entered.
    pub sent: u64,
    /// Packets lost, by a drop filter or a loss draw.
    pub dropped: u64,
    /// Packets held back to be overtaken.
    pub reordered: u64,
    /// Packets sent twice.
    pub duplicated: u64,
    /// Packets turned away because `max_in_flight` was reached.
    pub overflow: u64,
    /// Packets (copies included) that left.
    pub delivered: u64,
    /// Packets dropped by a full [`Bottleneck`] queue.
    pub queue_dropped: u64,
}

/// Decides, for each packet entering a path, whether it is dropped (true) regardless of the
/// random draws: how a test loses one packet on purpose. It consumes no random draw, so a filter
/// that drops nothing leaves a seeded run as it was.
pub type DropFilter<P> = Box<dyn FnMut(&P) -> bool + Send>;

/// One direction of an impaired path; see the module documentation.
pub struct Netem<P> {
    cfg: NetemConfig,
    rng: SmallRng,
    /// (leaves at, order of entry, slot): the order breaks ties first in, first out.
    in_flight: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    /// The packets themselves, so `P` needs no ordering.
    slots: Vec<Option<P>>,
    free: Vec<usize>,
    order: u64,
    /// When the last in-order packet leaves: the floor for the next one, so jitter never reorders.
    fifo_tail: Option<Instant>,
    bad: bool,
    /// When the bottleneck's link finishes sending what its queue holds.
    link_free_at: Option<Instant>,
    filter: Option<DropFilter<P>>,
    stats: NetemStats,
}

impl<P> std::fmt::Debug for Netem<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netem")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// A uniform draw in `lo..=hi` (`hi` raised to `lo` if below it), as a duration.
fn draw_secs(rng: &mut SmallRng, lo: Duration, hi: Duration) -> Duration {
    let lo = lo.as_secs_f64();
    let hi = hi.as_secs_f64().max(lo);
    Duration::from_secs_f64(rng.random_range(lo..=hi))
}

impl<P: Clone> Netem<P> {
    /// A path drawing from `seed`.
    pub fn new(cfg: NetemConfig, seed: u64) -> Self {
        Netem {
            cfg,
            rng: SmallRng::seed_from_u64(seed),
            in_flight: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            order: 0,
            fifo_tail: None,
            bad: false,
            link_free_at: None,
            filter: None,
            stats: NetemStats::default(),
        }
    }

    /// Installs a drop filter (see [`DropFilter`]), replacing any earlier one.
    pub fn set_filter(&mut self, f: DropFilter<P>) {
        self.filter = Some(f);
    }

    /// Changes the impairments for the packets that enter from now on.
    pub fn set_config(&mut self, cfg: NetemConfig) {
        self.cfg = cfg;
    }

    /// The impairments in force.
    pub fn config(&self) -> &NetemConfig {
        &self.cfg
    }

    /// What the path did so far.
    pub fn stats(&self) -> NetemStats {
        self.stats
    }

    /// Packets in flight (copies included).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// How long a packet entering now would wait in the [`Bottleneck`] queue before its own
    /// transmission starts (zero without a bottleneck).
    pub fn queue_delay(&self, now: Instant) -> Duration {
        self.link_free_at
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }

    /// A packet enters the path at `now`. It is lost, or scheduled to leave (once or twice);
    /// [`Netem::poll_output`] hands it out when its time comes. With a [`Bottleneck`], use
    /// [`Netem::handle_input_sized`]: a packet given here occupies the link for no time.
    pub fn handle_input(&mut self, now: Instant, packet: P) {
        self.handle_input_sized(now, packet, 0);
    }

    /// [`Netem::handle_input`] for a packet of `bytes` bytes: the size a [`Bottleneck`] needs.
    pub fn handle_input_sized(&mut self, now: Instant, packet: P, bytes: usize) {
        self.stats.sent += 1;
        if self.filter.as_mut().is_some_and(|f| f(&packet)) {
            self.stats.dropped += 1;
            return;
        }
        if let Some(b) = self.cfg.burst {
            let flip = if self.bad { b.leave_bad } else { b.enter_bad };
            if self.rng.random_bool(flip.clamp(0.0, 1.0)) {
                self.bad = !self.bad;
            }
        }
        let loss = match (self.bad, self.cfg.burst) {
            (true, Some(b)) => b.loss_in_bad,
            _ => self.cfg.loss,
        };
        if self.rng.random_bool(loss.clamp(0.0, 1.0)) {
            self.stats.dropped += 1;
            return;
        }
        // The bottleneck: wait for what the queue holds, then occupy the link for this packet.
        let mut leaves_queue = now;
        if let Some(b) = self.cfg.bottleneck {
            let queued = self.queue_delay(now);
            if queued > b.queue_limit {
                self.stats.queue_dropped += 1;
                return;
            }
            let send = Duration::from_secs_f64(bytes as f64 * 8.0 / b.rate_bps.max(1) as f64);
            leaves_queue = now + queued + send;
            self.link_free_at = Some(leaves_queue);
        }
        let jitter = self.cfg.jitter.as_secs_f64();
        let extra = if jitter > 0.0 {
            self.rng.random_range(-jitter..=jitter)
        } else {
            0.0
        };
        let base = self.cfg.delay.as_secs_f64() + extra;
        let mut at = leaves_queue + Duration::from_secs_f64(base.max(0.0));
        let reordered = self.rng.random_bool(self.cfg.reorder.clamp(0.0, 1.0));
        let mut tail = self.fifo_tail;
        if reordered {
            // Held back: it leaves the FIFO floor where it was, so the next packets overtake it.
            at += draw_secs(
                &mut self.rng,
                self.cfg.reorder_hold_min,
                self.cfg.reorder_hold_max,
            );
        } else {
            if let Some(t) = tail {
                at = at.max(t);
            }
            tail = Some(at);
        }
        let copy_at = self
            .rng
            .random_bool(self.cfg.duplicate.clamp(0.0, 1.0))
            .then(|| {
                let lo = self.cfg.duplicate_gap_min.as_micros() as u64;
                let hi = (self.cfg.duplicate_gap_max.as_micros() as u64).max(lo);
                at + Duration::from_micros(self.rng.random_range(lo..=hi))
            });
        let copies = 1 + usize::from(copy_at.is_some());
        if self
            .cfg
            .max_in_flight
            .is_some_and(|max| self.in_flight.len() + copies > max)
        {
            self.stats.overflow += 1;
            return;
        }
        self.fifo_tail = tail;
        self.stats.reordered += u64::from(reordered);
        if let Some(later) = copy_at {
            self.stats.duplicated += 1;
            self.enqueue(later, packet.clone());
        }
        self.enqueue(at, packet);
    }

    fn enqueue(&mut self, at: Instant, p: P) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(p);
                i
            }
            None => {
                self.slots.push(Some(p));
                self.slots.len() - 1
            }
        };
        self.order += 1;
        self.in_flight.push(Reverse((at, self.order, slot)));
    }

    /// When the next packet leaves; `None` when nothing is in flight.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The next packet that has left by `now`, earliest first (packets due at the same instant
    /// in the order they entered); `None` when none is due yet. Call until `None`.
    #[must_use]
    pub fn poll_output(&mut self, now: Instant) -> Option<P> {
        let &Reverse((at, _, slot)) = self.in_flight.peek()?;
        if at > now {
            return None;
        }
        self.in_flight.pop();
        self.free.push(slot);
        self.stats.delivered += 1;
        self.slots[slot].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &mut Netem<u32>, t0: Instant) -> Vec<(u32, Duration)> {
        let mut out = Vec::new();
        while let Some(t) = p.poll_timeout() {
            while let Some(n) = p.poll_output(t) {
                out.push((n, t - t0));
            }
        }
        out
    }

    #[test]
    fn bottleneck_serialises_queues_and_drops_at_the_tail() {
        let t0 = Instant::now();
        let cfg = NetemConfig {
            bottleneck: Some(Bottleneck {
                rate_bps: 1_000_000,
                queue_limit: Duration::from_millis(30),
            }),
            ..NetemConfig::clean(Duration::from_millis(10))
        };
        let mut p = Netem::new(cfg, 1);
        // 1250 bytes take 10 ms at 1 Mbit/s: of a burst of 6, the fifth finds 40 ms queued.
        for i in 0..6 {
            assert_eq!(
                p.queue_delay(t0),
                Duration::from_millis(10 * i.min(4) as u64)
            );
            p.handle_input_sized(t0, i, 1250);
        }
        assert_eq!(p.stats().queue_dropped, 2);
        let out = run(&mut p, t0);
        let times: Vec<_> = out.iter().map(|&(_, t)| t.as_millis()).collect();
        assert_eq!(times, vec![20, 30, 40, 50]);
        // Halving the rate mid-run doubles the time each later packet takes.
        let mut slow = *p.config();
        slow.bottleneck = Some(Bottleneck {
            rate_bps: 500_000,
            queue_limit: Duration::from_millis(30),
        });
        p.set_config(slow);
        let t1 = t0 + Duration::from_secs(1);
        p.handle_input_sized(t1, 9, 1250);
        assert_eq!(p.poll_timeout(), Some(t1 + Duration::from_millis(30)));
    }

    #[test]
    fn clean_path_delays_in_order() {
        let t0 = Instant::now();
        let mut p = Netem::new(NetemConfig::clean(Duration::from_millis(20)), 1);
        for i in 0..10 {
            p.handle_input(t0 + Duration::from_millis(u64::from(i)), i);
        }
        let out = run(&mut p, t0);
        assert_eq!(out.len(), 10);
        for (i, (n, at)) in out.iter().enumerate() {
            assert_eq!(*n as usize, i);
            assert_eq!(*at, Duration::from_millis(20 + i as u64));
        }
    }

    #[test]
    fn nothing_leaves_early_and_late_inputs_leave_at_once() {
        let t0 = Instant::now();
        let mut p = Netem::new(NetemConfig::clean(Duration::from_millis(5)), 1);
        p.handle_input(t0, 1);
        assert_eq!(p.poll_output(t0 + Duration::from_millis(4)), None);
        assert_eq!(p.in_flight(), 1);
        // Stamped before the last poll: due at once, not lost and not stuck.
        let later = t0 + Duration::from_millis(50);
        p.handle_input(t0 + Duration::from_millis(1), 2);
        assert_eq!(p.poll_output(later), Some(1));
        assert_eq!(p.poll_output(later), Some(2));
        assert_eq!(p.poll_output(later), None);
        assert_eq!(p.stats().delivered, 2);
    }

    #[test]
    fn jitter_keeps_order_and_reorder_breaks_it() {
        let t0 = Instant::now();
        let mut cfg = NetemConfig::clean(Duration::from_millis(20));
        cfg.jitter = Duration::from_millis(3);
        let mut p = Netem::new(cfg, 2);
        for i in 0..200 {
            p.handle_input(t0 + Duration::from_micros(u64::from(i) * 100), i);
        }
        let out = run(&mut p, t0);
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
        cfg.reorder = 0.1;
        let mut p = Netem::new(cfg, 3);
        for i in 0..200 {
            p.handle_input(t0 + Duration::from_micros(u64::from(i) * 100), i);
        }
        let out = run(&mut p, t0);
        assert!(out.windows(2).any(|w| w[0].0 > w[1].0));
        assert!(p.stats().reordered > 5);
    }

    #[test]
    fn a_fixed_hold_and_gap_are_exact() {
        let t0 = Instant::now();
        let mut cfg = NetemConfig::clean(Duration::from_millis(10));
        cfg.reorder = 1.0;
        cfg.reorder_hold_min = Duration::from_millis(5);
        cfg.reorder_hold_max = Duration::from_millis(5);
        cfg.duplicate = 1.0;
        cfg.duplicate_gap_min = Duration::from_micros(100);
        cfg.duplicate_gap_max = Duration::from_micros(100);
        let mut p = Netem::new(cfg, 9);
        p.handle_input(t0, 7);
        let out = run(&mut p, t0);
        assert_eq!(
            out,
            [
                (7, Duration::from_millis(15)),
                (7, Duration::from_micros(15_100))
            ]
        );
    }

    #[test]
    fn loss_and_duplicates_are_drawn_at_the_configured_rate() {
        let t0 = Instant::now();
        let mut cfg = NetemConfig::clean(Duration::from_millis(1));
        cfg.loss = 0.1;
        cfg.duplicate = 0.05;
        let mut p = Netem::new(cfg, 4);
        for i in 0..10_000 {
            p.handle_input(t0, i);
        }
        let s = p.stats();
        assert!((900..1100).contains(&s.dropped), "{s:?}");
        assert!((350..550).contains(&s.duplicated), "{s:?}");
        assert_eq!(
            run(&mut p, t0).len() as u64,
            s.sent - s.dropped + s.duplicated
        );
    }

    #[test]
    fn bursts_and_filters() {
        let t0 = Instant::now();
        let mut cfg = NetemConfig::clean(Duration::from_millis(1));
        cfg.burst = Some(BurstLoss {
            enter_bad: 0.01,
            leave_bad: 0.2,
            loss_in_bad: 1.0,
        });
        let mut p = Netem::new(cfg, 5);
        let mut lost_runs = Vec::new();
        let mut run_len = 0;
        for i in 0..10_000 {
            let before = p.stats().dropped;
            p.handle_input(t0, i);
            if p.stats().dropped > before {
                run_len += 1;
            } else if run_len > 0 {
                lost_runs.push(run_len);
                run_len = 0;
            }
        }
        let mean = lost_runs.iter().sum::<u32>() as f64 / lost_runs.len() as f64;
        assert!(mean > 3.0, "bursts, not single drops: {mean}");
        let mut p = Netem::new(NetemConfig::clean(Duration::ZERO), 6);
        p.set_filter(Box::new(|n| *n == 3));
        for i in 0..5 {
            p.handle_input(t0, i);
        }
        let got: Vec<u32> = run(&mut p, t0).iter().map(|x| x.0).collect();
        assert_eq!(got, [0, 1, 2, 4]);
        assert_eq!(p.stats().dropped, 1);
    }

    #[test]
    fn burst_loss_from_a_share_and_a_mean_length() {
        let t0 = Instant::now();
        for (share, len) in [(0.1, 1.0), (0.1, 4.0)] {
            let cfg = NetemConfig::clean(Duration::ZERO).with_loss(share, len);
            let mut p = Netem::new(cfg, 42);
            let mut runs = Vec::new();
            let mut cur = 0u32;
            for i in 0..200_000 {
                let before = p.stats().dropped;
                p.handle_input(t0, i);
                if p.stats().dropped > before {
                    cur += 1;
                } else if cur > 0 {
                    runs.push(cur);
                    cur = 0;
                }
                while p.poll_output(t0).is_some() {}
            }
            let got = p.stats().dropped as f64 / 200_000.0;
            assert!((got - share).abs() < 0.005, "{share}/{len}: {got}");
            let mean = runs.iter().sum::<u32>() as f64 / runs.len() as f64;
            // With mean length 1 the chain is independent loss: runs of 1 / (1 - l) on average.
            let want = if len > 1.0 { len } else { 1.0 / (1.0 - share) };
            assert!(
                (mean - want).abs() < 0.1 * want,
                "{share}/{len}: mean run {mean}"
            );
        }
    }

    #[test]
    fn a_full_path_turns_packets_away() {
        let t0 = Instant::now();
        let mut cfg = NetemConfig::clean(Duration::from_millis(10));
        cfg.max_in_flight = Some(3);
        let mut p = Netem::new(cfg, 1);
        for i in 0..5 {
            p.handle_input(t0, i);
        }
        assert_eq!(p.in_flight(), 3);
        assert_eq!(p.stats().overflow, 2);
        assert_eq!(run(&mut p, t0).len(), 3);
    }

    #[test]
    fn the_seed_repeats_a_run() {
        let t0 = Instant::now();
        let cfg = NetemConfig::lossy(0.0).with_loss(0.05, 3.0);
        let mut a = Netem::new(cfg, 77);
        let mut b = Netem::new(cfg, 77);
        for i in 0..2_000 {
            let t = t0 + Duration::from_millis(u64::from(i));
            a.handle_input(t, i);
            b.handle_input(t, i);
        }
        assert_eq!(run(&mut a, t0), run(&mut b, t0));
        assert_eq!(a.stats(), b.stats());
    }
}
