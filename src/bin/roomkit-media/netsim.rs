//! `roomkit-media netsim`: a UDP path simulator, for trying media on a bad network without
//! root or `netem`. Each `--pipe LISTEN=TARGET` relays datagrams that reach LISTEN on to TARGET
//! (from a socket of its own, the "via" side), and what TARGET sends back to the via side on to
//! whoever last sent to LISTEN, or to BACK with `--pipe LISTEN=TARGET/BACK` (for peers that
//! send from one port and listen on another). `@VIA` at the end binds the via side to a given
//! address (a receiver that answers RTCP to RTP port + 1 needs the via sides of its RTP and RTCP
//! pipes on neighbouring ports). Both directions are impaired the same way: random or bursty
//! loss, a one-way delay with jitter (first in, first out, as a router queue), a share of
//! packets held back so they arrive out of order, and duplicates. Each direction is one
//! [`roomkit_media::netem`] model, driven here on the wall clock (the model itself reads no
//! clock) and drawing from its own seeded generator, so a run can be repeated.
//!
//! It prints `{"event":"ready",...}` with the bound addresses, runs until Ctrl-C, `--seconds`,
//! or `--idle` seconds without a datagram, and ends with one `{"event":"stats",...}` line (per
//! direction: packets, losses, drops at the bottleneck's queue and the queue delay's p50/p95).

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use roomkit_media::netem::{Bottleneck, Netem, NetemConfig, NetemStats};

use serde::Serialize;

use crate::args::{resolve, within};
use crate::output::Out;
use crate::signals;

/// `netsim --pipe LISTEN=TARGET[/BACK][@VIA] ...`: both directions get the same impairments.
#[derive(clap::Args, Debug)]
pub struct NetsimArgs {
    /// A relay: datagrams to LISTEN go on to TARGET; replies go back to BACK (default: whoever
    /// last sent to LISTEN); @VIA binds the side that talks to TARGET. Repeat for more pipes.
    #[arg(long, value_name = "LISTEN=TARGET[/BACK][@VIA]", required = true, value_parser = parse_pipe)]
    pipe: Vec<PipeSpec>,
    /// Share of packets lost, in percent.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, allow_negative_numbers = true, value_parser = percent)]
    loss: f64,
    /// Mean length of a loss burst, in packets (1: independent losses).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    burst: f64,
    /// One-way delay.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    delay: f64,
    /// Each packet's delay varies by up to ± this.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    jitter: f64,
    /// Share of packets held back so later ones overtake them, in percent.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, allow_negative_numbers = true, value_parser = percent)]
    reorder: f64,
    /// How long a reordered packet is held back.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 5.0,
        allow_negative_numbers = true
    )]
    reorder_ms: f64,
    /// Share of packets delivered twice, in percent.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, allow_negative_numbers = true, value_parser = percent)]
    duplicate: f64,
    /// A bottleneck of this rate in each direction, kbit/s (0: none).
    #[arg(long, value_name = "KBPS", default_value_t = 0, value_parser = within(0u64, 100_000_000, " kbit/s"))]
    rate_kbps: u64,
    /// The bottleneck's drop-tail queue: the most sending time it holds.
    #[arg(long, value_name = "MS", default_value_t = 300, value_parser = within(1u64, 60_000, " ms"))]
    queue_ms: u64,
    /// At SECS into the run, set the bottleneck's rate to KBPS (repeatable).
    #[arg(long, value_name = "SECS:KBPS", value_parser = parse_rate_step)]
    rate_step: Vec<RateStep>,
    /// Seed of the random draws: the same seed repeats a run.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Stop after this long (0.1 to 86400).
    #[arg(
        long,
        value_name = "S",
        default_value_t = 60.0,
        allow_negative_numbers = true
    )]
    seconds: f64,
    /// Also report the queue delay of the packets that arrive from S seconds into the run on
    /// (`queue_delay_settled_p50_ms`/`p95_ms`), once a sender has settled (0: not reported).
    #[arg(long, value_name = "S", default_value_t = 0.0, value_parser = within(0.0, 86_400.0, " seconds"))]
    settle: f64,
    /// Stop after this long without a datagram (0: never).
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    idle: f64,
}

