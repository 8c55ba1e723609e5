//! A simulated network on virtual time, for testing and measuring [`StreamCore`]s without sockets,
//! threads or a clock.
//!
//! [`SimPath`] is one direction of a path: a base delay, order-keeping jitter, random or bursty
//! loss, reordering (a packet held back by a few ms, overtaken by later ones) and duplication, all
//! drawn from a seeded generator so a run is the same every time. A drop filter lets a test aim at
//! one packet ("lose the first RTX packet"). [`SimPair`] connects two cores with two paths and
//! drives them: it delivers datagrams when they are due, fires the cores' timeouts, and collects
//! what comes out, with the virtual time of each event.
//!
//! Time starts at an `Instant` the caller gives (any will do: only differences matter) and moves
//! only when [`SimPair::run_until`] moves it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::CoreConfig;
use super::packet::{classify_muxed, MuxedKind};
use super::stream::{StreamCore, StreamEvent};
use crate::error::Result;

/// Two-state (Gilbert–Elliott) loss: bursts of loss rather than independent drops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstLoss {
    /// Chance per packet of entering the bad state.
    pub enter_bad: f64,
    /// Chance per packet of leaving it.
    pub leave_bad: f64,
    /// Loss probability while in the bad state (the `loss` of the path applies in the good one).
    pub loss_in_bad: f64,
}

/// How one direction of a simulated path treats packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathConfig {
    /// One-way base delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly in ±`jitter` (never below zero in total); order is kept, as
    /// on a real queue.
    pub jitter: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Bursty loss on top of `loss`, if any.
    pub burst: Option<BurstLoss>,
    /// Probability that a packet is held back and overtaken by later ones.
    pub reorder: f64,
    /// A held-back packet arrives this much later at most (uniformly from 1 ms).
    pub reorder_delay: Duration,
    /// Probability that a packet arrives twice.
    pub duplicate: f64,
}

impl PathConfig {
    /// A perfect path with `delay`.
    pub fn clean(delay: Duration) -> Self {
        PathConfig {
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(10),
            duplicate: 0.0,
        }
    }

    /// The path the media-resilience issue measures on: `loss` random loss, 20 ± 3 ms, 1 %
    /// reordering and 1 % duplicates (40 ms RTT with the same path back).
    pub fn lossy(loss: f64) -> Self {
        PathConfig {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(3),
            loss,
            burst: None,
            reorder: 0.01,
            reorder_delay: Duration::from_millis(10),
            duplicate: 0.01,
        }
    }
}

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

/// What a path did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PathStats {
    pub sent: u64,
    pub dropped: u64,
    pub reordered: u64,
    pub duplicated: u64,
    pub delivered: u64,
}

/// Decides, for each datagram entering the path, whether it is dropped (true) regardless of the
/// random draws: how a test loses one packet on purpose.
pub type DropFilter = Box<dyn FnMut(&Datagram) -> bool + Send>;

/// One direction of a simulated path; see the module documentation.
pub struct SimPath {
    cfg: PathConfig,
    rng: SmallRng,
    in_flight: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    slots: Vec<Option<Datagram>>,
    free: Vec<usize>,
    order: u64,
    /// The latest in-order delivery time, so jitter never reorders.
    fifo_tail: Option<Instant>,
    bad: bool,
    filter: Option<DropFilter>,
    stats: PathStats,
}

