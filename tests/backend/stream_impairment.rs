//! Two engines on loopback with an in-process UDP relay between their video streams that loses,
//! delays, reorders and duplicates packets both ways (media and RTCP alike), seeded and bounded in
//! time. The streams repair losses with NACK and RTX, and every picture delivered must be one
//! that was sent, byte for byte. Also: the stream-ended event on inactivity and on the peer's BYE.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use roomkit_media::engine::{
    EngineConfig, MediaEngine, MediaKind, SessionId, SessionSpec, StreamConfig, StreamEndReason,
    StreamEnded,
};
use roomkit_media::rtp::config::{AudioParams, MediaParams, VideoParams};
use roomkit_media::rtp::rtx::RtxConfig;
use roomkit_media::rtp::sim::h264_picture;
use roomkit_media::VideoFrame;

/// Longest a relay runs, whatever happens.
const RELAY_MAX_TIME: Duration = Duration::from_secs(30);

/// A datagram held by the relay: when it leaves, its order of arrival, whether it goes to B,
/// its bytes.
type Delayed = (Instant, u64, bool, Vec<u8>);

/// Forwards datagrams between two sides with impairments, until dropped.
struct Relay {
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// Where A sends to reach B, and where B sends to reach A.
    a_side: SocketAddr,
    b_side: SocketAddr,
}

