//! `send --ladder` over real sockets through a narrow link (issue 17, "Real sockets through
//! netsim"): three libx264 renditions of one clip (one GOP, about 0.3 / 0.8 / 1.9 Mbit/s),
//! `send --ladder` → `netsim --rate-kbps 1500 --queue-ms 300`, 20 ms one way → `recv --cc`.
//! Congestion control starts at 2.5 Mbit/s, so the sender begins on the highest rendition and
//! must switch down; nearly every picture it sends must arrive bit-exact, and once settled the
//! bottleneck queue must stay short. The same run then sends the highest rendition without
//! congestion control through the same link, which must be clearly worse on both counts.

use crate::lossy_path::pictures;
use crate::support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::netsim::{free_port_pair, Netsim, Path};
use support::peers::{self, bin, spawn, wait_bounded, TempDir};

const SECONDS: u32 = 12;
/// The netsim reports the queue delay of what arrives after this (the sender has settled).
const SETTLE_SECS: &str = "4";

/// One rendition: 720p test pattern, a key picture every 30 pictures with its parameter sets,
/// no B-pictures, and a VBV of two picture intervals so key pictures stay near twice the mean
/// (a paced sender at the estimate then carries them without dropping what follows).
fn rendition(dir: &TempDir, kbps: u32) -> PathBuf {
    let path = dir.path(&format!("r{kbps}.h264"));
    let (rate, buf) = (format!("{kbps}k"), format!("{}k", kbps * 66 / 1000));
    peers::make_h264_clip(
        &path,
        "testsrc2=size=1280x720:rate=30",
        SECONDS,
        &[
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-bf",
            "0",
            "-b:v",
            &rate,
            "-maxrate",
            &rate,
            "-bufsize",
            &buf,
            "-x264-params",
            "keyint=30:min-keyint=30:scenecut=0:repeat-headers=1",
        ],
    );
    path
}

