//! The send-side bandwidth estimator: from transport-wide feedback, the bitrate the path carries
//! without building a queue. Pure: every input carries the time; nothing here reads a clock.
//!
//! ```text
//!  on_packet_sent(seq, size)      on_transport_feedback(fb)          on_remb / on_rtt
//!          |                                |
//!     SendHistory  ---- send time, size --> per packet, in send order:
//!                                           InterArrival -> Trendline -> OveruseDetector
//!                                           AckedRate (receive rate)        |
//!                                           loss count                      v
//!                                               |                      AimdRate (delay-based)
//!                                               v                           |
//!                                           LossBound  ----------------> target = min(both,
//!                                                                        REMB) in min..=max
//! ```
//!
//! Delay-based control follows draft-ietf-rmcat-gcc-02 and libwebrtc's design (trendline filter,
//! adaptive threshold, AIMD); loss-based control holds under light loss (below 2 % it lets the
//! bound grow, up to 10 % it holds) and backs off above 10 %.
//!
//! Probing and ALR ([`probe`]): the sender asks [`BandwidthEstimator::poll_probe`] for probe
//! clusters (bursts at 2× and 3× the estimate, never above what the application wants, set
//! with [`BandwidthEstimator::set_desired_bps`]) and reports each packet of one with
//! [`BandwidthEstimator::on_probe_sent`]; when the feedback has reported a cluster, the rate the
//! link carried of it lifts the delay-based rate (reason [`RateReason::Probe`]). Probes go out
//! at the start, when the application asks for more, while results keep reaching the rate
//! probed, when the delay-based rate runs past the capacity it had learnt (the link got wider),
//! and every 5 s while application-limited and wanting more. An application-limited
//! stream (sending under 65 % of the estimate, [`BandwidthEstimator::in_alr`]) neither grows
//! the estimate past 1.5 × what it sends nor lets it sink toward it. Not done: abs-send-time.

pub mod delay;
pub mod probe;
pub mod rate;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use self::delay::{BandwidthUsage, InterArrival, OveruseDetector, Trendline};
use self::probe::{AlrDetector, ProbeCluster, ProbeController, ProbeMeter, ProbeOutcome};
use self::rate::{AckedRate, AimdRate, LossBound};
use super::twcc::{unwrap_seq, TwccFeedback};

/// The estimator's bounds and start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BweConfig {
    /// Never estimate below this, bits per second.
    pub min_bps: u64,
    /// The estimate before any feedback.
    pub start_bps: u64,
    /// Never estimate above this (what the application could use at most).
    pub max_bps: u64,
}

impl Default for BweConfig {
    fn default() -> Self {
        BweConfig {
            min_bps: 50_000,
            start_bps: 300_000,
            max_bps: 10_000_000,
        }
    }
}

/// Why the target last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateReason {
    /// The start bitrate: no feedback yet.
    #[default]
    Initial,
    /// The delay-based rate (growing, or cut by queue growth).
    Delay,
    /// The loss-based bound.
    Loss,
    /// The receiver's REMB.
    Remb,
    /// A probe cluster measured more than the delay-based rate.
    Probe,
}

/// Sent packets remembered for feedback: more than a second of video at high rates.
const HISTORY: usize = 8192;
/// The receive-rate window.
const ACKED_WINDOW: Duration = Duration::from_millis(500);
/// A probe's result serves as the application-limited sender's backoff floor this long...
const PROBE_RESULT_LIFETIME: Duration = Duration::from_secs(10);
/// ...and any sender's this long, while the receive rate still lags the rate it raised.
const PROBE_RESULT_FRESH: Duration = Duration::from_secs(1);
/// The round-trip time assumed before one is reported.
const DEFAULT_RTT: Duration = Duration::from_millis(100);

/// One packet the feedback reported, matched with what we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    /// When we sent it.
    pub sent: Instant,
    /// Its size, bytes.
    pub size: usize,
    /// When it arrived, µs on the receiver's clock; `None` if lost.
    pub arrival_us: Option<i64>,
    /// The probe cluster it belonged to.
    pub probe: Option<u32>,
}

