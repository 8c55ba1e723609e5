//! Video over a lossy path, end to end on real sockets: the share of pictures that arrive intact
//! and the latency the path's repairs add, for our engine and for GStreamer in the same run, on
//! the same simulated path (`roomkit-media netsim`: 20 ± 3 ms one way = 40 ms RTT, 1 %
//! reordering, 1 % duplicates, and 0, 1, 3 or 10 % random loss each way, seeded).
//!
//! - ours: an `RtpVideoBackend` sender and receiver in this process, NACK on, with and without
//!   RTX, paced, rtcp-mux; the sender lingers 1 s for the last repairs.
//! - GStreamer: `bench/gst_rtx.py` (rtpbin + rtprtxsend → rtpbin with do-retransmission and
//!   rtprtxreceive), its jitterbuffer at `latency` 200 ms and 500 ms (the most it may wait for a
//!   repair; ours gives up after at most 6 RTT + 30 ms, capped at 500 ms).
//!
//! Both send the same 6 s 720p clip (libx264 baseline, a key picture every 30) paced at 30 fps
//! and no extra key pictures on request, as a file sender would. A picture counts as intact when
//! its slice NAL units arrive bit-exact (SPS/PPS aside, which GStreamer repeats); anything else
//! delivered is corrupt. Added latency = arrival - send - the one-way delay (20 ms), per intact
//! picture, on one clock (CLOCK_MONOTONIC is system-wide).
//!
//! Run: `cargo bench --bench lossy_path` (needs ffmpeg and GStreamer with python3-gi; ~3 min).
//! `LOSSY_SEEDS=N` repeats each row with N seeds.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roomkit_media::backend::{ConnectOptions, ResilienceConfig, RtpBackendConfig, RtpVideoBackend};
use roomkit_media::codec::annexb::{access_units, nal_units};
use roomkit_media::prelude::*;

const ONE_WAY: Duration = Duration::from_millis(20);
const FPS: f64 = 30.0;
const LOSSES: [f64; 4] = [0.0, 1.0, 3.0, 10.0];

/// What one run measured.
#[derive(Debug, Default, Clone)]
struct Outcome {
    sent: usize,
    intact: usize,
    corrupt: usize,
    /// Added latency of each intact picture, milliseconds.
    added_ms: Vec<f64>,
}

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.sent += o.sent;
        self.intact += o.intact;
        self.corrupt += o.corrupt;
        self.added_ms.extend(o.added_ms);
    }

    fn row(&self, name: &str, loss: f64) -> String {
        let mut v = self.added_ms.clone();
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if v.is_empty() {
                f64::NAN
            } else {
                v[((v.len() - 1) as f64 * p).round() as usize]
            }
        };
        format!(
            "| {loss:>4.0} % | {name:<28} | {:>6.1} % | {:>5} | {:>7.1} | {:>7.1} |",
            100.0 * self.intact as f64 / self.sent.max(1) as f64,
            self.corrupt,
            pct(0.5),
            pct(0.99)
        )
    }
}

/// The slice NAL units (types 1-5) of an Annex-B picture, hashed: what "the same picture" means.
fn slice_key(au: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    for r in nal_units(au) {
        let nal = &au[r];
        if !nal.is_empty() && (1..=5).contains(&(nal[0] & 0x1f)) {
            nal.hash(&mut h);
        }
    }
    h.finish()
}