impl Relay {
    fn start(a: SocketAddr, b: SocketAddr, loss: f64, delay: Duration, seed: u64) -> Relay {
        let ra = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rb = UdpSocket::bind("127.0.0.1:0").unwrap();
        ra.set_nonblocking(true).unwrap();
        rb.set_nonblocking(true).unwrap();
        let (a_side, b_side) = (ra.local_addr().unwrap(), rb.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), dropped.clone());
        let handle = std::thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut buf = [0u8; 2048];
            // (release time, order, towards B, bytes)
            let mut queue: BinaryHeap<Reverse<Delayed>> = BinaryHeap::new();
            let mut order = 0u64;
            let started = Instant::now();
            while !s.load(Ordering::Relaxed) && started.elapsed() < RELAY_MAX_TIME {
                let mut idle = true;
                for (sock, to_b) in [(&ra, true), (&rb, false)] {
                    while let Ok((n, _)) = sock.recv_from(&mut buf) {
                        idle = false;
                        let r: f64 = rng.random();
                        if r < loss {
                            d.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let mut at = Instant::now() + delay;
                        if r < loss + 0.01 {
                            // Held back: later packets overtake it.
                            at += Duration::from_millis(rng.random_range(1..8));
                        }
                        let copies = if rng.random_bool(0.01) { 2 } else { 1 };
                        for _ in 0..copies {
                            order += 1;
                            queue.push(Reverse((at, order, to_b, buf[..n].to_vec())));
                        }
                    }
                }
                let now = Instant::now();
                while queue.peek().is_some_and(|Reverse((t, ..))| *t <= now) {
                    let Reverse((_, _, to_b, bytes)) = queue.pop().unwrap();
                    let _ = if to_b {
                        rb.send_to(&bytes, b)
                    } else {
                        ra.send_to(&bytes, a)
                    };
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        Relay {
            stop,
            dropped,
            handle: Some(handle),
            a_side,
            b_side,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn stream(media: MediaParams) -> StreamConfig {
    StreamConfig {
        media,
        local_addr: "127.0.0.1:0".parse().unwrap(),
        // Replaced once both ends exist.
        remote_addr: "127.0.0.1:9".parse().unwrap(),
        rtcp_mux: true,
        rtcp_interval: Duration::from_millis(500),
        ..StreamConfig::default()
    }
}

fn spec(video: VideoParams, close_linger: Duration) -> SessionSpec {
    SessionSpec {
        room_id: "room".into(),
        participant_id: "p".into(),
        metadata: HashMap::new(),
        video_metadata: HashMap::new(),
        audio: stream(MediaParams::Audio(AudioParams::default())),
        video: Some(StreamConfig {
            close_linger,
            ..stream(MediaParams::Video(video))
        }),
    }
}

struct End {
    engine: MediaEngine,
    id: SessionId,
    video: Receiver<VideoFrame>,
    ended: Receiver<StreamEnded>,
}

fn end(video: VideoParams, close_linger: Duration) -> End {
    end_on(video, close_linger, 0)
}

/// An end whose engine runs `io_threads` shared I/O threads (0: one per stream).
fn end_on(video: VideoParams, close_linger: Duration, io_threads: usize) -> End {
    let engine = MediaEngine::new(EngineConfig {
        callback_queue: 4096,
        io_threads,
        ..EngineConfig::default()
    })
    .unwrap();
    let (vt, vr) = unbounded();
    engine.callbacks().set_video(move |_, f| {
        let _ = vt.send(f.clone());
    });
    let (et, er) = unbounded();
    engine.callbacks().set_stream_ended(move |_, e| {
        let _ = et.send(e.clone());
    });
    let id = engine.create_session(spec(video, close_linger)).unwrap().id;
    End {
        engine,
        id,
        video: vr,
        ended: er,
    }
}

fn video_addr(e: &End) -> SocketAddr {
    e.engine
        .session(e.id)
        .unwrap()
        .video()
        .unwrap()
        .info()
        .local_addr
}

fn aim(e: &End, video: SocketAddr) {
    let s = e.engine.session(e.id).unwrap();
    s.video().unwrap().set_remote(video, video);
    let own = s.audio().info().local_addr;
    s.audio().set_remote(own, own);
}

#[test]
fn lossy_relay_both_ways_pictures_are_repaired_bit_exact() {
    repaired_bit_exact(0);
}

#[test]
fn lossy_relay_both_ways_repairs_on_shared_io_threads() {
    repaired_bit_exact(2);
}

fn repaired_bit_exact(io_threads: usize) {
    let params = VideoParams {
        rtx: Some(RtxConfig {
            payload_type: 97,
            apt: 96,
            ssrc: None,
        }),
        ..VideoParams::default()
    };
    let a = end_on(params.clone(), Duration::from_millis(500), io_threads);
    let b = end_on(params, Duration::ZERO, io_threads);
    let relay = Relay::start(
        video_addr(&a),
        video_addr(&b),
        0.05,
        Duration::from_millis(10),
        42,
    );
    aim(&a, relay.a_side);
    aim(&b, relay.b_side);

    // A file sender: a key picture every 30, never on request; real time at 30 fps.
    const N: usize = 120;
    let start = Instant::now();
    let mut sent = Vec::with_capacity(N);
    let a_video = a.engine.session(a.id).unwrap();
    for i in 0..N {
        let key = i.is_multiple_of(30);
        let pic = h264_picture(
            key,
            if key { 60_000 } else { 6_000 + 600 * (i % 10) },
            i as u64,
        );
        if let Some(wait) =
            (start + Duration::from_millis(33) * i as u32).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
        a_video
            .video()
            .unwrap()
            .send_video(&pic, Some(i as f64 * 33.3))
            .unwrap();
        sent.push(pic);
    }
    // Closing lingers until A has been idle for 500 ms, so the last pictures get repaired too.
    let a_stats_before_close = a_video.stats().video.unwrap();
    drop(a_video);
    a.engine.disconnect(a.id).unwrap();
    // The last repairs may still be on their way (a loaded machine delays them): wait, bounded,
    // until the last picture is in.
    let mut got: Vec<VideoFrame> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        got.extend(b.video.try_iter());
        if got.last().is_some_and(|f| f.data == sent[N - 1]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    got.extend(b.video.try_iter());
    let b_stats = b.engine.session(b.id).unwrap().stats().video.unwrap();
    let relay_dropped = relay.dropped.load(Ordering::Relaxed);
    drop(relay);

    let index: HashMap<&[u8], usize> = sent
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_slice(), i))
        .collect();
    let mut last = None;
    for f in &got {
        assert!(f.complete);
        let &i = index
            .get(f.data.as_slice())
            .unwrap_or_else(|| panic!("frame {} is not a picture that was sent", f.sequence));
        assert!(last.is_none_or(|l| l < i), "picture {i} out of order");
        last = Some(i);
    }
    eprintln!(
        "delivered {} of {N}; relay dropped {relay_dropped}; B {b_stats:?}; A {a_stats_before_close:?}",
        got.len()
    );
    assert!(relay_dropped > 20);
    // A lingered after its last picture, so even the last ones were repaired.
    assert_eq!(last, Some(N - 1), "the last picture arrived");
    assert!(b_stats.nack_sent > 0 && b_stats.recovered > 0 && b_stats.rtx_received > 0);
    assert!(a_stats_before_close.retransmitted > 0);
    assert!(
        a_stats_before_close.rtt_ms > 0.0,
        "A measured the RTT from B's reports"
    );
    // At 5 % loss each way nearly everything is repaired; a picture lost for good costs the rest
    // of its group of 30. Repairs race real-time deadlines, which a loaded machine can miss, so
    // the floor is two thirds: without repair a 60 KB key picture almost never survives 5 % loss,
    // and its whole group goes with it.
    assert!(got.len() * 3 >= N * 2, "only {} of {N}", got.len());
}

#[test]
fn stream_ended_on_inactivity_and_on_the_peers_bye() {
    let quiet = VideoParams::default();
    // B listens to nobody for 300 ms.
    let engine = MediaEngine::new(EngineConfig::default()).unwrap();
    let (et, er) = unbounded();
    engine.callbacks().set_stream_ended(move |_, e| {
        let _ = et.send(e.clone());
    });
    let mut s = spec(quiet.clone(), Duration::ZERO);
    s.audio.inactivity_timeout = Duration::ZERO;
    if let Some(v) = s.video.as_mut() {
        v.inactivity_timeout = Duration::from_millis(300);
    }
    let t0 = Instant::now();
    engine.create_session(s).unwrap();
    let ev = er
        .recv_timeout(Duration::from_secs(5))
        .expect("inactivity reported");
    assert_eq!(ev.media, MediaKind::Video);
    assert!(
        matches!(ev.reason, StreamEndReason::Inactive { silent_for } if silent_for >= Duration::from_millis(300))
    );
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert!(
        er.recv_timeout(Duration::from_millis(500)).is_err(),
        "reported once"
    );
    drop(engine);

    // A and B face to face; A leaves.
    let a = end(quiet.clone(), Duration::ZERO);
    let b = end(quiet, Duration::ZERO);
    aim(&a, video_addr(&b));
    aim(&b, video_addr(&a));
    std::thread::sleep(Duration::from_millis(50));
    a.engine.disconnect(a.id).unwrap();
    let ev = b
        .ended
        .recv_timeout(Duration::from_secs(5))
        .expect("BYE reported");
    assert_eq!(ev.media, MediaKind::Video);
    assert_eq!(
        ev.reason,
        StreamEndReason::RemoteBye {
            reason: Some("session closed".into())
        }
    );
    assert_eq!(
        b.engine
            .session(b.id)
            .unwrap()
            .stats()
            .video
            .unwrap()
            .bye_received,
        1
    );
    assert!(a.video.try_iter().next().is_none());
}
