//! SRTP cost per packet: protect + unprotect (sender and receiver contexts, replay check on) of
//! an audio-sized (172 bytes: 12 header + 160 payload) and a video-sized (1,200 bytes) RTP
//! packet, per suite, against the plain copy a packet costs without SRTP. Criterion reports
//! packets/s (elements) and bytes/s for one core.
//!
//! After criterion, a summary measured the way bench/libsrtp.c measures libsrtp (bench/libsrtp.sh
//! runs both back to back): the median over 15 rounds of the thread's CPU time and of the wall
//! time per protect + unprotect, one line per suite and size (`ours SUITE LEN cpu_ns=N
//! wall_ns=N`); CPU time moves far less than wall time on a shared machine. A `buffers` line per
//! size times what rtc-srtp's fresh output buffers alone cost (two allocations and copies).
//!
//! Run: `cargo bench --bench srtp` (`SRTP_BENCH_SUMMARY_ONLY=1` skips criterion).

use std::time::Instant;

#[path = "cpu.rs"]
mod cpu;

use cpu::{median, thread_cpu_ns};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use roomkit_media::rtp::srtp::{SrtpKey, SrtpReceiver, SrtpSender, SrtpSuite};

fn packet(len: usize) -> Vec<u8> {
    let mut p = vec![0x5a; len];
    p[..12].copy_from_slice(&[0x80, 96, 0, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44]);
    p
}

fn srtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp_protect_unprotect");
    for len in [172usize, 1200] {
        g.throughput(Throughput::Bytes(len as u64));
        let mut plain = packet(len);
        let mut seq = 0u16;
        g.bench_with_input(BenchmarkId::new("plain_copy", len), &len, |b, _| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                plain[2..4].copy_from_slice(&seq.to_be_bytes());
                std::hint::black_box(plain.clone())
            })
        });
        for suite in SrtpSuite::ALL {
            let key = SrtpKey::from_os_rng(suite);
            let mut tx = SrtpSender::new(&key).unwrap();
            let mut rx = SrtpReceiver::new(&key).unwrap();
            let mut p = packet(len);
            let mut seq = 0u16;
            g.bench_with_input(BenchmarkId::new(suite.sdp_name(), len), &len, |b, _| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    p[2..4].copy_from_slice(&seq.to_be_bytes());
                    let protected = tx.protect_rtp(&p).unwrap();
                    std::hint::black_box(rx.unprotect_rtp(&protected).unwrap())
                })
            });
        }
    }
    g.finish();
}

/// Rounds of the summary, and packets before the first (the same as bench/libsrtp.c).
const ROUNDS: usize = 15;
const WARMUP: u64 = 20_000;

/// Median CPU and wall nanoseconds per call of `step` (after a warm-up of `WARMUP` calls).
fn timed(per_round: u64, mut step: impl FnMut()) -> (f64, f64) {
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let n = if round == 0 { WARMUP } else { per_round };
        let (c0, w0) = (thread_cpu_ns(), Instant::now());
        for _ in 0..n {
            step();
        }
        if round > 0 {
            cpu.push((thread_cpu_ns() - c0) / n as f64);
            wall.push(w0.elapsed().as_nanos() as f64 / n as f64);
        }
    }
    (median(cpu), median(wall))
}

/// Median CPU and wall nanoseconds per protect + unprotect of a `len`-byte packet.
fn per_packet(suite: SrtpSuite, len: usize, per_round: u64) -> (f64, f64) {
    let key = SrtpKey::from_os_rng(suite);
    let mut tx = SrtpSender::new(&key).unwrap();
    let mut rx = SrtpReceiver::new(&key).unwrap();
    let mut p = packet(len);
    let mut seq = 0u16;
    timed(per_round, || {
        seq = seq.wrapping_add(1);
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        let protected = tx.protect_rtp(&p).unwrap();
        let plain = rx.unprotect_rtp(&protected).unwrap();
        assert_eq!(plain.len(), len);
        std::hint::black_box(plain);
    })
}

/// What rtc-srtp's fresh output buffers cost per protect + unprotect, measured alone: two
/// allocations of the packet's size, each filled with a copy of it, then freed (hot in cache
/// here; the send/receive path touches them colder).
fn buffers_alone(len: usize, per_round: u64) -> (f64, f64) {
    let p = packet(len + 16);
    timed(per_round, || {
        let out = std::hint::black_box(p.to_vec());
        std::hint::black_box(out[..len].to_vec());
    })
}

fn summary() {
    println!(
        "load {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    for len in [172usize, 1200] {
        for suite in SrtpSuite::ALL {
            let (cpu, wall) = per_packet(suite, len, if len > 500 { 20_000 } else { 40_000 });
            println!(
                "ours    {:<23} {len:>5} cpu_ns={cpu:.0} wall_ns={wall:.0}",
                suite.sdp_name()
            );
        }
        let (cpu, wall) = buffers_alone(len, if len > 500 { 20_000 } else { 40_000 });
        println!(
            "buffers {:<23} {len:>5} cpu_ns={cpu:.0} wall_ns={wall:.0}",
            "two allocations + copies"
        );
    }
}

criterion_group!(benches, srtp);

fn main() {
    if std::env::var_os("SRTP_BENCH_SUMMARY_ONLY").is_none() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    summary();
}
