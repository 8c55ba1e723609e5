//! A simulated network on virtual time, for testing and measuring [`StreamCore`]s without sockets,
//! threads or a clock.
//!
//! [`SimPath`] is one direction of a path: the crate's impairment model ([`crate::netem`]) carrying
//! datagrams, with a base delay, order-keeping jitter, random or bursty loss, reordering (a packet
//! held back by a few ms, overtaken by later ones) and duplication, all drawn from a seeded
//! generator so a run is the same every time. A drop filter lets a test aim at one packet ("lose
//! the first RTX packet"). [`SimPair`] connects two cores with two paths and
//! drives them: it delivers datagrams when they are due, fires the cores' timeouts, and collects
//! what comes out, with the virtual time of each event.
//!
//! [`CcSim`] runs congestion-controlled flows (a [`BandwidthEstimator`] each, fed with
//! transport-wide feedback that its receiver's [`TwccRecorder`] builds) through one shared
//! [`Bottleneck`] of the same model: the estimator's tests and benchmark use it.
//!
//! Time starts at an `Instant` the caller gives (any will do: only differences matter) and moves
//! only when [`SimPair::run_until`] moves it.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::bwe::probe::ProbeCluster;
use super::bwe::{BandwidthEstimator, BweConfig};
use super::config::CoreConfig;
use super::packet::{classify_muxed, MuxedKind};
use super::rtcp::{parse_compound, RtcpEvent};
use super::stream::{StreamCore, StreamEvent};
use super::twcc::TwccRecorder;
use crate::error::Result;

pub use crate::codec::testclip::h264_picture;
pub use crate::netem::{Bottleneck, BurstLoss};
use crate::netem::{Netem, NetemConfig, NetemStats};

/// How one direction of a simulated path treats packets: the crate's impairment model's config.
pub type PathConfig = NetemConfig;

/// What a path did.
pub type PathStats = NetemStats;

/// One direction of a simulated path: the crate's impairment model ([`crate::netem`]) carrying
/// [`Datagram`]s.
pub type SimPath = Netem<Datagram>;

/// Decides, for each datagram entering the path, whether it is dropped (true) regardless of the
/// random draws: how a test loses one packet on purpose.
pub type DropFilter = crate::netem::DropFilter<Datagram>;

/// A datagram in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

impl Datagram {
    /// True for RTCP (by the RFC 5761 rule).
    pub fn is_rtcp(&self) -> bool {
        classify_muxed(&self.data) == MuxedKind::Rtcp
    }
}

/// One end of a [`SimPair`]: its core, its address and what it produced.
#[derive(Debug)]
pub struct SimPeer {
    pub core: StreamCore,
    pub addr: SocketAddr,
    /// Events with the virtual time they came out.
    pub events: Vec<(Instant, StreamEvent)>,
}

/// Two cores connected by two simulated paths; see the module documentation.
#[derive(Debug)]
pub struct SimPair {
    pub a: SimPeer,
    pub b: SimPeer,
    /// A → B.
    pub ab: SimPath,
    /// B → A.
    pub ba: SimPath,
    /// With a [`Bottleneck`] on A → B: its queue delay as each datagram from A entered it.
    pub ab_queue_delays: Vec<(Instant, Duration)>,
    now: Instant,
}

/// How many steps may run at one instant before the harness decides a core's timeout is stuck.
const MAX_STEPS_AT_ONE_INSTANT: u32 = 100_000;

