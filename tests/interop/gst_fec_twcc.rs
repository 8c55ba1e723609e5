//! GStreamer 1.22's `rtpbin` as the receiver of our video, for the two things issue 17 adds
//! beyond loss repair (the peer is `bench/gst_rtx.py`, GStreamer from Python):
//!
//! - **our FEC decoded by GStreamer**: `send --fec` (ULPFEC in RED) → `netsim` (5 % loss) →
//!   `rtpbin` with `rtpreddec` as its auxiliary receiver and `rtpulpfecdec` on its packet
//!   storage, over a one-way path (GStreamer's RTCP goes to a socket nobody reads, so no NACK
//!   and no report: FEC at its rate without feedback does the whole job). GStreamer rebuilds
//!   packets, and more pictures come out whole than in the same run without FEC;
//! - **GStreamer as a transport-cc peer**: an `RtpVideoBackend` sender with congestion control
//!   on (extension ID 5, configured) → `rtpbin` whose caps carry `extmap-5` = the transport-wide
//!   sequence number: its session answers with RTPFB 15 feedback, which our estimator uses; and
//!   the other way, GStreamer's payloader stamping the extension (`rtphdrexttwcc`) → our
//!   receiver, whose feedback fills GStreamer's `twcc-stats`.

use std::collections::HashSet;
use std::time::Duration;

use roomkit_media::backend::{
    CongestionConfig, ConnectOptions, ResilienceConfig, RtpBackendConfig, RtpVideoBackend,
};
use roomkit_media::prelude::*;

use crate::lossy_path::{clip, gst_script, have_gstreamer, pictures, SECONDS};
use crate::support::netsim::{free_port_pair, Netsim, Path};
use crate::support::peers::{bin, json_stats, spawn, stat, wait_bounded, TempDir};

/// How many distinct sent pictures arrived whole (a receiver without repairs may also hand out
/// damaged ones, which are not counted).
fn intact(sent: &[Vec<Vec<u8>>], received: &[Vec<Vec<u8>>]) -> usize {
    let known: HashSet<&Vec<Vec<u8>>> = sent.iter().collect();
    received
        .iter()
        .filter(|p| known.contains(p))
        .collect::<HashSet<_>>()
        .len()
}

/// A JSON stats line as (key, integer) pairs.
type Stats = Vec<(String, i64)>;

/// One run of `send` (with `fec`: `--fec`) → lossy one-way path → GStreamer (with `fec`: RED
/// and ULPFEC decoders): pictures sent, pictures GStreamer delivered whole, and both sides'
/// JSON stats.
fn us_to_gstreamer(fec: bool, seed: u64) -> (usize, usize, Stats, Stats) {
    let dir = TempDir::new(&format!("fec-to-gst{fec}"));
    let source = clip(&dir);
    let out = dir.path("out.h264");
    let (p, s, l) = (free_port_pair(), free_port_pair(), free_port_pair());
    // Our sender sends RTCP to its RTP destination's port + 1, from its own RTP port + 1.
    let mut net = Netsim::start(
        &[
            format!("127.0.0.1:{l}=127.0.0.1:{p}"),
            format!(
                "127.0.0.1:{}=127.0.0.1:{}/127.0.0.1:{}",
                l + 1,
                p + 1,
                s + 1
            ),
        ],
        &Path::lossy(5.0, seed),
        SECONDS + 30,
    );
    // GStreamer's RTCP (reports, NACKs if it sent any) ends here, unread: a one-way path.
    let nowhere = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let script = gst_script();
    let (port, rtcp_port, rtcp_to) = (
        p.to_string(),
        (p + 1).to_string(),
        nowhere.local_addr().unwrap().to_string(),
    );
    let mut recv_args = vec![
        script.to_str().unwrap(),
        "recv",
        "--port",
        &port,
        "--rtcp-port",
        &rtcp_port,
        "--rtcp-to",
        &rtcp_to,
        "--out",
        out.to_str().unwrap(),
        "--rtx-pt",
        "0",
        "--no-retransmission",
        "--latency",
        "400",
        "--timeout",
        "40",
    ];
    if fec {
        recv_args.extend(["--fec-red-pt", "123", "--fec-ulpfec-pt", "122"]);
    }
    let recv = spawn(60, "/usr/bin/python3", &recv_args);
    std::thread::sleep(Duration::from_millis(1000));
    let (to, bind) = (net.pipes[0].0.to_string(), format!("127.0.0.1:{s}"));
    let mut send_args = vec![
        "send",
        "--to",
        &to,
        "--bind",
        &bind,
        source.to_str().unwrap(),
    ];
    if fec {
        send_args.push("--fec");
    }
    let send = wait_bounded(
        spawn(60, bin().to_str().unwrap(), &send_args),
        Duration::from_secs(60),
    );
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let recv = wait_bounded(recv, Duration::from_secs(30));
    assert!(
        recv.status.success(),
        "{}",
        String::from_utf8_lossy(&recv.stderr)
    );
    let path_stats = net.stop();
    let (s, r) = (json_stats(&send.stdout), json_stats(&recv.stdout));
    let sent = pictures(&source, true);
    let got = intact(&sent, &pictures(&out, true));
    println!(
        "fec {fec}: GStreamer delivered {got}/{} pictures whole; send {s:?}; GStreamer {r:?}; \
         path {path_stats}",
        sent.len()
    );
    (sent.len(), got, s, r)
}

