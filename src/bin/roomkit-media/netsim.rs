//! `roomkit-media netsim`: a UDP path simulator, for trying media on a bad network without
//! root or `netem`. Each `--pipe LISTEN=TARGET` relays datagrams that reach LISTEN on to TARGET
//! (from a socket of its own, the "via" side), and what TARGET sends back to the via side on to
//! whoever last sent to LISTEN, or to BACK with `--pipe LISTEN=TARGET/BACK` (for peers that
//! send from one port and listen on another). `@VIA` at the end binds the via side to a given
//! address (a receiver that answers RTCP to RTP port + 1 needs the via sides of its RTP and RTCP
//! pipes on neighbouring ports). Both directions are impaired the same way: random or bursty
//! loss, a one-way delay with jitter (first in, first out, as a router queue), a share of
//! packets held back so they arrive out of order, and duplicates. Everything is drawn from a
//! seeded generator per direction, so a run can be repeated.
//!
//! It prints `{"event":"ready",...}` with the bound addresses, runs until Ctrl-C, `--seconds`,
//! or `--idle` seconds without a datagram, and ends with one `{"event":"stats",...}` line.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

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

/// Most datagrams in flight inside the simulator; beyond it new ones are dropped (a full queue).
const MAX_QUEUED: usize = 100_000;
/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65_536;

/// How one direction of the path treats packets. Percentages are 0-100.
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
        }
    }
}

/// What happens to one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Lost,
    /// Delivered at these times (two for a duplicate); `reordered` when it was held back.
    Delivered {
        at: Vec<Instant>,
        reordered: bool,
    },
}

/// The impairment model of one direction: pure, driven by the time each packet arrives.
#[derive(Debug)]
pub struct Path {
    p: PathParams,
    rng: SmallRng,
    in_burst: bool,
    /// When the last in-order packet leaves: the FIFO floor for the next one.
    last_release: Option<Instant>,
}

impl Path {
    pub fn new(p: PathParams, seed: u64) -> Path {
        Path {
            p,
            rng: SmallRng::seed_from_u64(seed),
            in_burst: false,
            last_release: None,
        }
    }

    fn chance(&mut self, pct: f64) -> bool {
        pct > 0.0 && self.rng.random::<f64>() * 100.0 < pct
    }

    /// Whether the next packet is lost: independently with `burst` 1; otherwise with bursts of
    /// mean length `b` and loss share `l`, a lost packet is followed by another with probability
    /// 1 - 1/b, and a good one by a loss with probability l / (b (1 - l)): the chain then loses
    /// `l` of the packets on average.
    fn lose(&mut self) -> bool {
        let l = (self.p.loss_pct / 100.0).clamp(0.0, 1.0);
        if l <= 0.0 {
            return false;
        }
        let b = self.p.burst;
        if b <= 1.0 {
            return self.rng.random::<f64>() < l;
        }
        let p_stay = 1.0 - 1.0 / b;
        let p_enter = (l / (b * (1.0 - l))).min(1.0);
        let r: f64 = self.rng.random();
        self.in_burst = if self.in_burst {
            r < p_stay
        } else {
            r < p_enter
        };
        self.in_burst
    }

