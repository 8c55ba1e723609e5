//! Two stream cores on virtual time through simulated paths: loss recovery (NACK, RTX), pacing,
//! the audio jitter buffer, liveness and RTT, deterministically (every path and core is seeded).
//!
//! Pictures are synthetic H.264 of realistic sizes (key pictures about 100 packets, others 5 to
//! 15) from a "file" sender: a key picture every 30 pictures and never on request. Every picture
//! that arrives is checked byte for byte against what was sent.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use roomkit_media::frame::VideoFrame;
use roomkit_media::rtp::config::{AudioParams, CoreConfig, MediaParams, VideoParams};
use roomkit_media::rtp::nack::NackConfig;
use roomkit_media::rtp::pacer::PacerConfig;
use roomkit_media::rtp::packet::parse_rtp;
use roomkit_media::rtp::rtcp::{build_nack, parse_compound, RtcpEvent};
use roomkit_media::rtp::rtx::{wrap_rtx, RtxConfig};
use roomkit_media::rtp::sim::{h264_picture, Datagram, PathConfig, SimPair, SimPath};
use roomkit_media::rtp::stream::{StreamCore, StreamEvent};

const FRAME: Duration = Duration::from_nanos(33_333_333);
const KEY_EVERY: usize = 30;

fn video(p: VideoParams) -> CoreConfig {
    CoreConfig {
        media: MediaParams::Video(p),
        rtcp_interval: Duration::from_secs(1),
        ..CoreConfig::default()
    }
}

fn rtx() -> Option<RtxConfig> {
    Some(RtxConfig {
        payload_type: 97,
        apt: 96,
        ssrc: None,
    })
}

/// The size of picture `i` of the file: ~100 packets for a key picture, 5-15 for the others.
fn picture(i: usize) -> (Vec<u8>, bool) {
    let key = i.is_multiple_of(KEY_EVERY);
    let len = if key {
        118_000
    } else {
        1_190 * (5 + (i * 7) % 11)
    };
    (h264_picture(key, len, i as u64), key)
}

struct Clip {
    sent: Vec<(Vec<u8>, Instant)>,
}

/// Sends `n` pictures from A at 30 fps, then lets the pair run `tail` more.
fn send_clip(pair: &mut SimPair, n: usize, tail: Duration) -> Clip {
    let start = pair.now();
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        let at = start + FRAME * i as u32;
        pair.run_until(at);
        let (pic, _) = picture(i);
        let ts = i as f64 * 1000.0 / 30.0;
        pair.with_a(|c, now| c.send_video(now, &pic, Some(ts)))
            .unwrap();
        sent.push((pic, at));
    }
    pair.run_for(tail);
    Clip { sent }
}

fn frames(events: &[(Instant, StreamEvent)]) -> Vec<(Instant, &VideoFrame)> {
    events
        .iter()
        .filter_map(|(t, e)| match e {
            StreamEvent::Video(f) => Some((*t, f)),
            _ => None,
        })
        .collect()
}

/// What arrived of a clip: pictures intact (byte-exact, complete), anything else that came out
/// (corrupt), and each intact picture's latency after its send time.
struct Outcome {
    intact: usize,
    corrupt: usize,
    latencies: Vec<Duration>,
    in_order: bool,
}

fn outcome(clip: &Clip, events: &[(Instant, StreamEvent)]) -> Outcome {
    let index: HashMap<&[u8], usize> = clip
        .sent
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.as_slice(), i))
        .collect();
    let mut o = Outcome {
        intact: 0,
        corrupt: 0,
        latencies: Vec::new(),
        in_order: true,
    };
    let mut last = None;
    for (t, f) in frames(events) {
        match index.get(f.data.as_slice()) {
            Some(&i) if f.complete => {
                o.intact += 1;
                o.latencies.push(t - clip.sent[i].1);
                if last.is_some_and(|l| l >= i) {
                    o.in_order = false;
                }
                last = Some(i);
            }
            _ => o.corrupt += 1,
        }
    }
    o.latencies.sort();
    o
}

fn pair(a: CoreConfig, b: CoreConfig, ab: PathConfig, ba: PathConfig, seed: u64) -> SimPair {
    SimPair::new(
        Instant::now(),
        a,
        b,
        SimPath::new(ab, seed * 2 + 1),
        SimPath::new(ba, seed * 2 + 2),
        seed,
    )
    .unwrap()
}

fn rtp_seq(d: &Datagram) -> Option<(u8, u16)> {
    if d.is_rtcp() {
        return None;
    }
    parse_rtp(&d.data)
        .ok()
        .map(|(m, _)| (m.payload_type, m.sequence))
}

