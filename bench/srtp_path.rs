//! `send` → `recv` throughput with SRTP against plain RTP, in the same run.
//!
//! Two `RtpVideoBackend` sessions on loopback, the path `roomkit-media send` and `recv` run on
//! (packetize, protect, `sendmmsg`; `recvmmsg`, unprotect, reorder, assemble, callback), push
//! the benchmark clip (bench/clip.sh: 20 s of 1080p H.264, 600 pictures, about 21,000 packets)
//! as fast as they go. The sender keeps at most `WINDOW` pictures ahead of the receiver's
//! callback, so the kernel does not drop what the receiver has no time for and every
//! configuration does the same work; pacing and NACK are off. Plain RTP and each SRTP suite
//! take turns, round after round, each on a fresh pair of sessions. Reported per configuration,
//! with its ratio to plain: the median round's packets/s and Mbit/s (RTP bytes received,
//! headers included), the best round's packets/s, and the median CPU time the whole process
//! (sender, receiver and callback threads) spent per packet, which moves far less than wall
//! time on a machine shared with other work. Beside them, protect + unprotect alone per packet
//! on one core (`rtp::srtp`, no sockets or threads): what SRTP adds to the path.
//!
//! Run: `cargo bench --bench srtp_path` (needs ffmpeg with libx264 to make the clip once);
//! `SRTP_PATH_ROUNDS=N` changes the number of rounds (default 7).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use roomkit_media::backend::{
    ConnectOptions, NackConfig, PacerConfig, ResilienceConfig, RtpBackendConfig, RtpVideoBackend,
};
use roomkit_media::codec::annexb::access_units;
use roomkit_media::prelude::*;
use roomkit_media::rtp::srtp::{SrtpReceiver, SrtpSender};
use roomkit_media::{SrtpKey, SrtpKeys, SrtpSuite};

/// Pictures the sender may be ahead of the receiver's callback.
const WINDOW: u64 = 4;
/// The longest the sender waits for the receiver before sending anyway (a lost picture).
const STALL: Duration = Duration::from_millis(20);

/// The clip shared with bench/h264.rs and bench/gst_throughput.sh.
fn clip() -> Vec<u8> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/clip.sh");
    let out = Command::new(&script)
        .output()
        .expect("bench/clip.sh runs (it needs ffmpeg with libx264)");
    assert!(
        out.status.success(),
        "bench/clip.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::read(path).unwrap()
}

/// What one pass of the clip measured.
#[derive(Clone, Copy)]
struct Pass {
    secs: f64,
    packets: u64,
    bytes: u64,
    pictures: u64,
    sent_packets: u64,
    auth_failed: u64,
    /// CPU time of the whole process (every thread: sender, receiver, callbacks) during the
    /// pass, seconds.
    cpu: f64,
}

impl Pass {
    fn packets_per_sec(&self) -> f64 {
        self.packets as f64 / self.secs
    }
    fn mbit_per_sec(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e6
    }
    /// CPU microseconds the path spent per packet received.
    fn cpu_us_per_packet(&self) -> f64 {
        self.cpu * 1e6 / self.packets.max(1) as f64
    }
}

