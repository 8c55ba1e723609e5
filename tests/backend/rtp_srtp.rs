//! Two RTP video backends keyed by the application (SDES-style keys given to `connect`): video
//! goes over SRTP on loopback and arrives bit-exact under every suite; a receiver with the wrong
//! key delivers nothing and counts the authentication failures.

use crate::support;

use std::time::Duration;

use roomkit_media::backend::{ConnectOptions, RtpBackendConfig, RtpVideoBackend};
use roomkit_media::prelude::*;
use roomkit_media::{SrtpKey, SrtpKeys, SrtpSuite};
use support::rtp::{collect, connect_each_other, h264_picture, loopback_config, recv_n};

/// A and B connected to each other; A's sending keys are B's receiving keys unless `wrong`.
fn secured_pair(
    suite: SrtpSuite,
    wrong: bool,
) -> (
    RtpVideoBackend,
    RtpVideoBackend,
    SessionId,
    support::rtp::Rx,
    SessionInfo,
) {
    let cfg = loopback_config(RtpBackendConfig::default());
    let a = RtpVideoBackend::new(cfg.clone()).unwrap();
    let b = RtpVideoBackend::new(cfg).unwrap();
    let b_rx = collect(&b);
    let keys = |send: &SrtpKey, recv: &SrtpKey| SrtpKeys {
        send: send.clone(),
        recv: recv.clone(),
    };
    let (ka, kb, kv_a, kv_b) = (
        SrtpKey::from_os_rng(suite),
        SrtpKey::from_os_rng(suite),
        SrtpKey::from_os_rng(suite),
        SrtpKey::from_os_rng(suite),
    );
    let stranger = SrtpKey::from_os_rng(suite);
    let b_video_recv = if wrong { &stranger } else { &kv_a };
    let (sa, sb) = connect_each_other(
        &a,
        &b,
        |audio, video| ConnectOptions {
            srtp: Some(keys(&ka, &kb)),
            video_srtp: Some(keys(&kv_a, &kv_b)),
            ..ConnectOptions::to(audio, Some(video))
        },
        |audio, video| ConnectOptions {
            srtp: Some(keys(&kb, &ka)),
            video_srtp: Some(keys(&kv_b, b_video_recv)),
            ..ConnectOptions::to(audio, Some(video))
        },
    );
    (a, b, sa.id, b_rx, sb)
}

#[test]
fn video_over_srtp_arrives_bit_exact_under_every_suite() {
    for suite in SrtpSuite::ALL {
        let (a, b, a_id, b_rx, sb) = secured_pair(suite, false);
        assert_eq!(sb.audio.srtp_suite, Some(suite));
        assert_eq!(sb.video.as_ref().unwrap().srtp_suite, Some(suite));
        let pictures: Vec<Vec<u8>> = (0..6)
            .map(|i| h264_picture(i == 0, if i == 0 { 60_000 } else { 4_000 }, i))
            .collect();
        for p in &pictures {
            a.send_video(a_id, p).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        let frames = recv_n(&b_rx.video, pictures.len(), Duration::from_secs(5));
        assert_eq!(frames.len(), pictures.len(), "{suite}");
        for (i, (_, f)) in frames.iter().enumerate() {
            assert_eq!(f.data, pictures[i], "{suite}: picture {i}");
        }
        let st = b.stats(sb.id).unwrap().video.unwrap();
        assert_eq!(
            (st.srtp_auth_failed, st.malformed),
            (0, 0),
            "{suite}: {st:?}"
        );
    }
}

#[test]
fn a_wrongly_keyed_receiver_delivers_nothing_and_counts_it() {
    let (a, b, a_id, b_rx, sb) = secured_pair(SrtpSuite::AesCm128HmacSha1_80, true);
    for i in 0..3 {
        a.send_video(a_id, &h264_picture(true, 8_000, i)).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(recv_n(&b_rx.video, 1, Duration::from_millis(500)).is_empty());
    let st = b.stats(sb.id).unwrap().video.unwrap();
    assert!(st.srtp_auth_failed >= 3, "{st:?}");
    assert_eq!(st.packets_received, 0);
}
