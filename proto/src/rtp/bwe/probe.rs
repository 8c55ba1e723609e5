//! Probing and application-limited (ALR) detection: how the estimator learns a link's capacity
//! faster than its additive and multiplicative growth would, and how it keeps an estimate the
//! application's own traffic cannot confirm.
//!
//! - [`AlrDetector`]: a budget that fills at 65 % of the target and empties by what is sent (over
//!   a 500 ms window). A full budget means the sender has been sending well below the estimate:
//!   the stream is *application-limited*, and the feedback says little about the link.
//! - [`ProbeController`]: decides when to probe and at what rates (2× and 3× the estimate, never
//!   above what the application wants). Only while the estimate is below what the application
//!   wants and the delay detector sees no queue: at the start, when the application asks for
//!   more, when the delay-based rate ran past the capacity it had learnt (the link got wider,
//!   or recovered after a drop), again at once while results keep reaching the rate probed, and
//!   every 5 s while application-limited (its own traffic cannot show what the link carries).
//!   Not periodically on a link the stream fills: there every probe builds a queue for nothing.
//! - [`ProbeMeter`]: the packets of each probe cluster as sent and as the feedback reports them,
//!   and the rate the link carried: the lower of the send and receive rates, and 95 % of the
//!   receive rate when the link could not keep up with the probe (it was saturated).
//!
//! The rules follow libwebrtc's probe controller, probe bitrate estimator and ALR detector in
//! outline; the constants are ours where the tests asked for them. Pure: every input carries
//! the time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The share of the target below which sending counts as application-limited.
const ALR_USAGE: f64 = 0.65;
/// The ALR budget's window.
const ALR_WINDOW: Duration = Duration::from_millis(500);
/// Budget level (share of its maximum) that enters ALR, and the level that leaves it.
const ALR_ENTER: f64 = 0.8;
const ALR_LEAVE: f64 = 0.5;

/// Probe rates, as multiples of the estimate.
const PROBE_SCALES: [f64; 2] = [2.0, 3.0];
/// A cluster lasts at least this long at its rate, and has at least this many packets.
const PROBE_DURATION: Duration = Duration::from_millis(15);
const PROBE_MIN_PACKETS: u32 = 5;
/// While application-limited, probe again this long after the last.
const ALR_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Probe only when the application wants at least this much more than the estimate.
const PROBE_HEADROOM: f64 = 1.1;
/// A result at least this share of the highest rate probed asks for probing further at once.
const PROBE_FURTHER: f64 = 0.7;
/// A cluster without a result this long after it was handed out is forgotten.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// At least this share of a cluster must arrive for a result.
const PROBE_MIN_RECEIVED: f64 = 0.8;
/// Receive rate below this share of the send rate: the link was saturated.
const SATURATED: f64 = 0.9;
/// The share of a saturated receive rate taken as the result.
const SATURATED_USE: f64 = 0.95;
/// Clusters tracked at once (a batch is two; a slow result must not let this grow).
const MAX_CLUSTERS: usize = 8;

/// Whether the sender has been sending well below the estimate; see the module documentation.
#[derive(Debug, Default)]
pub struct AlrDetector {
    /// Budget in bytes: grows at [`ALR_USAGE`] × target, spent by what is sent.
    level: f64,
    last: Option<Instant>,
    in_alr: bool,
    /// Times ALR was entered.
    entered: u64,
}

impl AlrDetector {
    /// `bytes` of media left at `now` while the target was `target_bps`.
    pub fn on_sent(&mut self, now: Instant, bytes: usize, target_bps: u64) {
        let dt = self
            .last
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(ALR_WINDOW);
        self.last = Some(now);
        let rate = target_bps as f64 * ALR_USAGE / 8.0;
        let max = (rate * ALR_WINDOW.as_secs_f64()).max(1.0);
        self.level = (self.level + rate * dt.as_secs_f64()).min(max) - bytes as f64;
        self.level = self.level.max(-max);
        let share = self.level / max;
        if !self.in_alr && share > ALR_ENTER {
            self.in_alr = true;
            self.entered += 1;
        } else if self.in_alr && share < ALR_LEAVE {
            self.in_alr = false;
        }
    }

    /// Whether the stream is application-limited.
    pub fn in_alr(&self) -> bool {
        self.in_alr
    }

    /// Times the stream became application-limited.
    pub fn entered(&self) -> u64 {
        self.entered
    }
}

/// A burst the sender should send at `bps`, tagging each packet with `id`: at least `min_bytes`
/// and `min_packets` (media when it has some, padding or retransmissions otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCluster {
    pub id: u32,
    pub bps: u64,
    pub min_bytes: usize,
    pub min_packets: u32,
}

