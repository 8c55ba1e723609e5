//! Congestion control inside the stream core, on virtual time (issue 17, items 3 and 4 of the
//! build list in the pure layer): two `StreamCore`s with transport-wide CC on, a 3 Mbit/s
//! picture source and a 1.5 Mbit/s drop-tail bottleneck with a 300 ms queue. The sender stamps
//! transport-wide numbers, the receiver reports them, the estimate steers the pacer and whole
//! pictures are dropped rather than queued; the same run without congestion control shows the
//! queue at its limit. Seeded: every run is the same.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use roomkit_media::rtp::bwe::RateReason;
use roomkit_media::rtp::config::{
    CcFeedback, CongestionParams, CoreConfig, MediaParams, VideoParams,
};
use roomkit_media::rtp::rtx::RtxConfig;
use roomkit_media::rtp::sim::{h264_picture, Bottleneck, PathConfig, SimPair, SimPath};
use roomkit_media::rtp::stats::StreamStats;
use roomkit_media::rtp::stream::StreamEvent;

const FRAME: Duration = Duration::from_nanos(33_333_333);
const ONE_WAY: Duration = Duration::from_millis(20);

fn config(cc: bool) -> CoreConfig {
    config_with(CongestionParams {
        enabled: cc,
        ..CongestionParams::default()
    })
}

fn config_with(congestion: CongestionParams) -> CoreConfig {
    CoreConfig {
        media: MediaParams::Video(VideoParams {
            congestion,
            ..VideoParams::default()
        }),
        rtcp_interval: Duration::from_secs(1),
        ..CoreConfig::default()
    }
}

fn pair(t0: Instant, cc: bool) -> SimPair {
    pair_with(t0, config(cc))
}

fn pair_with(t0: Instant, cfg: CoreConfig) -> SimPair {
    let narrow = PathConfig {
        bottleneck: Some(Bottleneck {
            rate_bps: 1_500_000,
            queue_limit: Duration::from_millis(300),
        }),
        ..PathConfig::clean(ONE_WAY)
    };
    SimPair::new(
        t0,
        cfg.clone(),
        cfg,
        SimPath::new(narrow, 7),
        SimPath::new(PathConfig::clean(ONE_WAY), 8),
        3,
    )
    .unwrap()
}

/// What one run of the clip gave.
struct Outcome {
    sent: usize,
    intact: usize,
    corrupt: usize,
    queue_p95: Duration,
    dropped: usize,
    /// The sender's target bitrate events: when, how much, why.
    targets: Vec<(Instant, u64, RateReason)>,
}

/// Sends `n` pictures at 30 fps and about 3 Mbit/s (a key picture of 30 packets every 60, or
/// sooner when the stream asks for one, as an encoder would; the others 8 to 12 packets).
fn run(pair: &mut SimPair, n: usize, settle: Duration) -> Outcome {
    run_sized(pair, n, settle, 30, 8)
}

