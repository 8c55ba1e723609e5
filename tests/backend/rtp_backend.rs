//! Two RTP video backends in one process, on loopback: audio, video, DTMF and keyframe requests
//! go both ways and arrive exactly as sent.

use crate::support;

use std::time::Duration;

use roomkit_media::backend::RtpBackendConfig;
use roomkit_media::codec::g711::G711;
use roomkit_media::engine::KeyframeRequest;
use roomkit_media::prelude::*;
use roomkit_media::{VideoChunk, VideoCodec};
use support::rtp::{h264_picture, pair, recv_n, Pair};

#[test]
fn video_arrives_bit_exact_with_keyframe_sequence_and_timestamp() {
    let Pair {
        a,
        b,
        a_id,
        b_id,
        b_rx,
        ..
    } = pair(RtpBackendConfig::default());
    // An IDR picture (SPS + PPS + ~100 KB IDR), then P pictures, 30 fps.
    let pictures: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            h264_picture(
                i == 0 || i == 6,
                if i == 0 || i == 6 { 100_000 } else { 5_000 },
                i,
            )
        })
        .collect();
    let chunks = pictures.iter().enumerate().map(|(i, p)| VideoChunk {
        data: p.clone(),
        keyframe: i == 0 || i == 6,
        timestamp_ms: Some(1000.0 + i as f64 * 100.0 / 3.0),
    });
    a.send_video_chunks(a_id, chunks).unwrap();
    let frames = recv_n(&b_rx.video, pictures.len(), Duration::from_secs(5));
    assert_eq!(frames.len(), pictures.len(), "frames received");
    for (i, (id, f)) in frames.iter().enumerate() {
        assert_eq!(*id, b_id);
        assert_eq!(f.data, pictures[i], "picture {i} differs");
        assert_eq!(f.codec, VideoCodec::H264);
        assert_eq!(f.keyframe, i == 0 || i == 6, "keyframe flag of {i}");
        assert_eq!(f.sequence, i as u64);
        assert!(f.complete);
        let want = i as f64 * 100.0 / 3.0;
        assert!(
            (f.timestamp_ms - want).abs() < 0.05,
            "ts {i}: {} vs {want}",
            f.timestamp_ms
        );
    }
    let st = b.stats(b_id).unwrap().video.unwrap();
    assert_eq!(st.frames, 10);
    assert_eq!(st.keyframes, 2);
    assert_eq!(st.lost, 0);
    assert!(st.packets_received > 170, "packets {}", st.packets_received);
    let sa = a.stats(a_id).unwrap().video.unwrap();
    assert_eq!(sa.packets_sent, st.packets_received);
}

#[test]
fn plain_bytes_get_a_moving_timestamp() {
    let Pair {
        a,
        a_id,
        b_rx,
        b: _b,
        ..
    } = pair(RtpBackendConfig::default());
    a.send_video(a_id, &h264_picture(true, 3000, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    a.send_video(a_id, &h264_picture(false, 3000, 2)).unwrap();
    let frames = recv_n(&b_rx.video, 2, Duration::from_secs(5));
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].1.timestamp_ms, 0.0);
    let dt = frames[1].1.timestamp_ms;
    assert!((50.0..500.0).contains(&dt), "second picture at {dt} ms");
    assert_ne!(frames[0].1.rtp_timestamp, frames[1].1.rtp_timestamp);
}

#[test]
fn vp8_frames_arrive_bit_exact() {
    let cfg = RtpBackendConfig {
        video_codec: VideoCodec::Vp8,
        video_payload_type: 97,
        ..RtpBackendConfig::default()
    };
    let Pair {
        a,
        a_id,
        b_rx,
        b: _b,
        ..
    } = pair(cfg);
    let frames: Vec<Vec<u8>> = (0..5u8)
        .map(|i| {
            let mut f: Vec<u8> = (0..4000u32 + u32::from(i) * 777)
                .map(|j| (j * 31 + u32::from(i)) as u8)
                .collect();
            f[0] = if i == 0 { 0x10 } else { 0x11 }; // bit 0 clear: key frame
            f
        })
        .collect();
    for f in &frames {
        a.send_video(a_id, f).unwrap();
    }
    let got = recv_n(&b_rx.video, frames.len(), Duration::from_secs(5));
    assert_eq!(got.len(), frames.len());
    for (i, (_, g)) in got.iter().enumerate() {
        assert_eq!(g.data, frames[i]);
        assert_eq!(g.codec, VideoCodec::Vp8);
        assert_eq!(g.keyframe, i == 0);
    }
}

