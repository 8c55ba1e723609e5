//! Loss recovery on a simulated path: two stream cores on virtual time, 20 ± 3 ms each way
//! (40 ms RTT), 1 % reordering and 1 % duplicates, at 0, 1, 3 and 10 % random loss in both
//! directions (media, NACKs and retransmissions alike). The sender is a file: a key picture every
//! 30 pictures (about 100 packets), 5 to 15 packets otherwise, 30 fps, and it never answers a
//! keyframe request.
//!
//! Prints, per loss rate, over several seeds: the share of pictures delivered intact (byte for
//! byte), corrupt pictures delivered (must be 0), the added latency of delivered pictures beyond
//! the path's 20 ms one-way delay (p50, p99), and how long the pacer held key pictures.
//!
//! Run: `cargo bench --bench resilience` (virtual time: it takes seconds, not minutes). With
//! `-- --rtx` the streams retransmit as RFC 4588 RTX instead of resending the original packets.

use std::time::{Duration, Instant};

use roomkit_media::rtp::config::{CoreConfig, MediaParams, VideoParams};
use roomkit_media::rtp::rtx::RtxConfig;
use roomkit_media::rtp::sim::{play_clip, FileClip, PathConfig, SimPair, SimPath};

const PICTURES: usize = 900;
/// Seeds per row unless `RKM_BENCH_SEEDS` says otherwise.
const SEEDS: u64 = 16;
const ONE_WAY: Duration = Duration::from_millis(20);

fn config(rtx: bool) -> CoreConfig {
    CoreConfig {
        media: MediaParams::Video(VideoParams {
            rtx: rtx.then_some(RtxConfig {
                payload_type: 97,
                apt: 96,
                ssrc: None,
            }),
            ..VideoParams::default()
        }),
        ..CoreConfig::default()
    }
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let rtx = std::env::args().any(|a| a == "--rtx");
    let seeds: u64 = std::env::var("RKM_BENCH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(SEEDS);
    println!(
        "resilience: {PICTURES} pictures x {seeds} seeds per row, 40 ms RTT, file sender (key every 30), {}",
        if rtx { "RTX" } else { "plain retransmission" }
    );
    println!(
        "{:>6} {:>9} {:>8} {:>10} {:>10} {:>10} {:>14} {:>14} {:>10} {:>10}",
        "loss",
        "intact",
        "corrupt",
        "p50 ms",
        "p99 ms",
        "max ms",
        "key pacer p50",
        "key pacer max",
        "nacks",
        "resent"
    );
    let wall = Instant::now();
    for loss in [0.0, 0.01, 0.03, 0.10] {
        let mut intact = 0;
        let mut sent = 0;
        let mut corrupt = 0;
        let mut added = Vec::new();
        let mut pacer = Vec::new();
        let (mut nacks, mut resent) = (0, 0);
        for seed in 0..seeds {
            let path = PathConfig::lossy(loss);
            let mut pair = SimPair::new(
                Instant::now(),
                config(rtx),
                config(rtx),
                SimPath::new(path, 1000 + seed * 2),
                SimPath::new(path, 1001 + seed * 2),
                seed,
            )
            .expect("valid configuration");
            let clip = FileClip::new(PICTURES, 30, seed);
            let r = play_clip(&mut pair, &clip, Duration::from_secs(2));
            assert!(r.in_order, "pictures out of order at {loss}");
            intact += r.intact;
            sent += r.sent;
            corrupt += r.corrupt;
            added.extend(r.latencies.iter().map(|l| l.saturating_sub(ONE_WAY)));
            pacer.extend(r.key_pacer_delays);
            nacks += pair.b.core.stats().nack_sent;
            resent += pair.a.core.stats().retransmitted;
        }
        added.sort();
        pacer.sort();
        println!(
            "{:>5.0}% {:>8.2}% {:>8} {:>10.1} {:>10.1} {:>10.1} {:>14.1} {:>14.1} {:>10} {:>10}",
            loss * 100.0,
            100.0 * intact as f64 / sent as f64,
            corrupt,
            ms(pct(&added, 0.5)),
            ms(pct(&added, 0.99)),
            ms(pct(&added, 1.0)),
            ms(pct(&pacer, 0.5)),
            ms(pct(&pacer, 1.0)),
            nacks,
            resent
        );
    }
    println!(
        "(simulated {} s of media in {:.1} s)",
        PICTURES as u64 * seeds * 4 / 30,
        wall.elapsed().as_secs_f64()
    );
}