/// [`run`] with key pictures of `key_packets` packets and the others `base` to `base + 4`.
fn run_sized(
    pair: &mut SimPair,
    n: usize,
    settle: Duration,
    key_packets: usize,
    base: usize,
) -> Outcome {
    let start = pair.now();
    let mut sent = HashMap::new();
    let (mut since_key, mut key_wanted) = (0, true);
    let mut targets = Vec::new();
    for i in 0..n {
        pair.run_until(start + FRAME * i as u32);
        let mut asked = false;
        for (t, e) in pair.a.events.drain(..) {
            match e {
                StreamEvent::KeyframeRequested(_) => asked = true,
                StreamEvent::TargetBitrate { bps, reason } => targets.push((t, bps, reason)),
                _ => {}
            }
        }
        key_wanted |= asked;
        let key = key_wanted || since_key >= 60;
        let len = if key {
            key_packets * 1_180
        } else {
            1_180 * (base + i % 5)
        };
        let pic = h264_picture(key, len, i as u64);
        pair.with_a(|c, now| c.send_video(now, &pic, Some(i as f64 * 1000.0 / 30.0)))
            .unwrap();
        sent.insert(pic, i);
        (since_key, key_wanted) = if key {
            (0, false)
        } else {
            (since_key + 1, false)
        };
    }
    pair.run_for(Duration::from_secs(1));
    let mut o = Outcome {
        sent: n,
        intact: 0,
        corrupt: 0,
        queue_p95: Duration::ZERO,
        dropped: 0,
        targets,
    };
    for (_, e) in &pair.b.events {
        if let StreamEvent::Video(f) = e {
            match sent.get(&f.data) {
                Some(_) if f.complete => o.intact += 1,
                _ => o.corrupt += 1,
            }
        }
    }
    let mut q: Vec<Duration> = pair
        .ab_queue_delays
        .iter()
        .filter(|(t, _)| *t >= start + settle)
        .map(|&(_, d)| d)
        .collect();
    q.sort();
    o.queue_p95 = q.get(q.len() * 95 / 100).copied().unwrap_or_default();
    o.dropped = pair.a.core.stats().cc_pictures_dropped as usize;
    o
}

/// Feedback went from the receiver `b` to the sender `a` (at least `min` reports, sent and used)
/// and the sender paces at its estimate.
fn assert_feedback_steers(a: &StreamStats, b: &StreamStats, min: u64) {
    assert!(b.cc_feedback_sent >= min, "{}", b.cc_feedback_sent);
    assert!(a.cc_feedback_received >= min, "{}", a.cc_feedback_received);
    assert_eq!(a.cc_pacer_rate_bps, a.cc_target_bps);
}

/// The sender's estimate ended within `estimate` and the bottleneck queue stayed short.
fn assert_settled(a: &StreamStats, o: &Outcome, estimate: RangeInclusive<u64>) {
    assert!(
        estimate.contains(&a.cc_target_bps),
        "estimate {}",
        a.cc_target_bps
    );
    assert!(
        o.queue_p95 <= Duration::from_millis(100),
        "{:?}",
        o.queue_p95
    );
}

#[test]
fn the_estimate_steers_the_pacer_and_whole_pictures_are_dropped_instead_of_queued() {
    let t0 = Instant::now();
    let settle = Duration::from_secs(5);

    let mut off = pair(t0, false);
    let without = run(&mut off, 450, settle);
    let mut on = pair(t0, true);
    let with = run(&mut on, 450, settle);

    let a = on.a.core.stats();
    let b = on.b.core.stats();
    println!(
        "CC off: {}/{} intact, {} damaged, queue p95 {:?}",
        without.intact, without.sent, without.corrupt, without.queue_p95
    );
    println!(
        "CC on: {}/{} intact, {} damaged, queue p95 {:?}; estimate {} bit/s, pacer {} bit/s, \
         {} pictures dropped by the sender, feedback {} sent / {} used",
        with.intact,
        with.sent,
        with.corrupt,
        with.queue_p95,
        a.cc_target_bps,
        a.cc_pacer_rate_bps,
        with.dropped,
        b.cc_feedback_sent,
        a.cc_feedback_received
    );
    // Feedback flows at the receiver's pace (50 ms over 15 s, at least half of that); the
    // estimate ends near the bottleneck, the pacer runs at it and the queue stays short.
    assert_feedback_steers(&a, &b, 150);
    assert_settled(&a, &with, 900_000..=1_650_000);
    // Without congestion control the queue sits at its 300 ms limit.
    assert!(
        without.queue_p95 >= Duration::from_millis(250),
        "{:?}",
        without.queue_p95
    );
    // What arrives is whole, and more of it than without.
    assert_eq!(with.corrupt, 0);
    assert!(a.cc_pictures_dropped > 0);
    assert!(
        with.intact > without.intact,
        "{} vs {}",
        with.intact,
        without.intact
    );
    // Off means off: no extension, no feedback.
    assert_eq!(off.b.core.stats().cc_feedback_sent, 0);
    assert_eq!(off.a.core.stats().cc_target_bps, 0);
}