impl ProbeCluster {
    fn new(id: u32, bps: u64) -> Self {
        ProbeCluster {
            id,
            bps,
            min_bytes: (bps as f64 * PROBE_DURATION.as_secs_f64() / 8.0) as usize,
            min_packets: PROBE_MIN_PACKETS,
        }
    }

    /// Whether `bytes` in `packets` complete the cluster.
    pub fn is_complete(&self, bytes: usize, packets: u32) -> bool {
        bytes >= self.min_bytes && packets >= self.min_packets
    }
}

/// When to probe and at what rates; see the module documentation.
#[derive(Debug)]
pub struct ProbeController {
    /// What the application would send if the link allowed it.
    desired: u64,
    max: u64,
    next_id: u32,
    /// Clusters of the current batch not handed out yet.
    queued: VecDeque<ProbeCluster>,
    /// Results still awaited from the current batch, and the batch's highest rate.
    awaiting: u32,
    batch_top: u64,
    batch_best: u64,
    batch_at: Option<Instant>,
    /// Probe at the next chance (start, more wanted, results that reached the probe's rate, the
    /// link got wider).
    now_please: bool,
    /// Batches started.
    batches: u64,
}

impl ProbeController {
    /// A controller for an application that wants `desired` at most `max` (bits per second);
    /// it probes at the first chance.
    pub fn new(desired: u64, max: u64) -> Self {
        ProbeController {
            desired: desired.min(max),
            max,
            next_id: 1,
            queued: VecDeque::new(),
            awaiting: 0,
            batch_top: 0,
            batch_best: 0,
            batch_at: None,
            now_please: true,
            batches: 0,
        }
    }

    /// The application wants `bps`; more than before is a reason to probe now.
    pub fn set_desired(&mut self, bps: u64) {
        let bps = bps.min(self.max);
        if bps > self.desired {
            self.now_please = true;
        }
        self.desired = bps;
    }

    /// Probe at the next chance (the link seems to have got wider).
    pub fn request(&mut self) {
        self.now_please = true;
    }

    /// What the application wants.
    pub fn desired(&self) -> u64 {
        self.desired
    }

    /// Batches of clusters started.
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Whether [`Self::poll`] would hand out a cluster (without changing anything): a cheap test
    /// before a sender looks for what to probe with.
    pub fn is_due(&self, now: Instant, estimate: u64, quiet: bool, alr: bool) -> bool {
        if !self.queued.is_empty() {
            return true;
        }
        let waiting = self.batch_at.is_some_and(|at| {
            self.awaiting > 0 && now.saturating_duration_since(at) < PROBE_TIMEOUT
        });
        let room = (estimate as f64 * PROBE_HEADROOM) < self.desired as f64;
        let due = self.now_please
            || (alr
                && self
                    .batch_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= ALR_PROBE_INTERVAL));
        !waiting && room && quiet && due
    }

    /// The next cluster to send at `now`, if it is time to probe: `estimate` is the target,
    /// `quiet` whether the delay detector sees no queue, `alr` whether the sender is
    /// application-limited.
    pub fn poll(
        &mut self,
        now: Instant,
        estimate: u64,
        quiet: bool,
        alr: bool,
    ) -> Option<ProbeCluster> {
        if let Some(c) = self.queued.pop_front() {
            return Some(c);
        }
        if !self.is_due(now, estimate, quiet, alr) {
            return None;
        }
        // Results still awaited never came (feedback lost): given up on.
        self.awaiting = 0;
        self.now_please = false;
        self.batch_at = Some(now);
        self.batch_best = 0;
        self.batch_top = 0;
        self.batches += 1;
        for scale in PROBE_SCALES {
            let bps = ((estimate as f64 * scale) as u64).min(self.desired);
            if bps <= self.batch_top {
                continue;
            }
            self.batch_top = bps;
            self.queued.push_back(ProbeCluster::new(self.next_id, bps));
            self.next_id = self.next_id.wrapping_add(1).max(1);
            self.awaiting += 1;
        }
        self.queued.pop_front()
    }

    /// A cluster's result (`None`: too little of it arrived to say).
    pub fn on_result(&mut self, result: Option<u64>) {
        self.awaiting = self.awaiting.saturating_sub(1);
        if let Some(bps) = result {
            self.batch_best = self.batch_best.max(bps);
        }
        if self.awaiting == 0
            && self.batch_top > 0
            && self.batch_best as f64 >= PROBE_FURTHER * self.batch_top as f64
        {
            // The link carried nearly all we probed with: there may be more.
            self.now_please = true;
        }
    }
}

