//! An adaptive audio jitter buffer: packets in as they arrive, frames out in timestamp order on
//! the stream's own cadence, with the frames that never came reported as gaps.
//!
//! Playout follows a timeline: the frame with RTP timestamp `ts` plays at a fixed offset after the
//! time `ts` stands for. A packet is on time when it arrives before its frame plays; one that
//! arrives later is dropped and counted. When a frame's turn comes and it is missing, a
//! [`Playout::Lost`] gap of one frame is handed out instead, for the decoder to conceal.
//!
//! The offset adapts. Each packet's transit (arrival time minus the time its timestamp stands
//! for) is recorded over the last 100 packets; the depth needed is the spread between the 5th and
//! 95th percentiles of transit, plus 5 ms, kept between the configured minimum and maximum (the
//! percentiles ignore a few stray packets; adaptation waits for 20 packets). When the
//! buffer runs shallower than that by more than half a frame it grows by one frame (a stretch: a
//! concealed frame played without consuming the timeline); when it runs deeper by more than a
//! frame it drops one frame, at most once a second, so that its delay comes down slowly and
//! audibly rarely.
//!
//! After `max_conceal` of consecutive gaps with nothing buffered the stream is taken to have paused
//! (silence suppression, hold, or the end); playout stops and starts again, with a fresh offset,
//! at the next packet. A jump in timestamps larger than `max_conceal` inside the buffer is a
//! pause the sender skipped over, not loss: the timeline jumps with it. Everything is bounded:
//! the buffer holds at most `max_depth` worth of frames plus a few. Pure: time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How an audio jitter buffer behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioJitterConfig {
    /// RTP clock rate of the stream.
    pub clock_rate: u32,
    /// The least playout delay, and the starting one.
    pub min_depth: Duration,
    /// The most playout delay adaptation may reach.
    pub max_depth: Duration,
    /// Nominal frame length, used until the stream's own is known.
    pub frame: Duration,
    /// Longest run of gaps concealed before playout pauses.
    pub max_conceal: Duration,
}

impl AudioJitterConfig {
    /// A buffer for a stream at `clock_rate` with `min_ms` of delay at least, adapting up to
    /// `max_ms` (0 picks the larger of 4 × `min_ms` and 200 ms).
    pub fn new(clock_rate: u32, min_ms: u32, max_ms: u32) -> Self {
        let min = Duration::from_millis(u64::from(min_ms.max(1)));
        let max = if max_ms == 0 {
            (min * 4).max(Duration::from_millis(200))
        } else {
            Duration::from_millis(u64::from(max_ms)).max(min)
        };
        AudioJitterConfig {
            clock_rate: clock_rate.max(1),
            min_depth: min,
            max_depth: max,
            frame: Duration::from_millis(20),
            max_conceal: Duration::from_millis(100),
        }
    }
}

/// One packet waiting in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitterPacket {
    pub timestamp: u32,
    pub sequence: u16,
    pub payload_type: u8,
    pub marker: bool,
    pub payload: Vec<u8>,
    /// Its length in samples, when the payload format says (G.711); otherwise taken from the
    /// timestamps.
    pub samples: Option<u32>,
}

/// What the buffer hands out when a frame's turn comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The packet for this frame.
    Packet(JitterPacket),
    /// No packet for `samples` samples from `timestamp`: conceal them. `stretch` is set when the
    /// buffer grows (the frame is not missing; the delay is being raised).
    Lost {
        timestamp: u32,
        samples: u32,
        stretch: bool,
    },
}

/// What [`AudioJitterBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Queued,
    /// Its frame has already played (or been concealed): dropped.
    Late,
    /// A packet with the same timestamp is already buffered: dropped.
    Duplicate,
}

/// Counters of an [`AudioJitterBuffer`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AudioJitterStats {
    /// Packets played.
    pub played: u64,
    /// Gaps handed out (lost frames and stretches).
    pub concealed: u64,
    /// Packets that arrived after their frame played.
    pub late: u64,
    pub duplicates: u64,
    /// Packets dropped to bring the delay down, or because the buffer was full.
    pub dropped: u64,
    /// Times the buffer grew by one frame.
    pub stretched: u64,
    /// Times playout paused and started again, or jumped over a pause.
    pub resyncs: u64,
}

