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