impl SimPair {
    /// Two cores at `start`, A at 10.0.0.1:5000 and B at 10.0.0.2:6000, with rtcp-mux; their
    /// remote addresses are set to each other, everything else comes from `a_cfg` and `b_cfg`.
    /// `seed` seeds the cores (the paths have their own seeds).
    pub fn new(
        start: Instant,
        mut a_cfg: CoreConfig,
        mut b_cfg: CoreConfig,
        ab: SimPath,
        ba: SimPath,
        seed: u64,
    ) -> Result<Self> {
        let a_addr: SocketAddr = ([10, 0, 0, 1], 5000).into();
        let b_addr: SocketAddr = ([10, 0, 0, 2], 6000).into();
        for (cfg, remote) in [(&mut a_cfg, b_addr), (&mut b_cfg, a_addr)] {
            cfg.remote_rtp = remote;
            cfg.remote_rtcp = remote;
            cfg.rtcp_mux = true;
        }
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Ok(SimPair {
            a: SimPeer {
                core: StreamCore::new(a_cfg, start, wall, seed)?,
                addr: a_addr,
                events: Vec::new(),
            },
            b: SimPeer {
                core: StreamCore::new(b_cfg, start, wall, seed.wrapping_add(1))?,
                addr: b_addr,
                events: Vec::new(),
            },
            ab,
            ba,
            ab_queue_delays: Vec::new(),
            now: start,
        })
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Runs `f` on A's core at the current time, then collects its output.
    pub fn with_a<T>(&mut self, f: impl FnOnce(&mut StreamCore, Instant) -> T) -> T {
        let v = f(&mut self.a.core, self.now);
        self.collect();
        v
    }

    /// Runs `f` on B's core at the current time, then collects its output.
    pub fn with_b<T>(&mut self, f: impl FnOnce(&mut StreamCore, Instant) -> T) -> T {
        let v = f(&mut self.b.core, self.now);
        self.collect();
        v
    }

    /// Moves transmits into the paths and events into the peers' lists.
    fn collect(&mut self) {
        let now = self.now;
        let ab_queue = &mut self.ab_queue_delays;
        for (peer, path, from_a) in [
            (&mut self.a, &mut self.ab, true),
            (&mut self.b, &mut self.ba, false),
        ] {
            while let Some(t) = peer.core.poll_transmit() {
                if from_a && path.config().bottleneck.is_some() {
                    ab_queue.push((now, path.queue_delay(now)));
                }
                let len = t.contents.len();
                path.handle_input_sized(
                    now,
                    Datagram {
                        from: peer.addr,
                        to: t.dest,
                        data: t.contents,
                    },
                    len,
                );
            }
            while let Some(e) = peer.core.poll_event() {
                peer.events.push((now, e));
            }
        }
    }

    fn next_event(&self) -> Option<Instant> {
        [
            self.a.core.poll_timeout(),
            self.b.core.poll_timeout(),
            self.ab.poll_timeout(),
            self.ba.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the simulation until `t` (inclusive): deliveries and timeouts in time order.
    ///
    /// # Panics
    /// If a core keeps asking for a timeout at the same instant without making progress (a bug
    /// the harness is there to catch).
    pub fn run_until(&mut self, t: Instant) {
        let mut steps = 0u32;
        let mut last = self.now;
        while let Some(next) = self.next_event() {
            if next > t {
                break;
            }
            self.now = self.now.max(next);
            if self.now == last {
                steps += 1;
                assert!(
                    steps < MAX_STEPS_AT_ONE_INSTANT,
                    "a stream core's timeout does not advance"
                );
            } else {
                steps = 0;
                last = self.now;
            }
            let now = self.now;
            while let Some(d) = self.ab.poll_output(now) {
                if d.to == self.b.addr {
                    self.b.core.handle_datagram(now, d.from, &d.data, false);
                }
            }
            while let Some(d) = self.ba.poll_output(now) {
                if d.to == self.a.addr {
                    self.a.core.handle_datagram(now, d.from, &d.data, false);
                }
            }
            for core in [&mut self.a.core, &mut self.b.core] {
                if core.poll_timeout().is_some_and(|d| d <= now) {
                    core.handle_timeout(now);
                }
            }
            self.collect();
        }
        self.now = self.now.max(t);
    }

    /// Runs the simulation for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }
}

/// The pictures of a file-like video sender: 30 fps, a key picture every `key_every` pictures and
/// never on request (a file has no encoder to ask), key pictures of about 100 packets and the
/// others of 5 to 15 (720p-like sizes at a 1200-byte MTU).
#[derive(Debug, Clone)]
pub struct FileClip {
    /// Each picture and whether it is a key picture.
    pub pictures: Vec<(Vec<u8>, bool)>,
    /// Time between pictures.
    pub frame: Duration,
}

impl FileClip {
    /// `n` pictures drawn from `seed`.
    pub fn new(n: usize, key_every: usize, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let pictures = (0..n)
            .map(|i| {
                let key = i.is_multiple_of(key_every.max(1));
                let packets = if key { 100 } else { rng.random_range(5..=15) };
                let len = packets * 1_180;
                (h264_picture(key, len, seed ^ ((i as u64) << 20)), key)
            })
            .collect();
        FileClip {
            pictures,
            frame: Duration::from_nanos(33_333_333),
        }
    }
}

/// What became of a [`FileClip`] sent from A to B.
#[derive(Debug, Clone, Default)]
pub struct ClipReport {
    /// Pictures sent.
    pub sent: usize,
    /// Pictures delivered complete and byte for byte as sent.
    pub intact: usize,
    /// Anything else delivered (damaged, unknown, or flagged incomplete): must stay 0.
    pub corrupt: usize,
    /// Whether the intact pictures came in the order sent.
    pub in_order: bool,
    /// For each intact picture, delivery time minus send time, sorted.
    pub latencies: Vec<Duration>,
    /// For each key picture, how long the pacer held its last packet.
    pub key_pacer_delays: Vec<Duration>,
}

impl ClipReport {
    /// The `q` quantile (0–1) of the latencies; zero when nothing arrived.
    pub fn latency(&self, q: f64) -> Duration {
        match self.latencies.len() {
            0 => Duration::ZERO,
            n => self.latencies[((n - 1) as f64 * q).round() as usize],
        }
    }
}

/// Sends `clip` from A at its frame rate (RTP timestamps to match), runs `tail` longer, and
/// checks what B delivered against what was sent.
pub fn play_clip(pair: &mut SimPair, clip: &FileClip, tail: Duration) -> ClipReport {
    let start = pair.now();
    let first_event = pair.b.events.len();
    let mut sent_at = Vec::with_capacity(clip.pictures.len());
    let mut key_pacer_delays = Vec::new();
    let mut pending_key = false;
    for (i, (pic, key)) in clip.pictures.iter().enumerate() {
        let at = start + clip.frame * i as u32;
        pair.run_until(at);
        if pending_key {
            let ms = pair.a.core.stats().pacer_delay_ms;
            key_pacer_delays.push(Duration::from_secs_f64(ms / 1000.0));
        }
        let ts = clip.frame.as_secs_f64() * 1000.0 * i as f64;
        // A send can only fail on a closed stream or a malformed picture: a harness bug.
        pair.with_a(|c, now| c.send_video(now, pic, Some(ts)))
            .expect("sending a clip picture");
        sent_at.push(at);
        pending_key = *key;
    }
    pair.run_for(tail);
    if pending_key {
        let ms = pair.a.core.stats().pacer_delay_ms;
        key_pacer_delays.push(Duration::from_secs_f64(ms / 1000.0));
    }
    let index: std::collections::HashMap<&[u8], usize> = clip
        .pictures
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.as_slice(), i))
        .collect();
    let mut r = ClipReport {
        sent: clip.pictures.len(),
        in_order: true,
        key_pacer_delays,
        ..ClipReport::default()
    };
    let mut last = None;
    for (t, e) in &pair.b.events[first_event..] {
        let StreamEvent::Video(f) = e else { continue };
        match index.get(f.data.as_slice()) {
            Some(&i) if f.complete => {
                r.intact += 1;
                r.latencies.push(t.saturating_duration_since(sent_at[i]));
                if last.is_some_and(|l| l >= i) {
                    r.in_order = false;
                }
                last = Some(i);
            }
            _ => r.corrupt += 1,
        }
    }
    r.latencies.sort();
    r
}

// ---------------------------------------------------------------------------------------------
// Congestion control on virtual time: flows that send at their estimator's target through one
// shared bottleneck (the impairment model's drop-tail queue), with transport-wide feedback
// built by each receiver's `TwccRecorder`, carried back as RTCP bytes and parsed again.

/// Bytes of each simulated media packet.
pub const CC_PACKET_BYTES: usize = 1200;

/// A packet of one flow on the forward path.
#[derive(Debug, Clone)]
pub struct CcPacket {
    pub flow: usize,
    pub seq: u16,
}

/// One sender/receiver pair of a [`CcSim`].
#[derive(Debug)]
pub struct CcFlow {
    /// The sender's estimator.
    pub bwe: BandwidthEstimator,
    recorder: TwccRecorder,
    /// What the application would send if the path allowed it, bits per second.
    pub app_bps: u64,
    /// When the flow starts sending.
    pub starts: Instant,
    next_send: Instant,
    seq: u16,
    /// The probe cluster being sent, with the bytes and packets sent of it so far.
    probe: Option<(ProbeCluster, usize, u32)>,
    /// The target, sampled every [`CcSim::SAMPLE`].
    pub estimates: Vec<(Instant, u64)>,
    /// Bytes sent and bytes that reached the receiver.
    pub sent_bytes: u64,
    pub received_bytes: u64,
}

impl CcFlow {
    /// The rate the flow sends at now: the target, unless the application wants less.
    pub fn send_bps(&self) -> u64 {
        self.bwe.target_bps().min(self.app_bps).max(1)
    }

