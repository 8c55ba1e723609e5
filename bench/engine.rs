//! Engine benchmarks on loopback.
//!
//! - `latency/*`: `send_video` on one backend → `on_video_received` on another, for a ~100 KB IDR
//!   picture and a ~5 KB P picture. Criterion reports the mean; p50/p99 come from our own
//!   recorded samples and are printed, since criterion does not keep per-call figures. The
//!   `*_io2` rows run the same pair on 2 shared I/O threads per backend (`io_threads` 2).
//! - `receive/*`: packets per second the engine takes in (parse, statistics, depacketizing,
//!   picture assembly, callbacks) against a bare `recvmmsg` loop on a socket set up the same way,
//!   both fed by the same sender in the same run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_channel::{unbounded, Receiver};
use roomkit_media::backend::{RtpBackendConfig, RtpVideoBackend};
use roomkit_media::codec::testclip::h264_picture;
use roomkit_media::engine::socket::Wait;
use roomkit_media::engine::{MediaSocket, RecvBatch, SessionId};
use roomkit_media::prelude::*;
use roomkit_media::VideoChunk;

fn meta(audio: SocketAddr, video: SocketAddr) -> HashMap<String, String> {
    HashMap::from([
        ("remote_addr".to_string(), audio.to_string()),
        ("video_remote_addr".to_string(), video.to_string()),
    ])
}

struct Pair {
    a: RtpVideoBackend,
    b: RtpVideoBackend,
    a_id: SessionId,
    b_id: SessionId,
    arrivals: Receiver<Instant>,
}

fn pair(io_threads: usize) -> Pair {
    let cfg = RtpBackendConfig {
        io_threads,
        local_addr: "127.0.0.1:0".parse().unwrap(),
        video_local_addr: "127.0.0.1:0".parse().unwrap(),
        callback_queue: 4096,
        ..RtpBackendConfig::default()
    };
    let a = RtpVideoBackend::new(cfg.clone()).unwrap();
    let b = RtpVideoBackend::new(cfg).unwrap();
    let (tx, arrivals) = unbounded();
    b.on_video_received(move |_, _| {
        let _ = tx.send(Instant::now());
    });
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let sa = a.connect("bench", "a", meta(nowhere, nowhere)).unwrap();
    let sb = b
        .connect(
            "bench",
            "b",
            meta(sa.audio.local_addr, sa.video.as_ref().unwrap().local_addr),
        )
        .unwrap();
    a.update_remote(
        sa.id,
        Some(sb.audio.local_addr),
        Some(sb.video.as_ref().unwrap().local_addr),
    )
    .unwrap();
    Pair {
        a,
        b,
        a_id: sa.id,
        b_id: sb.id,
        arrivals,
    }
}

/// One send → callback round; `None` when the picture did not arrive within a second.
fn one(p: &Pair, pic: &[u8]) -> Option<Duration> {
    let t0 = Instant::now();
    p.a.send_video(p.a_id, pic).unwrap();
    let t1 = p.arrivals.recv_timeout(Duration::from_secs(1)).ok()?;
    Some(t1.duration_since(t0))
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The floor under `latency/idr_100k` on this machine: the same number of 1.2 KB datagrams sent
/// with one `sendmmsg` on a socket set up as the engine's, and received by a thread blocked in
/// `recvmmsg`, with no RTP, depacketizing or callback at all. Prints p50/p99 from send start to
/// the last datagram read.
fn kernel_floor(packets: usize) {
    use roomkit_media::engine::SendBatch;
    let rx = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let tx = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dest = rx.local_addr();
    let (done_tx, done_rx) = unbounded::<Instant>();
    let (go_tx, go_rx) = unbounded::<()>();
    let receiver = std::thread::spawn(move || {
        let mut batch = RecvBatch::new(64, 2048);
        while go_rx.recv().is_ok() {
            let mut got = 0;
            while got < packets {
                if let Ok(n) = batch.recv(&rx, Wait::ForOne) {
                    got += n;
                }
            }
            let _ = done_tx.send(Instant::now());
        }
    });
    let payload = vec![0x5au8; 1200];
    let header = [0x80u8; 12];
    let mut send = SendBatch::new();
    let mut samples = Vec::new();
    for i in 0..1100 {
        go_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_micros(200));
        let t0 = Instant::now();
        let mut sent = 0;
        while sent < packets {
            let batch = (sent..packets).map(|_| [&header[..], &payload[..]]);
            sent += send.send(&tx, dest, batch).unwrap_or(0);
        }
        let t1 = done_rx.recv_timeout(Duration::from_secs(1)).unwrap();
        if i >= 100 {
            samples.push(t1.duration_since(t0));
        }
    }
    drop(go_tx);
    let _ = receiver.join();
    samples.sort();
    println!(
        "latency/kernel_floor_{packets}_datagrams: n={} p50={:?} p99={:?} (sendmmsg → recvmmsg, no engine)",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99)
    );
}

fn latency(c: &mut Criterion) {
    kernel_floor(85);
    kernel_floor(5);
    for io_threads in [0, 2] {
        latency_on(c, io_threads);
    }
}