#[test]
fn gstreamer_rebuilds_lost_packets_from_our_ulpfec() {
    if !have_gstreamer() {
        return;
    }
    let (sent, plain, ..) = us_to_gstreamer(false, 41);
    let (sent_fec, with_fec, s, r) = us_to_gstreamer(true, 41);
    assert_eq!(sent, sent_fec);
    assert!(stat(&s, "fec_sent") > 0, "we sent FEC: {s:?}");
    assert!(
        stat(&r, "red_received") > 0,
        "GStreamer unwrapped our RED: {r:?}"
    );
    assert!(
        stat(&r, "fec_recovered") > 0,
        "GStreamer rebuilt packets from our ULPFEC: {r:?}"
    );
    // Same clip, path and seed: FEC must make a difference GStreamer can see (measured: 177
    // against 114 of 180). Floors, not figures: the runs race real time on a loaded machine.
    assert!(
        with_fec > plain && with_fec * 10 >= sent * 8,
        "with FEC {with_fec}/{sent} whole, without {plain}/{sent}"
    );
}

#[test]
fn our_sender_uses_gstreamer_transport_cc_feedback() {
    if !have_gstreamer() {
        return;
    }
    let dir = TempDir::new("twcc-to-gst");
    let source = clip(&dir);
    let sent = pictures(&source, false);
    const START_BPS: u64 = 1_000_000;
    let backend = RtpVideoBackend::new(RtpBackendConfig {
        local_addr: "127.0.0.1:0".parse().unwrap(),
        video_local_addr: "127.0.0.1:0".parse().unwrap(),
        // GStreamer sends its RTCP from a port of its own: take it from there.
        latch_to_first_source: true,
        transport_cc_id: 5,
        resilience: ResilienceConfig {
            congestion: CongestionConfig {
                enabled: true,
                start_bps: START_BPS,
                ..CongestionConfig::default()
            },
            ..ResilienceConfig::default()
        },
        ..RtpBackendConfig::default()
    })
    .unwrap();
    let (target_tx, targets) = crossbeam_channel::unbounded();
    backend.on_target_bitrate(move |_, bps, reason| {
        let _ = target_tx.send((bps, reason));
    });
    let g = free_port_pair();
    let placeholder = "127.0.0.1:9".parse().unwrap();
    let session = backend
        .connect(
            "gst",
            "gst",
            ConnectOptions::to(placeholder, Some(([127, 0, 0, 1], g).into())),
        )
        .unwrap();
    // The audio stream talks to itself: only video goes to GStreamer.
    backend
        .update_remote(session.id, Some(session.audio.local_addr), None)
        .unwrap();
    let video = session.video.clone().unwrap().local_addr;

    let script = gst_script();
    let out = dir.path("out.h264");
    let (port, rtcp_port, rtcp_to) = (
        g.to_string(),
        (g + 1).to_string(),
        format!("127.0.0.1:{}", video.port() + 1),
    );
    let recv = spawn(
        60,
        "/usr/bin/python3",
        &[
            script.to_str().unwrap(),
            "recv",
            "--port",
            &port,
            "--rtcp-port",
            &rtcp_port,
            "--rtcp-to",
            &rtcp_to,
            "--out",
            out.to_str().unwrap(),
            "--rtx-pt",
            "0",
            "--twcc-id",
            "5",
            "--timeout",
            "40",
        ],
    );
    std::thread::sleep(Duration::from_millis(1000));
    for (i, nals) in sent.iter().enumerate() {
        let picture: Vec<u8> = nals
            .iter()
            .flat_map(|n| [0, 0, 0, 1].iter().chain(n.iter()).copied())
            .collect();
        backend
            .send_video_at(session.id, &picture, Some(i as f64 * 1000.0 / 30.0))
            .unwrap();
        std::thread::sleep(Duration::from_millis(33));
    }
    // Let the last feedback come back.
    std::thread::sleep(Duration::from_millis(500));
    let v = backend.stats(session.id).unwrap().video.unwrap();
    let _ = backend.disconnect(session.id);
    let recv = wait_bounded(recv, Duration::from_secs(30));
    let r = json_stats(&recv.stdout);
    let heard: Vec<_> = targets.try_iter().collect();
    println!(
        "GStreamer {r:?}; sender: {} packets, feedback used {}, estimate {} bit/s (start \
         {START_BPS}), pacer {} bit/s, {} pictures dropped; targets heard {heard:?}",
        v.packets_sent,
        v.cc_feedback_received,
        v.cc_target_bps,
        v.cc_pacer_rate_bps,
        v.cc_pictures_dropped,
    );
    assert!(
        stat(&r, "pictures") > 0,
        "GStreamer took the stream: {}",
        String::from_utf8_lossy(&recv.stderr)
    );
    // GStreamer's feedback is due about every 100 ms over 6 s: floors for a loaded machine.
    assert!(
        v.cc_feedback_received >= 10,
        "GStreamer's transport-cc feedback reached the estimator: {v:?}"
    );
    assert!(
        v.cc_target_bps != START_BPS && !heard.is_empty(),
        "the estimate moved on GStreamer's feedback: {v:?}"
    );
}