fn is_nack(d: &Datagram) -> bool {
    d.is_rtcp()
        && parse_compound(&d.data)
            .map(|evs| evs.iter().any(|e| matches!(e, RtcpEvent::Nack { .. })))
            .unwrap_or(false)
}

#[test]
fn clean_path_delivers_every_picture_in_order_with_bounded_pacing() {
    let p = PathConfig::clean(Duration::from_millis(20));
    let mut pair = pair(
        video(VideoParams::default()),
        video(VideoParams::default()),
        p,
        p,
        1,
    );
    let clip = send_clip(&mut pair, 90, Duration::from_millis(500));
    let o = outcome(&clip, &pair.b.events);
    assert_eq!((o.intact, o.corrupt), (90, 0));
    assert!(o.in_order);
    // 20 ms on the path; a key picture spread over at most 20 ms more.
    assert!(*o.latencies.last().unwrap() <= Duration::from_millis(41));
    let a = pair.a.core.stats();
    assert!(
        a.pacer_delay_max_ms > 10.0 && a.pacer_delay_max_ms <= 20.5,
        "{a:?}"
    );
    let b = pair.b.core.stats();
    assert_eq!((b.nack_sent, a.retransmitted, b.pli_sent), (0, 0, 0));
}

#[test]
fn pacer_spreads_a_key_picture_and_never_bursts_it() {
    let p = PathConfig::clean(Duration::from_millis(20));
    let mut pair = pair(
        video(VideoParams::default()),
        video(VideoParams::default()),
        p,
        p,
        2,
    );
    let (key, _) = picture(0);
    pair.with_a(|c, now| c.send_video(now, &key, Some(0.0)))
        .unwrap();
    let t0 = pair.now();
    let first = pair.ab.in_flight();
    assert!(first <= 6, "{first} packets left at once");
    let mut times = Vec::new();
    while pair.ab.in_flight() + times.len() < 100 || pair.a.core.stats().pacer_queued > 0 {
        let before = pair.ab.stats().sent;
        pair.run_for(Duration::from_micros(100));
        for _ in before..pair.ab.stats().sent {
            times.push(pair.now() - t0);
        }
    }
    let last = *times.last().unwrap();
    assert!(last <= Duration::from_millis(20), "{last:?}");
    assert!(last >= Duration::from_millis(15), "{last:?}");
}

#[test]
fn burst_loss_in_a_key_picture_is_repaired() {
    let p = PathConfig::clean(Duration::from_millis(20));
    let mut pair = pair(
        video(VideoParams::default()),
        video(VideoParams::default()),
        p,
        p,
        3,
    );
    // Lose packets 10..=29 of the stream the first time they are sent.
    let seen = Arc::new(AtomicU32::new(0));
    let s = seen.clone();
    pair.ab.set_filter(Box::new(move |d| {
        if rtp_seq(d).is_none() {
            return false;
        }
        let n = s.fetch_add(1, Ordering::Relaxed);
        (10..30).contains(&n)
    }));
    let clip = send_clip(&mut pair, 60, Duration::from_secs(1));
    let o = outcome(&clip, &pair.b.events);
    assert_eq!((o.intact, o.corrupt), (60, 0));
    assert!(o.in_order);
    let (a, b) = (pair.a.core.stats(), pair.b.core.stats());
    // Each lost packet went out again. A burst this dense (20 in the first 100 packets) also
    // makes the sender copy first repairs (RetransmitLimits::copy_first_above), and a repair
    // still in the pacer's queue when the receiver's retry comes due goes out once more: at
    // most three sends per lost packet.
    assert!((20..=60).contains(&a.retransmitted), "{a:?}");
    assert_eq!(b.recovered, 20, "{b:?}");
    assert_eq!(b.pli_sent, 0);
    // The repaired key picture waited about one round trip (plus the reorder allowance).
    assert!(
        o.latencies[0] < Duration::from_millis(20 + 20 + 5 + 45),
        "{:?}",
        o.latencies[0]
    );
}

/// Loses media packet 40 and the first `nacks_lost` NACK packets; returns the pair's stats.
fn lose_packet_and_nacks(
    b_nack: NackConfig,
    nacks_lost: u32,
) -> (
    roomkit_media::rtp::stats::StreamStats,
    roomkit_media::rtp::stats::StreamStats,
) {
    let p = PathConfig::clean(Duration::from_millis(20));
    let b_cfg = VideoParams {
        nack: b_nack,
        ..VideoParams::default()
    };
    let mut pair = pair(video(VideoParams::default()), video(b_cfg), p, p, 4);
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    pair.ab.set_filter(Box::new(move |d| {
        rtp_seq(d).is_some() && n2.fetch_add(1, Ordering::Relaxed) == 40
    }));
    let nacks = Arc::new(AtomicU32::new(0));
    let k = nacks.clone();
    pair.ba.set_filter(Box::new(move |d| {
        is_nack(d) && k.fetch_add(1, Ordering::Relaxed) < nacks_lost
    }));
    let clip = send_clip(&mut pair, 40, Duration::from_secs(1));
    let o = outcome(&clip, &pair.b.events);
    assert_eq!((o.intact, o.corrupt), (40, 0));
    (pair.a.core.stats(), pair.b.core.stats())
}