/// The JSON lines a command printed.
fn lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{key}` in {v}"))
}

/// What one `send` → netsim → `recv` run gave.
struct Run {
    /// `send`'s lines (ladder, switch, stats...), the final stats line last.
    send: Vec<Value>,
    recv: Value,
    /// The netsim's forward direction.
    path: Value,
    /// Pictures the sender put on the wire (handed over minus dropped by congestion control).
    sent: u64,
    /// Pictures `recv` wrote that are bit-exact copies of a picture of one of the renditions.
    intact: usize,
    /// Pictures `recv` wrote that match none.
    damaged: usize,
}

fn run(
    dir: &TempDir,
    tag: &str,
    send_args: &[&str],
    recv_cc: bool,
    known: &HashSet<Vec<Vec<u8>>>,
) -> Run {
    let out = dir.path(&format!("{tag}.h264"));
    let recv_addr = format!("127.0.0.1:{}", free_port_pair());
    let mut recv_args = vec![
        "recv",
        "--listen",
        &recv_addr,
        "--out",
        out.to_str().unwrap(),
        "--timeout",
        "4",
        "--rtcp-mux",
    ];
    if recv_cc {
        recv_args.push("--cc");
    }
    let recv = spawn(90, bin().to_str().unwrap(), &recv_args);
    std::thread::sleep(Duration::from_millis(300));
    let clean = Path {
        loss_pct: 0.0,
        delay_ms: 20,
        jitter_ms: 0,
        reorder_pct: 0.0,
        duplicate_pct: 0.0,
        seed: 5,
    };
    let mut net = Netsim::start_with(
        &[format!("127.0.0.1:0={recv_addr}")],
        &clean,
        &[
            "--rate-kbps",
            "1500",
            "--queue-ms",
            "300",
            "--settle",
            SETTLE_SECS,
        ],
        SECONDS + 30,
    );
    let to = net.pipes[0].0.to_string();
    let mut args = vec!["send", "--to", &to, "--rtcp-mux"];
    args.extend_from_slice(send_args);
    let send = wait_bounded(
        spawn(90, bin().to_str().unwrap(), &args),
        Duration::from_secs(90),
    );
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let recv = wait_bounded(recv, Duration::from_secs(30));
    assert!(
        recv.status.success(),
        "{}",
        String::from_utf8_lossy(&recv.stderr)
    );
    let path: Value = serde_json::from_str(&net.stop()).expect("netsim stats line");
    let send = lines(&send.stdout);
    let recv = lines(&recv.stdout).pop().expect("recv stats line");
    let last = send.last().expect("send stats line");
    let sent = num(last, "frames") - num(last, "cc_pictures_dropped");
    let got = pictures(&out, false);
    let intact = got.iter().filter(|p| known.contains(*p)).count();
    Run {
        damaged: got.len() - intact,
        send,
        recv,
        path: path["forward"].clone(),
        sent,
        intact,
    }
}

#[test]
fn send_ladder_switches_down_through_a_narrow_link() {
    if !peers::have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("ladder");
    let files: Vec<PathBuf> = [500, 1000, 2500].map(|k| rendition(&dir, k)).into();
    let known: HashSet<Vec<Vec<u8>>> = files.iter().flat_map(|f| pictures(f, false)).collect();
    let list = files
        .iter()
        .map(|f| f.to_str().unwrap())
        .collect::<Vec<_>>()
        .join(",");

    let cc = run(
        &dir,
        "ladder",
        &[
            "--ladder",
            &list,
            "--cc-start-kbps",
            "2500",
            "--stats-interval",
            "1",
        ],
        true,
        &known,
    );
    let high = files[2].to_str().unwrap();
    let plain = run(&dir, "plain", &[high], false, &known);

    let share = |r: &Run| r.intact as f64 / r.sent.max(1) as f64;
    let switches: Vec<&Value> = cc.send.iter().filter(|l| l["event"] == "switch").collect();
    for (name, r) in [("ladder + cc", &cc), ("high, no cc", &plain)] {
        println!(
            "{name}: {} of {} pictures sent arrived intact ({:.1} %), {} damaged; queue delay \
             p95 {} ms overall, {} ms after {SETTLE_SECS} s; {} dropped at the queue\n  send {}\n  \
             recv {}",
            r.intact,
            r.sent,
            share(r) * 100.0,
            r.damaged,
            num(&r.path, "queue_delay_p95_ms"),
            num(&r.path, "queue_delay_settled_p95_ms"),
            num(&r.path, "queue_dropped"),
            r.send.last().unwrap(),
            r.recv
        );
    }
    for s in &switches {
        println!("  {s}");
    }

    // The ladder started high and came down to what the link carries.
    let first = cc
        .send
        .iter()
        .find(|l| l["event"] == "ladder")
        .expect("ladder line");
    assert_eq!(first["renditions"].as_array().map(Vec::len), Some(3));
    assert!(
        switches
            .iter()
            .any(|s| num(s, "to_bps") < num(s, "from_bps")),
        "no switch down: {switches:?}"
    );
    // Stats lines came once a second (a floor: the run lasts 12 s).
    let progress = cc.send.iter().filter(|l| l["event"] == "stats").count();
    assert!(progress >= 6, "{progress} stats lines");
    let last = cc.send.last().unwrap();
    assert!(num(last, "cc_feedback_received") >= 50, "{last}");
    assert!(num(&cc.recv, "cc_feedback_sent") >= 50, "{}", cc.recv);

    // Nearly every picture sent arrives whole (the issue asks 98 %; the floor leaves room for a
    // loaded machine), and once settled the queue stays short.
    assert_eq!(cc.damaged, 0, "pictures matching no rendition");
    assert!(share(&cc) >= 0.95, "{} of {}", cc.intact, cc.sent);
    let settled = num(&cc.path, "queue_delay_settled_p95_ms");
    assert!(settled <= 150, "settled queue delay p95 {settled} ms");

    // Without congestion control the highest rendition overruns the link: clearly worse.
    assert!(
        share(&plain) <= share(&cc) - 0.4,
        "no cc: {} of {}",
        plain.intact,
        plain.sent
    );
    let plain_settled = num(&plain.path, "queue_delay_settled_p95_ms");
    assert!(
        plain_settled >= 200 && plain_settled >= 2 * settled.max(1),
        "no cc: settled queue delay p95 {plain_settled} ms"
    );
    let dropped = |r: &Run| num(&r.path, "queue_dropped");
    assert!(dropped(&plain) >= 4 * dropped(&cc).max(25), "queue drops");
}
