//! baresip with its `srtp` module and `mediaenc=srtp-mand` (SDES, RTP/SAVP) against our SRTP:
//! it calls `serve --srtp mandatory` and its H.264 video and audio arrive, decrypted, and
//! decode; our `call --srtp mandatory` reaches it and it decodes what we send, under each of
//! our suites (`--srtp-suites`). baresip 1.0 offers AES_CM_128_HMAC_SHA1_80 only, so a `serve`
//! restricted to another suite refuses its calls with 488.

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

/// Our `call --srtp mandatory --srtp-suites SUITE` to baresip: baresip answers with the one
/// suite we offer, both sides' media decode.
fn our_srtp_call_to_baresip(suite: &str, rtp_ports: &str) {
    let dir = peers::TempDir::new("baresip-srtp-uas");
    let (conf, bport) = configure(&dir, rtp_ports);
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
        &[
            "--seconds",
            "6",
            "--srtp",
            "mandatory",
            "--srtp-suites",
            suite,
        ],
    );
    assert!(
        call.status.success()
            && ours.contains(&format!("\"audio_srtp\":\"{suite}\""))
            && ours.contains(&format!("\"video_srtp\":\"{suite}\"")),
        "our call: {ours}{}\n--- baresip ---\n{theirs}",
        String::from_utf8_lossy(&call.stderr)
    );
    // baresip decoded our video (its status line's received frame rate) and sent media back.
    let efps = support::baresip::decoded_fps(&theirs);
    assert!(
        efps > 5.0,
        "{suite}: baresip decoded at {efps} fps\n{theirs}"
    );
    let frames: u64 = ours
        .split("\"frames_received\":")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    eprintln!(
        "call -> baresip over SRTP, {suite}: baresip decoded {efps} fps, we got {frames} pictures"
    );
    assert!(
        frames >= 10,
        "{suite}: we decoded {frames} of baresip's pictures: {ours}"
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
    let (conf, bport) = configure(&dir, "48100-48199");
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

#[test]
fn our_srtp_call_reaches_baresip_and_it_decodes() {
    if !peers::have_peers(&["baresip", "ffmpeg"]) || !support::baresip::have_modules(&["srtp.so"]) {
        return;
    }
    our_srtp_call_to_baresip("AES_CM_128_HMAC_SHA1_80", "40600-40700");
}

/// baresip answers an offer of AES_CM_128_HMAC_SHA1_32 only, and one of AEAD_AES_128_GCM only.
#[test]
fn our_srtp_call_reaches_baresip_with_sha1_32_and_with_gcm() {
    if !peers::have_peers(&["baresip", "ffmpeg"]) || !support::baresip::have_modules(&["srtp.so"]) {
        return;
    }
    our_srtp_call_to_baresip("AES_CM_128_HMAC_SHA1_32", "40700-40800");
    our_srtp_call_to_baresip("AEAD_AES_128_GCM", "40800-40900");
}

/// baresip 1.0 offers one `a=crypto` line, always AES_CM_128_HMAC_SHA1_80 (its srtp module has
/// no setting for the suite it offers; it answers any of the four it knows). A `serve` that
/// allows only AES_CM_128_HMAC_SHA1_32, or only AEAD_AES_128_GCM, has no suite in common with
/// that offer and refuses the call with 488; nothing is answered.
#[test]
fn baresip_offers_only_sha1_80_so_serve_restricted_to_other_suites_refuses_with_488() {
    use std::io::{BufRead, BufReader};
    if !peers::have_peers(&["baresip", "ffmpeg"]) || !support::baresip::have_modules(&["srtp.so"]) {
        return;
    }
    for (suite, rtp_ports) in [
        ("AES_CM_128_HMAC_SHA1_32", "40900-40950"),
        ("AEAD_AES_128_GCM", "40950-40999"),
    ] {
        let dir = peers::TempDir::new("baresip-srtp-488");
        let (conf, _) = configure(&dir, rtp_ports);
        let (mut serve, port) = peers::spawn_serve(
            60,
            "38000-38999",
            &["--srtp", "mandatory", "--srtp-suites", suite],
        );
        let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
        let first = lines.next().expect("serve output").unwrap();
        assert!(first.contains("listening"), "{first}");
        let dial = format!("/dial sip:test@127.0.0.1:{port}");
        let b = peers::spawn(
            30,
            "baresip",
            &["-4", "-f", conf.to_str().unwrap(), "-e", &dial, "-t", "4"],
        );
        let b_out = peers::wait_bounded(b, Duration::from_secs(30));
        let baresip = format!(
            "{}{}",
            String::from_utf8_lossy(&b_out.stdout),
            String::from_utf8_lossy(&b_out.stderr)
        );
        // serve goes on after a refused call: stop it (its stats line comes last).
        peers::interrupt(&serve);
        let _ = peers::wait_bounded(serve, Duration::from_secs(20));
        let lines: Vec<String> = lines.map_while(Result::ok).collect();
        let all = lines.join("\n");
        let stats = peers::json_stats(all.as_bytes());
        assert_eq!(
            (
                peers::stat(&stats, "calls_answered"),
                peers::stat(&stats, "calls_refused")
            ),
            (0, 1),
            "{suite}: {all}\n--- baresip ---\n{baresip}"
        );
        assert!(
            baresip.contains("488"),
            "{suite}: baresip saw no 488:\n{baresip}"
        );
        eprintln!("baresip (AES_CM_128_HMAC_SHA1_80 only) -> serve --srtp-suites {suite}: 488");
    }
}