#[test]
fn a_lost_nack_is_sent_again() {
    // One copy per NACK: losing it costs a retry interval.
    let one_copy = NackConfig {
        copies: 1,
        ..NackConfig::default()
    };
    let (a, b) = lose_packet_and_nacks(one_copy, 1);
    assert_eq!(b.nack_sent, 2, "{b:?}");
    assert_eq!((a.nack_received, a.retransmitted, b.recovered), (1, 1, 1));
    // Both copies of the first NACK lost: the retry asks again.
    let (a, b) = lose_packet_and_nacks(NackConfig::default(), 2);
    assert_eq!(b.nack_sent, 2, "{b:?}");
    assert_eq!((a.retransmitted, b.recovered), (1, 1), "{a:?}");
}

#[test]
fn a_lost_nack_is_covered_by_its_copy() {
    let (a, b) = lose_packet_and_nacks(NackConfig::default(), 1);
    assert_eq!(b.nack_sent, 1, "no retry was needed: {b:?}");
    assert_eq!((a.nack_received, a.retransmitted, b.recovered), (1, 1, 1));
}

#[test]
fn a_lost_rtx_packet_is_requested_again() {
    let p = PathConfig::clean(Duration::from_millis(20));
    let cfg = VideoParams {
        rtx: rtx(),
        ..VideoParams::default()
    };
    let mut pair = pair(video(cfg.clone()), video(cfg), p, p, 5);
    let n = Arc::new(AtomicU32::new(0));
    let rtx_seen = Arc::new(AtomicU32::new(0));
    let (n2, r2) = (n.clone(), rtx_seen.clone());
    pair.ab.set_filter(Box::new(move |d| match rtp_seq(d) {
        // The 51st media packet and the first RTX packet that repairs it; later the 301st,
        // repaired at the first try.
        Some((96, _)) => matches!(n2.fetch_add(1, Ordering::Relaxed), 50 | 300),
        Some((97, _)) => r2.fetch_add(1, Ordering::Relaxed) == 0,
        _ => false,
    }));
    let clip = send_clip(&mut pair, 40, Duration::from_secs(1));
    let o = outcome(&clip, &pair.b.events);
    assert_eq!((o.intact, o.corrupt), (40, 0));
    let (a, b) = (pair.a.core.stats(), pair.b.core.stats());
    // The packet asked for a second time goes out twice (the path is losing there): four RTX
    // repairs in all, the second copy a duplicate at B; then the tail-loss probe once the clip
    // ended (RTX too, and a duplicate at B).
    assert_eq!(a.tail_probes, 1);
    assert_eq!(rtx_seen.load(Ordering::Relaxed), 4 + 1);
    assert_eq!(
        (
            a.retransmitted,
            b.rtx_received,
            b.rtx_duplicates,
            b.recovered
        ),
        (4, 3 + 1, 1 + 1, 2),
        "{a:?} {b:?}"
    );
    assert_eq!(b.nack_sent, 3);
    assert!(pair.a.core.rtx_ssrc().is_some());
    // An RTX packet answering the only NACK for its packet measures the round trip exactly
    // (the first repair, NACKed twice, did not count).
    let rtt = pair.b.core.rtt().expect("measured from the RTX answer");
    assert!(
        rtt >= Duration::from_millis(40) && rtt < Duration::from_millis(50),
        "{rtt:?}"
    );
}