/// Congestion control and FEC on one stream (issue 17): FEC packets are built from the packets
/// as they leave the pacer, transport-wide number included, and are paced and stamped like
/// media. Through the 1.5 Mbit/s bottleneck with 3 % random loss on top: feedback flows, the
/// estimate settles below the link, the queue stays short (FEC is inside the budget), and
/// packets rebuilt from FEC (not NACKed: NACK is off) complete pictures byte for byte.
#[test]
fn congestion_control_and_fec_run_together_through_a_lossy_bottleneck() {
    let t0 = Instant::now();
    let (p, o) = lossy_run(t0, true);
    let (_, without) = lossy_run(t0, false);
    let (a, b) = (p.a.core.stats(), p.b.core.stats());
    println!(
        "CC + FEC, 3 % loss: {}/{} intact, {} damaged, queue p95 {:?}; estimate {} bit/s, \
         {} pictures dropped; FEC {} sent / {} received / {} rebuilt / {} unrecoverable; \
         feedback {} sent / {} used; CC without FEC: {}/{} intact",
        o.intact,
        o.sent,
        o.corrupt,
        o.queue_p95,
        a.cc_target_bps,
        o.dropped,
        a.fec_sent,
        b.fec_received,
        b.fec_recovered,
        b.fec_unrecoverable,
        b.cc_feedback_sent,
        a.cc_feedback_received,
        without.intact,
        without.sent,
    );
    // Feedback flows (every 50 ms over 15 s; half of that as a floor); the estimate, FEC
    // included, ends below the link and the queue stays short.
    assert_feedback_steers(&a, &b, 150);
    assert_settled(&a, &o, 700_000..=1_650_000);
    // FEC went out and rebuilt packets that completed pictures: a packet rebuilt wrong (its
    // transport-wide number or anything else) would make its picture differ from what was sent.
    assert!(a.fec_sent >= 200, "{}", a.fec_sent);
    assert!(b.fec_recovered >= 15, "{}", b.fec_recovered);
    assert_eq!(o.corrupt, 0);
    assert!(o.intact >= 250, "{}", o.intact);
    assert!(
        o.intact > without.intact,
        "{} vs {}",
        o.intact,
        without.intact
    );
    // Every RED packet that arrived (media and FEC) was reported received, and no packet
    // rebuilt from FEC was: the estimator's "received" is what the network delivered.
    let bwe = p.a.core.congestion_stats().unwrap();
    println!(
        "estimator: {} reported received, {} lost; receiver: {} packets arrived",
        bwe.acked, bwe.lost, b.packets_received
    );
    assert!(bwe.acked <= b.packets_received, "{bwe:?} {b:?}");
    assert!(bwe.acked * 100 >= b.packets_received * 95, "{bwe:?} {b:?}");
    assert!(bwe.lost >= b.fec_recovered, "{bwe:?} {b:?}");
}

/// One run of the test above, with FEC or without (NACK off in both).
fn lossy_run(t0: Instant, fec: bool) -> (SimPair, Outcome) {
    let mut cfg = config(true);
    if let MediaParams::Video(v) = &mut cfg.media {
        v.fec = fec.then(roomkit_media::rtp::fec::FecConfig::default);
        v.nack.enabled = false;
    }
    let lossy = PathConfig {
        bottleneck: Some(Bottleneck {
            rate_bps: 1_500_000,
            queue_limit: Duration::from_millis(300),
        }),
        loss: 0.03,
        ..PathConfig::clean(ONE_WAY)
    };
    let mut p = SimPair::new(
        t0,
        cfg.clone(),
        cfg,
        SimPath::new(lossy, 11),
        SimPath::new(PathConfig::clean(ONE_WAY), 12),
        5,
    )
    .unwrap();
    // About 0.75 Mbit/s of media (key pictures of 6 packets, others 1 to 5), FEC on top.
    let o = run_sized(&mut p, 450, Duration::from_secs(5), 6, 1);
    (p, o)
}