/// One cluster as sent and as reported.
#[derive(Debug, Clone, Copy)]
struct ClusterRecord {
    id: u32,
    bps: u64,
    created: Instant,
    cluster: ProbeCluster,
    /// Complete, or another cluster began: no more packets of this one will be sent.
    closed: bool,
    sent: u32,
    sent_bytes: usize,
    reported: u32,
    received: u32,
    bytes: usize,
    first_send: Option<Instant>,
    last_send: Option<(Instant, usize)>,
    first_arrival: Option<(i64, usize)>,
    last_arrival: Option<i64>,
}

/// Measures what the link carried of each probe cluster; see the module documentation.
#[derive(Debug, Default)]
pub struct ProbeMeter {
    clusters: Vec<ClusterRecord>,
    /// Probe packets sent.
    packets_sent: u64,
}

/// A cluster's outcome: its id, the rate it was sent at, and what the link carried (`None`
/// when too little arrived).
pub type ProbeOutcome = (u32, u64, Option<u64>);

impl ProbeMeter {
    /// A cluster handed to the sender at `now`.
    pub fn start(&mut self, now: Instant, c: &ProbeCluster) {
        for r in &mut self.clusters {
            r.closed = true;
        }
        if self.clusters.len() >= MAX_CLUSTERS {
            self.clusters.remove(0);
        }
        self.clusters.push(ClusterRecord {
            id: c.id,
            bps: c.bps,
            created: now,
            cluster: *c,
            closed: false,
            sent: 0,
            sent_bytes: 0,
            reported: 0,
            received: 0,
            bytes: 0,
            first_send: None,
            last_send: None,
            first_arrival: None,
            last_arrival: None,
        });
    }

    /// Probe packets sent.
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// A packet of `size` bytes left, part of cluster `probe`: the cluster closes once it is
    /// complete ([`ProbeCluster::is_complete`], the rule the sender follows too).
    pub fn on_sent(&mut self, probe: u32, size: usize) {
        for r in &mut self.clusters {
            if r.id == probe && !r.closed {
                r.sent += 1;
                r.sent_bytes += size;
                self.packets_sent += 1;
                r.closed = r.cluster.is_complete(r.sent_bytes, r.sent);
            }
        }
    }

    /// The feedback reported a packet of cluster `id`: sent at `sent` with `size` bytes,
    /// arrived at `arrival_us` (receiver's clock) or lost.
    pub fn on_reported(&mut self, id: u32, sent: Instant, size: usize, arrival_us: Option<i64>) {
        let Some(r) = self.clusters.iter_mut().find(|r| r.id == id) else {
            return;
        };
        r.reported += 1;
        let Some(arrival) = arrival_us else {
            return;
        };
        r.received += 1;
        r.bytes += size;
        if r.first_send.is_none_or(|t| sent < t) {
            r.first_send = Some(sent);
        }
        if r.last_send.is_none_or(|(t, _)| sent >= t) {
            r.last_send = Some((sent, size));
        }
        if r.first_arrival.is_none_or(|(t, _)| arrival < t) {
            r.first_arrival = Some((arrival, size));
        }
        if r.last_arrival.is_none_or(|t| arrival > t) {
            r.last_arrival = Some(arrival);
        }
    }

    /// Clusters finished (closed and fully reported) or timed out at `now`, each once.
    pub fn take_outcomes(&mut self, now: Instant, out: &mut Vec<ProbeOutcome>) {
        self.clusters.retain(|r| {
            let done = r.closed && r.sent > 0 && r.reported >= r.sent;
            let stale = now.saturating_duration_since(r.created) >= PROBE_TIMEOUT;
            if done || stale {
                out.push((r.id, r.bps, done.then(|| r.rate()).flatten()));
                false
            } else {
                true
            }
        });
    }
}