    /// The sampled targets from `from` on.
    pub fn estimates_after(&self, from: Instant) -> impl Iterator<Item = u64> + '_ {
        self.estimates
            .iter()
            .filter(move |(t, _)| *t >= from)
            .map(|&(_, b)| b)
    }
}

/// Congestion-controlled flows through one bottleneck; see the section comment above.
#[derive(Debug)]
pub struct CcSim {
    t0: Instant,
    now: Instant,
    /// The flows, in the order they were added.
    pub flows: Vec<CcFlow>,
    /// Senders → receivers: the bottleneck, delay and loss.
    pub forward: Netem<CcPacket>,
    /// Receivers → senders: feedback (flow, RTCP bytes).
    pub back: Netem<(usize, Vec<u8>)>,
    /// The bottleneck queue's delay as each packet entered it.
    pub queue_delays: Vec<(Instant, Duration)>,
    /// How often each receiver sends feedback.
    pub feedback_interval: Duration,
    /// Print each flow's estimator state at every sample (to stderr): for tuning.
    pub trace: bool,
    next_feedback: Instant,
    next_sample: Instant,
}

impl CcSim {
    /// How often the targets are sampled into [`CcFlow::estimates`].
    pub const SAMPLE: Duration = Duration::from_millis(100);

    /// No flows yet; `forward` (with its bottleneck) carries media, a clean path of
    /// `back_delay` carries feedback. Time starts at `t0`.
    pub fn new(t0: Instant, forward: NetemConfig, back_delay: Duration, seed: u64) -> Self {
        CcSim {
            t0,
            now: t0,
            flows: Vec::new(),
            forward: Netem::new(forward, seed),
            back: Netem::new(NetemConfig::clean(back_delay), seed ^ 0x5eed),
            queue_delays: Vec::new(),
            feedback_interval: Duration::from_millis(50),
            trace: false,
            next_feedback: t0,
            next_sample: t0,
        }
    }