/// Transit samples kept for adaptation.
const TRANSIT_WINDOW: usize = 100;
/// Transit samples needed before adapting.
const MIN_SAMPLES: usize = 20;
/// Extra delay above the measured jitter.
const MARGIN: Duration = Duration::from_millis(5);
/// Shortest time between two drops that bring the delay down.
const SHRINK_INTERVAL: Duration = Duration::from_secs(1);
/// Packets held beyond `max_depth` worth of frames.
const EXTRA_SLOTS: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Timeline {
    /// Extended timestamp of the next frame to play, and when it plays.
    ts: i64,
    at: Instant,
    /// Samples concealed in a row with nothing buffered.
    gap_run: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    ext: i64,
    pkt: JitterPacket,
}

/// The adaptive jitter buffer; see the module documentation.
#[derive(Debug, Clone)]
pub struct AudioJitterBuffer {
    cfg: AudioJitterConfig,
    buf: VecDeque<Entry>,
    capacity: usize,
    unwrap: Option<(u32, i64)>,
    origin: Option<Instant>,
    play: Option<Timeline>,
    /// Samples per frame, as the stream's timestamps show.
    frame_samples: u32,
    transit: [f64; TRANSIT_WINDOW],
    transit_len: usize,
    transit_next: usize,
    /// The 5th percentile of transit, in ms: the fast edge of the recent packets.
    fast_transit: f64,
    target: Duration,
    last_shrink: Option<Instant>,
    stats: AudioJitterStats,
}

