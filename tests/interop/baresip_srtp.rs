//! baresip with its `srtp` module and `mediaenc=srtp-mand` (SDES, RTP/SAVP) against our SRTP:
//! it calls `serve --srtp mandatory` and its H.264 video and audio arrive, decrypted, and
//! decode; our `call --srtp mandatory` reaches it and it decodes what we send.

use crate::support;

use support::peers;

use std::path::PathBuf;
use std::time::Duration;

/// A baresip configuration with SRTP mandatory on its account and the `srtp` module loaded.
fn configure(dir: &peers::TempDir, rtp_ports: &str) -> (PathBuf, u16) {
    let media = support::baresip::Media::generate(dir, 20, "640x480", 250);
    let bport = peers::free_udp_port();
    let accounts = support::baresip::template("accounts")
        .replace("@SIP_PORT@", &bport.to_string())
        .replace("answermode=auto", "answermode=auto;mediaenc=srtp-mand");
    let conf = support::baresip::write_config(dir, bport, rtp_ports, &media, &accounts);
    let config = std::fs::read_to_string(conf.join("config")).unwrap();
    let config = config.replacen(
        "module\t\t\tg711.so",
        "module\t\t\tg711.so\nmodule\t\t\tsrtp.so",
        1,
    );
    std::fs::write(conf.join("config"), config).unwrap();
    (conf, bport)
}

#[test]
fn baresip_calls_serve_over_srtp_and_its_video_decodes() {
    if !peers::have_peers(&["baresip", "ffmpeg"]) || !support::baresip::have_modules(&["srtp.so"]) {
        return;
    }
    let dir = peers::TempDir::new("baresip-srtp");
    let (conf, _) = configure(&dir, "40400-40500");
    let served = support::baresip::dial_recording_serve_with(
        &dir,
        &conf,
        "38000-38999",
        8,
        &["--srtp", "mandatory"],
    );
    let call = &served.call;
    assert!(
        call.contains("\"audio_srtp\":\"AES_CM_128_HMAC_SHA1_80\""),
        "{call}\n--- baresip ---\n{}",
        served.baresip
    );
    let ready = served.event("video_ready").expect("video_ready");
    assert!(
        ready.contains("\"srtp\":\"AES_CM_128_HMAC_SHA1_80\""),
        "{ready}"
    );
    let hangup = served.event("hangup").expect("hangup event");
    let h264 = served.recorded("h264");
    assert_eq!(h264.len(), 1);
    let pictures = peers::frame_md5s(&h264[0], &["-framerate", "30"]);
    assert!(
        pictures.len() >= 60,
        "only {} pictures decoded; {hangup}\n--- baresip ---\n{}",
        pictures.len(),
        served.baresip
    );
    eprintln!(
        "baresip -> serve over SRTP: {} pictures decoded",
        pictures.len()
    );
    let wav_len = std::fs::metadata(h264[0].with_extension("wav"))
        .unwrap()
        .len();
    assert!(wav_len > 44 + 8000 * 2, "audio recorded: {wav_len} bytes");
}