#[test]
fn a_retransmission_after_the_deadline_is_late_and_its_picture_dropped() {
    // B waits at most 30 ms for a hole: less than a 40 ms round trip, so no repair is in time.
    let b_cfg = VideoParams {
        nack: NackConfig {
            max_delay: Duration::from_millis(30),
            ..NackConfig::default()
        },
        ..VideoParams::default()
    };
    let p = PathConfig::clean(Duration::from_millis(20));
    let mut pair = pair(video(VideoParams::default()), video(b_cfg), p, p, 6);
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    // Lose a packet of picture 1 (the key picture is packets 0-99), so the rest of the first
    // group of pictures is gated.
    pair.ab.set_filter(Box::new(move |d| {
        rtp_seq(d).is_some() && n2.fetch_add(1, Ordering::Relaxed) == 103
    }));
    let clip = send_clip(&mut pair, 45, Duration::from_secs(1));
    let o = outcome(&clip, &pair.b.events);
    assert_eq!(o.corrupt, 0);
    let (a, b) = (pair.a.core.stats(), pair.b.core.stats());
    assert_eq!(a.retransmitted, 1, "{a:?}");
    assert_eq!(b.late, 1, "the repair came after the deadline: {b:?}");
    assert_eq!(b.recovered, 0);
    assert!(b.pli_sent >= 1);
    // Picture 0 arrives, then nothing until the next key picture (30).
    assert_eq!(o.intact, 1 + 15, "{b:?}");
    assert_eq!(
        (b.frames_dropped_incomplete, b.frames_dropped_gated),
        (1, 28),
        "{b:?}"
    );
}

/// A core that is fed by hand: packets are taken from A's transmits and handed to B in any
/// order at any time.
struct Manual {
    a: StreamCore,
    b: StreamCore,
    a_addr: SocketAddr,
    now: Instant,
}

impl Manual {
    fn new(a: VideoParams, b: VideoParams) -> Manual {
        let a_addr: SocketAddr = ([10, 0, 0, 1], 5000).into();
        let b_addr: SocketAddr = ([10, 0, 0, 2], 6000).into();
        let wall = SystemTime::now();
        let now = Instant::now();
        let cfg = |p: VideoParams, remote: SocketAddr| CoreConfig {
            remote_rtp: remote,
            remote_rtcp: remote,
            rtcp_mux: true,
            ..video(p)
        };
        Manual {
            a: StreamCore::new(cfg(a, b_addr), now, wall, 11).unwrap(),
            b: StreamCore::new(cfg(b, a_addr), now, wall, 12).unwrap(),
            a_addr,
            now,
        }
    }

    /// The RTP packets of picture `i` from A, all at once (A does not pace).
    fn packets(&mut self, i: usize) -> Vec<Vec<u8>> {
        let (pic, _) = picture(i);
        self.a
            .send_video(self.now, &pic, Some(i as f64 * 33.3))
            .unwrap();
        std::iter::from_fn(|| self.a.poll_transmit())
            .map(|t| t.contents)
            .collect()
    }

    fn feed(&mut self, pkt: &[u8]) {
        self.b.handle_datagram(self.now, self.a_addr, pkt, false);
    }

    fn b_frames(&mut self) -> Vec<VideoFrame> {
        let mut out = Vec::new();
        while let Some(e) = self.b.poll_event() {
            if let StreamEvent::Video(f) = e {
                out.push(f);
            }
        }
        out
    }
}

fn unpaced() -> VideoParams {
    VideoParams {
        pacer: PacerConfig {
            enabled: false,
            ..PacerConfig::default()
        },
        ..VideoParams::default()
    }
}

#[test]
fn a_packet_reordered_beyond_the_window_is_dropped_without_damage() {
    let mut m = Manual::new(unpaced(), VideoParams::default());
    // About 1500 packets: more than the 1024 the window spans.
    let sent: Vec<Vec<u8>> = (0..120).map(|i| picture(i).0).collect();
    let mut held = None;
    let mut got = Vec::new();
    for i in 0..120 {
        for (k, p) in m.packets(i).into_iter().enumerate() {
            if i == 1 && k == 2 {
                held = Some(p);
                continue;
            }
            m.feed(&p);
        }
        got.extend(m.b_frames());
    }
    // Picture 1 lost a packet more than 1024 packets ago: given up on, and the group gated.
    m.feed(&held.unwrap());
    got.extend(m.b_frames());
    let st = m.b.stats();
    assert_eq!(st.late, 1, "{st:?}");
    assert!(got.iter().all(|f| f.complete && sent.contains(&f.data)));
    let idx: Vec<usize> = got
        .iter()
        .map(|f| sent.iter().position(|s| *s == f.data).unwrap())
        .collect();
    assert_eq!(idx, [0].into_iter().chain(30..120).collect::<Vec<_>>());
    assert_eq!(st.frames_dropped_incomplete, 1);
}