/// Probing in the stream core (issue 17): with RTX negotiated the sender probes with RTX copies
/// of the packets it sent last, at 2× and 3× the estimate, and the estimate reaches 70 % of the
/// 1.5 Mbit/s bottleneck sooner than the multiplicative ramp alone (the same run without RTX,
/// hence without probes: 4.8 s; 0.3 s with them), without a standing queue; the receiver drops
/// the copies it already had as duplicates.
#[test]
fn probes_with_rtx_find_the_link_sooner_than_the_ramp() {
    let t0 = Instant::now();
    let with_rtx = |rtx: bool| {
        let mut c = config(true);
        if let MediaParams::Video(v) = &mut c.media {
            v.rtx = rtx.then_some(RtxConfig {
                payload_type: 97,
                apt: 96,
                ssrc: None,
            });
        }
        c
    };
    let narrow = PathConfig {
        bottleneck: Some(Bottleneck {
            rate_bps: 1_500_000,
            queue_limit: Duration::from_millis(300),
        }),
        ..PathConfig::clean(ONE_WAY)
    };
    let mut runs = Vec::new();
    for rtx in [false, true] {
        let mut p = SimPair::new(
            t0,
            with_rtx(rtx),
            with_rtx(rtx),
            SimPath::new(narrow, 7),
            SimPath::new(PathConfig::clean(ONE_WAY), 8),
            3,
        )
        .unwrap();
        let o = run(&mut p, 300, Duration::from_secs(3));
        let reached = o
            .targets
            .iter()
            .find(|(_, bps, _)| *bps >= 1_050_000)
            .map(|(t, _, _)| (*t - t0).as_secs_f64());
        let probed = o
            .targets
            .iter()
            .filter(|(_, _, r)| *r == RateReason::Probe)
            .count();
        let bwe = p.a.core.congestion_stats().unwrap();
        let b = p.b.core.stats();
        println!(
            "RTX {rtx}: 70 % of 1.5 Mbit/s after {reached:?} s; {} probe clusters, {} probe \
             packets, {probed} targets from probes; {}/{} intact, queue p95 after 3 s {:?}; \
             receiver: {} RTX, {} duplicates",
            bwe.probe_clusters,
            bwe.probe_packets,
            o.intact,
            o.sent,
            o.queue_p95,
            b.rtx_received,
            b.rtx_duplicates
        );
        runs.push((reached, probed, bwe, o));
    }
    let (ramp, _, no_probes, _) = &runs[0];
    let (probe, probed, bwe, o) = &runs[1];
    assert_eq!(no_probes.probe_packets, 0);
    assert!(bwe.probe_packets >= 5 && *probed >= 1, "{bwe:?}");
    assert!(
        probe.is_some_and(|p| ramp.is_none_or(|r| p < r)),
        "{probe:?} vs {ramp:?}"
    );
    assert!(
        o.queue_p95 <= Duration::from_millis(100),
        "{:?}",
        o.queue_p95
    );
    assert_eq!(o.corrupt, 0);
}