#[test]
fn audio_goes_through_g711_and_back() {
    let Pair {
        a,
        a_id,
        b,
        b_id,
        b_rx,
        ..
    } = pair(RtpBackendConfig::default());
    // 1 s of a 440 Hz tone plus 7 samples: 51 packets, the last one padded.
    let pcm: Vec<i16> = (0..8007)
        .map(|i| ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 8000.0).sin() * 12000.0) as i16)
        .collect();
    a.send_audio(a_id, &pcm).unwrap();
    let frames = recv_n(&b_rx.audio, 51, Duration::from_secs(5));
    assert_eq!(frames.len(), 51);
    let mut expected = Vec::new();
    let mut codes = Vec::new();
    let mut padded = pcm.clone();
    padded.resize(51 * 160, 0);
    G711::Pcmu.encode(&padded, &mut codes);
    G711::Pcmu.decode(&codes, &mut expected);
    let got: Vec<i16> = frames
        .iter()
        .flat_map(|(_, f)| f.pcm.iter().copied())
        .collect();
    assert_eq!(got, expected);
    for (_, f) in &frames {
        assert_eq!(f.sample_rate, 8000);
        assert_eq!(f.channels, 1);
        assert_eq!(f.pcm.len(), 160);
        assert_eq!(f.payload.len(), 160);
        assert_eq!(f.payload_type, 0);
    }
    for w in frames.windows(2) {
        assert_eq!(w[1].1.rtp_timestamp.wrapping_sub(w[0].1.rtp_timestamp), 160);
    }
    assert_eq!(b.stats(b_id).unwrap().audio.frames, 51);
}

#[test]
fn other_audio_formats_pass_through_untouched() {
    // GSM (payload type 3) is not decoded by the engine: its bytes travel as they are, and
    // the receiver gets them in `payload` with no PCM.
    let Pair {
        a,
        a_id,
        b,
        b_id,
        b_rx,
        ..
    } = pair(RtpBackendConfig {
        // GSM: a static type the engine does not code.
        payload_type: 3,
        ..RtpBackendConfig::default()
    });
    let sent: Vec<Vec<u8>> = (0..5u8)
        .map(|i| vec![i.wrapping_mul(37) | 1; 160])
        .collect();
    for p in &sent {
        a.send_audio_payload(a_id, p, 20).unwrap();
    }
    let frames = recv_n(&b_rx.audio, 5, Duration::from_secs(5));
    assert_eq!(
        frames.len(),
        5,
        "{:?} {:?}",
        a.stats(a_id).unwrap().audio,
        b.stats(b_id).unwrap().audio
    );
    for ((_, f), p) in frames.iter().zip(&sent) {
        assert_eq!(&f.payload, p);
        assert_eq!(f.payload_type, 3);
        assert!(f.pcm.is_empty());
    }
    for w in frames.windows(2) {
        assert_eq!(w[1].1.rtp_timestamp.wrapping_sub(w[0].1.rtp_timestamp), 160);
    }
    // PCM cannot be sent on a format the engine does not encode; an empty payload is refused.
    assert!(a.send_audio(a_id, &[0; 160]).is_err());
    assert!(a.send_audio_payload(a_id, &[], 20).is_err());
}

#[test]
fn dtmf_both_ways() {
    let Pair {
        a,
        b,
        a_id,
        b_id,
        a_rx,
        b_rx,
        ..
    } = pair(RtpBackendConfig::default());
    a.send_dtmf(a_id, '5', 120).unwrap();
    a.send_dtmf(a_id, '#', 80).unwrap();
    b.send_dtmf(b_id, 'A', 100).unwrap();
    let at_b = recv_n(&b_rx.dtmf, 2, Duration::from_secs(5));
    let at_a = recv_n(&a_rx.dtmf, 1, Duration::from_secs(5));
    assert_eq!(at_b.len(), 2);
    assert_eq!(at_b[0].1.digit, '5');
    assert_eq!(at_b[0].1.duration_ms, 120);
    assert_eq!(at_b[1].1.digit, '#');
    assert_eq!(at_b[1].1.duration_ms, 80);
    assert_eq!(at_a.len(), 1);
    assert_eq!(at_a[0].1.digit, 'A');
    assert_eq!(at_a[0].0, a_id);
    assert!(a.send_dtmf(a_id, 'x', 100).is_err());
    // The end packet is repeated after the receiver already reported the digit.
    assert!(support::rtp::wait_until(Duration::from_secs(2), || a
        .stats(a_id)
        .unwrap()
        .audio
        .dtmf_sent
        == 2));
}

