//! `roomkit-media netsim` for the tests: a seeded lossy path between two peers, and free port
//! pairs for peers that put RTCP on the next port.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::Child;
use std::time::Duration;

use super::peers::{bin, interrupt, spawn, wait_bounded};

/// A running path simulator.
pub struct Netsim {
    child: Option<Child>,
    /// Per `--pipe`, in order: the address it listens on and its via side.
    pub pipes: Vec<(SocketAddr, SocketAddr)>,
}

/// The impairments of both directions.
pub struct Path {
    pub loss_pct: f64,
    pub delay_ms: u32,
    pub jitter_ms: u32,
    pub reorder_pct: f64,
    pub duplicate_pct: f64,
    pub seed: u64,
}

impl Path {
    /// The path the media-resilience issue measures on: `loss_pct` each way, 20 ± 3 ms one way,
    /// 1 % reordering, 1 % duplicates.
    pub fn lossy(loss_pct: f64, seed: u64) -> Path {
        Path {
            loss_pct,
            delay_ms: 20,
            jitter_ms: 3,
            reorder_pct: 1.0,
            duplicate_pct: 1.0,
            seed,
        }
    }
}

impl Netsim {
    /// Starts netsim with `pipes` (`LISTEN=TARGET[/BACK][@VIA]`) for at most `seconds`.
    pub fn start(pipes: &[String], path: &Path, seconds: u32) -> Netsim {
        Netsim::start_with(pipes, path, &[], seconds)
    }

    /// [`Netsim::start`] with more flags (`--rate-kbps`, `--rate-step`...).
    pub fn start_with(pipes: &[String], path: &Path, extra: &[&str], seconds: u32) -> Netsim {
        let mut args: Vec<String> = vec!["netsim".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        for p in pipes {
            args.push("--pipe".into());
            args.push(p.clone());
        }
        for (k, v) in [
            ("--loss", path.loss_pct.to_string()),
            ("--delay", path.delay_ms.to_string()),
            ("--jitter", path.jitter_ms.to_string()),
            ("--reorder", path.reorder_pct.to_string()),
            ("--duplicate", path.duplicate_pct.to_string()),
            ("--seed", path.seed.to_string()),
            ("--seconds", seconds.to_string()),
        ] {
            args.push(k.into());
            args.push(v);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn(seconds + 30, bin().to_str().unwrap(), &argv);
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .expect("netsim prints its addresses");
        let mut out = Vec::new();
        let mut at = 0;
        let mut field = |key: &str| -> SocketAddr {
            let i = line[at..]
                .find(&format!("\"{key}\":\""))
                .unwrap_or_else(|| panic!("netsim ready line: {line}"))
                + at
                + key.len()
                + 4;
            let j = line[i..].find('"').unwrap() + i;
            at = j;
            line[i..j].parse().unwrap()
        };
        for _ in pipes {
            let listen = field("listen");
            let via = field("via");
            out.push((listen, via));
        }
        Netsim {
            child: Some(child),
            pipes: out,
        }
    }

    /// Stops it and returns its closing stats line.
    pub fn stop(&mut self) -> String {
        let Some(child) = self.child.take() else {
            return String::new();
        };
        interrupt(&child);
        let out = wait_bounded(child, Duration::from_secs(10));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("\"stats\""))
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for Netsim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An even port P with P and P + 1 free a moment ago (RTP and RTCP of a non-muxed peer).
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let Ok(a) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let p = a.local_addr().unwrap().port() & !1;
        if p < 1024 || p == u16::MAX - 1 {
            continue;
        }
        drop(a);
        if let (Ok(x), Ok(y)) = (
            UdpSocket::bind(("127.0.0.1", p)),
            UdpSocket::bind(("127.0.0.1", p + 1)),
        ) {
            drop((x, y));
            return p;
        }
    }
    panic!("no free port pair on 127.0.0.1");
}

/// The number after `"key":` in `json` (netsim's closing line) from byte `from` on, e.g. from
/// the `"forward"` object on.
pub fn field(json: &str, from: usize, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let i = json[from..]
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} in {json}"))
        + from
        + pat.len();
    let end = json[i..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(json.len(), |e| e + i);
    json[i..end].parse().unwrap()
}