/// What the estimator counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BweStats {
    /// Feedback packets used.
    pub feedback: u64,
    /// Packets reported received / lost.
    pub acked: u64,
    pub lost: u64,
    /// Reported packets we had no record of (too old, or never sent).
    pub unknown: u64,
    /// Decreases by the delay-based and loss-based controllers.
    pub delay_decreases: u64,
    pub loss_decreases: u64,
    /// Probe clusters handed to the sender, probe packets it sent, and clusters whose result
    /// raised the estimate.
    pub probe_clusters: u64,
    pub probe_packets: u64,
    pub probe_raises: u64,
    /// Times the stream became application-limited.
    pub alr_periods: u64,
}

/// The estimator; see the module documentation.
#[derive(Debug)]
pub struct BandwidthEstimator {
    cfg: BweConfig,
    /// Sent packets by extended transport-wide sequence number: send time, size, probe cluster.
    sent: BTreeMap<u64, (Instant, usize, Option<u32>)>,
    highest_sent: Option<u64>,
    /// The first send time, the origin of the µs send clock the delay filter uses.
    epoch: Option<Instant>,
    /// Unwrapping of the 24-bit reference time across feedback packets.
    last_reference: Option<i32>,
    reference_offset_us: i64,
    inter_arrival: InterArrival,
    trendline: Trendline,
    detector: OveruseDetector,
    usage: BandwidthUsage,
    aimd: AimdRate,
    loss: LossBound,
    acked: AckedRate,
    remb: Option<u64>,
    rtt: Duration,
    target: u64,
    reason: RateReason,
    stats: BweStats,
    alr: AlrDetector,
    probes: ProbeController,
    meter: ProbeMeter,
    outcomes: Vec<ProbeOutcome>,
    /// The last probe result and when it came.
    probed: Option<(Instant, u64)>,
}