#[test]
fn request_keyframe_reaches_the_other_side() {
    let Pair {
        a,
        b,
        a_id,
        b_id,
        a_rx,
        ..
    } = pair(RtpBackendConfig::default());
    // B must have received something from A to know A's SSRC.
    a.send_video(a_id, &h264_picture(true, 2000, 0)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    b.request_keyframe(b_id).unwrap();
    let reqs = recv_n(&a_rx.keyframe, 1, Duration::from_secs(5));
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0], (a_id, KeyframeRequest::Pli));
    b.request_keyframe_fir(b_id).unwrap();
    let reqs = recv_n(&a_rx.keyframe, 1, Duration::from_secs(5));
    assert_eq!(reqs, vec![(a_id, KeyframeRequest::Fir)]);
    let sb = b.stats(b_id).unwrap().video.unwrap();
    assert_eq!((sb.pli_sent, sb.fir_sent), (1, 1));
    let sa = a.stats(a_id).unwrap().video.unwrap();
    assert_eq!((sa.pli_received, sa.fir_received), (1, 1));
}

#[test]
fn rtcp_mux_works_too() {
    let cfg = RtpBackendConfig {
        rtcp_mux: true,
        ..RtpBackendConfig::default()
    };
    let Pair {
        a,
        b,
        a_id,
        b_id,
        a_rx,
        b_rx,
        ..
    } = pair(cfg);
    let info = a.get_video_session(a_id).unwrap();
    let v = info.video.unwrap();
    assert_eq!(v.local_addr, v.local_rtcp_addr);
    a.send_video(a_id, &h264_picture(true, 20_000, 3)).unwrap();
    assert_eq!(recv_n(&b_rx.video, 1, Duration::from_secs(5)).len(), 1);
    b.request_keyframe(b_id).unwrap();
    assert_eq!(recv_n(&a_rx.keyframe, 1, Duration::from_secs(5)).len(), 1);
}

#[test]
fn sessions_queries_and_callbacks() {
    let Pair {
        a,
        a_id,
        a_rx,
        b: _b,
        ..
    } = pair(RtpBackendConfig::default());
    let s = a.get_video_session(a_id).unwrap();
    assert_eq!(s.id, a_id);
    assert_eq!(s.room_id, "room-a");
    assert_eq!(s.metadata["backend"], "rtp-av");
    assert_eq!(s.video_metadata["payload_type"], "96");
    assert_eq!(s.video_metadata["clock_rate"], "90000");
    assert_eq!(a.list_video_sessions("room-a").len(), 1);
    assert_eq!(a.list_sessions("room-a").len(), 1);
    assert!(a.list_sessions("other").is_empty());
    assert_eq!(recv_n(&a_rx.ready, 1, Duration::from_secs(2)), vec![a_id]);
    assert_eq!(
        recv_n(&a_rx.video_ready, 1, Duration::from_secs(2)),
        vec![a_id]
    );
    a.disconnect(a_id).unwrap();
    assert_eq!(
        recv_n(&a_rx.disconnected, 1, Duration::from_secs(2)),
        vec![a_id]
    );
    assert!(a.get_video_session(a_id).is_none());
    assert!(a.disconnect(a_id).is_err());
    assert!(a.send_video(a_id, &[0, 0, 0, 1, 0x65, 1]).is_err());
}

#[test]
fn connect_checks_video_remote_addr_first() {
    let be = roomkit_media::backend::RtpVideoBackend::new(RtpBackendConfig {
        local_addr: "127.0.0.1:0".parse().unwrap(),
        video_local_addr: "127.0.0.1:0".parse().unwrap(),
        ..RtpBackendConfig::default()
    })
    .unwrap();
    let none = std::collections::HashMap::new();
    let e = be.connect("r", "p", &none).unwrap_err().to_string();
    assert!(e.contains("video_remote_addr"), "{e}");
    let meta = std::collections::HashMap::from([(
        "video_remote_addr".to_string(),
        "127.0.0.1:40000".to_string(),
    )]);
    let e = be.connect("r", "p", &meta).unwrap_err().to_string();
    assert!(e.contains("remote_addr"), "{e}");
    let bad = std::collections::HashMap::from([(
        "video_remote_addr".to_string(),
        "not an address".to_string(),
    )]);
    assert!(be.connect("r", "p", &bad).is_err());
    assert!(be.list_sessions("r").is_empty());
    let meta = std::collections::HashMap::from([
        (
            "video_remote_addr".to_string(),
            "127.0.0.1:40000".to_string(),
        ),
        ("remote_addr".to_string(), "127.0.0.1:40002".to_string()),
    ]);
    let s = be.connect("r", "p", &meta).unwrap();
    assert_eq!(s.video.unwrap().remote_addr.port(), 40000);
    assert_eq!(s.audio.remote_addr.port(), 40002);
}

