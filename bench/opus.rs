//! Opus encode and decode cost through our wrapper (libopus), and the resampler's, on 10 s of a
//! speech-like signal at 48 kHz mono: 20 ms frames, VoIP application, 32 kbit/s, in-band FEC on.
//! ffmpeg's libopus on the same input comes from `bench/opus_ffmpeg.sh`.
//!
//! Each benchmark runs one 20 ms frame per iteration (the stream continues across iterations,
//! as in a call), so criterion's time is the cost of one frame. From it:
//! - real-time factor = 20 ms / time per frame (how many times faster than real time);
//! - calls per core = 20 ms / (encode + decode time per frame): a call sends one stream and
//!   receives one, so each 20 ms a core spends one encode and one decode on it. With a 16 kHz
//!   app behind a 48 kHz codec, add one 16→48 kHz and one 48→16 kHz resampling per call
//!   (the `resample_*` benchmarks), or run libopus at 16 kHz, which converts internally
//!   (`encode/16000`, `decode/16000`).
//!
//! The summary printed at the end uses CPU time per frame (comparable with ffmpeg's utime, and
//! steady on a shared machine); criterion's own figures are wall-clock.
//!
//! Run: `cargo bench --bench opus` (needs ffmpeg to make the input once).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use roomkit_media::codec::opus::parse_packet;
use roomkit_media::codec::opus::{libopus_version, OpusApplication, OpusDecoder, OpusEncoder};
use roomkit_media::codec::resample::Resampler;

#[path = "../tests/support/ogg.rs"]
#[allow(dead_code)]
mod ogg;

const FRAME_MS: f64 = 20.0;

fn clips() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-clips")
}

/// The input shared with bench/opus_ffmpeg.sh: 10 s at 48 kHz mono, s16le, made by that script
/// on first use (a voiced tone with vibrato and harmonics, a syllable-rate envelope, some noise),
/// together with ffmpeg's libopus encoding of it, whose packets are returned too.
fn input() -> (Vec<i16>, Vec<Vec<u8>>) {
    let raw = clips().join("speechlike-48k-10s.raw");
    let theirs = clips().join("ffmpeg-libopus-32k.opus");
    if !raw.exists() || !theirs.exists() {
        let status = Command::new("bash")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/opus_ffmpeg.sh"))
            .arg("--make-input-only")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(status, "ffmpeg is needed to make the benchmark input");
    }
    let pcm = std::fs::read(&raw)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    // The first two Ogg packets are the OpusHead and OpusTags headers.
    let packets = ogg::read_packets(&std::fs::read(&theirs).unwrap()).split_off(2);
    (pcm, packets)
}

/// Writes our packets as Ogg Opus for bench/opus_ffmpeg.sh to time ffmpeg decoding them.
fn write_ours(packets: &[Vec<u8>], pre_skip: usize) {
    let mut w = ogg::Writer::new(1, pre_skip as u16, 48_000);
    let mut granule = 0u64;
    for (i, p) in packets.iter().enumerate() {
        granule += parse_packet(p).unwrap().samples_48k as u64;
        w.packet(p, granule, i + 1 == packets.len());
    }
    std::fs::write(clips().join("roomkit-opus-32k.opus"), w.finish()).unwrap();
}

/// The input at `rate`, through our resampler (for the 16 kHz benchmarks).
fn at_rate(pcm: &[i16], rate: u32) -> Vec<i16> {
    let mut r = Resampler::new(48_000, rate).unwrap();
    let mut out = Vec::new();
    r.process(pcm, &mut out);
    out
}

fn encoder(rate: u32) -> OpusEncoder {
    let mut e = OpusEncoder::new(rate, 1, OpusApplication::Voip).unwrap();
    e.set_bitrate(32_000).unwrap();
    e
}

fn packets(pcm: &[i16], rate: u32) -> Vec<Vec<u8>> {
    let mut e = encoder(rate);
    pcm.chunks_exact(rate as usize / 50)
        .map(|f| {
            let mut p = Vec::new();
            e.encode(f, &mut p).unwrap();
            p
        })
        .collect()
}

/// CPU time this thread has used so far: unlike wall time it does not grow while other
/// processes hold the core, and it is what `ffmpeg -benchmark` reports (utime).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Mean CPU time per frame of `f` over all frames, repeated for about a second of CPU time:
/// the summary's own measurement (criterion's wall-clock figures are printed as it runs).
fn per_frame(frames: usize, mut f: impl FnMut(usize)) -> Duration {
    let start = thread_cpu_time();
    let mut n = 0;
    while thread_cpu_time() - start < Duration::from_secs(1) {
        for i in 0..frames {
            f(i);
        }
        n += frames;
    }
    (thread_cpu_time() - start) / n as u32
}