/// REMB instead of transport-cc (a peer that offered `goog-remb` only): the receiver estimates
/// from arrivals against abs-send-time (or, without it, the RTP timestamps) and sends REMB; the
/// sender paces at what it hears. Through the same 1.5 Mbit/s bottleneck, with abs-send-time it
/// settles like the transport-cc flow: estimate within 70–110 % of the link, queue p95 under
/// 100 ms. Against RTP timestamps (a peer that offered no abs-send-time) the picture's pacing
/// hides the queue's growth from the delay filter: only the losses at the full queue hold the
/// estimate near the link, and the queue stays near its limit (a known limit, README).
#[test]
fn remb_from_a_receive_side_estimate_settles_like_transport_cc() {
    let t0 = Instant::now();
    let settle = Duration::from_secs(5);
    for abs_send_time_id in [Some(5), None] {
        let mut on = pair_with(
            t0,
            config_with(CongestionParams {
                enabled: true,
                feedback: CcFeedback::Remb,
                abs_send_time_id,
                ..CongestionParams::default()
            }),
        );
        let with = run(&mut on, 450, settle);
        let a = on.a.core.stats();
        let b = on.b.core.stats();
        let estimate = on.b.core.remb_estimate().unwrap();
        println!(
            "REMB (abs-send-time {abs_send_time_id:?}): {}/{} intact, {} damaged, queue p95 \
             {:?}; sender target {} bit/s, receiver estimate {estimate} bit/s, {} pictures \
             dropped, REMB {} sent / {} received",
            with.intact,
            with.sent,
            with.corrupt,
            with.queue_p95,
            a.cc_target_bps,
            with.dropped,
            b.cc_feedback_sent,
            a.cc_feedback_received
        );
        // A REMB a second at least (15 s), and the sender follows them.
        assert_feedback_steers(&a, &b, 12);
        assert_eq!(with.corrupt, 0);
        // No transport-wide numbers went out: the receiver sent no transport-cc feedback.
        assert_eq!(on.a.core.congestion_stats().unwrap().feedback, 0);
        if abs_send_time_id.is_none() {
            assert!(a.cc_target_bps <= 2_000_000, "estimate {}", a.cc_target_bps);
            continue;
        }
        assert_settled(&a, &with, 1_050_000..=1_650_000);
        // As many pictures whole as the transport-cc flow gets (53 of 450 in this run).
        assert!(with.intact >= 30, "{}", with.intact);
    }
}

/// RFC 8888 feedback instead of transport-cc (a peer that offered `ack ccfb`): no header
/// extension; the receiver reports each packet by SSRC and sequence number, the sender matches
/// them with what it sent and runs the same estimator. Through the 1.5 Mbit/s bottleneck it
/// settles like the transport-cc flow.
#[test]
fn rfc8888_feedback_settles_like_transport_cc() {
    let t0 = Instant::now();
    let mut cfg = config_with(CongestionParams {
        enabled: true,
        feedback: CcFeedback::Ccfb,
        ..CongestionParams::default()
    });
    // Repairs on RTX, as SDP agrees beside NACK: a repair sent as the original packet again
    // (same SSRC and number) is a duplicate RFC 8888 cannot report, so the sender would see
    // less arrive than it sent.
    if let MediaParams::Video(v) = &mut cfg.media {
        v.rtx = Some(RtxConfig {
            payload_type: 97,
            apt: 96,
            ssrc: None,
        });
    }
    let mut on = pair_with(t0, cfg);
    let with = run(&mut on, 450, Duration::from_secs(5));
    let a = on.a.core.stats();
    let b = on.b.core.stats();
    let bwe = on.a.core.congestion_stats().unwrap();
    println!(
        "CCFB: {}/{} intact, {} damaged, queue p95 {:?}; estimate {} bit/s, {} pictures \
         dropped, feedback {} sent / {} used; {} packets reported received, {} lost, {} unknown",
        with.intact,
        with.sent,
        with.corrupt,
        with.queue_p95,
        a.cc_target_bps,
        with.dropped,
        b.cc_feedback_sent,
        a.cc_feedback_received,
        bwe.acked,
        bwe.lost,
        bwe.unknown
    );
    assert_feedback_steers(&a, &b, 150);
    assert_settled(&a, &with, 1_050_000..=1_650_000);
    assert_eq!(with.corrupt, 0);
    assert!(with.intact >= 20, "{}", with.intact);
    assert!(bwe.acked > 1_000 && bwe.unknown == 0, "{bwe:?}");
}