#[test]
fn taps_run_with_and_without_a_primary_callback() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let Pair { a, b, a_id, .. } = support::rtp::pair_without_callbacks(RtpBackendConfig::default());
    let t1 = Arc::new(AtomicUsize::new(0));
    let t2 = Arc::new(AtomicUsize::new(0));
    let (c1, c2) = (t1.clone(), t2.clone());
    b.add_video_tap(move |_, _| {
        c1.fetch_add(1, Ordering::SeqCst);
    });
    b.add_video_tap(move |_, _| {
        c2.fetch_add(1, Ordering::SeqCst);
    });
    a.send_video(a_id, &h264_picture(true, 1000, 0)).unwrap();
    support::rtp::wait_until(Duration::from_secs(5), || t1.load(Ordering::SeqCst) == 1);
    assert_eq!(t2.load(Ordering::SeqCst), 1);
    let p = Arc::new(AtomicUsize::new(0));
    let pc = p.clone();
    b.on_video_received(move |_, _| {
        pc.fetch_add(1, Ordering::SeqCst);
    });
    a.send_video(a_id, &h264_picture(false, 1000, 1)).unwrap();
    support::rtp::wait_until(Duration::from_secs(5), || t2.load(Ordering::SeqCst) == 2);
    assert_eq!(p.load(Ordering::SeqCst), 1);
    assert_eq!(t1.load(Ordering::SeqCst), 2);
}

/// Pictures (a large key picture the pacer spreads, then small ones) and a second of G.711 from
/// A to B with `io_threads` I/O threads per backend; returns what B's callbacks got. RTCP is
/// slowed to once a minute so that no other timer wakes the sender's I/O thread: the paced
/// packets leave only if `send_video` re-armed it (on a shared thread: a queued re-arm).
fn exchange_with_io_threads(io_threads: usize) -> (Vec<Vec<u8>>, Vec<i16>) {
    // B is bound: dropping it would end A's session (its RTCP BYE).
    let Pair {
        a, a_id, b, b_rx, ..
    } = pair(RtpBackendConfig {
        io_threads,
        rtcp_interval: Duration::from_secs(60),
        ..RtpBackendConfig::default()
    });
    let pictures: Vec<Vec<u8>> = (0..10)
        .map(|i| h264_picture(i % 5 == 0, if i % 5 == 0 { 100_000 } else { 5_000 }, i))
        .collect();
    let chunks = pictures.iter().enumerate().map(|(i, p)| VideoChunk {
        data: p.clone(),
        keyframe: i % 5 == 0,
        timestamp_ms: Some(i as f64 * 100.0 / 3.0),
    });
    a.send_video_chunks(a_id, chunks).unwrap();
    let pcm: Vec<i16> = (0..8000)
        .map(|i| ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 8000.0).sin() * 12000.0) as i16)
        .collect();
    a.send_audio(a_id, &pcm).unwrap();
    // Well under the first RTCP report (30 s at the earliest) even on a loaded machine.
    let frames = recv_n(&b_rx.video, pictures.len(), Duration::from_secs(5));
    let audio = recv_n(&b_rx.audio, 50, Duration::from_secs(5));
    let got: Vec<Vec<u8>> = frames.into_iter().map(|(_, f)| f.data).collect();
    assert_eq!(got, pictures, "pictures with io_threads {io_threads}");
    let mut codes = Vec::new();
    let mut expected = Vec::new();
    G711::Pcmu.encode(&pcm, &mut codes);
    G711::Pcmu.decode(&codes, &mut expected);
    let heard: Vec<i16> = audio
        .iter()
        .flat_map(|(_, f)| f.pcm.iter().copied())
        .collect();
    assert_eq!(heard, expected, "audio with io_threads {io_threads}");
    drop(b);
    (got, heard)
}

