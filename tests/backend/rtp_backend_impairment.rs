//! Video through a lossy relay: 5% of RTP packets dropped, some reordered, some duplicated, and
//! the receiver's NACKs dropped too, so that nothing can be repaired (the repairs are tested in
//! tests/backend/stream_impairment.rs). No damaged picture may reach the application, losses must be
//! counted, PLIs sent, and delivery must resume at the next keyframe.

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use roomkit_media::backend::RtpBackendConfig;
use roomkit_media::prelude::*;
use roomkit_media::rtp::rtcp::{parse_compound, RtcpEvent};
use support::rtp::{h264_picture, pair, recv_n, Pair};

/// Forwards A→B RTP with impairments and everything else untouched, until told to stop, for at
/// most `MAX_PACKETS` packets or `MAX_TIME`.
struct Relay {
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    nacks_dropped: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
    a_side: SocketAddr,
    b_side: SocketAddr,
}

const MAX_PACKETS: u64 = 200_000;
const MAX_TIME: Duration = Duration::from_secs(30);

impl Relay {
    fn start(a_video: SocketAddr, b_video: SocketAddr, seed: u64) -> Relay {
        let ra = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rb = UdpSocket::bind("127.0.0.1:0").unwrap();
        ra.set_nonblocking(true).unwrap();
        rb.set_nonblocking(true).unwrap();
        let (a_side, b_side) = (ra.local_addr().unwrap(), rb.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let nacks_dropped = Arc::new(AtomicU64::new(0));
        let (s, d, nacks) = (stop.clone(), dropped.clone(), nacks_dropped.clone());
        let handle = std::thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut buf = [0u8; 2048];
            let mut held: Option<Vec<u8>> = None;
            let started = Instant::now();
            let mut forwarded = 0u64;
            while !s.load(Ordering::Relaxed)
                && started.elapsed() < MAX_TIME
                && forwarded < MAX_PACKETS
            {
                let mut idle = true;
                // A → B: media (impaired) and A's RTCP (rtcp-mux; passed untouched).
                while let Ok((n, _)) = ra.recv_from(&mut buf) {
                    idle = false;
                    forwarded += 1;
                    let pkt = &buf[..n];
                    let is_rtcp = n > 1 && (192..=223).contains(&pkt[1]);
                    if is_rtcp {
                        let _ = rb.send_to(pkt, b_video);
                        continue;
                    }
                    // The first picture passes untouched: a receiver cannot know that packets
                    // before the very first one it sees were lost.
                    let r: f64 = if forwarded <= 20 { 1.0 } else { rng.random() };
                    if r < 0.05 {
                        d.fetch_add(1, Ordering::Relaxed);
                    } else if r < 0.08 && held.is_none() {
                        // Reorder: this one goes out after the next packet.
                        held = Some(pkt.to_vec());
                    } else {
                        let _ = rb.send_to(pkt, b_video);
                        if r < 0.11 {
                            let _ = rb.send_to(pkt, b_video);
                        }
                        if let Some(h) = held.take() {
                            let _ = rb.send_to(&h, b_video);
                        }
                    }
                }
                if let Some(h) = held.take() {
                    let _ = rb.send_to(&h, b_video);
                }
                // B → A: B's RTCP (receiver reports, PLIs), without its NACKs.
                while let Ok((n, _)) = rb.recv_from(&mut buf) {
                    idle = false;
                    forwarded += 1;
                    if carries_nack(&buf[..n]) {
                        nacks.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ = ra.send_to(&buf[..n], a_video);
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        Relay {
            stop,
            dropped,
            nacks_dropped,
            handle: Some(handle),
            a_side,
            b_side,
        }
    }
}

/// Whether an RTCP compound holds a generic NACK.
fn carries_nack(pkt: &[u8]) -> bool {
    parse_compound(pkt).is_ok_and(|evs| evs.iter().any(|e| matches!(e, RtcpEvent::Nack { .. })))
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn lossy_relay_never_delivers_a_damaged_picture() {
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
    } = pair(cfg);
    let a_video = a.get_video_session(a_id).unwrap().video.unwrap().local_addr;
    let b_video = b.get_video_session(b_id).unwrap().video.unwrap().local_addr;
    let relay = Relay::start(a_video, b_video, 3);
    a.update_remote(a_id, None, Some(relay.a_side)).unwrap();
    b.update_remote(b_id, None, Some(relay.b_side)).unwrap();

    // The sender plays an encoder: a keyframe every 15 pictures, and one as soon as the far end
    // asks (the app reacting to on_keyframe_requested).
    const N: usize = 400;
    let frame_ms = 100.0 / 3.0;
    let mut sent = Vec::with_capacity(N);
    let mut keyframes_asked = 0;
    for i in 0..N {
        let asked = a_rx.keyframe.try_iter().count();
        keyframes_asked += asked;
        let key = i % 15 == 0 || asked > 0;
        let pic = h264_picture(key, if key { 8_000 } else { 2_500 }, i as u32);
        a.send_video_chunks(
            a_id,
            [roomkit_media::VideoChunk {
                data: pic.clone(),
                keyframe: key,
                timestamp_ms: Some(i as f64 * frame_ms),
            }],
        )
        .unwrap();
        sent.push((pic, key));
        std::thread::sleep(Duration::from_millis(3));
    }
    std::thread::sleep(Duration::from_millis(300));
    let got = recv_n(&b_rx.video, N, Duration::from_millis(500));
    let relay_dropped = relay.dropped.load(Ordering::Relaxed);
    let nacks_dropped = relay.nacks_dropped.load(Ordering::Relaxed);
    drop(relay);
    assert!(relay_dropped > 0);
    assert!(nacks_dropped > 0, "the receiver asked for the lost packets");

    assert!(!got.is_empty());
    // Every delivered picture must be byte for byte one that was sent.
    let by_content: std::collections::HashMap<&[u8], usize> = sent
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.as_slice(), i))
        .collect();
    let mut last_index: Option<usize> = None;
    let mut gaps = 0;
    for (_, f) in &got {
        assert!(f.complete);
        let Some(&idx) = by_content.get(f.data.as_slice()) else {
            panic!(
                "frame {} ({} bytes, keyframe {}, starts {:02x?}) is not a picture that was sent",
                f.sequence,
                f.data.len(),
                f.keyframe,
                &f.data[..f.data.len().min(12)]
            );
        };
        let key = sent[idx].1;
        assert_eq!(f.keyframe, key, "keyframe flag of {idx}");
        let want_ms = (idx - by_content[got[0].1.data.as_slice()]) as f64 * frame_ms;
        assert!(
            (f.timestamp_ms - want_ms).abs() < 0.05,
            "timestamp of {idx}"
        );
        if let Some(last) = last_index {
            assert!(idx > last, "picture {idx} after {last}");
            if idx != last + 1 {
                gaps += 1;
                assert!(key, "delivery resumed at {idx}, which is not a keyframe");
            }
        } else {
            assert!(key, "first delivered picture {idx} is not a keyframe");
        }
        last_index = Some(idx);
    }
    let st = b.stats(b_id).unwrap().video.unwrap();
    let dropped = b_rx.video.len();
    assert_eq!(dropped, 0);
    assert!(st.lost > 0, "losses counted: {st:?}");
    assert!(st.pli_sent > 0, "PLIs sent: {st:?}");
    assert!(st.frames_dropped_incomplete + st.frames_dropped_gated > 0);
    assert!(st.duplicates > 0 && st.reordered > 0, "{st:?}");
    assert!(keyframes_asked > 0, "the sender saw keyframe requests");
    assert!(gaps > 0);
    // With the gate, a loss costs the rest of its group of pictures (PLI-driven keyframes are
    // rate-limited to one per 500 ms, longer than this accelerated run's groups): with a keyframe
    // every 15 pictures about a quarter arrive on an idle machine. Pictures with a hole are also
    // held for repairs that never come (the relay drops NACKs) until their deadline, and a
    // loaded machine stretches that: a tenth is the floor, the point being that nothing damaged
    // is delivered.
    assert!(
        got.len() > N / 10,
        "only {} of {N} delivered: {st:?}",
        got.len()
    );
    assert_eq!(st.frames as usize, got.len());
    eprintln!(
        "delivered {} of {N}, relay dropped {relay_dropped}, gaps {gaps}, stats {st:?}, \
         keyframe requests seen by sender {keyframes_asked}",
        got.len()
    );
}
