//! Congestion control with audio beside the video, over real sockets (issue 17 item 2, "per
//! session across its audio and video streams"). Audio and video are separate transports (no
//! BUNDLE) through one `netsim` bottleneck: 1.5 Mbit/s, 300 ms queue, 20 ms one way (both pipes
//! share the model of each direction, as they would share an access link). Only video runs
//! congestion control; audio (passed through, 20 ms packets) stamps nothing. Its packets still
//! build the bottleneck queue, so the video estimate settles on what audio leaves: the same run
//! without audio shows the difference.

use crate::support;

use std::time::{Duration, Instant};

use roomkit_media::backend::{
    CongestionConfig, ConnectOptions, ResilienceConfig, RtpBackendConfig, RtpVideoBackend,
};
use roomkit_media::prelude::*;
use support::netsim::{field, Netsim, Path};
use support::rtp::{h264_picture, loopback_config};

const LINK_BPS: f64 = 1_500_000.0;
const SECONDS: u64 = 12;
/// The estimate is averaged from here on.
const SETTLED: Duration = Duration::from_secs(6);
/// "Audio": 750-byte payloads every 20 ms (about 0.3 Mbit/s on the link with RTP headers), so
/// its share stands well above the estimate's wobble.
const AUDIO_PAYLOAD: usize = 750;
const AUDIO_BPS: f64 = (AUDIO_PAYLOAD + 12) as f64 * 8.0 * 50.0;

fn config() -> RtpBackendConfig {
    loopback_config(RtpBackendConfig {
        rtcp_mux: true,
        // A dynamic type the engine does not code: payloads pass through as given.
        payload_type: 100,
        clock_rate: 48_000,
        resilience: ResilienceConfig {
            congestion: CongestionConfig {
                enabled: true,
                start_bps: 1_000_000,
                ..CongestionConfig::default()
            },
            ..ResilienceConfig::default()
        },
        ..RtpBackendConfig::default()
    })
}

/// One run: a picture source that follows the estimate (and audio when `audio`) for
/// [`SECONDS`]; the sender's
/// mean estimate after [`SETTLED`] and netsim's closing line.
fn run(audio: bool) -> (f64, String) {
    let a = RtpVideoBackend::new(config()).unwrap();
    let b = RtpVideoBackend::new(config()).unwrap();
    let placeholder = "127.0.0.1:9".parse().unwrap();
    let sb = b
        .connect(
            "room",
            "b",
            ConnectOptions::to(placeholder, Some(placeholder)),
        )
        .unwrap();
    let b_video = sb.video.as_ref().unwrap().local_addr;
    let clean = Path {
        loss_pct: 0.0,
        delay_ms: 20,
        jitter_ms: 0,
        reorder_pct: 0.0,
        duplicate_pct: 0.0,
        seed: 3,
    };
    let mut net = Netsim::start_with(
        &[
            format!("127.0.0.1:0={}", sb.audio.local_addr),
            format!("127.0.0.1:0={b_video}"),
        ],
        &clean,
        &[
            "--rate-kbps",
            "1500",
            "--queue-ms",
            "300",
            "--settle",
            &SETTLED.as_secs().to_string(),
        ],
        SECONDS as u32 + 20,
    );
    let [(a_audio, b_audio_via), (a_video, b_video_via)] = [net.pipes[0], net.pipes[1]];
    b.update_remote(sb.id, Some(b_audio_via), Some(b_video_via))
        .unwrap();
    let sa = a
        .connect("room", "a", ConnectOptions::to(a_audio, Some(a_video)))
        .unwrap();

    let start = Instant::now();
    let frame = Duration::from_secs(1) / 30;
    let tick = Duration::from_millis(20);
    let (mut next_picture, mut next_audio, mut next_sample) = (start, start, start + SETTLED);
    let (mut i, mut samples) = (0u32, Vec::new());
    let payload = vec![0x5a; AUDIO_PAYLOAD];
    let end = start + Duration::from_secs(SECONDS);
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_picture {
            // An encoder that follows the target (pictures of target / 30 fps; a key picture,
            // no larger, every 15), as `on_target_bitrate` asks an application to.
            let target = a
                .stats(sa.id)
                .ok()
                .and_then(|s| s.video)
                .map_or(1_000_000, |v| v.cc_target_bps);
            let bytes = (target / 8 / 30).max(1_000) as usize;
            let _ = a.send_video(sa.id, &h264_picture(i % 15 == 0, bytes, i));
            i += 1;
            next_picture += frame;
        }
        if audio && now >= next_audio {
            let _ = a.send_audio_payload(sa.id, &payload, 20);
            next_audio += tick;
        }
        if now >= next_sample {
            if let Some(v) = a.stats(sa.id).ok().and_then(|s| s.video) {
                samples.push(v.cc_target_bps as f64);
            }
            next_sample += Duration::from_millis(100);
        }
        let due = next_picture
            .min(if audio { next_audio } else { end })
            .min(next_sample)
            .min(end);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let stats = a.stats(sa.id).unwrap();
    let (v, au) = (stats.video.unwrap(), stats.audio);
    let _ = a.disconnect(sa.id);
    let _ = b.disconnect(sb.id);
    let path = net.stop();
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    println!(
        "audio {audio}: video estimate {mean:.0} bit/s over {} samples (ends {}), {} pictures \
         dropped by the sender, {} feedback used; audio packets sent {}; path {path}",
        samples.len(),
        v.cc_target_bps,
        v.cc_pictures_dropped,
        v.cc_feedback_received,
        au.packets_sent
    );
    assert!(v.cc_feedback_received >= 50, "{v:?}");
    (mean, path)
}

#[test]
fn the_video_estimate_leaves_room_for_audio_on_its_own_transport() {
    let (alone, _) = run(false);
    let (beside, path) = run(true);
    let fw = path.find("\"forward\"").expect(&path);
    let settled_p95 = field(&path, fw, "queue_delay_settled_p95_ms");
    println!(
        "video alone {alone:.0} bit/s; beside {AUDIO_BPS:.0} bit/s of audio {beside:.0} bit/s \
         (together {:.0}); settled queue p95 {settled_p95} ms",
        beside + AUDIO_BPS
    );
    // Floors with margins for a loaded machine (two separate real-time runs: only the order of
    // the estimates is compared across them): alone, video finds most of the link...
    assert!(alone >= 0.6 * LINK_BPS, "alone {alone}");
    // ...beside audio it settles lower (1.10-1.14 against 1.28-1.44 Mbit/s in our runs), and the
    // two together fit the link.
    assert!(beside < alone, "{beside} vs {alone}");
    assert!(
        beside + AUDIO_BPS <= 1.15 * LINK_BPS,
        "{beside} + {AUDIO_BPS}"
    );
    // Within the run beside audio, the proof that video leaves audio its room: the queue drops
    // (next to) nothing. A video that took the link as if alone (1.28-1.44 Mbit/s) would offer
    // about 0.1-0.25 Mbit/s more than the link for the 6 s after settling, 0.5-1.5 Mbit against
    // the 0.45 Mbit the 300 ms queue holds. How high the queue stands is reported, not asserted:
    // it often stands higher than with video alone (settled p95 45-288 ms against 48-74 in our
    // runs), since the delay-based detector reacts to a growing queue, not to one that stands
    // still, and the margin audio leaves drains it slowly. A known limit, in the README.
    let (packets, dropped) = (
        field(&path, fw, "packets"),
        field(&path, fw, "queue_dropped"),
    );
    assert!(
        dropped * 100 <= packets,
        "{dropped} of {packets} dropped at the queue (settled queue p95 {settled_p95} ms)"
    );
}
