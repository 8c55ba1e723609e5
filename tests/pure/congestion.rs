//! The bandwidth estimator on virtual time (issue 17's "Prove it" for the pure layers): flows
//! that send at their estimate through a drop-tail bottleneck (`rtp::sim::CcSim`, the
//! impairment model's queue), with transport-wide feedback built, carried as RTCP and parsed.
//! Seeded, so every run is the same; the bands are the issue's.

use std::time::{Duration, Instant};

use roomkit_media::rtp::bwe::BweConfig;
use roomkit_media::rtp::sim::{Bottleneck, CcSim, PathConfig};

const ONE_WAY: Duration = Duration::from_millis(20);

fn link(rate_bps: u64, loss: f64) -> PathConfig {
    PathConfig {
        loss,
        bottleneck: Some(Bottleneck {
            rate_bps,
            queue_limit: Duration::from_millis(300),
        }),
        ..PathConfig::clean(ONE_WAY)
    }
}

fn secs(t0: Instant, s: f64) -> Instant {
    t0 + Duration::from_secs_f64(s)
}

fn p95(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)]
}

/// Prints a flow's targets, one a second (shown with `--nocapture` when a band is missed).
fn timeline(sim: &CcSim, flow: usize) -> String {
    sim.flows[flow]
        .estimates
        .iter()
        .step_by(10)
        .map(|(_, b)| format!("{}", b / 1000))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn settles_on_a_narrow_bottleneck_without_building_a_queue() {
    let t0 = Instant::now();
    let mut sim = CcSim::new(t0, link(1_500_000, 0.0), ONE_WAY, 1);
    sim.add_flow(BweConfig::default(), 3_000_000, t0);
    sim.run_until(secs(t0, 30.0));
    let line = timeline(&sim, 0);
    println!("targets (kbit/s, one a second): {line}");
    let after: Vec<u64> = sim.flows[0].estimates_after(secs(t0, 5.0)).collect();
    let (lo, hi) = (after.iter().min().unwrap(), after.iter().max().unwrap());
    let first = first_time(&sim, 0, t0, |b| b >= 1_050_000);
    println!("at 70 % of the link after {first:?} s; from 5 s on {lo}..{hi} bit/s");
    assert!(
        *lo >= 1_050_000 && *hi <= 1_650_000,
        "after 5 s the target left 70–110 % of 1.5 Mbit/s: {lo}..{hi}; {line}"
    );
    let q = p95(&sim.queue_delays_after(secs(t0, 5.0)));
    // The start's probes included.
    let q_all = p95(&sim.queue_delays_after(t0));
    println!("queue delay p95 after 5 s: {q:?}; over the whole run {q_all:?}");
    assert!(q < Duration::from_millis(100), "queue p95 {q:?}; {line}");
    assert!(
        q_all < Duration::from_millis(100),
        "queue p95 {q_all:?}; {line}"
    );
}

/// The first sample from `from` on at which `ok` holds, as seconds after `from`.
fn first_time(sim: &CcSim, flow: usize, from: Instant, ok: impl Fn(u64) -> bool) -> Option<f64> {
    sim.flows[flow]
        .estimates
        .iter()
        .find(|(t, b)| *t >= from && ok(*b))
        .map(|(t, _)| (*t - from).as_secs_f64())
}

#[test]
fn follows_the_link_up_and_down() {
    let t0 = Instant::now();
    let mut sim = CcSim::new(t0, link(1_500_000, 0.0), ONE_WAY, 2);
    sim.add_flow(BweConfig::default(), 8_000_000, t0);
    sim.run_until(secs(t0, 20.0));
    // 1.5 → 4 Mbit/s: followed (70 % of the new rate) within 10 s.
    sim.set_forward(link(4_000_000, 0.0));
    let up = sim.now();
    sim.run_until(secs(t0, 50.0));
    let line = timeline(&sim, 0);
    println!("targets (kbit/s, one a second): {line}");
    let t_up = first_time(&sim, 0, up, |b| b >= 2_800_000);
    println!("1.5 → 4 Mbit/s: 70 % after {t_up:?} s");
    // The bound is 10 s; probing does it in about 2 (3.4 s with the ramp alone).
    assert!(
        t_up.is_some_and(|t| t <= 5.0),
        "1.5 → 4 Mbit/s followed after {t_up:?} s; {line}"
    );
    // 4 → 1 Mbit/s: followed (at most 110 % of the new rate) within 2 s.
    sim.set_forward(link(1_000_000, 0.0));
    let down = sim.now();
    sim.run_until(secs(t0, 70.0));
    let line = timeline(&sim, 0);
    println!("targets (kbit/s, one a second): {line}");
    let t_down = first_time(&sim, 0, down, |b| b <= 1_100_000);
    println!("4 → 1 Mbit/s: at most 110 % after {t_down:?} s");
    assert!(
        t_down.is_some_and(|t| t <= 2.0),
        "4 → 1 Mbit/s followed after {t_down:?} s; {line}"
    );
    // And it settles there: 70–110 % of 1 Mbit/s over the last 10 s.
    let last: Vec<u64> = sim.flows[0].estimates_after(secs(t0, 60.0)).collect();
    let (lo, hi) = (last.iter().min().unwrap(), last.iter().max().unwrap());
    println!("last 10 s: {lo}..{hi} bit/s");
    assert!(*lo >= 700_000 && *hi <= 1_100_000, "{lo}..{hi}; {line}");
}

#[test]
fn light_random_loss_does_not_pull_the_estimate_down() {
    let t0 = Instant::now();
    let rate = 5_000_000;
    let mut sim = CcSim::new(t0, link(rate, 0.02), ONE_WAY, 3);
    sim.add_flow(BweConfig::default(), 8_000_000, t0);
    sim.run_until(secs(t0, 40.0));
    let line = timeline(&sim, 0);
    println!("targets (kbit/s, one a second): {line}");
    let after: Vec<u64> = sim.flows[0].estimates_after(secs(t0, 15.0)).collect();
    let lo = *after.iter().min().unwrap();
    println!("2 % loss: lowest target after 15 s {lo} bit/s");
    assert!(
        lo >= rate * 8 / 10,
        "at 2 % loss the target fell to {lo}; {line}"
    );
    assert_eq!(sim.flows[0].bwe.stats().loss_decreases, 0);
    assert!(sim.flows[0].bwe.stats().lost > 0);
}

#[test]
fn two_flows_share_a_bottleneck_fairly() {
    let t0 = Instant::now();
    let mut sim = CcSim::new(t0, link(3_000_000, 0.0), ONE_WAY, 4);
    sim.add_flow(BweConfig::default(), 8_000_000, t0);
    sim.add_flow(BweConfig::default(), 8_000_000, secs(t0, 5.0));
    sim.run_until(secs(t0, 60.0));
    let mean = |i: usize| {
        let v: Vec<u64> = sim.flows[i].estimates_after(secs(t0, 40.0)).collect();
        v.iter().sum::<u64>() as f64 / v.len() as f64
    };
    let (a, b) = (mean(0), mean(1));
    println!(
        "flow 0: {}\nflow 1: {}",
        timeline(&sim, 0),
        timeline(&sim, 1)
    );
    println!("means over the last 20 s: {a:.0} and {b:.0} bit/s");
    assert!(
        (a - b).abs() <= 0.3 * a.max(b),
        "unfair: {a:.0} vs {b:.0} bit/s"
    );
    // Together they use the link, without a standing queue.
    assert!(a + b >= 0.7 * 3_000_000.0, "{a} + {b}");
    let q = p95(&sim.queue_delays_after(secs(t0, 40.0)));
    assert!(q < Duration::from_millis(100), "queue p95 {q:?}");
}

#[test]
fn an_application_limited_stream_holds_its_estimate_then_probes_up_when_it_wants_more() {
    let t0 = Instant::now();
    let rate = 3_000_000;
    let mut sim = CcSim::new(t0, link(rate, 0.0), ONE_WAY, 5);
    // 300 kbit/s on a 3 Mbit/s link for 20 s: the estimate neither runs away from what is sent
    // nor sinks below it.
    sim.add_flow(BweConfig::default(), 300_000, t0);
    sim.run_until(secs(t0, 20.0));
    let line = timeline(&sim, 0);
    println!("targets (kbit/s, one a second): {line}");
    let after: Vec<u64> = sim.flows[0].estimates_after(secs(t0, 2.0)).collect();
    let (lo, hi) = (after.iter().min().unwrap(), after.iter().max().unwrap());
    println!("app-limited at 300 kbit/s: target {lo}..{hi} bit/s");
    assert!(*lo >= 300_000 && *hi <= 600_000, "{lo}..{hi}; {line}");
    // The application wants 3 Mbit/s: probing finds 70 % of the link within a few seconds.
    sim.set_app_bps(0, rate);
    let asked = sim.now();
    sim.run_until(secs(t0, 30.0));
    let line = timeline(&sim, 0);
    let t_up = first_time(&sim, 0, asked, |b| b >= rate * 7 / 10);
    let stats = sim.flows[0].bwe.stats();
    println!(
        "wants 3 Mbit/s: 70 % of the link after {t_up:?} s ({} probe clusters, {} raised it); {line}",
        stats.probe_clusters, stats.probe_raises
    );
    assert!(t_up.is_some_and(|t| t <= 3.0), "{t_up:?}; {line}");
    assert!(stats.probe_raises >= 1);
    // Back to 300 kbit/s for 20 s: application-limited, and the estimate holds.
    let level = sim.flows[0].bwe.target_bps();
    sim.set_app_bps(0, 300_000);
    let idle = sim.now();
    sim.run_until(secs(t0, 50.0));
    let line = timeline(&sim, 0);
    let held: Vec<u64> = sim.flows[0].estimates_after(idle).collect();
    let (lo, hi) = (held.iter().min().unwrap(), held.iter().max().unwrap());
    println!("from {level} bit/s, idle at 300 kbit/s: target {lo}..{hi} bit/s; {line}");
    assert!(sim.flows[0].bwe.in_alr());
    assert!(sim.flows[0].bwe.stats().alr_periods >= 1);
    assert!(
        *lo >= level * 8 / 10 && *hi <= level * 11 / 10,
        "{lo}..{hi} from {level}; {line}"
    );
}

#[test]
fn probes_of_an_application_limited_stream_keep_the_queue_short_on_a_narrow_link() {
    let t0 = Instant::now();
    let mut sim = CcSim::new(t0, link(1_500_000, 0.0), ONE_WAY, 6);
    // An encoder that sends 300 kbit/s but could use 8 Mbit/s: it probes every 5 s at 2× and
    // 3× the estimate, which a probe has set near the link's rate.
    sim.add_flow(BweConfig::default(), 300_000, t0);
    sim.set_desired_bps(0, 8_000_000);
    sim.run_until(secs(t0, 60.0));
    let line = timeline(&sim, 0);
    let stats = sim.flows[0].bwe.stats();
    let all = sim.queue_delays_after(t0);
    let (q, top) = (p95(&all), all[all.len() - 1]);
    println!(
        "1.5 Mbit/s, sends 0.3, wants 8: {} probe clusters ({} packets), queue p95 {q:?} max \
         {top:?}; {line}",
        stats.probe_clusters, stats.probe_packets
    );
    assert!(stats.probe_clusters >= 10, "{stats:?}");
    assert!(sim.flows[0].bwe.in_alr());
    assert!(q < Duration::from_millis(100), "queue p95 {q:?}; {line}");
    // The probes measure the link, never more; their own queue does not sink the estimate
    // toward what is sent.
    let after: Vec<u64> = sim.flows[0].estimates_after(secs(t0, 2.0)).collect();
    let (lo, hi) = (after.iter().min().unwrap(), after.iter().max().unwrap());
    println!("from 2 s on: {lo}..{hi} bit/s");
    assert!(*lo >= 1_050_000 && *hi <= 1_650_000, "{lo}..{hi}; {line}");
}

/// Audio and video of a call are separate transports (no BUNDLE) sharing the access link; only
/// video runs congestion control and audio stamps nothing. Audio is then cross traffic to the
/// video estimator: its packets build the same bottleneck queue, so the delay-based estimate
/// settles on what is left for video, which is what `on_target_bitrate` should report (taking
/// audio's rate off the estimate as well would count it twice). An "audio" flow here is pinned
/// to its rate (min = start = max) and never backs off, as audio does not.
#[test]
fn the_video_estimate_leaves_room_for_audio_on_its_own_transport() {
    const LINK: u64 = 1_500_000;
    let run = |audio_bps: u64| {
        let t0 = Instant::now();
        let mut sim = CcSim::new(t0, link(LINK, 0.0), ONE_WAY, 9);
        let video = sim.add_flow(BweConfig::default(), 3_000_000, t0);
        if audio_bps > 0 {
            let pinned = BweConfig {
                min_bps: audio_bps,
                start_bps: audio_bps,
                max_bps: audio_bps,
            };
            sim.add_flow(pinned, audio_bps, t0);
        }
        sim.run_until(secs(t0, 30.0));
        let v: Vec<u64> = sim.flows[video].estimates_after(secs(t0, 10.0)).collect();
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        let q = p95(&sim.queue_delays_after(secs(t0, 10.0)));
        (mean, q)
    };
    let (alone, alone_q) = run(0);
    println!("video alone: {alone:.0} bit/s, queue p95 {alone_q:?}");
    for audio in [100_000u64, 400_000] {
        let (video, q) = run(audio);
        println!(
            "with {audio} bit/s of audio: video estimate {video:.0} bit/s (alone {alone:.0}), \
             video + audio {:.0} bit/s, queue p95 {q:?}",
            video + audio as f64
        );
        // Together they fit the link without a standing queue...
        assert!(
            video + audio as f64 <= 1.05 * LINK as f64,
            "{video} + {audio}"
        );
        assert!(q < Duration::from_millis(100), "queue p95 {q:?}");
        // ...and video still uses most of what audio leaves.
        assert!(video >= 0.7 * (LINK - audio) as f64, "{video}");
    }
}

mod fuzz_checks {
    //! The `congestion` fuzz target's checks on feedback we build and on random bytes.
    use proptest::prelude::*;

    use crate::fuzz_support::congestion::feedback;
    use roomkit_media::rtp::{ccfb, rtcp, twcc};

    proptest! {
        #[test]
        fn built_feedback_passes_the_fuzz_checks(
            base in any::<u16>(),
            steps in proptest::collection::vec(proptest::option::of(-40_000i64..3_000_000), 1..300),
        ) {
            // Arrivals as a walk: each received packet moves the clock by its step.
            let mut t = 1_000_000i64;
            let arrivals: Vec<Option<i64>> = steps
                .iter()
                .map(|s| s.map(|d| { t += d; t }))
                .collect();
            let mut out = Vec::new();
            twcc::build(&mut out, 1, 2, base, 0, &arrivals).unwrap();
            feedback(&out[12..]);
        }

        #[test]
        fn built_ccfb_passes_the_fuzz_checks_and_the_rtcp_parser(
            blocks in proptest::collection::vec(
                (any::<u32>(), any::<u16>(), proptest::collection::vec(
                    proptest::option::of((0u8..4, 0u16..0x2000)), 0..40)),
                0..4),
            ts in any::<u32>(),
        ) {
            let blocks: Vec<ccfb::Block> = blocks
                .into_iter()
                .map(|(ssrc, begin_seq, m)| ccfb::Block {
                    ssrc,
                    begin_seq,
                    metrics: m.into_iter().map(|o| o.map(|(ecn, ato)| ccfb::Metric { ecn, ato })).collect(),
                })
                .collect();
            let mut out = Vec::new();
            ccfb::build(&mut out, 9, &blocks, ts).unwrap();
            feedback(&out[8..]);
            // In a compound after a receiver report, the RTCP parser yields the same report
            // (a report without blocks has no first SSRC to stand where feedback puts one).
            if !blocks.is_empty() {
                let mut compound = Vec::new();
                rtcp::build_rr(&mut compound, 9, &[]).unwrap();
                compound.extend_from_slice(&out);
                let events = rtcp::parse_compound(&compound).unwrap();
                let got = events.iter().find_map(|e| match e {
                    rtcp::RtcpEvent::Ccfb(fb) => Some(fb.clone()),
                    _ => None,
                });
                prop_assert_eq!(got.map(|fb| (fb.blocks, fb.report_timestamp)), Some((blocks, ts)));
            }
        }

        #[test]
        fn random_bytes_pass_the_fuzz_checks(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            feedback(&data);
        }
    }
}