impl AudioJitterBuffer {
    /// An empty buffer.
    pub fn new(cfg: AudioJitterConfig) -> Self {
        let frame_ms = cfg.frame.as_millis().max(1) as usize;
        let capacity = cfg.max_depth.as_millis() as usize / frame_ms + EXTRA_SLOTS;
        AudioJitterBuffer {
            buf: VecDeque::with_capacity(capacity),
            capacity,
            unwrap: None,
            origin: None,
            play: None,
            frame_samples: samples_in(cfg.frame, cfg.clock_rate),
            transit: [0.0; TRANSIT_WINDOW],
            transit_len: 0,
            transit_next: 0,
            fast_transit: 0.0,
            target: cfg.min_depth,
            last_shrink: None,
            stats: AudioJitterStats::default(),
            cfg,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> AudioJitterStats {
        self.stats
    }

    /// The playout delay the buffer currently aims for.
    pub fn target_depth(&self) -> Duration {
        self.target
    }

    /// Packets waiting.
    #[cfg(any(test, feature = "_internals"))]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing waits.
    #[cfg(any(test, feature = "_internals"))]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forgets everything (a new source); counters are kept.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.unwrap = None;
        self.play = None;
        self.forget_transit();
    }

    /// Transit measured against an older timeline means nothing against a new one.
    fn forget_transit(&mut self) {
        self.transit_len = 0;
        self.transit_next = 0;
        self.target = self.cfg.min_depth;
    }

    fn ext_of(&mut self, ts: u32) -> i64 {
        let ext = match self.unwrap {
            None => 1 << 32 | i64::from(ts),
            Some((last, ext)) => ext + i64::from(ts.wrapping_sub(last) as i32),
        };
        self.unwrap = Some((ts, ext));
        ext
    }

    fn ts_ms(&self, ext: i64) -> f64 {
        ext as f64 * 1000.0 / f64::from(self.cfg.clock_rate)
    }

    /// Offers a packet that arrived at `now`.
    pub fn push(&mut self, now: Instant, pkt: JitterPacket) -> PushOutcome {
        let ext = self.ext_of(pkt.timestamp);
        let origin = *self.origin.get_or_insert(now);
        let arrival_ms = now.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        self.record_transit(arrival_ms - self.ts_ms(ext));
        if let Some(p) = &self.play {
            if ext < p.ts {
                self.stats.late += 1;
                return PushOutcome::Late;
            }
        }
        let at = match self.buf.binary_search_by_key(&ext, |e| e.ext) {
            Ok(_) => {
                self.stats.duplicates += 1;
                return PushOutcome::Duplicate;
            }
            Err(i) => i,
        };
        // The stream's frame length, from neighbours one sequence number apart.
        for n in [at.checked_sub(1), Some(at)].into_iter().flatten() {
            if let Some(e) = self.buf.get(n) {
                let dseq = i64::from(pkt.sequence.wrapping_sub(e.pkt.sequence) as i16);
                let dts = ext - e.ext;
                if dseq.abs() == 1 && dts.signum() == dseq.signum() && dts != 0 {
                    let d = dts.unsigned_abs();
                    if d <= u64::from(samples_in(self.cfg.max_conceal, self.cfg.clock_rate)) {
                        self.frame_samples = d as u32;
                    }
                }
            }
        }
        self.buf.insert(at, Entry { ext, pkt });
        if self.buf.len() > self.capacity {
            // Full: the oldest frame goes, and playout moves past it.
            if let Some(old) = self.buf.pop_front() {
                self.stats.dropped += 1;
                if let Some(p) = &mut self.play {
                    p.ts = p.ts.max(old.ext + 1);
                }
            }
        }
        if self.play.is_none() {
            let front = self.buf.front().map_or(ext, |e| e.ext);
            self.play = Some(Timeline {
                ts: front,
                at: now + self.target,
                gap_run: 0,
            });
        }
        PushOutcome::Queued
    }

    fn record_transit(&mut self, ms: f64) {
        self.transit[self.transit_next] = ms;
        self.transit_next = (self.transit_next + 1) % TRANSIT_WINDOW;
        self.transit_len = (self.transit_len + 1).min(TRANSIT_WINDOW);
        let mut v = [0.0f64; TRANSIT_WINDOW];
        let v = &mut v[..self.transit_len];
        v.copy_from_slice(&self.transit[..self.transit_len]);
        v.sort_unstable_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        let (p5, p95) = (at(0.05), at(0.95));
        self.fast_transit = p5;
        let need = Duration::from_secs_f64(((p95 - p5).max(0.0)) / 1000.0) + MARGIN;
        self.target = need.clamp(self.cfg.min_depth, self.cfg.max_depth);
    }

    /// The playout delay the timeline runs at, above the fast edge of recent packets; `None`
    /// until enough packets were seen to adapt.
    fn depth(&self, p: &Timeline) -> Option<Duration> {
        let origin = self.origin?;
        if self.transit_len < MIN_SAMPLES {
            return None;
        }
        let at_ms = p.at.saturating_duration_since(origin).as_secs_f64() * 1000.0;
        let offset = at_ms - self.ts_ms(p.ts);
        Some(Duration::from_secs_f64(
            ((offset - self.fast_transit).max(0.0)) / 1000.0,
        ))
    }

    fn samples_of(&self, i: usize) -> u32 {
        let e = &self.buf[i];
        if let Some(s) = e.pkt.samples.filter(|&s| s > 0) {
            return s;
        }
        match self.buf.get(i + 1) {
            Some(n) if n.ext > e.ext && n.ext - e.ext <= i64::from(self.frame_samples) => {
                (n.ext - e.ext) as u32
            }
            _ => self.frame_samples.max(1),
        }
    }

    fn duration_of(&self, samples: u32) -> Duration {
        Duration::from_nanos(u64::from(samples) * 1_000_000_000 / u64::from(self.cfg.clock_rate))
    }

    /// The next frame due at `now`, if any. Call until `None`, then again at
    /// [`Self::poll_timeout`].
    pub fn poll(&mut self, now: Instant) -> Option<Playout> {
        loop {
            let mut p = self.play?;
            if now < p.at {
                return None;
            }
            // Adapt at frame boundaries: grow by one stretch, or drop one frame.
            if let Some(depth) = self.depth(&p) {
                if depth + self.cfg.frame / 2 < self.target && !self.buf.is_empty() {
                    let samples = self.frame_samples;
                    p.at += self.duration_of(samples);
                    self.play = Some(p);
                    self.stats.stretched += 1;
                    self.stats.concealed += 1;
                    return Some(Playout::Lost {
                        timestamp: p.ts as u32,
                        samples,
                        stretch: true,
                    });
                }
                let shrink_ok = self
                    .last_shrink
                    .is_none_or(|t| now.saturating_duration_since(t) >= SHRINK_INTERVAL);
                if depth > self.target + self.cfg.frame
                    && shrink_ok
                    && self.buf.len() >= 2
                    && self.buf[0].ext == p.ts
                {
                    let samples = self.samples_of(0);
                    self.buf.pop_front();
                    p.ts += i64::from(samples);
                    self.play = Some(p);
                    self.last_shrink = Some(now);
                    self.stats.dropped += 1;
                    continue;
                }
            }
            let Some(front) = self.buf.front() else {
                // Nothing buffered: conceal for a while, then take the stream as paused.
                if p.gap_run >= u64::from(samples_in(self.cfg.max_conceal, self.cfg.clock_rate)) {
                    self.play = None;
                    self.stats.resyncs += 1;
                    self.forget_transit();
                    return None;
                }
                return Some(self.gap(p, self.frame_samples));
            };
            let (front_ext, gap) = (front.ext, front.ext - p.ts);
            if gap <= 0 {
                let samples = self.samples_of(0);
                let e = self.buf.pop_front().expect("front exists");
                p.ts = front_ext + i64::from(samples);
                p.at += self.duration_of(samples);
                p.gap_run = 0;
                self.play = Some(p);
                self.stats.played += 1;
                return Some(Playout::Packet(e.pkt));
            }
            if gap > i64::from(samples_in(self.cfg.max_conceal, self.cfg.clock_rate)) {
                // The sender skipped a pause: follow it rather than conceal it.
                p.ts = front_ext;
                self.play = Some(p);
                self.stats.resyncs += 1;
                self.forget_transit();
                continue;
            }
            return Some(self.gap(p, (gap as u32).min(self.frame_samples)));
        }
    }

    fn gap(&mut self, mut p: Timeline, samples: u32) -> Playout {
        let samples = samples.max(1);
        let ts = p.ts as u32;
        p.ts += i64::from(samples);
        p.at += self.duration_of(samples);
        p.gap_run += u64::from(samples);
        self.play = Some(p);
        self.stats.concealed += 1;
        Playout::Lost {
            timestamp: ts,
            samples,
            stretch: false,
        }
    }

    /// The payload of the buffered packet with RTP timestamp `timestamp`, if it is the next one
    /// to play: after a lost frame, the packet right behind it, whose in-band FEC (Opus) may
    /// rebuild it. A later packet would rebuild the wrong frame.
    pub fn next_payload_at(&self, timestamp: u32) -> Option<&[u8]> {
        self.buf
            .front()
            .filter(|e| e.pkt.timestamp == timestamp)
            .map(|e| e.pkt.payload.as_slice())
    }

    /// When the next frame is due; `None` while not playing.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.play.map(|p| p.at)
    }
}