    /// The virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Adds a flow that wants `app_bps` and starts at `starts`; returns its index.
    pub fn add_flow(&mut self, cfg: BweConfig, app_bps: u64, starts: Instant) -> usize {
        let mut bwe = BandwidthEstimator::new(cfg);
        bwe.on_rtt(self.forward.config().delay + self.back.config().delay);
        bwe.set_desired_bps(app_bps);
        self.flows.push(CcFlow {
            bwe,
            recorder: TwccRecorder::new(),
            app_bps,
            starts,
            next_send: starts,
            seq: 0,
            probe: None,
            estimates: Vec::new(),
            sent_bytes: 0,
            received_bytes: 0,
        });
        self.flows.len() - 1
    }

    /// Flow `flow`'s application now wants `bps` (and tells its estimator).
    pub fn set_app_bps(&mut self, flow: usize, bps: u64) {
        let f = &mut self.flows[flow];
        f.app_bps = bps;
        f.bwe.set_desired_bps(bps);
    }

    /// Flow `flow`'s application would send up to `bps` but keeps sending `app_bps`: its
    /// estimator probes for what it wants.
    pub fn set_desired_bps(&mut self, flow: usize, bps: u64) {
        self.flows[flow].bwe.set_desired_bps(bps);
    }

    /// Changes the bottleneck (or any impairment) from now on: a rate step.
    pub fn set_forward(&mut self, cfg: NetemConfig) {
        self.forward.set_config(cfg);
    }