#[test]
fn sequence_wrap_during_a_retransmission() {
    for rtx_on in [false, true] {
        let mut a_cfg = video(VideoParams {
            rtx: if rtx_on { rtx() } else { None },
            ..VideoParams::default()
        });
        a_cfg.initial_seq = Some(65_500);
        let b_cfg = video(VideoParams {
            rtx: if rtx_on { rtx() } else { None },
            ..VideoParams::default()
        });
        let p = PathConfig::clean(Duration::from_millis(20));
        let mut pair = pair(a_cfg, b_cfg, p, p, 7);
        let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let s = seen.clone();
        // The packets either side of the wrap are lost the first time.
        pair.ab.set_filter(Box::new(move |d| match rtp_seq(d) {
            Some((96, seq)) => {
                [65_534u16, 65_535, 0, 1].contains(&seq) && s.lock().unwrap().insert(seq)
            }
            _ => false,
        }));
        let clip = send_clip(&mut pair, 10, Duration::from_secs(1));
        let o = outcome(&clip, &pair.b.events);
        assert_eq!((o.intact, o.corrupt), (10, 0), "rtx {rtx_on}");
        let b = pair.b.core.stats();
        assert_eq!(b.recovered, 4, "rtx {rtx_on}: {b:?}");
        // With RTX, the tail-loss probe after the last picture comes as RTX too.
        assert_eq!(b.rtx_received, if rtx_on { 4 + 1 } else { 0 });
    }
}

#[test]
fn a_nack_storm_cannot_multiply_traffic() {
    let mut m = Manual::new(unpaced(), VideoParams::default());
    let b_addr: SocketAddr = ([10, 0, 0, 2], 6000).into();
    let mut media_bytes = 0usize;
    let mut last_seq = 0;
    for i in 0..60 {
        m.now += FRAME;
        for p in m.packets(i) {
            media_bytes += p.len();
            last_seq = parse_rtp(&p).unwrap().0.sequence;
        }
    }
    let a_ssrc = m.a.ssrc();
    let before = m.a.stats();
    // For one second, every millisecond, a NACK for the last 500 packets.
    let lost: Vec<u16> = (0..500).map(|k| last_seq.wrapping_sub(k)).collect();
    let mut resent_bytes = 0usize;
    for _ in 0..1000 {
        m.now += Duration::from_millis(1);
        let mut nack = Vec::new();
        build_nack(&mut nack, 0x1234, a_ssrc, &lost).unwrap();
        m.a.handle_rtcp(m.now, b_addr, &nack);
        m.a.handle_timeout(m.now);
        while let Some(t) = m.a.poll_transmit() {
            resent_bytes += t.contents.len();
        }
    }
    let after = m.a.stats();
    let asked = 1000 * 500;
    assert_eq!(after.nack_received - before.nack_received, asked);
    // The budget: half the media rate (60 pictures in 2 s) plus a 64 kB bucket, and the same
    // packet at most once per guard time.
    let budget = 64_000 + media_bytes / 2 / 2 + 1300;
    assert!(resent_bytes <= budget, "{resent_bytes} > {budget}");
    assert!(after.retransmit_refused > 400_000, "{after:?}");
    assert!(after.retransmitted > 50);
}

#[test]
fn rtx_from_another_sender_is_accepted_and_its_duplicates_counted() {
    // A sender like GStreamer's rtprtxsend: its own SSRC and payload type for RTX.
    let b_cfg = VideoParams {
        rtx: Some(RtxConfig {
            payload_type: 101,
            apt: 96,
            ssrc: None,
        }),
        ..VideoParams::default()
    };
    let mut m = Manual::new(unpaced(), b_cfg);
    let pkts = m.packets(0);
    let missing = pkts[5].clone();
    for (k, p) in pkts.iter().enumerate() {
        if k != 5 {
            m.feed(p);
        }
    }
    assert!(m.b_frames().is_empty());
    m.now += Duration::from_millis(10);
    m.b.handle_timeout(m.now);
    let nacked: Vec<u16> = std::iter::from_fn(|| m.b.poll_transmit())
        .filter_map(|t| parse_compound(&t.contents).ok())
        .flatten()
        .filter_map(|e| match e {
            RtcpEvent::Nack { lost, .. } => Some(lost),
            _ => None,
        })
        .flatten()
        .collect();
    let osn = parse_rtp(&missing).unwrap().0.sequence;
    assert_eq!(nacked, [osn, osn], "each NACK goes out in two copies");
    let mut rtx_pkt = Vec::new();
    wrap_rtx(&missing, 101, 0xfeed_beef, 9, &mut rtx_pkt).unwrap();
    m.feed(&rtx_pkt);
    let got = m.b_frames();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, picture(0).0);
    // The same repair again, and a repair of a packet that did arrive: dropped, counted.
    m.feed(&rtx_pkt);
    let mut dup = Vec::new();
    wrap_rtx(&pkts[3], 101, 0xfeed_beef, 10, &mut dup).unwrap();
    m.feed(&dup);
    assert!(m.b_frames().is_empty());
    let st = m.b.stats();
    assert_eq!(
        (st.rtx_received, st.rtx_duplicates, st.recovered),
        (3, 2, 1)
    );
    // An RTX packet too short for its original sequence number is malformed, not a panic.
    let mut short = rtx_pkt[..12].to_vec();
    short.push(0);
    m.feed(&short);
    assert_eq!(m.b.stats().malformed, 1);
}