fn bench(c: &mut Criterion) {
    let (pcm48, ffmpeg_packets) = input();
    let pcm16 = at_rate(&pcm48, 16_000);
    let pk48 = packets(&pcm48, 48_000);
    write_ours(&pk48, encoder(48_000).lookahead().unwrap());
    let pk16 = packets(&pcm16, 16_000);
    let bytes: usize = pk48.iter().map(Vec::len).sum();
    eprintln!(
        "{}: {} frames of 20 ms, 48 kHz mono, {:.1} kbit/s",
        libopus_version(),
        pk48.len(),
        bytes as f64 * 8.0 / (pk48.len() as f64 * FRAME_MS)
    );

    let mut g = c.benchmark_group("opus_20ms_mono_voip_32k");
    for (rate, pcm, pk) in [(48_000u32, &pcm48, &pk48), (16_000, &pcm16, &pk16)] {
        let frame = rate as usize / 50;
        let frames: Vec<&[i16]> = pcm.chunks_exact(frame).collect();
        g.bench_function(BenchmarkId::new("encode", rate), |b| {
            let mut e = encoder(rate);
            let mut out = Vec::with_capacity(4000);
            let mut i = 0;
            b.iter(|| {
                out.clear();
                e.encode(frames[i % frames.len()], &mut out).unwrap();
                i += 1;
            })
        });
        g.bench_function(BenchmarkId::new("decode", rate), |b| {
            let mut d = OpusDecoder::new(rate, 1).unwrap();
            let mut out = Vec::with_capacity(5760);
            let mut i = 0;
            b.iter(|| {
                out.clear();
                d.decode(&pk[i % pk.len()], &mut out).unwrap();
                i += 1;
            })
        });
    }
    g.bench_function("decode_ffmpeg_packets/48000", |b| {
        // The packets ffmpeg's libopus wrote from the same input, through our decoder.
        let mut d = OpusDecoder::new(48_000, 1).unwrap();
        let mut out = Vec::with_capacity(5760);
        let mut i = 0;
        b.iter(|| {
            out.clear();
            d.decode(&ffmpeg_packets[i % ffmpeg_packets.len()], &mut out)
                .unwrap();
            i += 1;
        })
    });
    g.bench_function("conceal/48000", |b| {
        let mut d = OpusDecoder::new(48_000, 1).unwrap();
        let mut out = Vec::with_capacity(960);
        d.decode(&pk48[100], &mut out).unwrap();
        b.iter(|| {
            out.clear();
            d.conceal(960, &mut out).unwrap();
        })
    });
    g.bench_function("decode_fec/48000", |b| {
        let mut d = OpusDecoder::new(48_000, 1).unwrap();
        let mut out = Vec::with_capacity(960);
        let mut i = 0;
        b.iter(|| {
            out.clear();
            d.decode_fec(&pk48[i % pk48.len()], 960, &mut out).unwrap();
            i += 1;
        })
    });
    g.finish();

    let mut g = c.benchmark_group("resample_20ms_mono");
    for (from, to, src) in [
        (16_000u32, 48_000u32, &pcm16),
        (48_000, 16_000, &pcm48),
        (16_000, 8_000, &pcm16),
        (8_000, 16_000, &at_rate(&pcm48, 8_000)),
    ] {
        let frames: Vec<&[i16]> = src.chunks_exact(from as usize / 50).collect();
        g.bench_function(format!("{from}_to_{to}"), |b| {
            let mut r = Resampler::new(from, to).unwrap();
            let mut out = Vec::with_capacity(960);
            let mut i = 0;
            b.iter(|| {
                out.clear();
                r.process(frames[i % frames.len()], &mut out);
                i += 1;
            })
        });
    }
    g.finish();

    // The summary: real-time factors and calls per core from CPU time per frame.
    let mut lines = Vec::new();
    let mut codec48 = Duration::ZERO;
    let rtf = |t: Duration| FRAME_MS / (t.as_secs_f64() * 1000.0);
    for (rate, pcm, pk) in [(48_000u32, &pcm48, &pk48), (16_000, &pcm16, &pk16)] {
        let frames: Vec<&[i16]> = pcm.chunks_exact(rate as usize / 50).collect();
        let mut e = encoder(rate);
        let mut d = OpusDecoder::new(rate, 1).unwrap();
        let mut out = Vec::with_capacity(4000);
        let mut pcm_out = Vec::with_capacity(960);
        let enc = per_frame(frames.len(), |i| {
            out.clear();
            e.encode(frames[i], &mut out).unwrap();
        });
        let dec = per_frame(pk.len(), |i| {
            pcm_out.clear();
            d.decode(&pk[i], &mut pcm_out).unwrap();
        });
        if rate == 48_000 {
            codec48 = enc + dec;
        }
        lines.push(format!(
            "opus {rate} Hz: encode {:.1} µs/frame (x{:.0} real time), decode {:.1} µs/frame \
             (x{:.0}), calls per core {:.0}",
            enc.as_secs_f64() * 1e6,
            rtf(enc),
            dec.as_secs_f64() * 1e6,
            rtf(dec),
            rtf(enc + dec)
        ));
    }
    let mut d = OpusDecoder::new(48_000, 1).unwrap();
    let mut pcm_out = Vec::with_capacity(5760);
    let dec_theirs = per_frame(ffmpeg_packets.len(), |i| {
        pcm_out.clear();
        d.decode(&ffmpeg_packets[i], &mut pcm_out).unwrap();
    });
    lines.push(format!(
        "opus 48000 Hz: decode of ffmpeg's packets {:.1} µs/frame (x{:.0})",
        dec_theirs.as_secs_f64() * 1e6,
        rtf(dec_theirs)
    ));
    let mut up = Resampler::new(16_000, 48_000).unwrap();
    let mut down = Resampler::new(48_000, 16_000).unwrap();
    let f16: Vec<&[i16]> = pcm16.chunks_exact(320).collect();
    let f48: Vec<&[i16]> = pcm48.chunks_exact(960).collect();
    let mut out = Vec::with_capacity(960);
    let t_up = per_frame(f16.len(), |i| {
        out.clear();
        up.process(f16[i], &mut out);
    });
    let t_down = per_frame(f48.len(), |i| {
        out.clear();
        down.process(f48[i], &mut out);
    });
    lines.push(format!(
        "resample 16->48 kHz {:.1} µs/frame, 48->16 kHz {:.1} µs/frame; a 16 kHz app on the \
         48 kHz codec: calls per core {:.0}",
        t_up.as_secs_f64() * 1e6,
        t_down.as_secs_f64() * 1e6,
        rtf(codec48 + t_up + t_down)
    ));
    for l in lines {
        println!("{l}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