/// A percentage, 0-100.
fn percent(v: &str) -> Result<f64, String> {
    within(0.0, 100.0, "")(v).map_err(|_| format!("`{v}` is not a percentage (0-100)"))
}

/// Most datagrams in flight in one direction; beyond it new ones are dropped (a full queue).
const MAX_QUEUED: usize = 100_000;
/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65_536;
/// How far a duplicate trails its original.
const DUPLICATE_GAP: Duration = Duration::from_micros(100);

/// How the flags ask each direction of the path to treat packets; [`PathParams::netem`] turns
/// them into the model's settings. Percentages are 0-100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathParams {
    /// Share of packets lost.
    pub loss_pct: f64,
    /// Mean length of a loss burst in packets (1 = independent losses). The loss share stays
    /// `loss_pct`; only its clustering changes (a two-state Gilbert model).
    pub burst: f64,
    /// One-way delay.
    pub delay: Duration,
    /// Each packet's delay varies by up to ± this, without overtaking the one before it.
    pub jitter: Duration,
    /// Share of packets held back by `reorder_delay` more, so later ones overtake them.
    pub reorder_pct: f64,
    pub reorder_delay: Duration,
    /// Share of packets delivered twice.
    pub duplicate_pct: f64,
    /// A narrow link in front of the delay, if any.
    pub bottleneck: Option<Bottleneck>,
}

impl Default for PathParams {
    fn default() -> Self {
        PathParams {
            loss_pct: 0.0,
            burst: 1.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder_pct: 0.0,
            reorder_delay: Duration::from_millis(5),
            duplicate_pct: 0.0,
            bottleneck: None,
        }
    }
}

impl PathParams {
    /// The impairment model's settings for these parameters: a fixed hold-back for reordered
    /// packets, and a copy 100 µs behind its original for a duplicate.
    pub fn netem(&self) -> NetemConfig {
        NetemConfig {
            delay: self.delay,
            jitter: self.jitter,
            reorder: self.reorder_pct / 100.0,
            reorder_hold_min: self.reorder_delay,
            reorder_hold_max: self.reorder_delay,
            duplicate: self.duplicate_pct / 100.0,
            duplicate_gap_min: DUPLICATE_GAP,
            duplicate_gap_max: DUPLICATE_GAP,
            max_in_flight: Some(MAX_QUEUED),
            bottleneck: self.bottleneck,
            ..NetemConfig::clean(Duration::ZERO)
        }
        .with_loss(self.loss_pct / 100.0, self.burst)
    }
}

/// `--rate-step SECS:KBPS`: from `at` into the run, the bottleneck drains at `kbps`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RateStep {
    at: Duration,
    kbps: u64,
}

fn parse_rate_step(v: &str) -> Result<RateStep, String> {
    let bad = || format!("`{v}` is not SECS:KBPS (seconds 0-86400, rate 1-100000000 kbit/s)");
    let (secs, kbps) = v.split_once(':').ok_or_else(bad)?;
    let secs: f64 = secs.trim().parse().map_err(|_| bad())?;
    let kbps: u64 = kbps.trim().parse().map_err(|_| bad())?;
    if !(0.0..=86_400.0).contains(&secs) || !(1..=100_000_000).contains(&kbps) {
        return Err(bad());
    }
    Ok(RateStep {
        at: Duration::from_secs_f64(secs),
        kbps,
    })
}

/// How long packets waited in one direction's bottleneck queue, in 1 ms buckets (the last one
/// holds everything longer): p50 and p95 without keeping every sample.
#[derive(Debug, Clone)]
struct QueueDelays {
    buckets: Vec<u64>,
    count: u64,
}

/// Buckets of [`QueueDelays`]: 1 ms each up to 60 s, the longest queue `--queue-ms` allows.
const DELAY_BUCKETS: usize = 60_001;

impl QueueDelays {
    fn new() -> Self {
        QueueDelays {
            buckets: vec![0; DELAY_BUCKETS],
            count: 0,
        }
    }