fn lossy_run(loss: f64, n: usize, seed: u64, rtx_on: bool) -> (Outcome, usize) {
    let p = PathConfig::lossy(loss);
    let cfg = VideoParams {
        rtx: if rtx_on { rtx() } else { None },
        ..VideoParams::default()
    };
    let mut pair = pair(video(cfg.clone()), video(cfg), p, p, seed);
    let clip = send_clip(&mut pair, n, Duration::from_secs(2));
    (outcome(&clip, &pair.b.events), n)
}

#[test]
fn three_percent_loss_both_ways_keeps_98_percent_of_pictures() {
    let mut intact = 0;
    let mut total = 0;
    for seed in 0..3 {
        let (o, n) = lossy_run(0.03, 300, 100 + seed, seed % 2 == 0);
        assert_eq!(o.corrupt, 0);
        assert!(o.in_order);
        intact += o.intact;
        total += n;
    }
    assert!(intact * 100 >= total * 98, "{intact} of {total}");
}

#[test]
fn ten_percent_loss_both_ways_keeps_90_percent_of_pictures() {
    let mut intact = 0;
    let mut total = 0;
    for seed in 0..3 {
        let (o, n) = lossy_run(0.10, 300, 200 + seed, seed % 2 == 1);
        assert_eq!(o.corrupt, 0);
        assert!(o.in_order);
        intact += o.intact;
        total += n;
    }
    assert!(intact * 100 >= total * 90, "{intact} of {total}");
}

#[test]
fn rtt_is_measured_from_receiver_reports() {
    let p = PathConfig::clean(Duration::from_millis(20));
    let mut pair = pair(
        video(VideoParams::default()),
        video(VideoParams::default()),
        p,
        p,
        8,
    );
    send_clip(&mut pair, 120, Duration::from_secs(2));
    let rtt = pair.a.core.rtt().expect("A sends SRs and gets RRs back");
    assert!(
        rtt.abs_diff(Duration::from_millis(40)) < Duration::from_millis(2),
        "{rtt:?}"
    );
    let a = pair.a.core.stats();
    assert!((a.rtt_ms - 40.0).abs() < 2.0);
    assert_eq!(a.remote_fraction_lost, 0.0);
    assert_eq!(a.remote_cumulative_lost, 0);
}

fn audio(jitter_ms: u32) -> CoreConfig {
    CoreConfig {
        media: MediaParams::Audio(AudioParams {
            audio_jitter_ms: jitter_ms,
            ..AudioParams::default()
        }),
        ..CoreConfig::default()
    }
}

#[test]
fn audio_jitter_buffer_plays_in_order_and_conceals_losses() {
    let mut path = PathConfig::lossy(0.05);
    path.jitter = Duration::from_millis(15);
    path.reorder = 0.05;
    let mut pair = pair(audio(0), audio(40), path, path, 9);
    let start = pair.now();
    let tone: Vec<i16> = (0..160)
        .map(|i| ((i as f64 / 20.0).sin() * 8000.0) as i16)
        .collect();
    for i in 0..500u32 {
        pair.run_until(start + Duration::from_millis(20) * i);
        pair.with_a(|c, now| c.send_audio(now, &tone)).unwrap();
    }
    pair.run_for(Duration::from_secs(1));
    let frames: Vec<(Instant, &roomkit_media::AudioFrame)> = pair
        .b
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            StreamEvent::Audio(f) => Some((*t, f)),
            _ => None,
        })
        .collect();
    let st = pair.b.core.stats();
    let sent = pair.ab.stats();
    // Every frame of the stream comes out exactly once, in order, real or concealed; after the
    // last packet at most 100 ms of concealment follows before playout pauses.
    let ts: Vec<u32> = frames.iter().map(|(_, f)| f.rtp_timestamp).collect();
    assert!(
        ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 160),
        "timestamps in steps of 160"
    );
    let last_real = frames.iter().rposition(|(_, f)| !f.concealed).unwrap();
    assert!((495..500).contains(&last_real), "{last_real}");
    assert!(frames.len() - last_real - 1 <= 5);
    let all_concealed = frames.iter().filter(|(_, f)| f.concealed).count();
    assert_eq!(all_concealed as u64, st.audio_concealed);
    let frames = &frames[..=last_real];
    // Each packet lost on the path, or too late to play, became a concealed frame (a lost
    // first packet is not missed: playout starts at the first that arrives).
    let concealed = frames.iter().filter(|(_, f)| f.concealed).count() as u64;
    let real = frames.len() as u64 - concealed;
    assert!(concealed + 1 >= sent.dropped, "{st:?} {sent:?}");
    assert_eq!(real + concealed, frames.len() as u64);
    assert!(real >= 500 - sent.dropped - st.audio_late - 1, "{st:?}");
    assert!(frames.iter().all(|(_, f)| f.pcm.len() == 160));
    assert!(frames
        .iter()
        .filter(|(_, f)| f.concealed)
        .all(|(_, f)| f.payload.is_empty()));
    // On a 20 ms cadence.
    let gaps: Vec<Duration> = frames.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let on_cadence = gaps
        .iter()
        .filter(|g| g.abs_diff(Duration::from_millis(20)) < Duration::from_millis(1))
        .count();
    assert!(
        on_cadence * 100 >= gaps.len() * 95,
        "{on_cadence} of {}",
        gaps.len()
    );
    assert!(st.audio_jitter_depth_ms >= 40.0);
}

