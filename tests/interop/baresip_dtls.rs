//! baresip 1.0 with its `dtls_srtp` module and `mediaenc=dtls_srtp` (RFC 5763/5764; baresip
//! presents a self-signed RSA 2048 certificate) against our DTLS-SRTP, whose default engine is
//! OpenSSL (README "Dependencies": dimpl has no RSA): baresip calls `serve --dtls-srtp
//! mandatory` and its H.264 video and audio arrive, decrypted, and decode; our `call
//! --dtls-srtp mandatory` reaches it and it decodes what we send (and we decode what it sends,
//! except with ICE: see `our_call_to_baresip`). First without ICE, then with baresip's
//! `medianat=ice` against our `--ice`.

use crate::support;

use support::peers;

use std::path::PathBuf;
use std::time::Duration;

/// A baresip configuration with DTLS-SRTP mandatory on its account (and ICE when `ice`), the
/// `dtls_srtp` module loaded (and `ice`), RTCP muxed.
fn configure(dir: &peers::TempDir, rtp_ports: &str, ice: bool) -> (PathBuf, u16) {
    let media = support::baresip::Media::generate(dir, 20, "640x480", 250);
    let bport = peers::free_udp_port();
    let account = if ice {
        "answermode=auto;mediaenc=dtls_srtp;medianat=ice"
    } else {
        "answermode=auto;mediaenc=dtls_srtp"
    };
    let accounts = support::baresip::template("accounts")
        .replace("@SIP_PORT@", &bport.to_string())
        .replace("answermode=auto", account);
    let conf = support::baresip::write_config(dir, bport, rtp_ports, &media, &accounts);
    let config = std::fs::read_to_string(conf.join("config")).unwrap();
    let modules = if ice {
        "module\t\t\tg711.so\nmodule\t\t\tdtls_srtp.so\nmodule\t\t\tice.so"
    } else {
        "module\t\t\tg711.so\nmodule\t\t\tdtls_srtp.so"
    };
    let config = config.replacen("module\t\t\tg711.so", modules, 1);
    // Our DTLS-SRTP streams run on one muxed port (RFC 5761), which baresip offers only when
    // told to (without it, serve answers 488).
    let config = config.replacen("rtcp_mux\t\tno", "rtcp_mux\t\tyes", 1);
    assert!(
        config.contains("rtcp_mux\t\tyes"),
        "baresip's rtcp_mux line moved"
    );
    std::fs::write(conf.join("config"), config).unwrap();
    (conf, bport)
}

fn have_peers(ice: bool) -> bool {
    let modules: &[&str] = if ice {
        &["dtls_srtp.so", "ice.so"]
    } else {
        &["dtls_srtp.so"]
    };
    peers::have_peers(&["baresip", "ffmpeg"]) && support::baresip::have_modules(modules)
}

fn baresip_calls_serve(ice: bool) {
    if !have_peers(ice) {
        return;
    }
    let dir = peers::TempDir::new("baresip-dtls");
    let (conf, _) = configure(&dir, "40500-40600", ice);
    let mut extra = vec!["--dtls-srtp", "mandatory"];
    if ice {
        extra.push("--ice");
    }
    let served = support::baresip::dial_recording_serve_with(&dir, &conf, "39000-39999", 8, &extra);
    let call = &served.call;
    let hangup = served.event("hangup").expect("hangup event");
    let h264 = served.recorded("h264");
    assert_eq!(
        h264.len(),
        1,
        "{call}\n{hangup}\n--- baresip ---\n{}",
        served.baresip
    );
    let pictures = peers::frame_md5s(&h264[0], &["-framerate", "30"]);
    eprintln!(
        "baresip -> serve over DTLS-SRTP (ice {ice}): {} pictures decoded; {call}\n{hangup}",
        pictures.len()
    );
    assert!(
        pictures.len() >= 60,
        "only {} pictures decoded; {call}\n{hangup}\n--- baresip ---\n{}",
        pictures.len(),
        served.baresip
    );
    let wav_len = std::fs::metadata(h264[0].with_extension("wav"))
        .unwrap()
        .len();
    assert!(wav_len > 44 + 8000 * 2, "audio recorded: {wav_len} bytes");
}

fn our_call_to_baresip(ice: bool) {
    if !have_peers(ice) {
        return;
    }
    let dir = peers::TempDir::new("baresip-dtls-uas");
    let (conf, bport) = configure(&dir, "40600-40700", ice);
    let baresip = peers::spawn(
        60,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-t", "14"],
    );
    assert!(
        peers::wait_udp_bound(bport, Duration::from_secs(10)),
        "baresip listens"
    );
    let mut extra = vec!["--seconds", "6", "--dtls-srtp", "mandatory"];
    if ice {
        extra.push("--ice");
    }
    let support::baresip::OurCall {
        output: call,
        ours,
        theirs,
    } = support::baresip::call_baresip(baresip, &format!("sip:baresip@127.0.0.1:{bport}"), &extra);
    assert!(
        call.status.success(),
        "our call: {ours}{}\n--- baresip ---\n{theirs}",
        String::from_utf8_lossy(&call.stderr)
    );
    // baresip decoded our video (its status line's received frame rate) and sent media back.
    let efps = support::baresip::decoded_fps(&theirs);
    let frames: u64 = ours
        .split("\"frames_received\":")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    eprintln!(
        "call -> baresip over DTLS-SRTP (ice {ice}): baresip decoded {efps} fps, we got {frames} \
         pictures; {ours}"
    );
    // The handshake keyed both streams (baresip's profile choice, named in our summary) and
    // baresip decoded what we sent.
    assert!(
        ours.contains("\"audio_srtp\":\"") && ours.contains("\"video_srtp\":\""),
        "no DTLS-SRTP suite: {ours}\n{theirs}"
    );
    assert!(
        efps > 5.0,
        "baresip decoded at {efps} fps\n{ours}\n{theirs}"
    );
    // With ICE baresip's media leaves its wildcard-bound socket from 127.0.0.1 while its
    // candidate (and so the selected pair) names the machine's other address: it arrives on a
    // valid pair that is not the selected one, which RFC 8445 §12.1 says we must take.
    assert!(
        frames >= 10,
        "we decoded {frames} of baresip's pictures (ice {ice}): {ours}\n{theirs}"
    );
}

#[test]
fn baresip_calls_serve_over_dtls_srtp() {
    baresip_calls_serve(false);
}

#[test]
fn our_call_reaches_baresip_over_dtls_srtp() {
    our_call_to_baresip(false);
}

#[test]
fn baresip_with_ice_calls_serve_over_dtls_srtp() {
    baresip_calls_serve(true);
}

#[test]
fn our_ice_call_reaches_baresip_over_dtls_srtp() {
    our_call_to_baresip(true);
}