fn latency_on(c: &mut Criterion, io_threads: usize) {
    let p = pair(io_threads);
    let idr: Vec<Vec<u8>> = (0..8).map(|i| h264_picture(true, 100_000, i)).collect();
    let pp: Vec<Vec<u8>> = (0..8)
        .map(|i| h264_picture(false, 5_000, 100 + i))
        .collect();
    // Open the keyframe gate and warm the caches.
    for pic in idr.iter().chain(&pp) {
        one(&p, pic);
    }
    let suffix = if io_threads == 0 { "" } else { "_io2" };
    for (name, pics) in [("idr_100k", &idr), ("p_5k", &pp)] {
        let name = format!("{name}{suffix}");
        let mut samples: Vec<Duration> = (0..1000)
            .filter_map(|i| one(&p, &pics[i % pics.len()]))
            .collect();
        samples.sort();
        println!(
            "latency/{name}: n={} p50={:?} p99={:?} max={:?} ({} packets per picture)",
            samples.len(),
            percentile(&samples, 0.50),
            percentile(&samples, 0.99),
            samples.last().unwrap(),
            pics[0].len().div_ceil(1190)
        );
        let mut g = c.benchmark_group("latency");
        g.bench_function(&name, |b| {
            let mut i = 0;
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    i += 1;
                    total += one(&p, &pics[i % pics.len()]).unwrap_or(Duration::from_secs(1));
                }
                total
            })
        });
        g.finish();
    }
    let st = p.b.stats(p.b_id).unwrap().video.unwrap();
    println!(
        "latency: receiver saw {} frames, {} lost packets",
        st.frames, st.lost
    );
}

/// A thread that sends 5 KB P pictures (after one IDR) from `a` as fast as it can.
fn blast(a: Arc<RtpVideoBackend>, id: SessionId, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let idr = h264_picture(true, 20_000, 1);
        let pics: Vec<Vec<u8>> = (0..16)
            .map(|i| h264_picture(false, 5_000, 10 + i))
            .collect();
        let mut n = 0u64;
        let send = |data: &[u8], n: u64| {
            a.send_video_chunks(
                id,
                [VideoChunk {
                    data: data.to_vec(),
                    keyframe: false,
                    timestamp_ms: Some(n as f64 * 10.0),
                }],
            )
        };
        let _ = send(&idr, n);
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            if send(&pics[n as usize % pics.len()], n).is_err() {
                break;
            }
        }
        n
    })
}

/// Received-packet count over `window` from a counter the receiver advances.
fn rate(counter: impl Fn() -> u64, window: Duration) -> f64 {
    let c0 = counter();
    let t0 = Instant::now();
    std::thread::sleep(window);
    (counter() - c0) as f64 / t0.elapsed().as_secs_f64()
}

fn receive(c: &mut Criterion) {
    let window = Duration::from_secs(2);

    // The engine: B's video stream does all of its work on every packet.
    let p = pair(0);
    let a = Arc::new(p.a);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = blast(a.clone(), p.a_id, stop.clone());
    std::thread::sleep(Duration::from_millis(200));
    let b = &p.b;
    let b_id = p.b_id;
    let engine_count = || b.stats(b_id).unwrap().video.unwrap().packets_received;
    let drain = p.arrivals.clone();
    let drainer = std::thread::spawn(move || while drain.recv().is_ok() {});
    let engine_pps = rate(engine_count, window);
    let mut g = c.benchmark_group("receive");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("engine_10k_packets", |bch| {
        bch.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let start = engine_count();
                while engine_count() < start + 10_000 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            t0.elapsed()
        })
    });

    // The baseline: the same sender, aimed at a bare socket drained by recvmmsg.
    let sock = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let plain_addr = sock.local_addr();
    let plain_count = Arc::new(AtomicU64::new(0));
    let plain_stop = Arc::new(AtomicBool::new(false));
    let (pc, ps) = (plain_count.clone(), plain_stop.clone());
    let plain = std::thread::spawn(move || {
        let mut batch = RecvBatch::new(64, 2048);
        while !ps.load(Ordering::Relaxed) {
            if let Ok(n) = batch.recv(&sock, Wait::ForOne) {
                pc.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    });
    a.update_remote(p.a_id, None, Some(plain_addr)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let plain_counter = || plain_count.load(Ordering::Relaxed);
    let plain_pps = rate(plain_counter, window);
    g.bench_function("plain_recvmmsg_10k_packets", |bch| {
        bch.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let start = plain_counter();
                while plain_counter() < start + 10_000 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            t0.elapsed()
        })
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    let pictures = sender.join().unwrap();
    plain_stop.store(true, Ordering::Relaxed);
    plain.join().unwrap();
    drop(p.b);
    drainer.join().unwrap();
    println!(
        "receive: engine {:.0} packets/s, plain recvmmsg {:.0} packets/s, engine/plain = {:.1}% \
         ({pictures} pictures sent)",
        engine_pps,
        plain_pps,
        100.0 * engine_pps / plain_pps
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = latency, receive
}
criterion_main!(benches);
