//! baresip, a real softphone, places an audio + H.264 video call to `roomkit-media serve
//! --record`: its video (libx264 from an MP4 file) is recorded as Annex-B and must decode with
//! ffmpeg to a sensible number of pictures, and its audio (an 8 kHz WAV) lands in the WAV.

use crate::support;

use support::peers;

use std::path::PathBuf;
use std::time::Duration;

/// A headless baresip configuration in `dir` (from the shared templates) with its own SIP
/// port, RTP ports in `rtp_ports`, a 20 s 440 Hz WAV and a 20 s 640x480 H.264 MP4 as its
/// sources. Returns the configuration directory and the SIP port.
fn configure(dir: &peers::TempDir, rtp_ports: &str) -> (PathBuf, String) {
    let media = support::baresip::Media::generate(dir, 20, "640x480", 250);
    let bport = peers::free_udp_port();
    let accounts = support::baresip::template("accounts").replace("@SIP_PORT@", &bport.to_string());
    let conf = support::baresip::write_config(dir, bport, rtp_ports, &media, &accounts);
    (conf, bport.to_string())
}

#[test]
fn baresip_av_call_is_recorded_and_decodes() {
    if !peers::have_peers(&["baresip", "ffmpeg"]) {
        return;
    }
    let dir = peers::TempDir::new("baresip");
    let (conf, _) = configure(&dir, "40000-40100");

    let served = support::baresip::dial_recording_serve(&dir, &conf, "38000-38999", 8);
    let call = &served.call;
    assert!(call.contains("\"has_video\":true"), "{call}");
    assert!(call.contains("\"video_codec\":\"h264\""), "{call}");
    let hangup = served.event("hangup").expect("hangup event");
    eprintln!("baresip call: {call}\n{hangup}");

    let h264 = served.recorded("h264");
    assert_eq!(h264.len(), 1);
    let pictures = peers::frame_md5s(&h264[0], &["-framerate", "30"]);
    // About 8 s of a 30 fps source minus call setup: anything under two seconds' worth means
    // the video did not really flow.
    assert!(
        pictures.len() >= 60,
        "only {} pictures decoded; {hangup}",
        pictures.len()
    );
    let wav_len = std::fs::metadata(h264[0].with_extension("wav"))
        .unwrap()
        .len();
    assert!(wav_len > 44 + 8000 * 2, "audio recorded: {wav_len} bytes");
}

/// One direction of baresip's RTP report at hangup (`rtp_stats yes`): the `Receive` column.
#[derive(Debug, Default)]
struct Received {
    packets: u64,
    lost: i64,
}

/// The `Receive` column of baresip's `video Transmit: Receive:` table.
fn video_received(out: &str) -> Option<Received> {
    let table = &out[out.find("\nvideo ")?..];
    let value = |key: &str| -> Option<&str> {
        let line = table.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(2)
    };
    Some(Received {
        packets: value("packets:")?.parse().ok()?,
        lost: value("lost:")?.parse().ok()?,
    })
}

#[test]
fn our_paced_clip_reaches_baresip_without_loss_and_decodes() {
    if !peers::have_peers(&["baresip", "ffmpeg"]) {
        return;
    }
    let dir = peers::TempDir::new("baresip-uas");
    let (conf, bport) = configure(&dir, "40200-40300");
    // Without -e baresip waits for calls and answers them itself (answermode=auto).
    let baresip = peers::spawn(
        60,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-t", "14"],
    );
    assert!(
        peers::wait_udp_bound(bport.parse().unwrap(), Duration::from_secs(10)),
        "baresip listens"
    );
    // Our CLI, the built-in clip (a key picture each second), paced as by default.
    let support::baresip::OurCall {
        output: call,
        ours,
        theirs,
    } = support::baresip::call_baresip(
        baresip,
        &format!("sip:baresip@127.0.0.1:{bport}"),
        &["--seconds", "6"],
    );
    assert!(
        call.status.success() && ours.contains("\"has_video\":true"),
        "our call: {ours}{}\n--- baresip ---\n{theirs}",
        String::from_utf8_lossy(&call.stderr)
    );
    let sent: u64 = ours
        .split("\"pictures_sent\":")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .expect("pictures_sent in our summary");
    let video = video_received(&theirs)
        .unwrap_or_else(|| panic!("no video RTP report from baresip:\n{theirs}"));
    let fps = support::baresip::decoded_fps(&theirs);
    eprintln!("we sent {sent} pictures; baresip received {video:?}, decoded at {fps} fps");
    // Every picture is at least one packet; a burst that overflowed baresip's socket would
    // show as lost packets: unpaced, about one in nine. A loaded machine's loopback may lose a
    // few, so the bound is 1 % (at least 2), well under what the bursts lose.
    assert!(video.packets >= sent, "{video:?} for {sent} pictures");
    assert!(
        video.lost <= (video.packets as i64 / 100).max(2),
        "baresip lost {} of {} video packets",
        video.lost,
        video.packets
    );
    assert!(
        theirs.contains("video: receiving with resolution 320 x 192"),
        "baresip decoded no picture:\n{theirs}"
    );
    assert!(fps >= 10.0, "baresip decoded at {fps} fps");
}