    /// The bottleneck queue delays recorded from `from` on, sorted.
    pub fn queue_delays_after(&self, from: Instant) -> Vec<Duration> {
        let mut v: Vec<Duration> = self
            .queue_delays
            .iter()
            .filter(|(t, _)| *t >= from)
            .map(|&(_, d)| d)
            .collect();
        v.sort();
        v
    }

    /// Runs every flow, path and timer until `t`.
    pub fn run_until(&mut self, t: Instant) {
        loop {
            let next = self
                .flows
                .iter()
                .map(|f| f.next_send)
                .chain([self.next_feedback, self.next_sample])
                .chain(self.forward.poll_timeout())
                .chain(self.back.poll_timeout())
                .min()
                .unwrap_or(t);
            if next > t {
                break;
            }
            self.now = next;
            self.step();
        }
        self.now = t;
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(p) = self.forward.poll_output(now) {
            let f = &mut self.flows[p.flow];
            f.recorder.on_packet(now, p.seq);
            f.received_bytes += CC_PACKET_BYTES as u64;
        }
        while let Some((i, bytes)) = self.back.poll_output(now) {
            for event in parse_compound(&bytes).unwrap_or_default() {
                if let RtcpEvent::TransportCc(fb) = event {
                    self.flows[i].bwe.on_transport_feedback(now, &fb);
                }
            }
        }
        if now >= self.next_feedback {
            for (i, f) in self.flows.iter_mut().enumerate() {
                let mut buf = Vec::new();
                while f.recorder.poll_feedback(&mut buf, 1, 2).is_some() {}
                if !buf.is_empty() {
                    self.back.handle_input_sized(now, (i, buf), 0);
                }
            }
            self.next_feedback = now + self.feedback_interval;
        }
        if now >= self.next_sample {
            for f in &mut self.flows {
                f.estimates.push((now, f.bwe.target_bps()));
                if self.trace {
                    eprintln!(
                        "{:6.1}s target {} delay {} loss {} ({:.3}) acked {:?} {:?} alr {} q {:?}",
                        (now - self.t0).as_secs_f64(),
                        f.bwe.target_bps() / 1000,
                        f.bwe.delay_bps() / 1000,
                        f.bwe.loss_bps() / 1000,
                        f.bwe.loss_fraction(),
                        f.bwe.acked_bps().map(|b| b / 1000),
                        f.bwe.usage(),
                        f.bwe.in_alr(),
                        self.forward.queue_delay(now),
                    );
                }
            }
            self.next_sample = now + Self::SAMPLE;
        }
        for (i, f) in self.flows.iter_mut().enumerate() {
            if f.next_send > now {
                continue;
            }
            if f.probe.is_none() {
                f.probe = f.bwe.poll_probe(now).map(|c| (c, 0, 0));
            }
            // A probe cluster's packets go at its rate (media and padding alike: here every
            // packet is the same), the rest at the flow's.
            let rate = match f.probe.as_mut() {
                Some((c, bytes, packets)) => {
                    f.bwe.on_probe_sent(now, f.seq, CC_PACKET_BYTES, c.id);
                    *bytes += CC_PACKET_BYTES;
                    *packets += 1;
                    let bps = c.bps;
                    if c.is_complete(*bytes, *packets) {
                        f.probe = None;
                    }
                    bps
                }
                None => {
                    f.bwe.on_packet_sent(now, f.seq, CC_PACKET_BYTES);
                    f.send_bps()
                }
            };
            self.queue_delays.push((now, self.forward.queue_delay(now)));
            self.forward.handle_input_sized(
                now,
                CcPacket {
                    flow: i,
                    seq: f.seq,
                },
                CC_PACKET_BYTES,
            );
            f.seq = f.seq.wrapping_add(1);
            f.sent_bytes += CC_PACKET_BYTES as u64;
            let gap = CC_PACKET_BYTES as f64 * 8.0 / rate.max(1) as f64;
            f.next_send = now + Duration::from_secs_f64(gap);
        }
    }
}
