//! Audio codec cost: G.722 encode and decode of 60 s of 16 kHz speech-like audio, as real-time
//! factor (audio seconds per CPU second) and calls per core (audio seconds per CPU second spent on
//! one encode plus one decode, the work of both directions of a call). ffmpeg's figures for the
//! same clip come from `bench/g722_ffmpeg.sh`, which runs this bench after its own measurements.
//!
//! Run: `cargo bench --bench audio` (needs ffmpeg to make the clip once).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use roomkit_media::codec::g722::{G722Decoder, G722Encoder, G722_SAMPLE_RATE};

/// The clip shared with bench/g722_ffmpeg.sh (which knows how to make it), as 16 kHz samples.
fn clip() -> Vec<i16> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("target/bench-clips/speech-16k-60s.raw");
    if !path.exists() {
        let ok = Command::new("bash")
            .arg(root.join("bench/g722_ffmpeg.sh"))
            .arg("--make-clip")
            .arg(&path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "ffmpeg is needed to make the benchmark clip");
    }
    std::fs::read(&path)
        .unwrap()
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// CPU time this thread has used (user + system), the measure ffmpeg's `-benchmark` reports.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes one plain-data struct that we own, and reads nothing else.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Best CPU time of `runs` runs of `f`.
fn best_cpu(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = thread_cpu();
            f();
            thread_cpu() - start
        })
        .min()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let pcm = clip();
    let seconds = pcm.len() as f64 / f64::from(G722_SAMPLE_RATE);
    let mut coded = Vec::with_capacity(pcm.len() / 2);
    G722Encoder::new().encode(&pcm, &mut coded);
    let mut decoded = Vec::with_capacity(pcm.len());

    let mut g = c.benchmark_group("g722_60s");
    g.throughput(Throughput::Elements(pcm.len() as u64));
    g.sample_size(20);
    // One encoder and one decoder per stream, fed in 20 ms frames as a call would.
    let frame = roomkit_media::codec::g722::samples_for_ms(20);
    g.bench_function(BenchmarkId::new("encode", "roomkit_20ms_frames"), |b| {
        let mut out = Vec::with_capacity(pcm.len() / 2);
        b.iter(|| {
            let mut enc = G722Encoder::new();
            out.clear();
            for f in pcm.chunks(frame) {
                enc.encode(f, &mut out);
            }
            std::hint::black_box(&out);
        })
    });
    g.bench_function(BenchmarkId::new("decode", "roomkit_20ms_frames"), |b| {
        b.iter(|| {
            let mut dec = G722Decoder::new();
            decoded.clear();
            for f in coded.chunks(frame / 2) {
                dec.decode(f, &mut decoded);
            }
            std::hint::black_box(&decoded);
        })
    });
    g.finish();

    // The summary in the units of bench/g722_ffmpeg.sh: CPU time, best of several runs.
    let mut out = Vec::with_capacity(pcm.len() / 2);
    let enc = best_cpu(7, || {
        out.clear();
        G722Encoder::new().encode(&pcm, &mut out);
        std::hint::black_box(&out);
    });
    let dec = best_cpu(7, || {
        decoded.clear();
        G722Decoder::new().decode(&coded, &mut decoded);
        std::hint::black_box(&decoded);
    });
    let (e, d) = (enc.as_secs_f64(), dec.as_secs_f64());
    println!("roomkit g722: {seconds:.0} s of audio, best of 7, thread CPU seconds");
    println!("  encode: {e:.4} s -> real-time factor {:.0}", seconds / e);
    println!("  decode: {d:.4} s -> real-time factor {:.0}", seconds / d);
    println!(
        "  calls per core (one encode + one decode): {:.0}",
        seconds / (e + d)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