#[test]
fn our_srtp_call_reaches_baresip_and_it_decodes() {
    if !peers::have_peers(&["baresip", "ffmpeg"]) || !support::baresip::have_modules(&["srtp.so"]) {
        return;
    }
    let dir = peers::TempDir::new("baresip-srtp-uas");
    let (conf, bport) = configure(&dir, "40600-40700");
    let baresip = peers::spawn(
        60,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-t", "14"],
    );
    assert!(
        peers::wait_udp_bound(bport, Duration::from_secs(10)),
        "baresip listens"
    );
    let support::baresip::OurCall {
        output: call,
        ours,
        theirs,
    } = support::baresip::call_baresip(
        baresip,
        &format!("sip:baresip@127.0.0.1:{bport}"),
        &["--seconds", "6", "--srtp", "mandatory"],
    );
    assert!(
        call.status.success()
            && ours.contains("\"audio_srtp\":\"AES_CM_128_HMAC_SHA1_80\"")
            && ours.contains("\"video_srtp\":\"AES_CM_128_HMAC_SHA1_80\""),
        "our call: {ours}{}\n--- baresip ---\n{theirs}",
        String::from_utf8_lossy(&call.stderr)
    );
    // baresip decoded our video (its status line's received frame rate) and sent media back.
    let efps = theirs
        .rsplit("efps=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.split('/').nth(1))
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(efps > 5.0, "baresip decoded at {efps} fps\n{theirs}");
    let frames: u64 = ours
        .split("\"frames_received\":")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    eprintln!("call -> baresip over SRTP: baresip decoded {efps} fps, we got {frames} pictures");
    assert!(
        frames >= 10,
        "we decoded {frames} of baresip's pictures: {ours}"
    );
}

/// Our re-INVITE adding video to an SRTP call with baresip (`mediaenc=srtp-mand`) carries SDES
/// lines for the new stream: baresip answers with one of them and its H.264 pictures reach us
/// through the new SRTP video stream (so its key in the answer keys our receive side).
#[test]
fn video_added_by_our_reinvite_to_an_srtp_call_with_baresip_flows() {
    use roomkit_media::backend::{DialOptions, SipBackendConfig, SipVideoBackend};
    use roomkit_media::prelude::*;
    if !peers::have_peers(&["baresip", "ffmpeg"]) || !support::baresip::have_modules(&["srtp.so"]) {
        return;
    }
    let dir = peers::TempDir::new("baresip-srtp-reinvite");
    let (conf, bport) = configure(&dir, "40800-40900");
    let baresip = peers::spawn(
        60,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-t", "14"],
    );
    assert!(
        peers::wait_udp_bound(bport, Duration::from_secs(10)),
        "baresip listens"
    );
    let ours = SipVideoBackend::new(SipBackendConfig {
        local_sip_addr: "127.0.0.1:0".parse().unwrap(),
        local_rtp_ip: [127, 0, 0, 1].into(),
        rtp_port_start: 39500,
        rtp_port_end: 39599,
        srtp: roomkit_media::SrtpPolicy::Mandatory,
        ..SipBackendConfig::default()
    })
    .unwrap();
    let (ftx, frames) = crossbeam_channel::unbounded();
    ours.on_video_received(move |_, f| {
        let _ = ftx.send(f.keyframe);
    });
    ours.start().unwrap();
    let call = ours
        .dial(
            &format!("sip:baresip@127.0.0.1:{bport}"),
            DialOptions {
                audio_only: true,
                ..DialOptions::default()
            },
        )
        .unwrap();
    let p = ours.wait_call(call, Duration::from_secs(10)).unwrap();
    assert_eq!(
        p.state,
        roomkit_media::backend::CallState::Answered,
        "{p:?}"
    );
    let audio = ours.get_session(call).expect("the call's session");
    assert!(audio.audio.srtp_suite.is_some(), "{audio:?}");
    assert!(audio.video.is_none());
    ours.set_video(call, true).unwrap();
    assert!(
        support::wait_until(Duration::from_secs(10), || ours
            .get_video_session(call)
            .is_some()),
        "baresip took the video"
    );
    let video = ours.get_video_session(call).unwrap().video.unwrap();
    assert!(video.srtp_suite.is_some(), "SRTP video: {video:?}");
    // baresip plays its clip at 30 fps: a few pictures within seconds, on a loaded machine too.
    let got = (0..10)
        .filter_map(|_| frames.recv_timeout(Duration::from_secs(5)).ok())
        .count();
    eprintln!("video added to an SRTP call with baresip: {got} of its pictures in the first 10");
    assert!(got >= 5, "only {got} pictures from baresip");
    ours.hangup(call).unwrap();
    let _ = peers::wait_bounded(baresip, Duration::from_secs(30));
}