fn clip() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-clips/720p-6s.h264");
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let ok = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=1280x720:rate=30")
            .args(["-t", "6", "-pix_fmt", "yuv420p", "-c:v", "libx264"])
            .args(["-profile:v", "baseline", "-b:v", "2500k"])
            .args([
                "-x264-params",
                "keyint=30:min-keyint=30:scenecut=0:ipratio=4.0",
            ])
            .args(["-bsf:v", "h264_mp4toannexb", "-f", "h264"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ffmpeg with libx264 makes the benchmark clip");
    }
    path
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `roomkit-media netsim` and the addresses it printed.
struct Netsim {
    child: Child,
    /// Per pipe: (listen, via).
    pipes: Vec<(SocketAddr, SocketAddr)>,
}

impl Netsim {
    fn start(pipes: &[String], loss: f64, seed: u64) -> Netsim {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomkit-media"));
        cmd.arg("netsim");
        for p in pipes {
            cmd.args(["--pipe", p]);
        }
        cmd.args(["--loss", &loss.to_string()])
            .args([
                "--delay",
                "20",
                "--jitter",
                "3",
                "--reorder",
                "1",
                "--duplicate",
                "1",
            ])
            .args(["--seed", &seed.to_string(), "--seconds", "40"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("roomkit-media netsim starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = |key: &str, from: usize| -> (SocketAddr, usize) {
            let i = line[from..].find(key).unwrap() + from + key.len() + 3;
            let j = line[i..].find('"').unwrap() + i;
            (line[i..j].parse().unwrap(), j)
        };
        let mut out = Vec::new();
        let mut at = 0;
        for _ in pipes {
            let (listen, a) = addr("listen", at);
            let (via, b) = addr("via", a);
            out.push((listen, via));
            at = b;
        }
        Netsim { child, pipes: out }
    }
}

impl Drop for Netsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_ours(pictures: &[Vec<u8>], loss: f64, seed: u64, rtx: bool) -> Outcome {
    let placeholder: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let cfg = |rtx: bool| RtpBackendConfig {
        local_addr: "127.0.0.1:0".parse().unwrap(),
        video_local_addr: "127.0.0.1:0".parse().unwrap(),
        remote_addr: Some(placeholder),
        video_remote_addr: Some(placeholder),
        rtcp_mux: true,
        rtx_payload_type: rtx.then_some(97),
        resilience: ResilienceConfig {
            inactivity_timeout: Duration::ZERO,
            close_linger: Duration::from_secs(1),
            ..ResilienceConfig::default()
        },
        callback_queue: 4096,
        ..RtpBackendConfig::default()
    };
    let received: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let rx = RtpVideoBackend::new(RtpBackendConfig {
        latch_to_first_source: true,
        ..cfg(rtx)
    })
    .unwrap();
    let r = received.clone();
    rx.on_video_received(move |_, f| {
        r.lock().unwrap().push((Instant::now(), slice_key(&f.data)));
    });
    let rs = rx
        .connect("bench", "rx", ConnectOptions::default())
        .unwrap();
    let rx_video = rs.video.as_ref().unwrap().local_addr;
    let tx = RtpVideoBackend::new(cfg(rtx)).unwrap();
    let ts = tx
        .connect("bench", "tx", ConnectOptions::default())
        .unwrap();
    let net = Netsim::start(&[format!("127.0.0.1:0={rx_video}")], loss, seed);
    tx.update_remote(ts.id, None, Some(net.pipes[0].0)).unwrap();

    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let start = Instant::now() + Duration::from_millis(100);
    for (i, p) in pictures.iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / FPS);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        sent.entry(slice_key(p)).or_insert_with(Instant::now);
        tx.send_video_at(ts.id, p, Some(i as f64 * 1000.0 / FPS))
            .unwrap();
    }
    // The sender lingers for late repairs, then the receiver has a moment to finish.
    tx.disconnect(ts.id).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    rx.disconnect(rs.id).unwrap();
    drop(net);
    let got = received.lock().unwrap().clone();
    score(pictures.len(), &sent, &got)
}

fn score(total: usize, sent: &HashMap<u64, Instant>, got: &[(Instant, u64)]) -> Outcome {
    let mut o = Outcome {
        sent: total,
        ..Outcome::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (at, key) in got {
        match sent.get(key) {
            Some(t0) if seen.insert(*key) => {
                o.intact += 1;
                let added = at.saturating_duration_since(*t0).as_secs_f64() * 1000.0
                    - ONE_WAY.as_secs_f64() * 1000.0;
                o.added_ms.push(added);
            }
            Some(_) => {}
            None => o.corrupt += 1,
        }
    }
    o
}

/// Reads a gst_rtx.py log: `<monotonic seconds> <hex sha1>` per picture.
fn read_log(path: &Path) -> Vec<(f64, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (t, h) = l.split_once(' ')?;
            Some((t.parse().ok()?, h.to_string()))
        })
        .collect()
}