#[test]
fn inactivity_then_bye_are_reported_once_each() {
    let p = PathConfig::clean(Duration::from_millis(20));
    let mut b_cfg = video(VideoParams::default());
    b_cfg.inactivity_timeout = Duration::from_secs(3);
    let mut a_cfg = video(VideoParams::default());
    a_cfg.inactivity_timeout = Duration::ZERO;
    let mut pair = pair(a_cfg, b_cfg, p, p, 10);
    send_clip(&mut pair, 30, Duration::ZERO);
    // A goes silent: no media, and its RTCP is lost from now on.
    pair.ab.set_filter(Box::new(|_| true));
    let silent_from = pair.now();
    pair.run_for(Duration::from_secs(10));
    let inactive: Vec<_> = pair
        .b
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            StreamEvent::Inactive { silent_for } => Some((*t, *silent_for)),
            _ => None,
        })
        .collect();
    assert_eq!(inactive.len(), 1);
    assert!(inactive[0].0 - silent_from <= Duration::from_secs(3) + Duration::from_millis(50));
    assert!(inactive[0].1 >= Duration::from_secs(3));
    // A comes back and then says goodbye.
    pair.ab.set_filter(Box::new(|_| false));
    pair.with_a(|c, now| c.close(now));
    pair.run_for(Duration::from_secs(1));
    let byes = pair
        .b
        .events
        .iter()
        .filter(|(_, e)| matches!(e, StreamEvent::RemoteBye { .. }))
        .count();
    assert_eq!(byes, 1);
    assert_eq!(pair.b.core.stats().bye_received, 1);
    assert_eq!(pair.a.core.poll_timeout(), None);
    assert!(pair
        .a
        .core
        .send_video(pair.now(), &picture(1).0, None)
        .is_err());
    // A's own stream never timed out: its check was off.
    assert!(!pair
        .a
        .events
        .iter()
        .any(|(_, e)| matches!(e, StreamEvent::Inactive { .. })));
}

#[test]
fn latching_points_feedback_at_the_peers_rtcp_port() {
    let now = Instant::now();
    let placeholder: SocketAddr = ([127, 0, 0, 1], 9).into();
    let cfg = CoreConfig {
        media: MediaParams::Video(VideoParams::default()),
        remote_rtp: placeholder,
        remote_rtcp: placeholder,
        rtcp_mux: false,
        source_policy: roomkit_media::rtp::config::SourcePolicy::LatchFirst,
        ..CoreConfig::default()
    };
    let mut b = StreamCore::new(cfg, now, SystemTime::now(), 3).unwrap();
    let mut a = Manual::new(unpaced(), VideoParams::default());
    let peer: SocketAddr = ([10, 0, 0, 7], 40_000).into();
    let pkts = a.packets(0);
    b.handle_rtp(now, peer, &pkts[0]);
    assert_eq!(b.remote_rtp(), peer);
    assert_eq!(b.remote_rtcp(), ([10, 0, 0, 7], 40_001).into());
    b.request_keyframe(now, roomkit_media::rtp::KeyframeRequest::Pli);
    let t = b.poll_transmit().expect("a PLI");
    assert_eq!(t.dest, ([10, 0, 0, 7], 40_001).into());
    // The peer's RTCP from elsewhere latches the RTCP address for good.
    let elsewhere: SocketAddr = ([10, 0, 0, 7], 50_000).into();
    let mut rr = Vec::new();
    roomkit_media::rtp::rtcp::build_rr(&mut rr, 0x77, &[]).unwrap();
    b.handle_rtcp(now, elsewhere, &rr);
    assert_eq!(b.remote_rtcp(), elsewhere);
}