impl std::fmt::Debug for SimPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPath")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl SimPath {
    /// A path drawing from `seed`.
    pub fn new(cfg: PathConfig, seed: u64) -> Self {
        SimPath {
            cfg,
            rng: SmallRng::seed_from_u64(seed),
            in_flight: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            order: 0,
            fifo_tail: None,
            bad: false,
            filter: None,
            stats: PathStats::default(),
        }
    }

    /// Installs a drop filter (see [`DropFilter`]).
    pub fn set_filter(&mut self, f: DropFilter) {
        self.filter = Some(f);
    }

    /// Changes the impairments from now on.
    pub fn set_config(&mut self, cfg: PathConfig) {
        self.cfg = cfg;
    }

    /// What the path did so far.
    pub fn stats(&self) -> PathStats {
        self.stats
    }

    /// Datagrams in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A datagram enters the path at `now`.
    pub fn send(&mut self, now: Instant, d: Datagram) {
        self.stats.sent += 1;
        if self.filter.as_mut().is_some_and(|f| f(&d)) {
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
        let jitter = self.cfg.jitter.as_secs_f64();
        let extra = if jitter > 0.0 {
            self.rng.random_range(-jitter..=jitter)
        } else {
            0.0
        };
        let base = self.cfg.delay.as_secs_f64() + extra;
        let mut at = now + Duration::from_secs_f64(base.max(0.0));
        let reorder = self.rng.random_bool(self.cfg.reorder.clamp(0.0, 1.0));
        if reorder {
            let max = self.cfg.reorder_delay.as_secs_f64().max(0.001);
            at += Duration::from_secs_f64(self.rng.random_range(0.001..=max));
            self.stats.reordered += 1;
        } else {
            if let Some(tail) = self.fifo_tail {
                at = at.max(tail);
            }
            self.fifo_tail = Some(at);
        }
        if self.rng.random_bool(self.cfg.duplicate.clamp(0.0, 1.0)) {
            self.stats.duplicated += 1;
            let later = at + Duration::from_micros(self.rng.random_range(0..=2000));
            self.enqueue(later, d.clone());
        }
        self.enqueue(at, d);
    }

    fn enqueue(&mut self, at: Instant, d: Datagram) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(d);
                i
            }
            None => {
                self.slots.push(Some(d));
                self.slots.len() - 1
            }
        };
        self.order += 1;
        self.in_flight.push(Reverse((at, self.order, slot)));
    }

    /// When the next datagram arrives.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The next datagram that has arrived by `now`.
    pub fn deliver(&mut self, now: Instant) -> Option<Datagram> {
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
        for (peer, path) in [(&mut self.a, &mut self.ab), (&mut self.b, &mut self.ba)] {
            while let Some(t) = peer.core.poll_transmit() {
                path.send(
                    now,
                    Datagram {
                        from: peer.addr,
                        to: t.dest,
                        data: t.contents,
                    },
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
            self.ab.next_delivery(),
            self.ba.next_delivery(),
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
            while let Some(d) = self.ab.deliver(now) {
                if d.to == self.b.addr {
                    self.b.core.handle_datagram(now, d.from, &d.data, false);
                }
            }
            while let Some(d) = self.ba.deliver(now) {
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

/// An H.264 picture of about `len` bytes in Annex-B: SPS, PPS and an IDR slice when `key`, one
/// P slice otherwise, filled with bytes drawn from `seed` (never zero, so no start code appears
/// inside). Tests and benchmarks send these and check what arrives byte for byte.
pub fn h264_picture(key: bool, len: usize, seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 32);
    if key {
        v.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0x8c, 0x8d, 0x40, 0x50]);
        v.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        v.extend_from_slice(&[0, 0, 0, 1, 0x65]);
    } else {
        v.extend_from_slice(&[0, 0, 0, 1, 0x41]);
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let target = len.max(v.len() + 1);
    while v.len() < target {
        v.push(rng.random_range(1..=255));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dg(n: u8) -> Datagram {
        Datagram {
            from: ([1, 1, 1, 1], 1).into(),
            to: ([2, 2, 2, 2], 2).into(),
            data: vec![n],
        }
    }

    fn run(p: &mut SimPath, t0: Instant) -> Vec<(u8, Duration)> {
        let mut out = Vec::new();
        while let Some(t) = p.next_delivery() {
            while let Some(d) = p.deliver(t) {
                out.push((d.data[0], t - t0));
            }
        }
        out
    }

    #[test]
    fn clean_path_delays_in_order() {
        let t0 = Instant::now();
        let mut p = SimPath::new(PathConfig::clean(Duration::from_millis(20)), 1);
        for i in 0..10 {
            p.send(t0 + Duration::from_millis(u64::from(i)), dg(i));
        }
        let out = run(&mut p, t0);
        assert_eq!(out.len(), 10);
        for (i, (n, at)) in out.iter().enumerate() {
            assert_eq!(*n as usize, i);
            assert_eq!(*at, Duration::from_millis(20 + i as u64));
        }
    }

    #[test]
    fn jitter_keeps_order_and_reorder_breaks_it() {
        let t0 = Instant::now();
        let mut cfg = PathConfig::clean(Duration::from_millis(20));
        cfg.jitter = Duration::from_millis(3);
        let mut p = SimPath::new(cfg, 2);
        for i in 0..200u8 {
            p.send(t0 + Duration::from_micros(u64::from(i) * 100), dg(i));
        }
        let out = run(&mut p, t0);
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
        cfg.reorder = 0.1;
        let mut p = SimPath::new(cfg, 3);
        for i in 0..200u8 {
            p.send(t0 + Duration::from_micros(u64::from(i) * 100), dg(i));
        }
        let out = run(&mut p, t0);
        assert!(out.windows(2).any(|w| w[0].0 > w[1].0));
        assert!(p.stats().reordered > 5);
    }

    #[test]
    fn loss_and_duplicates_are_drawn_at_the_configured_rate() {
        let t0 = Instant::now();
        let mut cfg = PathConfig::clean(Duration::from_millis(1));
        cfg.loss = 0.1;
        cfg.duplicate = 0.05;
        let mut p = SimPath::new(cfg, 4);
        for i in 0..10_000u32 {
            p.send(t0, dg(i as u8));
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
        let mut cfg = PathConfig::clean(Duration::from_millis(1));
        cfg.burst = Some(BurstLoss {
            enter_bad: 0.01,
            leave_bad: 0.2,
            loss_in_bad: 1.0,
        });
        let mut p = SimPath::new(cfg, 5);
        let mut lost_runs = Vec::new();
        let mut run_len = 0;
        for i in 0..10_000u32 {
            let before = p.stats().dropped;
            p.send(t0, dg(i as u8));
            if p.stats().dropped > before {
                run_len += 1;
            } else if run_len > 0 {
                lost_runs.push(run_len);
                run_len = 0;
            }
        }
        let mean = lost_runs.iter().sum::<u32>() as f64 / lost_runs.len() as f64;
        assert!(mean > 3.0, "bursts, not single drops: {mean}");
        let mut p = SimPath::new(PathConfig::clean(Duration::ZERO), 6);
        p.set_filter(Box::new(|d| d.data[0] == 3));
        for i in 0..5 {
            p.send(t0, dg(i));
        }
        let got: Vec<u8> = run(&mut p, t0).iter().map(|x| x.0).collect();
        assert_eq!(got, [0, 1, 2, 4]);
    }

    #[test]
    fn synthetic_pictures() {
        let k = h264_picture(true, 1000, 1);
        assert_eq!(k.len(), 1000);
        assert_eq!(&k[..5], &[0, 0, 0, 1, 0x67]);
        assert!(k[25..].iter().all(|&b| b != 0));
        assert_ne!(h264_picture(false, 100, 1), h264_picture(false, 100, 2));
        assert_eq!(h264_picture(false, 100, 1), h264_picture(false, 100, 1));
    }
}
