//! What a metrics scrape costs: `metrics_text` on a backend holding N live sessions (each
//! stream's counters read under its lock, summed, and written as Prometheus text), and the
//! writing alone (`render_snapshots` of a snapshot already taken), which does not depend on
//! the number of sessions since no label names one. The sessions are idle RTP sessions aimed
//! at a discard address; their threads sleep, so the figure is the scrape's own work.
//!
//! Run: `cargo bench --bench metrics` (`RKM_BENCH_SESSIONS=N` for another count than 1,000;
//! the video backend gets a quarter as many, each being two streams with their threads).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use roomkit_media::backend::{ConnectOptions, RtpBackendConfig, RtpVideoBackend, RtpVoiceBackend};
use roomkit_media::metrics::{render_snapshots, MetricsFormat, SipMetrics};
use roomkit_media::prelude::*;

fn sessions() -> usize {
    std::env::var("RKM_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn config() -> RtpBackendConfig {
    RtpBackendConfig {
        local_addr: "127.0.0.1:0".parse().unwrap(),
        video_local_addr: "127.0.0.1:0".parse().unwrap(),
        ..RtpBackendConfig::default()
    }
}

fn metrics(c: &mut Criterion) {
    let n = sessions();
    let discard = "127.0.0.1:9".parse().unwrap();
    let voice = RtpVoiceBackend::new(config()).unwrap();
    let t = Instant::now();
    for i in 0..n {
        voice
            .connect("bench", &format!("p{i}"), ConnectOptions::to(discard, None))
            .unwrap();
    }
    eprintln!("{n} audio sessions opened in {:?}", t.elapsed());
    let text = voice.metrics_text("bench");
    eprintln!(
        "scrape text: {} bytes, {} lines",
        text.len(),
        text.lines().count()
    );
    c.bench_function(&format!("metrics/metrics_text {n} audio sessions"), |b| {
        b.iter(|| black_box(voice.metrics_text("bench")))
    });
    // The writing alone, of a SIP backend's whole set of families (the RTP ones plus the
    // signalling counters and the setup histogram).
    let mut snap = voice.metrics();
    snap.sip = Some(SipMetrics::default());
    let full = render_snapshots(&[("bench", snap.clone())], MetricsFormat::Prometheus);
    eprintln!(
        "SIP backend's text: {} bytes, {} lines",
        full.len(),
        full.lines().count()
    );
    c.bench_function(
        "metrics/render_snapshots (writing only, SIP backend)",
        |b| {
            b.iter(|| {
                black_box(render_snapshots(
                    &[("bench", snap.clone())],
                    MetricsFormat::Prometheus,
                ))
            })
        },
    );
    drop(voice);

    let nv = (n / 4).max(1);
    let video = RtpVideoBackend::new(config()).unwrap();
    for i in 0..nv {
        video
            .connect(
                "bench",
                &format!("p{i}"),
                ConnectOptions::to(discard, Some(discard)),
            )
            .unwrap();
    }
    c.bench_function(
        &format!("metrics/metrics_text {nv} audio+video sessions"),
        |b| b.iter(|| black_box(video.metrics_text("bench"))),
    );
}

criterion_group!(benches, metrics);
criterion_main!(benches);