#[test]
fn gstreamer_sender_uses_our_transport_cc_feedback() {
    if !have_gstreamer() {
        return;
    }
    let dir = TempDir::new("twcc-from-gst");
    let source = clip(&dir);
    let (r, v, q) = (free_port_pair(), free_port_pair(), free_port_pair());
    // GStreamer sends RTP and RTCP from ports of its own and takes RTCP on a third: netsim
    // gives its RTP and RTCP fixed neighbouring addresses (v, v + 1) for our receiver to expect,
    // and carries our RTCP from v + 1 back to its RTCP port (q).
    let mut net = Netsim::start(
        &[
            format!("127.0.0.1:0=127.0.0.1:{r}@127.0.0.1:{v}"),
            format!(
                "127.0.0.1:0=127.0.0.1:{}/127.0.0.1:{q}@127.0.0.1:{}",
                r + 1,
                v + 1
            ),
        ],
        &Path {
            loss_pct: 0.0,
            delay_ms: 20,
            jitter_ms: 0,
            reorder_pct: 0.0,
            duplicate_pct: 0.0,
            seed: 1,
        },
        SECONDS + 30,
    );
    let backend = RtpVideoBackend::new(RtpBackendConfig {
        local_addr: "127.0.0.1:0".parse().unwrap(),
        video_local_addr: ([127, 0, 0, 1], r).into(),
        transport_cc_id: 3,
        resilience: ResilienceConfig {
            congestion: CongestionConfig {
                enabled: true,
                ..CongestionConfig::default()
            },
            ..ResilienceConfig::default()
        },
        ..RtpBackendConfig::default()
    })
    .unwrap();
    let (tx, pictures) = crossbeam_channel::unbounded();
    backend.on_video_received(move |_, _| {
        let _ = tx.send(());
    });
    let placeholder = "127.0.0.1:9".parse().unwrap();
    let session = backend
        .connect(
            "gst",
            "gst",
            ConnectOptions::to(placeholder, Some(([127, 0, 0, 1], v).into())),
        )
        .unwrap();
    backend
        .update_remote(session.id, Some(session.audio.local_addr), None)
        .unwrap();

    let (to, rtcp_to, rtcp_port) = (
        net.pipes[0].0.to_string(),
        net.pipes[1].0.to_string(),
        q.to_string(),
    );
    let script = gst_script();
    let send = wait_bounded(
        spawn(
            60,
            "/usr/bin/python3",
            &[
                script.to_str().unwrap(),
                "send",
                "--clip",
                source.to_str().unwrap(),
                "--to",
                &to,
                "--rtcp-to",
                &rtcp_to,
                "--rtcp-port",
                &rtcp_port,
                "--rtx-pt",
                "0",
                "--twcc-id",
                "3",
                "--linger",
                "0.5",
                "--timeout",
                "30",
            ],
        ),
        Duration::from_secs(60),
    );
    let v = backend.stats(session.id).unwrap().video.unwrap();
    let _ = backend.disconnect(session.id);
    let path_stats = net.stop();
    let s = json_stats(&send.stdout);
    let got = pictures.try_iter().count();
    println!(
        "GStreamer {s:?} ({}); we received {got} pictures, {} packets, sent {} transport-cc \
         feedback packets; path {path_stats}",
        String::from_utf8_lossy(&send.stderr)
            .lines()
            .find(|l| l.starts_with("last twcc-stats"))
            .unwrap_or("no twcc-stats"),
        v.packets_received,
        v.cc_feedback_sent,
    );
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    assert!(got > 0, "GStreamer's stamped stream arrived: {v:?}");
    // Feedback is due every 50 ms over 6 s; GStreamer's statistics are sampled every 100 ms.
    assert!(v.cc_feedback_sent >= 10, "we sent feedback: {v:?}");
    assert!(
        stat(&s, "twcc_feedback_seen") >= 5,
        "GStreamer's session took our feedback: {s:?}"
    );
}