#[test]
fn shared_io_threads_deliver_the_same_media_bit_exact() {
    let own = exchange_with_io_threads(0);
    let shared = exchange_with_io_threads(2);
    assert_eq!(own, shared);
}

/// Enough sessions on one shared I/O thread per backend that it works in rounds (its wake-ups
/// paced, its callback wake-ups held until the end of each round): every session still gets
/// exactly its own pictures and audio, in order.
#[test]
fn a_shared_thread_working_in_rounds_delivers_every_session_bit_exact() {
    const SESSIONS: usize = 12; // 24 streams on the one thread of each backend
    let cfg = support::rtp::loopback_config(RtpBackendConfig {
        io_threads: 1,
        ..RtpBackendConfig::default()
    });
    let a = roomkit_media::backend::RtpVideoBackend::new(cfg.clone()).unwrap();
    let b = roomkit_media::backend::RtpVideoBackend::new(cfg).unwrap();
    let b_rx = support::rtp::collect(&b);
    let sessions: Vec<(SessionId, SessionId)> = (0..SESSIONS)
        .map(|_| {
            let (sa, sb) =
                support::rtp::connect_each_other(&a, &b, support::rtp::meta, support::rtp::meta);
            (sa.id, sb.id)
        })
        .collect();
    let pictures = |s: usize| -> Vec<Vec<u8>> {
        (0..4)
            .map(|i| {
                h264_picture(
                    i == 0,
                    if i == 0 { 20_000 } else { 1_500 + s * 7 },
                    (s * 10 + i) as u32,
                )
            })
            .collect()
    };
    let pcm = |s: usize| -> Vec<i16> {
        (0..1600)
            .map(|i| ((i * (s + 3)) % 20_000) as i16 - 10_000)
            .collect()
    };
    for (s, &(a_id, _)) in sessions.iter().enumerate() {
        let chunks = pictures(s)
            .into_iter()
            .enumerate()
            .map(|(i, data)| VideoChunk {
                data,
                keyframe: i == 0,
                timestamp_ms: Some(i as f64 * 100.0 / 3.0),
            });
        a.send_video_chunks(a_id, chunks).unwrap();
        a.send_audio(a_id, &pcm(s)).unwrap();
    }
    let frames = recv_n(&b_rx.video, SESSIONS * 4, Duration::from_secs(10));
    let audio = recv_n(&b_rx.audio, SESSIONS * 10, Duration::from_secs(10));
    for (s, &(_, b_id)) in sessions.iter().enumerate() {
        let got: Vec<Vec<u8>> = frames
            .iter()
            .filter(|(id, _)| *id == b_id)
            .map(|(_, f)| f.data.clone())
            .collect();
        assert_eq!(got, pictures(s), "pictures of session {s}");
        let mut codes = Vec::new();
        let mut expected = Vec::new();
        G711::Pcmu.encode(&pcm(s), &mut codes);
        G711::Pcmu.decode(&codes, &mut expected);
        let heard: Vec<i16> = audio
            .iter()
            .filter(|(id, _)| *id == b_id)
            .flat_map(|(_, f)| f.pcm.iter().copied())
            .collect();
        assert_eq!(heard, expected, "audio of session {s}");
    }
    drop(b);
}

/// A telephone event is paced by the stream's I/O thread (a packet every 20 ms, then the end
/// packets), so on a shared thread it needs the re-arm `send_dtmf` queues: with RTCP once a
/// minute nothing else would wake that stream for many seconds.
#[test]
fn dtmf_is_paced_by_a_shared_io_thread() {
    let Pair {
        a, a_id, b, b_rx, ..
    } = pair(RtpBackendConfig {
        io_threads: 2,
        rtcp_interval: Duration::from_secs(60),
        ..RtpBackendConfig::default()
    });
    a.send_dtmf(a_id, '7', 100).unwrap();
    let at_b = recv_n(&b_rx.dtmf, 1, Duration::from_secs(5));
    assert_eq!(at_b.len(), 1, "the digit arrived");
    assert_eq!(at_b[0].1.digit, '7');
    assert_eq!(at_b[0].1.duration_ms, 100);
    // The last end packets leave after the receiver reported the digit: the sender counts the
    // digit once they are out.
    assert!(support::rtp::wait_until(Duration::from_secs(3), || a
        .stats(a_id)
        .unwrap()
        .audio
        .dtmf_sent
        == 1));
    drop(b);
}