    /// Decides the fate of a packet that arrived at `now`.
    pub fn admit(&mut self, now: Instant) -> Fate {
        if self.lose() {
            return Fate::Lost;
        }
        let j = self.p.jitter.as_secs_f64();
        let offset = if j > 0.0 {
            self.rng.random_range(-j..=j)
        } else {
            0.0
        };
        let delay = (self.p.delay.as_secs_f64() + offset).max(0.0);
        let mut at = now + Duration::from_secs_f64(delay);
        let reordered = self.chance(self.p.reorder_pct);
        if reordered {
            // Held back: it does not move the FIFO floor, so the next packets overtake it.
            at += self.p.reorder_delay;
        } else {
            if let Some(floor) = self.last_release {
                at = at.max(floor);
            }
            self.last_release = Some(at);
        }
        let mut times = vec![at];
        if self.chance(self.p.duplicate_pct) {
            times.push(at + Duration::from_micros(100));
        }
        Fate::Delivered {
            at: times,
            reordered,
        }
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

    let mut paths = [
        Path::new(p, seed),
        Path::new(p, seed ^ 0x9e37_79b9_7f4a_7c15),
    ];
    let mut stats = [DirStats::default(); 2];
    // Due datagrams: (release time, order of arrival) → (pipe, direction, bytes).
    let mut queue: BinaryHeap<Reverse<(Instant, u64, usize, bool)>> = BinaryHeap::new();
    let mut payloads: std::collections::HashMap<u64, Vec<u8>> = std::collections::HashMap::new();
    let mut order = 0u64;
    let started = Instant::now();
    let mut last_packet = started;
    loop {
        let now = Instant::now();
        while let Some(Reverse((at, id, pipe, forward))) = queue.peek().copied() {
            if at > now {
                break;
            }
            queue.pop();
            if let Some(data) = payloads.remove(&id) {
                let pp = &pipes[pipe];
                let _ = if forward {
                    pp.via.send_to(&data, pp.target)
                } else {
                    match pp.back.or(*pp.peer.lock()) {
                        Some(peer) => pp.listen.send_to(&data, peer),
                        None => Ok(0),
                    }
                };
            }
        }
        if signals::stop_requested()
            || now.duration_since(started) >= limit
            || idle.is_some_and(|i| queue.is_empty() && now.duration_since(last_packet) >= i)
        {
            break;
        }
        let wait = queue
            .peek()
            .map_or(Duration::from_millis(20), |Reverse((at, ..))| {
                at.saturating_duration_since(now)
            })
            .min(Duration::from_millis(20));
        let a = match rx.recv_timeout(wait) {
            Ok(a) => a,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        last_packet = a.at;
        let dir = usize::from(!a.forward);
        stats[dir].packets += 1;
        match paths[dir].admit(a.at) {
            Fate::Lost => stats[dir].lost += 1,
            Fate::Delivered { at, reordered } => {
                if payloads.len() + at.len() > MAX_QUEUED {
                    stats[dir].overflow += 1;
                    continue;
                }
                stats[dir].reordered += u64::from(reordered);
                stats[dir].duplicated += (at.len() as u64).saturating_sub(1);
                for t in at {
                    order += 1;
                    payloads.insert(order, a.data.clone());
                    queue.push(Reverse((t, order, a.pipe, a.forward)));
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
        forward: stats[0],
        backward: stats[1],
    });
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_path(p: PathParams, n: usize) -> (Vec<Fate>, Instant) {
        let mut path = Path::new(p, 42);
        let t0 = Instant::now();
        let fates = (0..n)
            .map(|i| path.admit(t0 + Duration::from_millis(i as u64)))
            .collect();
        (fates, t0)
    }

    #[test]
    fn loss_share_holds_with_and_without_bursts() {
        for burst in [1.0, 4.0] {
            let p = PathParams {
                loss_pct: 10.0,
                burst,
                ..PathParams::default()
            };
            let (fates, _) = run_path(p, 200_000);
            let lost = fates.iter().filter(|f| **f == Fate::Lost).count() as f64;
            let share = lost / fates.len() as f64 * 100.0;
            assert!((share - 10.0).abs() < 0.5, "burst {burst}: {share}% lost");
            // Mean run of consecutive losses is close to the asked burst length.
            let mut runs = Vec::new();
            let mut cur = 0;
            for f in &fates {
                if *f == Fate::Lost {
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
            ..PathParams::default()
        };
        let (fates, t0) = run_path(p, 20_000);
        let mut last_in_order = t0;
        let mut reordered = 0;
        for (i, f) in fates.iter().enumerate() {
            let Fate::Delivered { at, reordered: r } = f else {
                panic!("no loss asked");
            };
            let sent = t0 + Duration::from_millis(i as u64);
            let d = at[0] - sent;
            assert!(d >= Duration::from_millis(17), "delay {d:?}");
            if *r {
                reordered += 1;
            } else {
                assert!(at[0] >= last_in_order, "in-order packets keep their order");
                last_in_order = at[0];
                assert!(d <= Duration::from_millis(24), "delay {d:?}");
            }
        }
        let share = reordered as f64 / fates.len() as f64 * 100.0;
        assert!((share - 1.0).abs() < 0.3, "{share}% reordered");
    }

    #[test]
    fn duplicates_come_twice_and_the_seed_repeats_a_run() {
        let p = PathParams {
            duplicate_pct: 5.0,
            loss_pct: 3.0,
            ..PathParams::default()
        };
        let (a, _) = run_path(p, 10_000);
        let dups = a
            .iter()
            .filter(|f| matches!(f, Fate::Delivered { at, .. } if at.len() == 2))
            .count() as f64;
        assert!((dups / 10_000.0 * 100.0 - 5.0).abs() < 1.0);
        let mut x = Path::new(p, 42);
        let mut y = Path::new(p, 42);
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(x.admit(t), y.admit(t));
        }
    }
}
