//! Congestion control over a SIP call on loopback (issue 17): two SIP video backends with
//! `ResilienceConfig::congestion` on agree to it in SDP (`transport-cc` and `a=extmap`), and the
//! video then carries transport-wide feedback both ways with the estimate in the sender's stats;
//! against an answerer without it, the call runs without (nothing in the stats).

use crate::support;

use std::time::Duration;

use crossbeam_channel::unbounded;
use roomkit_media::backend::{
    CongestionConfig, DialOptions, ResilienceConfig, SipBackendConfig, SipVideoBackend,
};
use roomkit_media::engine::SessionInfo;
use roomkit_media::prelude::*;
use roomkit_media::rtp::config::CcFeedback;
use roomkit_media::rtp::StreamStats;
use support::sip::*;

const T: Duration = Duration::from_secs(5);

fn with_cc(cfg: SipBackendConfig, on: bool) -> SipBackendConfig {
    with_cc_only(cfg, on, None)
}

/// [`with_cc`], offering and accepting only the feedback `only` when set.
fn with_cc_only(mut cfg: SipBackendConfig, on: bool, only: Option<CcFeedback>) -> SipBackendConfig {
    cfg.resilience = ResilienceConfig {
        congestion: CongestionConfig {
            enabled: on,
            start_bps: 2_000_000,
            feedback_only: only,
            ..CongestionConfig::default()
        },
        ..ResilienceConfig::default()
    };
    cfg
}

/// Calls an answerer (CC `answerer_cc`) from a CC-enabled dialer, sends 1.5 s of video from the
/// dialer, and returns the dialer's and the answerer's video stats.
fn call(slot: u16, answerer_cc: bool) -> (StreamStats, StreamStats) {
    call_with(slot, answerer_cc, false)
}

/// [`call`], with `video_fec` on both sides or not.
fn call_with(slot: u16, answerer_cc: bool, fec: bool) -> (StreamStats, StreamStats) {
    call_only(slot, answerer_cc, fec, None)
}

/// [`call_with`], the answerer accepting only the feedback `only` when set (the dialer offers
/// all three).
fn call_only(
    slot: u16,
    answerer_cc: bool,
    fec: bool,
    only: Option<CcFeedback>,
) -> (StreamStats, StreamStats) {
    let be = SipVideoBackend::new(with_cc_only(
        SipBackendConfig {
            video_fec: fec,
            ..config(slot)
        },
        answerer_cc,
        only,
    ))
    .unwrap();
    let (ctx, calls) = unbounded::<SessionInfo>();
    be.on_call(move |s| {
        let _ = ctx.send(s.clone());
    });
    start(&be);
    let port = 52000 + (slot + 10) * 100;
    let uac = SipVideoBackend::new(with_cc(
        SipBackendConfig {
            local_sip_addr: "127.0.0.1:0".parse().unwrap(),
            local_rtp_ip: [127, 0, 0, 1].into(),
            rtp_port_start: port,
            rtp_port_end: port + 99,
            video_fec: fec,
            ..SipBackendConfig::default()
        },
        true,
    ))
    .unwrap();
    uac.start().unwrap();
    let uri = format!("sip:room@{}", sip_addr(&be));
    let id = dial_ok(&uac, &uri, DialOptions::default());
    let info = calls.recv_timeout(T).unwrap();
    assert!(wait_until(T, || uac.get_video_session(id).is_some()));
    for i in 0..45u32 {
        uac.send_video(
            id,
            &h264_picture(i == 0, if i == 0 { 6_000 } else { 3_000 }, i),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(33));
    }
    std::thread::sleep(Duration::from_millis(300));
    let ours = uac.stats(id).unwrap().video.unwrap();
    let theirs = be.stats(info.id).unwrap().video.unwrap();
    uac.hangup(id).unwrap();
    (ours, theirs)
}