/// User + system CPU time of this process so far, in seconds: on a machine shared with other
/// work, what a pass costs is steadier than how long it took.
fn process_cpu() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one `rusage` into the pointer, which has room for it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: getrusage succeeded, so it initialised the struct (and it was zeroed anyway).
    let u = unsafe { u.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

fn config() -> RtpBackendConfig {
    RtpBackendConfig {
        local_addr: "127.0.0.1:0".parse().unwrap(),
        video_local_addr: "127.0.0.1:0".parse().unwrap(),
        callback_queue: 4096,
        // Every picture reaches the callback, damaged or not, so a loss cannot stall the window.
        wait_for_keyframe: false,
        deliver_incomplete: true,
        resilience: ResilienceConfig {
            nack: NackConfig {
                enabled: false,
                ..NackConfig::default()
            },
            pacer: PacerConfig {
                enabled: false,
                ..PacerConfig::default()
            },
            ..ResilienceConfig::default()
        },
        ..RtpBackendConfig::default()
    }
}

/// Sends every picture from a fresh session pair, keyed with `suite` (None: plain RTP).
fn pass(pictures: &[&[u8]], suite: Option<SrtpSuite>) -> Pass {
    let (ka, kb) = match suite {
        Some(s) => (Some(SrtpKey::from_os_rng(s)), Some(SrtpKey::from_os_rng(s))),
        None => (None, None),
    };
    let keys = |send: &Option<SrtpKey>, recv: &Option<SrtpKey>| {
        Some(SrtpKeys {
            send: send.clone()?,
            recv: recv.clone()?,
        })
    };
    let a = RtpVideoBackend::new(config()).unwrap();
    let b = RtpVideoBackend::new(config()).unwrap();
    let frames = Arc::new(AtomicU64::new(0));
    let (tx, arrivals) = unbounded::<Instant>();
    let counted = frames.clone();
    b.on_video_received(move |_, _| {
        counted.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(Instant::now());
    });
    let nowhere = "127.0.0.1:9".parse().unwrap();
    let sa = a
        .connect(
            "bench",
            "a",
            ConnectOptions {
                video_srtp: keys(&ka, &kb),
                ..ConnectOptions::to(nowhere, Some(nowhere))
            },
        )
        .unwrap();
    let a_video = sa.video.as_ref().unwrap().local_addr;
    let sb = b
        .connect(
            "bench",
            "b",
            ConnectOptions {
                video_srtp: keys(&kb, &ka),
                ..ConnectOptions::to(nowhere, Some(a_video))
            },
        )
        .unwrap();
    let b_video = sb.video.as_ref().unwrap().local_addr;
    a.update_remote(sa.id, None, Some(b_video)).unwrap();

    let cpu0 = process_cpu();
    let start = Instant::now();
    let mut last = start;
    let mut arrived = 0u64;
    for (i, pic) in pictures.iter().enumerate() {
        while i as u64 >= arrived + WINDOW {
            match arrivals.recv_timeout(STALL) {
                Ok(t) => {
                    arrived += 1;
                    last = t;
                }
                Err(_) => break,
            }
        }
        a.send_video_at(sa.id, pic, Some(i as f64 * 1000.0 / 30.0))
            .unwrap();
    }
    while arrived < pictures.len() as u64 {
        match arrivals.recv_timeout(Duration::from_millis(200)) {
            Ok(t) => {
                arrived += 1;
                last = t;
            }
            Err(_) => break,
        }
    }
    let cpu = process_cpu() - cpu0;
    let rx = b.stats(sb.id).unwrap().video.unwrap();
    let txs = a.stats(sa.id).unwrap().video.unwrap();
    let _ = a.disconnect(sa.id);
    let _ = b.disconnect(sb.id);
    Pass {
        secs: last.duration_since(start).as_secs_f64(),
        packets: rx.packets_received,
        bytes: rx.bytes_received,
        pictures: frames.load(Ordering::Relaxed),
        sent_packets: txs.packets_sent,
        auth_failed: rx.srtp_auth_failed,
        cpu,
    }
}

/// Seconds one core spends protecting and unprotecting `packets` RTP packets of `len` bytes.
fn crypto_only(suite: SrtpSuite, packets: u64, len: usize) -> f64 {
    let key = SrtpKey::from_os_rng(suite);
    let mut tx = SrtpSender::new(&key).unwrap();
    let mut rx = SrtpReceiver::new(&key).unwrap();
    let mut p = vec![0x5a; len];
    p[..12].copy_from_slice(&[0x80, 96, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44]);
    let t = Instant::now();
    for i in 0..packets {
        p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        let protected = tx.protect_rtp(&p).unwrap();
        std::hint::black_box(rx.unprotect_rtp(&protected).unwrap());
    }
    t.elapsed().as_secs_f64()
}

/// The median CPU cost per packet of a configuration's passes.
fn median_cpu(v: &[Pass]) -> f64 {
    let mut c: Vec<f64> = v.iter().map(Pass::cpu_us_per_packet).collect();
    c.sort_by(f64::total_cmp);
    c[c.len() / 2]
}

fn median(mut v: Vec<Pass>) -> Pass {
    v.sort_by(|x, y| x.packets_per_sec().total_cmp(&y.packets_per_sec()));
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; this bench has no options of its own.
    let rounds: usize = std::env::var("SRTP_PATH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
        .max(1);
    let clip = clip();
    let pictures: Vec<&[u8]> = access_units(&clip).map(|r| &clip[r]).collect();
    let configs: Vec<Option<SrtpSuite>> = std::iter::once(None)
        .chain(SrtpSuite::ALL.into_iter().map(Some))
        .collect();
    let name = |s: &Option<SrtpSuite>| s.map_or("plain RTP", |s| s.sdp_name());
    println!(
        "clip: {} bytes, {} pictures; window {WINDOW} pictures; {rounds} rounds; load {}",
        clip.len(),
        pictures.len(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    // Round-robin, so a change in the machine's load touches every configuration alike.
    let mut results: Vec<Vec<Pass>> = vec![Vec::new(); configs.len()];
    // One pass unmeasured first: page faults, first socket buffers.
    let _ = pass(&pictures, None);
    for _ in 0..rounds {
        for (i, c) in configs.iter().enumerate() {
            let p = pass(&pictures, *c);
            assert_eq!(
                p.auth_failed,
                0,
                "{}: packets failed authentication",
                name(c)
            );
            results[i].push(p);
        }
    }
    let plain = median(results[0].clone());
    let plain_best = results[0]
        .iter()
        .map(Pass::packets_per_sec)
        .fold(0.0f64, f64::max);
    let plain_cpu = median_cpu(&results[0]);
    println!(
        "{:<24} {:>10} {:>7} {:>6} {:>10} {:>6} {:>11} {:>6} {:>8} {:>5} {:>13}",
        "send->recv (medians)",
        "packets/s",
        "Mbit/s",
        "ratio",
        "best pk/s",
        "ratio",
        "cpu us/pkt",
        "ratio",
        "pictures",
        "lost",
        "crypto-only"
    );
    for (c, r) in configs.iter().zip(results) {
        let best = r.iter().map(Pass::packets_per_sec).fold(0.0f64, f64::max);
        let cpu = median_cpu(&r);
        let m = median(r);
        let crypto = match c {
            Some(s) => {
                let secs = crypto_only(*s, m.sent_packets, 1200);
                format!("{:.2} us/pkt", secs * 1e6 / m.sent_packets.max(1) as f64)
            }
            None => "-".to_string(),
        };
        println!(
            "{:<24} {:>10.0} {:>7.0} {:>5.0}% {:>10.0} {:>5.0}% {:>11.2} {:>5.0}% {:>8} {:>5} {:>13}",
            name(c),
            m.packets_per_sec(),
            m.mbit_per_sec(),
            100.0 * m.packets_per_sec() / plain.packets_per_sec(),
            best,
            100.0 * best / plain_best,
            cpu,
            100.0 * plain_cpu / cpu,
            m.pictures,
            m.sent_packets.saturating_sub(m.packets),
            crypto,
        );
    }
    println!(
        "load after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