fn run_gst(clip: &Path, loss: f64, seed: u64, latency_ms: u32, dir: &Path) -> Outcome {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/gst_rtx.py");
    let (p, q) = loop {
        let p = free_port();
        if UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            break (p, free_port());
        }
    };
    let net = Netsim::start(
        &[
            format!("127.0.0.1:0=127.0.0.1:{p}"),
            format!("127.0.0.1:0=127.0.0.1:{}/127.0.0.1:{q}", p + 1),
        ],
        loss,
        seed,
    );
    let (send_log, recv_log) = (dir.join("gst_send.log"), dir.join("gst_recv.log"));
    let mut recv = Command::new("timeout")
        .args(["40", "/usr/bin/python3"])
        .arg(&script)
        .args(["recv", "--port", &p.to_string(), "--rtcp-port"])
        .arg((p + 1).to_string())
        .args(["--rtcp-to", &net.pipes[1].1.to_string()])
        .args(["--latency", &latency_ms.to_string(), "--idle", "3"])
        .arg("--out")
        .arg(dir.join("gst_out.h264"))
        .arg("--log")
        .arg(&recv_log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with GStreamer");
    std::thread::sleep(Duration::from_millis(800));
    let _ = Command::new("timeout")
        .args(["40", "/usr/bin/python3"])
        .arg(&script)
        .args(["send", "--clip"])
        .arg(clip)
        .args(["--to", &net.pipes[0].0.to_string()])
        .args(["--rtcp-to", &net.pipes[1].0.to_string()])
        .args(["--rtcp-port", &q.to_string()])
        .arg("--log")
        .arg(&send_log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = recv.wait();
    drop(net);
    let sent_log = read_log(&send_log);
    let mut sent: HashMap<String, f64> = HashMap::new();
    for (t, h) in &sent_log {
        sent.entry(h.clone()).or_insert(*t);
    }
    let mut o = Outcome {
        sent: sent_log.len(),
        ..Outcome::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (t, h) in read_log(&recv_log) {
        match sent.get(&h) {
            Some(t0) if seen.insert(h.clone()) => {
                o.intact += 1;
                o.added_ms
                    .push((t - t0) * 1000.0 - ONE_WAY.as_secs_f64() * 1000.0);
            }
            Some(_) => {}
            None => o.corrupt += 1,
        }
    }
    o
}

fn main() {
    let clip = clip();
    let bytes = std::fs::read(&clip).unwrap();
    let pictures: Vec<Vec<u8>> = access_units(&bytes).map(|r| bytes[r].to_vec()).collect();
    let seeds: u64 = std::env::var("LOSSY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-lossy");
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "clip: {} pictures, {} bytes; path: 20 ± 3 ms one way, 1 % reorder, 1 % duplicates; {seeds} seed(s) per row",
        pictures.len(),
        bytes.len()
    );
    println!("| loss | who | intact | corrupt | added p50 ms | added p99 ms |");
    println!("|---|---|---|---|---|---|");
    for loss in LOSSES {
        let mut rows: Vec<(&str, Outcome)> = vec![
            ("roomkit, NACK + RTX", Outcome::default()),
            ("roomkit, NACK (resend)", Outcome::default()),
            ("GStreamer, latency 200 ms", Outcome::default()),
            ("GStreamer, latency 500 ms", Outcome::default()),
        ];
        for seed in 1..=seeds {
            rows[0].1.merge(run_ours(&pictures, loss, seed, true));
            rows[1].1.merge(run_ours(&pictures, loss, seed, false));
            rows[2].1.merge(run_gst(&clip, loss, seed, 200, &dir));
            rows[3].1.merge(run_gst(&clip, loss, seed, 500, &dir));
        }
        for (name, o) in &rows {
            println!("{}", o.row(name, loss));
        }
    }
}