#[test]
fn a_sip_call_runs_congestion_control_only_when_both_sides_agreed() {
    let (ours, theirs) = call(31, true);
    println!(
        "agreed: feedback {} sent by the answerer, {} used; estimate {} bit/s",
        theirs.cc_feedback_sent, ours.cc_feedback_received, ours.cc_target_bps
    );
    // Floors for a loaded machine: feedback is due every 50 ms for 1.5 s.
    assert!(theirs.cc_feedback_sent >= 8, "{theirs:?}");
    assert!(ours.cc_feedback_received >= 8, "{ours:?}");
    assert!(ours.cc_target_bps >= 50_000, "{ours:?}");
    assert!(theirs.frames >= 20, "{theirs:?}");

    let (ours, theirs) = call(32, false);
    assert_eq!((ours.cc_target_bps, ours.cc_feedback_received), (0, 0));
    assert_eq!(theirs.cc_feedback_sent, 0);
    assert!(theirs.frames >= 20, "{theirs:?}");
}

/// With FEC agreed too, the call runs both: FEC packets go out (built as the media leaves, with
/// its transport-wide numbers) and arrive, feedback flows about all of it, pictures arrive.
#[test]
fn a_sip_call_with_fec_runs_congestion_control_too() {
    let (ours, theirs) = call_with(33, true, true);
    println!(
        "CC + FEC: feedback {} sent by the answerer, {} used; estimate {} bit/s; FEC {} sent, \
         {} received; {} frames",
        theirs.cc_feedback_sent,
        ours.cc_feedback_received,
        ours.cc_target_bps,
        ours.fec_sent,
        theirs.fec_received,
        theirs.frames
    );
    assert!(theirs.cc_feedback_sent >= 8, "{theirs:?}");
    assert!(ours.cc_feedback_received >= 8, "{ours:?}");
    assert!(ours.cc_target_bps >= 50_000, "{ours:?}");
    // FEC is sized from the answerer's reports: at the configured rate until the first, then
    // from the loss they show (none on loopback, so none after).
    assert!(ours.fec_sent >= 1, "{ours:?}");
    assert!(theirs.fec_received >= 1, "{theirs:?}");
    assert!(theirs.frames >= 20, "{theirs:?}");
}

/// An answerer that takes only REMB, or only RFC 8888, from a dialer that offers all three: the
/// call runs that feedback over real sockets (REMBs from the answerer's own estimate, or RFC 8888
/// reports), and the dialer's estimate follows it.
#[test]
fn a_sip_call_runs_remb_or_rfc8888_when_that_is_what_the_answerer_takes() {
    let (ours, theirs) = call_only(34, true, false, Some(CcFeedback::Remb));
    println!(
        "REMB: {} sent by the answerer, {} used; estimate {} bit/s; {} frames",
        theirs.cc_feedback_sent, ours.cc_feedback_received, ours.cc_target_bps, theirs.frames
    );
    // The first REMB goes after the first 50 ms of arrivals, then one a second: at least one in
    // 1.5 s on a loaded machine.
    assert!(theirs.cc_feedback_sent >= 1, "{theirs:?}");
    assert!(ours.cc_feedback_received >= 1, "{ours:?}");
    assert!(ours.cc_target_bps >= 50_000, "{ours:?}");
    assert!(theirs.frames >= 20, "{theirs:?}");

    let (ours, theirs) = call_only(35, true, false, Some(CcFeedback::Ccfb));
    println!(
        "RFC 8888: {} sent by the answerer, {} used; estimate {} bit/s; {} frames",
        theirs.cc_feedback_sent, ours.cc_feedback_received, ours.cc_target_bps, theirs.frames
    );
    assert!(theirs.cc_feedback_sent >= 8, "{theirs:?}");
    assert!(ours.cc_feedback_received >= 8, "{ours:?}");
    assert!(ours.cc_target_bps >= 50_000, "{ours:?}");
    assert!(theirs.frames >= 20, "{theirs:?}");
}