    fn record(&mut self, d: Duration) {
        let i = usize::try_from(d.as_millis())
            .map_or(DELAY_BUCKETS - 1, |ms| ms.min(DELAY_BUCKETS - 1));
        self.buckets[i] += 1;
        self.count += 1;
    }

    /// The `q` quantile (0-1) in ms, at its bucket's lower edge; 0 with no sample.
    fn quantile_ms(&self, q: f64) -> u64 {
        let rank = (q * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ms, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return ms as u64;
            }
        }
        0
    }
}

/// Counters of one direction, printed in the closing `stats` line.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct DirStats {
    packets: u64,
    lost: u64,
    reordered: u64,
    duplicated: u64,
    overflow: u64,
    /// Dropped at the bottleneck's full queue.
    queue_dropped: u64,
    /// Time the packets that got through waited in the bottleneck's queue.
    queue_delay_p50_ms: u64,
    queue_delay_p95_ms: u64,
    /// As the two above, for the packets that arrived after `--settle` (absent without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_delay_settled_p50_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_delay_settled_p95_ms: Option<u64>,
}

impl DirStats {
    fn new(s: NetemStats, q: &QueueDelays, settled: Option<&QueueDelays>) -> Self {
        DirStats {
            packets: s.sent,
            lost: s.dropped,
            reordered: s.reordered,
            duplicated: s.duplicated,
            overflow: s.overflow,
            queue_dropped: s.queue_dropped,
            queue_delay_p50_ms: q.quantile_ms(0.5),
            queue_delay_p95_ms: q.quantile_ms(0.95),
            queue_delay_settled_p50_ms: settled.map(|q| q.quantile_ms(0.5)),
            queue_delay_settled_p95_ms: settled.map(|q| q.quantile_ms(0.95)),
        }
    }
}

/// One relayed pair of sockets.
struct Pipe {
    listen: UdpSocket,
    via: UdpSocket,
    target: SocketAddr,
    /// Where replies go: fixed by the pipe, or who last sent to `listen`.
    back: Option<SocketAddr>,
    peer: Mutex<Option<SocketAddr>>,
}

/// A datagram that arrived, on its way to the scheduler.
struct Arrival {
    pipe: usize,
    forward: bool,
    data: Vec<u8>,
    at: Instant,
}

/// A datagram inside the impairment model: which pipe it goes out of (its direction is the
/// model it is in) and its bytes.
#[derive(Clone)]
struct Relayed {
    pipe: usize,
    data: Vec<u8>,
}

/// One `--pipe`: where it listens, where it relays to, where replies go, where its via side binds.
#[derive(Debug, Clone)]
struct PipeSpec {
    listen: SocketAddr,
    target: SocketAddr,
    back: Option<SocketAddr>,
    via: Option<SocketAddr>,
}

/// `LISTEN=TARGET[/BACK][@VIA]`.
fn parse_pipe(v: &str) -> Result<PipeSpec, String> {
    let (listen, rest) = v
        .split_once('=')
        .ok_or_else(|| format!("`{v}` is not LISTEN=TARGET[/BACK][@VIA]"))?;
    let (rest, via) = match rest.split_once('@') {
        Some((r, via)) => (r, Some(resolve(via)?)),
        None => (rest, None),
    };
    let (target, back) = match rest.split_once('/') {
        Some((t, b)) => (t, Some(resolve(b)?)),
        None => (rest, None),
    };
    Ok(PipeSpec {
        listen: resolve(listen)?,
        target: resolve(target)?,
        back,
        via,
    })
}

fn params(args: &NetsimArgs) -> PathParams {
    let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1000.0);
    PathParams {
        loss_pct: args.loss,
        burst: args.burst,
        delay: ms(args.delay),
        jitter: ms(args.jitter),
        reorder_pct: args.reorder,
        reorder_delay: ms(args.reorder_ms),
        duplicate_pct: args.duplicate,
        bottleneck: (args.rate_kbps > 0).then(|| bottleneck(args, args.rate_kbps)),
    }
}