/// The last packet of the last picture lost: no later packet reveals the gap. The sender's
/// tail-loss probe (its last packet again, as RTX, once no picture followed) repairs it; so does
/// the receiver's (a NACK for the packet after a newest one that ended no picture), which works
/// without RTX too. With neither, the picture stays lost.
#[test]
fn a_lost_last_packet_is_repaired_by_the_tail_probe() {
    let run = |rtx_on: bool, drop_seq: Option<u16>, rx_probe: bool| {
        let cfg = VideoParams {
            rtx: if rtx_on { rtx() } else { None },
            nack: NackConfig {
                tail_probe: if rx_probe {
                    NackConfig::default().tail_probe
                } else {
                    Duration::ZERO
                },
                ..NackConfig::default()
            },
            ..VideoParams::default()
        };
        let mut a_cfg = video(cfg.clone());
        a_cfg.initial_seq = Some(1_000);
        let p = PathConfig::clean(Duration::from_millis(20));
        let mut pair = pair(a_cfg, video(cfg), p, p, 9);
        // Only the first time: a plain retransmission carries the same sequence number.
        let dropped = Arc::new(AtomicU32::new(0));
        pair.ab.set_filter(Box::new(move |d| {
            matches!(rtp_seq(d), Some((96, seq)) if Some(seq) == drop_seq)
                && dropped.fetch_add(1, Ordering::Relaxed) == 0
        }));
        let clip = send_clip(&mut pair, 12, Duration::from_secs(2));
        let o = outcome(&clip, &pair.b.events);
        (o.intact, pair.a.core.stats(), pair.b.core.stats())
    };
    // A clean run tells which sequence number the last packet has.
    let (intact, a, _) = run(true, None, false);
    assert_eq!((intact, a.tail_probes), (12, 1));
    let last = 1_000 + (a.packets_sent - a.tail_probes - 1) as u16;

    // The sender's probe alone.
    let (intact, a, b) = run(true, Some(last), false);
    assert_eq!(intact, 12, "{b:?}");
    assert_eq!((a.tail_probes, b.rtx_received), (1, 1));
    // Neither probe: lost.
    let (intact, a, _) = run(false, Some(last), false);
    assert_eq!((intact, a.tail_probes), (11, 0));
    // The receiver's probe, without RTX: asked for and resent.
    let (intact, a, b) = run(false, Some(last), true);
    assert_eq!(intact, 12, "{a:?} {b:?}");
    assert_eq!(
        (a.tail_probes, a.retransmitted, b.recovered),
        (0, 1, 1),
        "{a:?}"
    );
}

/// A padding-only RTP packet: `pt`, `ssrc`, `seq`, `ts`, and 200 bytes of padding.
fn padding_packet(pt: u8, ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0xa0, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(0u8, 199));
    p.push(200);
    p
}

#[test]
fn padding_only_probes_are_counted_and_never_reach_picture_assembly() {
    let b_cfg = VideoParams {
        rtx: rtx(),
        ..unpaced()
    };
    let mut m = Manual::new(unpaced(), b_cfg);
    let first = m.packets(0);
    let mut second = m.packets(1);
    let (meta, _) = parse_rtp(first.last().unwrap()).unwrap();
    // A probe between the two pictures takes the next media sequence number; the second
    // picture's packets move up by one behind it, as a sender would number them.
    let probe = padding_packet(96, meta.ssrc, meta.sequence.wrapping_add(1), meta.timestamp);
    for p in &mut second {
        let seq = u16::from_be_bytes([p[2], p[3]]).wrapping_add(1);
        p[2..4].copy_from_slice(&seq.to_be_bytes());
    }
    for p in &first {
        m.feed(p);
    }
    m.feed(&probe);
    // And one on the RTX stream: no original sequence number inside, nothing to repair.
    m.feed(&padding_packet(97, 0xabcd, 1, meta.timestamp));
    for p in &second {
        m.feed(p);
    }
    m.now += Duration::from_millis(50);
    m.b.handle_timeout(m.now);
    let got = m.b_frames();
    assert_eq!(got.len(), 2);
    assert_eq!((&got[0].data, &got[1].data), (&picture(0).0, &picture(1).0));
    let nacks = std::iter::from_fn(|| m.b.poll_transmit())
        .filter_map(|t| parse_compound(&t.contents).ok())
        .flatten()
        .filter(|e| matches!(e, RtcpEvent::Nack { .. }))
        .count();
    let st = m.b.stats();
    assert_eq!(nacks, 0, "the probe's sequence number is no gap");
    assert_eq!((st.padding_received, st.malformed, st.lost), (2, 0, 0));
    assert_eq!(st.packets_received as usize, first.len() + second.len() + 2);
}