impl BandwidthEstimator {
    /// An estimator at `cfg.start_bps`. Bounds are put in order (`min ≤ start ≤ max`).
    pub fn new(cfg: BweConfig) -> Self {
        let max = cfg.max_bps.max(1);
        let min = cfg.min_bps.min(max);
        let start = cfg.start_bps.clamp(min, max);
        let cfg = BweConfig {
            min_bps: min,
            start_bps: start,
            max_bps: max,
        };
        BandwidthEstimator {
            cfg,
            sent: BTreeMap::new(),
            highest_sent: None,
            epoch: None,
            last_reference: None,
            reference_offset_us: 0,
            inter_arrival: InterArrival::default(),
            trendline: Trendline::default(),
            detector: OveruseDetector::default(),
            usage: BandwidthUsage::Normal,
            aimd: AimdRate::new(start, min, max),
            loss: LossBound::new(max),
            acked: AckedRate::new(ACKED_WINDOW),
            remb: None,
            rtt: DEFAULT_RTT,
            target: start,
            reason: RateReason::Initial,
            stats: BweStats::default(),
            alr: AlrDetector::default(),
            probes: ProbeController::new(max, max),
            meter: ProbeMeter::default(),
            outcomes: Vec::new(),
            probed: None,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> BweConfig {
        self.cfg
    }

    /// The bitrate to send at, bits per second.
    pub fn target_bps(&self) -> u64 {
        self.target
    }

    /// Why the target last changed.
    pub fn reason(&self) -> RateReason {
        self.reason
    }

    /// The delay detector's last verdict.
    pub fn usage(&self) -> BandwidthUsage {
        self.usage
    }

    /// The delay-based rate, bits per second.
    pub fn delay_bps(&self) -> u64 {
        self.aimd.bps()
    }

    /// The loss-based bound, bits per second.
    pub fn loss_bps(&self) -> u64 {
        self.loss.bps()
    }

    /// The share of packets lost in the last batch the loss-based bound judged.
    pub fn loss_fraction(&self) -> f64 {
        self.loss.fraction()
    }

    /// The receive rate the feedback shows, bits per second.
    pub fn acked_bps(&self) -> Option<u64> {
        self.acked.bps()
    }

    /// What the estimator counted.
    pub fn stats(&self) -> BweStats {
        BweStats {
            probe_packets: self.meter.packets_sent(),
            alr_periods: self.alr.entered(),
            ..self.stats
        }
    }

    /// Whether the sender is application-limited: sending well below the estimate.
    pub fn in_alr(&self) -> bool {
        self.alr.in_alr()
    }

    /// The most the application would send (its encoder's ceiling), bits per second; at most
    /// `max_bps`, which it is until set. Probing stops there; asking for more probes at once.
    pub fn set_desired_bps(&mut self, bps: u64) {
        self.probes.set_desired(bps);
    }

    /// Whether [`Self::poll_probe`] would hand out a cluster at `now` (changes nothing).
    pub fn probe_due(&self, now: Instant) -> bool {
        let quiet = self.usage == BandwidthUsage::Normal;
        self.probes
            .is_due(now, self.target, quiet, self.alr.in_alr())
    }

    /// The next probe cluster to send, when it is time to probe at `now`. The sender sends its
    /// packets (media when it has some, else padding or retransmissions) at the cluster's rate
    /// until [`ProbeCluster::is_complete`], reporting each with [`Self::on_probe_sent`].
    pub fn poll_probe(&mut self, now: Instant) -> Option<ProbeCluster> {
        let quiet = self.usage == BandwidthUsage::Normal;
        let c = self
            .probes
            .poll(now, self.target, quiet, self.alr.in_alr())?;
        self.meter.start(now, &c);
        self.stats.probe_clusters += 1;
        Some(c)
    }

    /// A media packet carrying transport-wide sequence number `seq` and `size` bytes left at
    /// `now`.
    pub fn on_packet_sent(&mut self, now: Instant, seq: u16, size: usize) {
        self.alr.on_sent(now, size, self.target);
        self.record_sent(now, seq, size, None);
    }

    /// A packet of probe cluster `cluster` left at `now` (it counts for the probe, not as what
    /// the application sends).
    pub fn on_probe_sent(&mut self, now: Instant, seq: u16, size: usize, cluster: u32) {
        self.record_sent(now, seq, size, Some(cluster));
    }

    fn record_sent(&mut self, now: Instant, seq: u16, size: usize, probe: Option<u32>) {
        self.epoch.get_or_insert(now);
        if let Some(id) = probe {
            self.meter.on_sent(id, size);
        }
        let ext = unwrap_seq(self.highest_sent, seq);
        self.highest_sent = Some(self.highest_sent.map_or(ext, |h| h.max(ext)));
        self.sent.insert(ext, (now, size, probe));
        while self.sent.len() > HISTORY {
            self.sent.pop_first();
        }
    }

    /// The round-trip time measured elsewhere (RTCP reports).
    pub fn on_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    /// A REMB from the receiver: the target never exceeds it (until a later REMB says otherwise).
    pub fn on_remb(&mut self, bps: u64) {
        self.remb = Some(bps);
        self.set_target();
    }

    /// The packets `fb` reports, matched with what we sent (in the feedback's order, which is
    /// send order); packets we have no record of are left out.
    pub fn match_feedback(&mut self, fb: &TwccFeedback) -> Vec<PacketResult> {
        // The reference time is 24 bits of 64 ms: unwrap it so arrivals keep rising across the
        // field's wrap (every 12 days) and across feedback packets.
        let reference = fb.reference_time;
        if let Some(last) = self.last_reference {
            let diff = ((reference - last) << 8) >> 8;
            self.reference_offset_us += i64::from(diff - (reference - last)) * 64_000;
        }
        self.last_reference = Some(reference);
        let base = unwrap_seq(self.highest_sent, fb.base_seq);
        let mut out = Vec::with_capacity(fb.arrivals.len());
        for (i, arrival) in fb.arrivals.iter().enumerate() {
            match self.sent.get(&(base + i as u64)) {
                Some(&(sent, size, probe)) => out.push(PacketResult {
                    sent,
                    size,
                    arrival_us: arrival.map(|a| a + self.reference_offset_us),
                    probe,
                }),
                None => self.stats.unknown += 1,
            }
        }
        out
    }

    /// A transport-wide feedback packet arrived at `now`.
    pub fn on_transport_feedback(&mut self, now: Instant, fb: &TwccFeedback) {
        let results = self.match_feedback(fb);
        self.on_packet_results(now, &results);
    }

    /// The core of the estimator: reported packets (in send order) at `now`.
    pub fn on_packet_results(&mut self, now: Instant, results: &[PacketResult]) {
        if results.is_empty() {
            return;
        }
        self.stats.feedback += 1;
        let epoch = *self.epoch.get_or_insert(now);
        let mut lost = 0u64;
        let mut usage = None;
        let knew_capacity = self.aimd.capacity_known();
        for r in results {
            if let Some(id) = r.probe {
                self.meter.on_reported(id, r.sent, r.size, r.arrival_us);
            }
            let Some(arrival) = r.arrival_us else {
                lost += 1;
                continue;
            };
            self.acked.on_received(arrival, r.size);
            let send_us = r.sent.saturating_duration_since(epoch).as_micros() as i64;
            if let Some(d) = self.inter_arrival.on_packet(send_us, arrival) {
                let trend = self.trendline.update(d);
                usage = Some(self.detector.detect(
                    trend,
                    d.arrival_ms,
                    self.trendline.deltas(),
                    d.arrival_time_ms,
                ));
            }
        }
        let total = results.len() as u64;
        self.stats.lost += lost;
        self.stats.acked += total - lost;
        if let Some(u) = usage {
            self.usage = u;
        }
        // Application-limited, the receive rate is what the application sends, not what the
        // link carries; just after a probe it still lags the rate the probe found. In both
        // cases a recent probe says more.
        let floor = self
            .probed
            .filter(|(t, _)| {
                let age = now.saturating_duration_since(*t);
                age < PROBE_RESULT_FRESH || (self.alr.in_alr() && age < PROBE_RESULT_LIFETIME)
            })
            .map(|(_, b)| b);
        self.aimd.set_backoff_floor(floor);
        if self
            .aimd
            .update(now, self.usage, self.acked.bps(), self.rtt)
        {
            self.stats.delay_decreases += 1;
        }
        if self.loss.update(now, lost, total, self.target, self.rtt) {
            self.stats.loss_decreases += 1;
        }
        if knew_capacity && !self.aimd.capacity_known() {
            // The rate ran past the capacity it had learnt: the link got wider.
            self.probes.request();
        }
        let raised = self.apply_probe_results(now);
        self.set_target_for(raised);
    }

    /// Feeds finished probe clusters to the controller and lifts the delay-based rate to the
    /// best of them (never while the detector sees a queue). Returns true when it rose.
    fn apply_probe_results(&mut self, now: Instant) -> bool {
        self.outcomes.clear();
        self.meter.take_outcomes(now, &mut self.outcomes);
        let mut best = None::<u64>;
        for &(_, probed, result) in &self.outcomes {
            self.probes.on_result(result);
            // What the link carried, never more than was probed.
            if let Some(r) = result.map(|r| r.min(probed)) {
                best = Some(best.map_or(r, |b| b.max(r)));
            }
        }
        if let Some(b) = best {
            self.probed = Some((now, b));
        }
        let raised = match best {
            Some(b) if self.usage != BandwidthUsage::Overusing => self.aimd.raise_to(now, b),
            _ => false,
        };
        if raised {
            self.stats.probe_raises += 1;
        }
        raised
    }

    fn set_target(&mut self) {
        self.set_target_for(false);
    }

    /// The target from the three bounds; `probed`: the delay-based rate was just raised by a
    /// probe (the reason, when it is the binding bound).
    fn set_target_for(&mut self, probed: bool) {
        let delay = self.aimd.bps();
        let loss = self.loss.bps();
        let (mut target, mut reason) = if loss < delay {
            (loss, RateReason::Loss)
        } else if probed {
            (delay, RateReason::Probe)
        } else {
            (delay, RateReason::Delay)
        };
        if let Some(remb) = self.remb.filter(|&r| r < target) {
            target = remb;
            reason = RateReason::Remb;
        }
        let target = target.clamp(self.cfg.min_bps, self.cfg.max_bps);
        if target != self.target {
            self.reason = reason;
        }
        self.target = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feedback(base: u16, reference: i32, arrivals: Vec<Option<i64>>) -> TwccFeedback {
        TwccFeedback {
            sender_ssrc: 1,
            media_ssrc: 2,
            base_seq: base,
            fb_count: 0,
            reference_time: reference,
            arrivals,
        }
    }

    #[test]
    fn bounds_are_put_in_order_and_remb_caps() {
        let e = BandwidthEstimator::new(BweConfig {
            min_bps: 500_000,
            start_bps: 10,
            max_bps: 400_000,
        });
        assert_eq!(e.target_bps(), 400_000);
        assert_eq!(e.config().min_bps, 400_000);
        let mut e = BandwidthEstimator::new(BweConfig::default());
        e.on_remb(100_000);
        assert_eq!((e.target_bps(), e.reason()), (100_000, RateReason::Remb));
        e.on_remb(1);
        assert_eq!(e.target_bps(), 50_000);
    }

    #[test]
    fn feedback_is_matched_across_sequence_wrap_and_unknown_packets_counted() {
        let t0 = Instant::now();
        let mut e = BandwidthEstimator::new(BweConfig::default());
        for (i, seq) in [65_534u16, 65_535, 0, 1].into_iter().enumerate() {
            e.on_packet_sent(t0 + Duration::from_millis(i as u64), seq, 1000 + i);
        }
        let r = e.match_feedback(&feedback(
            65_535,
            0,
            vec![Some(10), None, Some(30), Some(40)],
        ));
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].size, 1001);
        assert_eq!(r[1].arrival_us, None);
        assert_eq!(e.stats().unknown, 1);
    }

    #[test]
    fn reference_time_wrap_keeps_arrivals_rising() {
        let t0 = Instant::now();
        let mut e = BandwidthEstimator::new(BweConfig::default());
        e.on_packet_sent(t0, 0, 100);
        e.on_packet_sent(t0, 1, 100);
        let top = (1 << 23) - 1;
        let a = e.match_feedback(&feedback(0, top, vec![Some(i64::from(top) * 64_000)]));
        let b = e.match_feedback(&feedback(1, -(1 << 23), vec![Some(-(1i64 << 23) * 64_000)]));
        assert_eq!(b[0].arrival_us.unwrap() - a[0].arrival_us.unwrap(), 64_000);
    }

    #[test]
    fn heavy_loss_lowers_the_target_light_loss_does_not() {
        let t0 = Instant::now();
        let mut e = BandwidthEstimator::new(BweConfig {
            start_bps: 1_000_000,
            ..BweConfig::default()
        });
        let mut seq = 0u16;
        let mut send = |e: &mut BandwidthEstimator, at: Instant, loss_every: u16| {
            let base = seq;
            let mut arrivals = Vec::new();
            for k in 0..50u16 {
                let t = at + Duration::from_millis(u64::from(k) * 2);
                e.on_packet_sent(t, seq, 1000);
                let us = t.duration_since(t0).as_micros() as i64 + 20_000;
                arrivals.push((!seq.is_multiple_of(loss_every)).then_some(us));
                seq = seq.wrapping_add(1);
            }
            e.on_transport_feedback(
                at + Duration::from_millis(130),
                &feedback(base, 0, arrivals),
            );
        };
        for i in 0..20 {
            send(&mut e, t0 + Duration::from_millis(i * 100), 50);
        }
        assert!(e.target_bps() >= 1_000_000, "{}", e.target_bps());
        assert_eq!(e.stats().loss_decreases, 0);
        let before = e.target_bps();
        send(&mut e, t0 + Duration::from_millis(2_000), 3);
        assert_eq!(e.stats().loss_decreases, 1);
        assert!(e.target_bps() < before);
        assert_eq!(e.reason(), RateReason::Loss);
    }
}