/// The bottleneck the flags ask for at `kbps`.
fn bottleneck(args: &NetsimArgs, kbps: u64) -> Bottleneck {
    Bottleneck {
        rate_bps: kbps.saturating_mul(1000).max(1),
        queue_limit: Duration::from_millis(args.queue_ms),
    }
}

/// The first line: where each pipe listens, its via side, its target.
#[derive(Serialize)]
struct Ready {
    event: &'static str,
    pipes: Vec<PipeAddrs>,
}

#[derive(Serialize)]
struct PipeAddrs {
    listen: String,
    via: String,
    target: String,
}

/// The closing line.
#[derive(Serialize)]
struct Closing {
    event: &'static str,
    forward: DirStats,
    backward: DirStats,
}

/// Reads one socket until `stop`, handing every datagram to the scheduler.
fn reader(
    sock: UdpSocket,
    pipes: Arc<Vec<Pipe>>,
    pipe: usize,
    forward: bool,
    tx: Sender<Arrival>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue; // read timeout: look at `stop` again
        };
        if forward {
            *pipes[pipe].peer.lock() = Some(from);
        }
        let a = Arrival {
            pipe,
            forward,
            data: buf[..n].to_vec(),
            at: Instant::now(),
        };
        if tx.send(a).is_err() {
            return;
        }
    }
}

