//! Congestion control through the engine on real sockets: two RTP video backends with
//! `ResilienceConfig::congestion` on (both ends configured alike), video over loopback. The
//! receiver's transport-cc feedback reaches the sender, the estimate shows in its stats and the
//! application hears of it through `on_target_bitrate`.

use crate::support;

use std::time::Duration;

use roomkit_media::backend::{
    CongestionConfig, ConnectOptions, ResilienceConfig, RtpBackendConfig, RtpVideoBackend,
};
use roomkit_media::prelude::*;
use support::rtp::{collect, connect_each_other, h264_picture, loopback_config, recv_n};

fn with_cc() -> RtpBackendConfig {
    loopback_config(RtpBackendConfig {
        resilience: ResilienceConfig {
            congestion: CongestionConfig {
                enabled: true,
                start_bps: 2_000_000,
                ..CongestionConfig::default()
            },
            ..ResilienceConfig::default()
        },
        ..RtpBackendConfig::default()
    })
}

#[test]
fn feedback_flows_between_backends_and_the_estimate_shows_in_stats() {
    let a = RtpVideoBackend::new(with_cc()).unwrap();
    let b = RtpVideoBackend::new(with_cc()).unwrap();
    let b_rx = collect(&b);
    let (target_tx, targets) = crossbeam_channel::unbounded();
    a.on_target_bitrate(move |id, bps, reason| {
        let _ = target_tx.send((id, bps, reason));
    });
    let (sa, sb) = connect_each_other(
        &a,
        &b,
        |audio, video| ConnectOptions::to(audio, Some(video)),
        |audio, video| ConnectOptions::to(audio, Some(video)),
    );
    // 2 s at 30 fps, about 0.8 Mbit/s: well within the 2 Mbit/s start and a loopback link.
    let pictures: Vec<Vec<u8>> = (0..60)
        .map(|i| h264_picture(i == 0, if i == 0 { 6_000 } else { 3_000 }, i))
        .collect();
    for p in &pictures {
        a.send_video(sa.id, p).unwrap();
        std::thread::sleep(Duration::from_millis(33));
    }
    let frames = recv_n(&b_rx.video, pictures.len(), Duration::from_secs(3));
    // Let the last feedback come back.
    std::thread::sleep(Duration::from_millis(300));
    let sent = a.stats(sa.id).unwrap().video.unwrap();
    let got = b.stats(sb.id).unwrap().video.unwrap();
    println!(
        "{} of {} pictures; feedback {} sent, {} used; estimate {} bit/s, pacer {} bit/s, {} \
         pictures dropped by the sender",
        frames.len(),
        pictures.len(),
        got.cc_feedback_sent,
        sent.cc_feedback_received,
        sent.cc_target_bps,
        sent.cc_pacer_rate_bps,
        sent.cc_pictures_dropped
    );
    // Every picture that arrives is one that was sent, whole.
    for (_, f) in &frames {
        assert!(pictures.contains(&f.data));
    }
    // Floors with room for a loaded machine: feedback is due every 50 ms over 2 s.
    assert!(frames.len() >= 30, "{} pictures", frames.len());
    assert!(got.cc_feedback_sent >= 10, "{got:?}");
    assert!(sent.cc_feedback_received >= 10, "{sent:?}");
    assert!(
        sent.cc_target_bps >= 50_000 && sent.cc_pacer_rate_bps > 0,
        "{sent:?}"
    );
    assert_eq!(got.malformed, 0);
    // The application heard of the estimate's moves, the last one near where it is now.
    let heard: Vec<_> = targets.try_iter().collect();
    println!("targets heard: {heard:?}");
    // (No call at all is right only if the estimate never left 5 % of the start.)
    let (id, last) = heard
        .last()
        .map_or((sa.id, 2_000_000), |&(id, b, _)| (id, b));
    assert_eq!(id, sa.id);
    assert!(
        last.abs_diff(sent.cc_target_bps) as f64 <= sent.cc_target_bps as f64 * 0.06,
        "{last} vs {}",
        sent.cc_target_bps
    );
}