fn samples_in(d: Duration, clock_rate: u32) -> u32 {
    (d.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn pkt(seq: u16) -> JitterPacket {
        JitterPacket {
            timestamp: u32::from(seq).wrapping_mul(160),
            sequence: seq,
            payload_type: 0,
            marker: false,
            payload: vec![seq as u8; 160],
            samples: Some(160),
        }
    }

    fn jb(min_ms: u32) -> AudioJitterBuffer {
        AudioJitterBuffer::new(AudioJitterConfig::new(8000, min_ms, 0))
    }

    /// What came out, as sequence numbers (`None` for a gap), with the time each was handed out.
    fn run(
        b: &mut AudioJitterBuffer,
        arrivals: &[(u64, u16)],
        t0: Instant,
        until_ms: u64,
    ) -> Vec<(Option<u16>, u64)> {
        let mut out = Vec::new();
        let mut i = 0;
        let mut now = t0;
        loop {
            while i < arrivals.len() && t0 + ms(arrivals[i].0) <= now {
                b.push(now, pkt(arrivals[i].1));
                i += 1;
            }
            while let Some(p) = b.poll(now) {
                let at = (now - t0).as_millis() as u64;
                out.push((
                    match p {
                        Playout::Packet(p) => Some(p.sequence),
                        Playout::Lost { .. } => None,
                    },
                    at,
                ));
            }
            let next_arrival = arrivals.get(i).map(|a| t0 + ms(a.0));
            let next = match (b.poll_timeout(), next_arrival) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > t0 + ms(until_ms) {
                break;
            }
            now = next.max(now);
        }
        out
    }

    #[test]
    fn plays_in_order_on_a_20_ms_cadence() {
        let t0 = Instant::now();
        let mut b = jb(40);
        // Arrivals every 20 ms with up to 15 ms of jitter, some swapped.
        let arrivals = [
            (0, 0),
            (35, 1),
            (40, 2),
            (72, 4),
            (75, 3),
            (100, 5),
            (120, 6),
        ];
        let out = run(&mut b, &arrivals, t0, 200);
        let seqs: Vec<_> = out.iter().map(|x| x.0).collect();
        assert_eq!(
            seqs[..7],
            [
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6)
            ]
        );
        let times: Vec<_> = out.iter().take(7).map(|x| x.1).collect();
        assert_eq!(times, [40, 60, 80, 100, 120, 140, 160]);
        assert_eq!(b.stats().late, 0);
    }

    #[test]
    fn a_lost_packet_becomes_one_gap_and_a_late_one_is_dropped() {
        let t0 = Instant::now();
        let mut b = jb(40);
        let arrivals = [(0, 0), (20, 1), (60, 3), (80, 4), (95, 2)];
        let out = run(&mut b, &arrivals, t0, 130);
        let seqs: Vec<_> = out.iter().map(|x| x.0).collect();
        assert_eq!(seqs[..5], [Some(0), Some(1), None, Some(3), Some(4)]);
        assert_eq!(out[2].1, 80);
        assert_eq!(b.stats().late, 1);
        assert_eq!(b.stats().concealed, 1);
    }

    #[test]
    fn duplicates_are_dropped() {
        let t0 = Instant::now();
        let mut b = jb(40);
        assert_eq!(b.push(t0, pkt(0)), PushOutcome::Queued);
        assert_eq!(b.push(t0, pkt(0)), PushOutcome::Duplicate);
        assert_eq!(b.stats().duplicates, 1);
    }

    #[test]
    fn pauses_after_max_conceal_and_restarts() {
        let t0 = Instant::now();
        let mut b = jb(40);
        let arrivals = [(0, 0), (20, 1), (1000, 50), (1020, 51)];
        let out = run(&mut b, &arrivals, t0, 1200);
        let gaps = out.iter().filter(|x| x.0.is_none() && x.1 < 1000).count();
        // 100 ms of concealment (5 frames), then silence until the stream comes back.
        assert_eq!(gaps, 5);
        assert!(!out.iter().any(|x| x.1 > 200 && x.1 < 1040));
        let back: Vec<_> = out.iter().filter(|x| x.1 >= 1000).collect();
        assert_eq!(back[0], &(Some(50), 1040));
        assert_eq!(back[1], &(Some(51), 1060));
        assert_eq!(b.stats().resyncs, 2);
    }

    #[test]
    fn a_timestamp_jump_in_the_buffer_is_followed_not_concealed() {
        let t0 = Instant::now();
        let mut b = jb(40);
        let mut p = pkt(2);
        p.timestamp = 160 * 100;
        b.push(t0, pkt(0));
        b.push(t0 + ms(10), pkt(1));
        b.push(t0 + ms(30), p);
        let mut got = Vec::new();
        while let Some(now) = b.poll_timeout() {
            while let Some(x) = b.poll(now) {
                got.push(x);
            }
            if now > t0 + ms(200) {
                break;
            }
        }
        assert!(matches!(&got[2], Playout::Packet(p) if p.sequence == 2));
        assert_eq!(b.stats().concealed, 5);
    }

    #[test]
    fn grows_under_jitter_then_slowly_shrinks() {
        let t0 = Instant::now();
        let mut b = jb(20);
        // Every fifth packet 70 ms late for 2 s: 20% of the packets.
        let mut arrivals: Vec<(u64, u16)> = (0..100u16)
            .map(|s| (u64::from(s) * 20 + if s % 5 == 4 { 70 } else { 0 }, s))
            .collect();
        // Then 6 s of a clean stream.
        arrivals.extend((100..400u16).map(|s| (u64::from(s) * 20, s)));
        arrivals.sort();
        let out = run(&mut b, &arrivals, t0, 8100);
        let late_first_half = b.stats().late;
        assert!(b.stats().stretched >= 3, "{:?}", b.stats());
        // Once grown, late packets stop.
        let played_late: Vec<_> = out
            .iter()
            .filter(|x| x.0.is_some() && x.1 > 1500 && x.1 < 2000)
            .collect();
        assert!(!played_late.is_empty());
        assert!(late_first_half < 20, "{:?}", b.stats());
        // And it comes back down towards the minimum, a frame at a time.
        assert!(b.target_depth() <= ms(25), "{:?}", b.target_depth());
        assert!(b.stats().dropped >= 2, "{:?}", b.stats());
    }

    #[test]
    fn bounded_when_flooded() {
        let t0 = Instant::now();
        let mut b = jb(20);
        for s in 0..1000u16 {
            b.push(t0, pkt(s));
        }
        assert!(b.len() <= b.capacity);
        assert!(b.stats().dropped > 900);
    }

    #[test]
    fn timestamps_wrap() {
        let t0 = Instant::now();
        let mut b = jb(20);
        let mut a = pkt(0);
        a.timestamp = u32::MAX - 159;
        let mut c = pkt(1);
        c.timestamp = 0;
        b.push(t0, a);
        b.push(t0, c);
        let first = b.poll(t0 + ms(20));
        assert!(matches!(first, Some(Playout::Packet(ref p)) if p.sequence == 0));
        let second = b.poll(t0 + ms(40));
        assert!(matches!(second, Some(Playout::Packet(ref p)) if p.sequence == 1));
    }
}