pub fn run(args: &NetsimArgs) -> Result<ExitCode, String> {
    let specs = &args.pipe;
    let p = params(args);
    let seed = args.seed;
    let limit = Duration::from_secs_f64(args.seconds.clamp(0.1, 86_400.0));
    let idle = (args.idle > 0.0).then(|| Duration::from_secs_f64(args.idle));

    let mut pipes = Vec::new();
    for PipeSpec {
        listen,
        target,
        back,
        via,
    } in specs
    {
        let bind = |a: SocketAddr| {
            let s = UdpSocket::bind(a).map_err(|e| format!("netsim: binding {a}: {e}"))?;
            s.set_read_timeout(Some(Duration::from_millis(20)))
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(s)
        };
        let via_addr = via.unwrap_or_else(|| {
            SocketAddr::new(
                if target.ip().is_loopback() {
                    target.ip()
                } else {
                    listen.ip()
                },
                0,
            )
        });
        pipes.push(Pipe {
            listen: bind(*listen)?,
            via: bind(via_addr)?,
            target: *target,
            back: *back,
            peer: Mutex::new(None),
        });
    }
    let pipes = Arc::new(pipes);
    let out = Out::stdout();
    let described = pipes
        .iter()
        .map(|pp| PipeAddrs {
            listen: pp
                .listen
                .local_addr()
                .map_or(String::new(), |a| a.to_string()),
            via: pp.via.local_addr().map_or(String::new(), |a| a.to_string()),
            target: pp.target.to_string(),
        })
        .collect();
    out.line(&Ready {
        event: "ready",
        pipes: described,
    });

    signals::install();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = bounded::<Arrival>(MAX_QUEUED);
    let mut readers = Vec::new();
    for i in 0..pipes.len() {
        for forward in [true, false] {
            let sock = if forward {
                pipes[i].listen.try_clone()
            } else {
                pipes[i].via.try_clone()
            }
            .map_err(|e| e.to_string())?;
            let (ps, t, s) = (pipes.clone(), tx.clone(), stop.clone());
            readers.push(std::thread::spawn(move || {
                reader(sock, ps, i, forward, t, s)
            }));
        }
    }
    drop(tx);

    // One model per direction, forward (towards the targets) first.
    let mut paths: [Netem<Relayed>; 2] = [
        Netem::new(p.netem(), seed),
        Netem::new(p.netem(), seed ^ 0x9e37_79b9_7f4a_7c15),
    ];
    let mut delays = [QueueDelays::new(), QueueDelays::new()];
    let settle = (args.settle > 0.0).then(|| Duration::from_secs_f64(args.settle));
    let mut settled = settle.map(|_| [QueueDelays::new(), QueueDelays::new()]);
    let mut steps = args.rate_step.clone();
    steps.sort_by_key(|s| std::cmp::Reverse(s.at));
    let started = Instant::now();
    let mut last_packet = started;
    loop {
        let now = Instant::now();
        // Rate steps that are due, earliest first (`steps` is sorted latest first).
        while let Some(step) = steps.last().filter(|s| now >= started + s.at).copied() {
            steps.pop();
            for path in &mut paths {
                let cfg = NetemConfig {
                    bottleneck: Some(bottleneck(args, step.kbps)),
                    ..*path.config()
                };
                path.set_config(cfg);
            }
        }
        for (dir, path) in paths.iter_mut().enumerate() {
            while let Some(r) = path.poll_output(now) {
                let pp = &pipes[r.pipe];
                let _ = if dir == 0 {
                    pp.via.send_to(&r.data, pp.target)
                } else {
                    match pp.back.or(*pp.peer.lock()) {
                        Some(peer) => pp.listen.send_to(&r.data, peer),
                        None => Ok(0),
                    }
                };
            }
        }
        let in_flight = paths.iter().map(|p| p.in_flight()).sum::<usize>();
        if signals::stop_requested()
            || now.duration_since(started) >= limit
            || idle.is_some_and(|i| in_flight == 0 && now.duration_since(last_packet) >= i)
        {
            break;
        }
        let wait = paths
            .iter()
            .filter_map(|p| p.poll_timeout())
            .min()
            .map_or(Duration::from_millis(20), |at| {
                at.saturating_duration_since(now)
            })
            .min(Duration::from_millis(20))
            .min(steps.last().map_or(Duration::MAX, |s| {
                (started + s.at).saturating_duration_since(now)
            }));
        let a = match rx.recv_timeout(wait) {
            Ok(a) => a,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        last_packet = a.at;
        let dir = usize::from(!a.forward);
        let path = &mut paths[dir];
        let (waits, before) = (path.queue_delay(a.at), path.stats());
        let bytes = a.data.len();
        path.handle_input_sized(
            a.at,
            Relayed {
                pipe: a.pipe,
                data: a.data,
            },
            bytes,
        );
        let after = path.stats();
        // Only a packet that passed the loss draw and the queue waited in it.
        if path.config().bottleneck.is_some()
            && after.dropped == before.dropped
            && after.queue_dropped == before.queue_dropped
        {
            delays[dir].record(waits);
            if let (Some(after), Some(s)) = (settle, settled.as_mut()) {
                if a.at >= started + after {
                    s[dir].record(waits);
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    out.line(&Closing {
        event: "stats",
        forward: DirStats::new(
            paths[0].stats(),
            &delays[0],
            settled.as_ref().map(|s| &s[0]),
        ),
        backward: DirStats::new(
            paths[1].stats(),
            &delays[1],
            settled.as_ref().map(|s| &s[1]),
        ),
    });
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `n` packets 1 ms apart through one direction set up from `p` (seed 42), taking out
    /// what is due as it goes; for each packet, when its copies left (none when it was lost).
    fn run_path(p: PathParams, n: usize) -> (Vec<Vec<Instant>>, NetemStats, Instant) {
        let mut path = Netem::new(p.netem(), 42);
        let t0 = Instant::now();
        let mut left = vec![Vec::new(); n];
        // Everything due by `until`, each at the time it was due.
        let mut take = |path: &mut Netem<usize>, until: Instant| {
            while let Some(t) = path.poll_timeout().filter(|t| *t <= until) {
                while let Some(i) = path.poll_output(t) {
                    left[i].push(t);
                }
            }
        };
        for i in 0..n {
            let now = t0 + Duration::from_millis(i as u64);
            take(&mut path, now);
            path.handle_input(now, i);
        }
        take(&mut path, t0 + Duration::from_secs(86_400));
        (left, path.stats(), t0)
    }

    #[test]
    fn loss_share_holds_with_and_without_bursts() {
        for burst in [1.0, 4.0] {
            let p = PathParams {
                loss_pct: 10.0,
                burst,
                ..PathParams::default()
            };
            let (left, stats, _) = run_path(p, 200_000);
            let lost = left.iter().filter(|l| l.is_empty()).count();
            assert_eq!(lost as u64, stats.dropped);
            let share = lost as f64 / left.len() as f64 * 100.0;
            assert!((share - 10.0).abs() < 0.5, "burst {burst}: {share}% lost");
            // Mean run of consecutive losses is close to the asked burst length.
            let mut runs = Vec::new();
            let mut cur = 0;
            for l in &left {
                if l.is_empty() {
                    cur += 1;
                } else if cur > 0 {
                    runs.push(cur);
                    cur = 0;
                }
            }
            let mean = runs.iter().sum::<usize>() as f64 / runs.len() as f64;
            // Independent losses still cluster a little: runs of mean 1 / (1 - l).
            let want = if burst > 1.0 { burst } else { 1.0 / 0.9 };
            assert!(
                (mean - want).abs() < 0.1 * want,
                "burst {burst}: mean run {mean}"
            );
        }
    }

    #[test]
    fn delay_and_jitter_keep_fifo_order_unless_reordered() {
        let p = PathParams {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(3),
            reorder_pct: 1.0,
            // Far above the jitter, so a held-back packet is told apart by its delay alone.
            reorder_delay: Duration::from_millis(30),
            ..PathParams::default()
        };
        let (left, stats, t0) = run_path(p, 20_000);
        let mut last_in_order = t0;
        let mut reordered = 0;
        for (i, l) in left.iter().enumerate() {
            assert_eq!(l.len(), 1, "no loss nor duplicate asked");
            let sent = t0 + Duration::from_millis(i as u64);
            let d = l[0] - sent;
            assert!(d >= Duration::from_millis(17), "delay {d:?}");
            if d > Duration::from_millis(40) {
                reordered += 1;
                assert!(d <= Duration::from_millis(54), "held back by 30 ms: {d:?}");
            } else {
                assert!(l[0] >= last_in_order, "in-order packets keep their order");
                last_in_order = l[0];
                assert!(d <= Duration::from_millis(24), "delay {d:?}");
            }
        }
        assert_eq!(reordered, stats.reordered);
        let share = reordered as f64 / left.len() as f64 * 100.0;
        assert!((share - 1.0).abs() < 0.3, "{share}% reordered");
    }

    #[test]
    fn duplicates_come_twice_and_the_seed_repeats_a_run() {
        let p = PathParams {
            duplicate_pct: 5.0,
            loss_pct: 3.0,
            ..PathParams::default()
        };
        let (a, stats, _) = run_path(p, 10_000);
        let dups: Vec<&Vec<Instant>> = a.iter().filter(|l| l.len() == 2).collect();
        assert_eq!(dups.len() as u64, stats.duplicated);
        assert!((dups.len() as f64 / 10_000.0 * 100.0 - 5.0).abs() < 1.0);
        assert!(dups.iter().all(|l| l[1] - l[0] == DUPLICATE_GAP));
        let (b, _, _) = run_path(p, 10_000);
        let shape = |v: &[Vec<Instant>]| v.iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(shape(&a), shape(&b), "the same seed, the same run");
    }

    #[test]
    fn rate_steps_parse_and_queue_delays_give_quantiles() {
        assert_eq!(
            parse_rate_step("2.5:800"),
            Ok(RateStep {
                at: Duration::from_millis(2500),
                kbps: 800
            })
        );
        for bad in ["", "3", "x:1", "1:0", "-1:5", "1:x", "1e9:5"] {
            assert!(parse_rate_step(bad).is_err(), "{bad}");
        }
        let mut q = QueueDelays::new();
        assert_eq!(q.quantile_ms(0.95), 0);
        for ms in 1..=100 {
            q.record(Duration::from_millis(ms));
        }
        q.record(Duration::from_secs(1_000));
        assert_eq!(q.quantile_ms(0.5), 51);
        assert_eq!(q.quantile_ms(0.95), 96);
        assert_eq!(q.quantile_ms(1.0), DELAY_BUCKETS as u64 - 1);
    }
}
