//! The send-side bandwidth estimator: from transport-wide or RFC 8888 feedback, the bitrate the
//! path carries without building a queue. Pure: every input carries the time; nothing here reads
//! a clock. The receiver's estimate behind REMB ([`remote`]) runs the same code.
//!
//! ```text
//!  on_packet_sent(seq, size)      on_transport_feedback(fb)          on_remb / on_rtt
//!  on_rtp_sent(ssrc, seq, size)   on_ccfb(fb)
//!          |                                |
//!     SendHistory  ---- send time, size --> on_reports, per packet, in send order:
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
//! bound grow, up to 10 % it holds) and backs off above 10 %. When only REMB was agreed the
//! target is the REMB ([`BandwidthEstimator::follow_remb`]).
//!
//! Probing and ALR ([`probe`]): the sender asks [`BandwidthEstimator::poll_probe`] for probe
//! clusters (bursts at 2× and 3× the estimate, never above what the application wants, set
//! with [`BandwidthEstimator::set_desired_bps`]) and reports each packet of one with
//! [`BandwidthEstimator::on_probe_sent`]; when transport-wide feedback has reported a cluster,
//! the rate the link carried of it lifts the delay-based rate (reason [`RateReason::Probe`]).
//! Probes go out at the start, when the application asks for more, while results keep reaching
//! the rate probed, when the delay-based rate runs past the capacity it had learnt (the link got
//! wider), and every 5 s while application-limited and wanting more. An application-limited
//! stream (sending under 65 % of the estimate, [`BandwidthEstimator::in_alr`]) neither grows
//! the estimate past 1.5 × what it sends nor lets it sink toward it. RFC 8888 feedback does not
//! measure probes (its per-source histories carry no cluster).

pub mod delay;
pub mod probe;
pub mod rate;
pub mod remote;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use self::delay::{BandwidthUsage, InterArrival, OveruseDetector, Trendline};
use self::probe::{AlrDetector, ProbeCluster, ProbeController, ProbeMeter, ProbeOutcome};
use self::rate::{AckedRate, AimdRate, LossBound};
use super::ccfb::Ccfb;
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
/// A probe's result serves as the application-limited sender's backoff floor this long.
const PROBE_RESULT_LIFETIME: Duration = Duration::from_secs(10);
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

/// One packet as the delay filter sees it: send time (sender's clock) and arrival (receiver's
/// clock), µs, and size; `arrival_us: None` if lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub send_us: i64,
    pub size: usize,
    pub arrival_us: Option<i64>,
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

/// Sources whose RTP packets are remembered for RFC 8888 feedback.
const MAX_RTP_SOURCES: usize = 4;

/// Sent packets by extended sequence number (transport-wide, or one source's RTP numbers): send
/// time, size and probe cluster, the newest [`HISTORY`] of them.
#[derive(Debug, Default)]
struct SendHistory {
    sent: BTreeMap<u64, (Instant, usize, Option<u32>)>,
    highest: Option<u64>,
}

impl SendHistory {
    fn on_sent(&mut self, now: Instant, seq: u16, size: usize, probe: Option<u32>) {
        let ext = self.unwrap(seq);
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.sent.insert(ext, (now, size, probe));
        while self.sent.len() > HISTORY {
            self.sent.pop_first();
        }
    }

    fn unwrap(&self, seq: u16) -> u64 {
        unwrap_seq(self.highest, seq)
    }

    fn get(&self, ext: u64) -> Option<&(Instant, usize, Option<u32>)> {
        self.sent.get(&ext)
    }
}