impl ClusterRecord {
    /// What the link carried of this cluster, bits per second.
    fn rate(&self) -> Option<u64> {
        if self.received < PROBE_MIN_PACKETS
            || (self.received as f64) < PROBE_MIN_RECEIVED * self.sent as f64
        {
            return None;
        }
        let (first_send, (last_send, last_size)) = (self.first_send?, self.last_send?);
        let ((first_arrival, first_size), last_arrival) = (self.first_arrival?, self.last_arrival?);
        let send_span = last_send
            .saturating_duration_since(first_send)
            .as_secs_f64();
        let recv_span = (last_arrival - first_arrival) as f64 / 1e6;
        if send_span <= 0.0 || recv_span <= 0.0 {
            return None;
        }
        // The last packet sent took no send time within the span; the first to arrive, no
        // receive time.
        let send = (self.bytes - last_size) as f64 * 8.0 / send_span;
        let recv = (self.bytes - first_size) as f64 * 8.0 / recv_span;
        let rate = if recv < SATURATED * send {
            SATURATED_USE * recv
        } else {
            send.min(recv)
        };
        Some(rate as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn alr_enters_when_sending_well_below_the_target_and_leaves_when_sending_at_it() {
        let t0 = Instant::now();
        let mut a = AlrDetector::default();
        // 1200 bytes every 10 ms = 960 kbit/s against a 3 Mbit/s target: application-limited.
        for i in 0..100 {
            a.on_sent(ms(t0, i * 10), 1200, 3_000_000);
        }
        assert!(a.in_alr());
        // At 1 Mbit/s against 1 Mbit/s: not.
        for i in 100..200 {
            a.on_sent(ms(t0, i * 10), 1250, 1_000_000);
        }
        assert!(!a.in_alr());
        assert_eq!(a.entered(), 1);
    }

    #[test]
    fn controller_probes_at_two_and_three_times_up_to_what_is_wanted_then_waits() {
        let t0 = Instant::now();
        let mut p = ProbeController::new(1_000_000, 10_000_000);
        let a = p.poll(t0, 300_000, true, false).unwrap();
        let b = p.poll(t0, 300_000, true, false).unwrap();
        assert_eq!((a.bps, b.bps), (600_000, 900_000));
        assert!(a.is_complete(1125, 5) && !a.is_complete(1124, 5) && !a.is_complete(5000, 4));
        assert_eq!(p.poll(t0, 300_000, true, false), None);
        assert!(!p.is_due(t0, 300_000, true, false));
        // Results at 90 % and 100 % of the rates probed: probe further at once, capped at
        // what the application wants (one cluster: 2× and 3× are both above it).
        p.on_result(Some(540_000));
        p.on_result(Some(900_000));
        let c = p.poll(ms(t0, 100), 900_000, true, false).unwrap();
        assert_eq!(c.bps, 1_000_000);
        assert_eq!(p.poll(ms(t0, 100), 900_000, true, false), None);
        // A result far below the rate probed: no further probe. Application-limited, again
        // after 5 s, but not while the detector sees a queue or the estimate is near what is
        // wanted; not at all on a link the stream fills.
        p.on_result(Some(400_000));
        assert_eq!(p.poll(ms(t0, 200), 400_000, true, true), None);
        assert_eq!(p.poll(ms(t0, 9_000), 400_000, true, false), None);
        assert_eq!(p.poll(ms(t0, 5_200), 400_000, false, true), None);
        assert_eq!(p.poll(ms(t0, 5_200), 950_000, true, true), None);
        let next = |p: &mut ProbeController, at| p.poll(ms(t0, at), 400_000, true, true);
        assert_eq!(next(&mut p, 5_200).map(|c| c.bps), Some(800_000));
        assert_eq!(next(&mut p, 5_200).map(|c| c.bps), Some(1_000_000));
        // Results that never come are given up on after a second.
        assert_eq!(next(&mut p, 5_300), None);
        p.request();
        assert!(p.poll(ms(t0, 6_300), 400_000, true, false).is_some());
    }

    #[test]
    fn meter_measures_the_bottleneck_rate_of_a_saturating_cluster() {
        let t0 = Instant::now();
        let mut m = ProbeMeter::default();
        let ten = |id, bps| ProbeCluster {
            id,
            bps,
            min_bytes: 0,
            min_packets: 10,
        };
        m.start(t0, &ten(7, 3_000_000));
        // 10 packets of 1250 bytes sent at 3 Mbit/s (every 3⅓ ms), through a 1 Mbit/s link
        // (one every 10 ms).
        for i in 0..10u32 {
            m.on_sent(7, 1250);
            let sent = t0 + Duration::from_micros(u64::from(i) * 3_333);
            m.on_reported(7, sent, 1250, Some(20_000 + i64::from(i) * 10_000));
        }
        let mut out = Vec::new();
        m.take_outcomes(ms(t0, 50), &mut out);
        let (id, bps, rate) = out[0];
        assert_eq!((id, bps), (7, 3_000_000));
        let rate = rate.unwrap();
        assert!((930_000..=970_000).contains(&rate), "{rate}");
        // A cluster mostly lost has no result; a forgotten one times out.
        m.start(ms(t0, 100), &ten(8, 1_000_000));
        for i in 0..10 {
            m.on_sent(8, 1250);
            m.on_reported(8, ms(t0, 100 + i), 1250, (i < 5).then_some(i as i64 * 1000));
        }
        m.start(ms(t0, 120), &ProbeCluster::new(9, 1_000_000));
        m.on_sent(9, 1250);
        out.clear();
        m.take_outcomes(ms(t0, 130), &mut out);
        assert_eq!(out, vec![(8, 1_000_000, None)]);
        m.take_outcomes(ms(t0, 1_200), &mut out);
        assert_eq!(out[1], (9, 1_000_000, None));
        assert_eq!(m.packets_sent(), 21);
    }
}