/// The estimator; see the module documentation.
#[derive(Debug)]
pub struct BandwidthEstimator {
    cfg: BweConfig,
    /// Sent packets by extended transport-wide sequence number: send time and size.
    sent: SendHistory,
    /// Sent packets by (SSRC, extended RTP sequence number), for RFC 8888 feedback: one history
    /// per source (media, RTX), a handful at most.
    sent_rtp: Vec<(u32, SendHistory)>,
    /// Unwrapping of the CCFB report timestamp (16.16 s) across reports.
    last_report_ts: Option<(u32, i64)>,
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
    /// The target is the REMB (see [`BandwidthEstimator::follow_remb`]).
    remb_only: bool,
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
            sent: SendHistory::default(),
            sent_rtp: Vec::new(),
            last_report_ts: None,
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
            remb_only: false,
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
        self.epoch.get_or_insert(now);
        self.alr.on_sent(now, size, self.target);
        self.sent.on_sent(now, seq, size, None);
    }

    /// A packet of probe cluster `cluster` left at `now` (it counts for the probe, not as what
    /// the application sends).
    pub fn on_probe_sent(&mut self, now: Instant, seq: u16, size: usize, cluster: u32) {
        self.epoch.get_or_insert(now);
        self.meter.on_sent(cluster, size);
        self.sent.on_sent(now, seq, size, Some(cluster));
    }

    /// An RTP packet of `ssrc` with sequence number `seq` and `size` bytes left at `now` (for
    /// RFC 8888 feedback, which names packets so).
    pub fn on_rtp_sent(&mut self, now: Instant, ssrc: u32, seq: u16, size: usize) {
        self.epoch.get_or_insert(now);
        let i = match self.sent_rtp.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => i,
            None => {
                if self.sent_rtp.len() >= MAX_RTP_SOURCES {
                    self.sent_rtp.remove(0);
                }
                self.sent_rtp.push((ssrc, SendHistory::default()));
                self.sent_rtp.len() - 1
            }
        };
        self.sent_rtp[i].1.on_sent(now, seq, size, None);
    }

    /// An RFC 8888 report arrived at `now`: its packets matched with what we sent (per source),
    /// in send order, into the same filter as transport-wide feedback.
    pub fn on_ccfb(&mut self, now: Instant, fb: &Ccfb) {
        // Report timestamps are 16.16 s on the receiver's clock: unwrap across reports.
        let ts = match self.last_report_ts {
            Some((last, ext)) => ext + i64::from(fb.report_timestamp.wrapping_sub(last) as i32),
            None => i64::from(fb.report_timestamp),
        };
        self.last_report_ts = Some((fb.report_timestamp, ts));
        let report_us = (i128::from(ts) * 1_000_000 / 65_536) as i64;
        let mut results = Vec::new();
        for b in &fb.blocks {
            let Some((_, hist)) = self.sent_rtp.iter().find(|(s, _)| *s == b.ssrc) else {
                self.stats.unknown += b.metrics.len() as u64;
                continue;
            };
            let base = hist.unwrap(b.begin_seq);
            for (i, m) in b.metrics.iter().enumerate() {
                let Some(&(sent, size, _)) = hist.get(base + i as u64) else {
                    self.stats.unknown += 1;
                    continue;
                };
                let arrival_us = match m {
                    None => None,
                    // Received, but when is not known: nothing to learn from it.
                    Some(m) => match m.offset_us() {
                        Some(o) => Some(report_us - o),
                        None => continue,
                    },
                };
                results.push(PacketResult {
                    sent,
                    size,
                    arrival_us,
                    probe: None,
                });
            }
        }
        results.sort_by_key(|r| r.sent);
        self.on_packet_results(now, &results);
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
        let base = self.sent.unwrap(fb.base_seq);
        let mut out = Vec::with_capacity(fb.arrivals.len());
        for (i, arrival) in fb.arrivals.iter().enumerate() {
            match self.sent.get(base + i as u64) {
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
        let epoch = *self.epoch.get_or_insert(now);
        for r in results {
            if let Some(id) = r.probe {
                self.meter.on_reported(id, r.sent, r.size, r.arrival_us);
            }
        }
        self.on_reports(
            now,
            results.iter().map(|r| Report {
                send_us: r.sent.saturating_duration_since(epoch).as_micros() as i64,
                size: r.size,
                arrival_us: r.arrival_us,
            }),
        );
    }

    /// Reported packets (in send order, send times on the sender's µs clock) at `now`: what
    /// transport-wide feedback yields on the sender, and what a receiver that estimates for REMB
    /// measures itself ([`remote::ReceiveEstimator`]). One path for both.
    pub fn on_reports(&mut self, now: Instant, reports: impl IntoIterator<Item = Report>) {
        let mut lost = 0u64;
        let mut total = 0u64;
        let mut usage = None;
        let knew_capacity = self.aimd.capacity_known();
        for r in reports {
            total += 1;
            let Some(arrival) = r.arrival_us else {
                lost += 1;
                continue;
            };
            self.acked.on_received(arrival, r.size);
            if let Some(d) = self.inter_arrival.on_packet(r.send_us, arrival) {
                let trend = self.trendline.update(d);
                usage = Some(self.detector.detect(
                    trend,
                    d.arrival_ms,
                    self.trendline.deltas(),
                    d.arrival_time_ms,
                ));
            }
        }
        if total == 0 {
            return;
        }
        self.stats.feedback += 1;
        self.stats.lost += lost;
        self.stats.acked += total - lost;
        if let Some(u) = usage {
            self.usage = u;
        }
        // Application-limited, the receive rate is what the application sends, not what the
        // link carries: a recent probe says more. (Not otherwise: beside cross traffic the
        // probe could not see, a floor would hold the rate above the link while a queue grows.)
        let floor = self
            .probed
            .filter(|(t, _)| {
                self.alr.in_alr() && now.saturating_duration_since(*t) < PROBE_RESULT_LIFETIME
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

    /// The target follows the receiver's REMB alone (a peer that sends REMB and no per-packet
    /// feedback: the receiver estimates, we obey; the start bitrate until its first REMB).
    pub fn follow_remb(&mut self) {
        self.remb_only = true;
        self.set_target();
    }

    fn set_target(&mut self) {
        self.set_target_for(false);
    }

    /// The target from the bounds; `probed`: the delay-based rate was just raised by a probe
    /// (the reason, when it is the binding bound).
    fn set_target_for(&mut self, probed: bool) {
        let delay = self.aimd.bps();
        let loss = self.loss.bps();
        let (mut target, mut reason) = if self.remb_only {
            (
                self.remb.unwrap_or(self.cfg.start_bps),
                if self.remb.is_some() {
                    RateReason::Remb
                } else {
                    RateReason::Initial
                },
            )
        } else if loss < delay {
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

    #[test]
    fn ccfb_is_matched_per_source_across_wraps_and_unusable_reports_are_left_out() {
        use crate::rtp::ccfb::{Block, Ccfb, Metric};
        let t0 = Instant::now();
        let mut e = BandwidthEstimator::new(BweConfig::default());
        for (i, seq) in [65_535u16, 0, 1].into_iter().enumerate() {
            e.on_rtp_sent(t0 + Duration::from_millis(i as u64), 10, seq, 1000 + i);
            e.on_rtp_sent(t0 + Duration::from_millis(i as u64), 11, seq, 500);
        }
        let got = |ato| Some(Metric { ecn: 0, ato });
        let fb = |ts| Ccfb {
            sender_ssrc: 1,
            blocks: vec![
                // Received, lost, received but the time unknown (left out).
                Block {
                    ssrc: 10,
                    begin_seq: 65_535,
                    metrics: vec![got(10), None, got(crate::rtp::ccfb::ATO_UNAVAILABLE)],
                },
                // A source we never sent on: unknown.
                Block {
                    ssrc: 99,
                    begin_seq: 0,
                    metrics: vec![got(1), got(2)],
                },
            ],
            report_timestamp: ts,
        };
        // Report timestamps across the 32-bit wrap keep arrivals rising.
        e.on_ccfb(t0 + Duration::from_millis(100), &fb(u32::MAX - 65_535));
        e.on_ccfb(t0 + Duration::from_millis(200), &fb(1));
        let s = e.stats();
        assert_eq!((s.feedback, s.acked, s.lost, s.unknown), (2, 2, 2, 4));
        let results = {
            let mut e = BandwidthEstimator::new(BweConfig::default());
            e.on_rtp_sent(t0, 10, 5, 700);
            e.on_ccfb(t0, &fb(0));
            e.stats()
        };
        // Sequence numbers of another range: nothing of ours matched.
        assert_eq!((results.feedback, results.unknown), (0, 5));
    }
}
