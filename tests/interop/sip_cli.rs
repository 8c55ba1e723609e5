//! `roomkit-media call` against `roomkit-media serve --echo --record`: the caller's H.264 clip and
//! tone come back (echo), the recording holds the clip's pictures, and the WAV is mono 16-bit
//! PCM with the call's audio at the codec's own rate: both sides prefer Opus, so 48 kHz.
//! And `serve`'s loss-recovery flags: what they change in the answer, and a silent call ended.

use crate::support;

use support::peers;
use support::sip::{body, offer, Leg, RawUa, H264_ATTRS};

use std::io::{BufRead, BufReader};
use std::time::Duration;

#[test]
fn call_to_serve_with_echo_and_record() {
    if !peers::have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = peers::TempDir::new("sip-cli");
    let clip = dir.path("clip.h264");
    peers::make_h264_clip(
        &clip,
        "testsrc=size=320x240:rate=30",
        2,
        &["-profile:v", "baseline", "-g", "30"],
    );
    let rec = dir.path("rec");
    let bin = peers::bin();
    let (mut serve, port) = peers::spawn_serve(
        60,
        "39200-39399",
        &[
            "--echo",
            "--record",
            rec.to_str().unwrap(),
            "--max-calls",
            "1",
        ],
    );
    let sip = format!("127.0.0.1:{port}");
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("listening"));
    let uri = format!("sip:echo@{sip}");
    let out = peers::run(
        60,
        bin.to_str().unwrap(),
        &[
            "call",
            &uri,
            "--video",
            clip.to_str().unwrap(),
            "--seconds",
            "2.5",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = peers::json_stats(&out.stdout);
    let sent = peers::stat(&stats, "pictures_sent");
    // 2.5 s at 30 fps is 75 pictures; a loaded machine starts the media late, so two thirds.
    assert!((50..=76).contains(&sent), "{text}");
    assert!(
        peers::stat(&stats, "frames_received") >= 50,
        "echoed video: {text}"
    );
    assert!(
        peers::stat(&stats, "audio_frames_received") >= 80,
        "echoed audio: {text}"
    );
    let served = peers::wait_bounded(serve, Duration::from_secs(20));
    assert!(served.status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("\"event\":\"hangup\"")),
        "{rest:?}"
    );
    let files: Vec<_> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let h264 = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "h264"))
        .unwrap();
    let wav = std::fs::read(h264.with_extension("wav")).unwrap();
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "mono");
    assert_eq!(
        u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
        48_000
    );
    assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16);
    let data = u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]) as usize;
    assert_eq!(data, wav.len() - 44, "sizes patched at close");
    assert!(
        data >= 5 * 48_000 * 2 / 3,
        "two thirds of the call's 2.5 s of audio or more: {data} bytes"
    );
    // The recording decodes to the clip's pictures (looped: about 75 sent from a 60-picture clip).
    // Pictures still in flight at the BYE may miss it, and on a loaded machine the callback
    // thread that records them runs late (45 of 75 seen once under load): half at least, every
    // one intact and in the clip's order.
    let want = peers::frame_md5s(&clip, &["-framerate", "30"]);
    let got = peers::frame_md5s(h264, &["-framerate", "30"]);
    assert!(
        got.len() as i64 <= sent && got.len() as i64 * 2 >= sent,
        "{} pictures recorded of {sent}",
        got.len()
    );
    let n = got.len().min(want.len());
    assert_eq!(&got[..n], &want[..n]);
}

/// What `answer_from_serve` gives back: the SDP answer, the raw UA, its leg, and the serve
/// process with its stdout lines.
type Served = (
    String,
    RawUa,
    Leg,
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
);

/// Answers `offer_video` (H.264 offering NACK and RTX) from a `serve` started with `flags`.
fn answer_from_serve(flags: &[&str], rtp_ports: &str) -> Served {
    answer_from_serve_with(flags, rtp_ports, "")
}

/// `answer_from_serve` with `extra` lines added to the offer's video section.
fn answer_from_serve_with(flags: &[&str], rtp_ports: &str, extra: &str) -> Served {
    let mut args = vec!["--max-calls", "1"];
    args.extend_from_slice(flags);
    let (mut serve, port) = peers::spawn_serve(60, rtp_ports, &args);
    let sip = format!("127.0.0.1:{port}");
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("listening"));
    let ua = RawUa::new(sip.parse().unwrap());
    let mut leg = Leg::new();
    let video = format!(
        "{H264_ATTRS}a=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n\
         a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n{extra}"
    );
    let ok = ua.establish(
        &mut leg,
        "",
        &offer(49170, Some((49172, "96 97", &video)), "sendrecv"),
    );
    (body(&ok).to_string(), ua, leg, serve, lines)
}

/// Hangs up from the raw UA (BYE, answered 200) and waits for `serve` to exit cleanly.
fn hang_up_served(ua: &RawUa, leg: &mut Leg, serve: std::process::Child) {
    leg.cseq += 1;
    ua.send(&ua.request("BYE", leg, "", ""));
    ua.expect_status(200, "BYE", Duration::from_secs(5));
    assert!(peers::wait_bounded(serve, Duration::from_secs(20))
        .status
        .success());
}

#[test]
fn serve_loss_recovery_flags_shape_the_answer_and_end_a_silent_call() {
    // Defaults: generic NACK and RTX are agreed.
    let (sdp, ua, mut leg, serve, _) = answer_from_serve(&[], "39400-39449");
    assert!(sdp.contains("a=rtcp-fb:96 nack\r\n"), "{sdp}");
    assert!(sdp.contains("rtx/90000"), "{sdp}");
    hang_up_served(&ua, &mut leg, serve);

    // --no-nack --no-rtx: neither is agreed (PLI still is); --inactivity 1: a caller that sends
    // no media is hung up with BYE after about a second, and the hangup says why.
    let (sdp, ua, _, serve, lines) = answer_from_serve(
        &[
            "--no-nack",
            "--no-rtx",
            "--no-pacing",
            "--audio-jitter",
            "60",
            "--inactivity",
            "1",
        ],
        "39450-39499",
    );
    assert!(!sdp.contains("a=rtcp-fb:96 nack\r\n"), "{sdp}");
    assert!(!sdp.contains("rtx/90000"), "{sdp}");
    assert!(sdp.contains("a=rtcp-fb:96 nack pli"), "{sdp}");
    let bye = ua.expect_request("BYE", Duration::from_secs(10));
    ua.ok_to(&bye);
    let served = peers::wait_bounded(serve, Duration::from_secs(20));
    assert!(served.status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("\"event\":\"hangup\"") && l.contains("\"reason\":\"rtp_timeout\"")),
        "{rest:?}"
    );
}

/// `serve --cc` agrees transport-wide congestion control with a caller that offers it; without
/// `--cc` the answer leaves it out.
#[test]
fn serve_cc_agrees_transport_cc_only_when_asked() {
    let offer_cc = "a=rtcp-fb:96 transport-cc\r\na=extmap:5 \
                    http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n";
    for (flags, agreed) in [(&["--cc"][..], true), (&[][..], false)] {
        let (sdp, ua, mut leg, serve, _) = answer_from_serve_with(flags, "39620-39669", offer_cc);
        assert_eq!(
            sdp.contains("a=rtcp-fb:96 transport-cc\r\n"),
            agreed,
            "{flags:?}: {sdp}"
        );
        assert_eq!(
            sdp.contains("transport-wide-cc"),
            agreed,
            "{flags:?}: {sdp}"
        );
        hang_up_served(&ua, &mut leg, serve);
    }
}

/// `serve --cc` answers a caller that offers only REMB (with abs-send-time) with REMB, and one
/// that offers only RFC 8888 (`a=rtcp-fb:* ack ccfb`) with RFC 8888; never transport-cc then.
#[test]
fn serve_cc_answers_remb_or_rfc8888_to_a_caller_offering_only_that() {
    let remb = "a=rtcp-fb:96 goog-remb\r\na=extmap:4 \
                http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n";
    let ccfb = "a=rtcp-fb:* ack ccfb\r\n";
    let cases: [(&str, &[&str]); 2] = [
        (
            remb,
            &[
                "a=rtcp-fb:96 goog-remb\r\n",
                "a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n",
            ],
        ),
        (ccfb, &["a=rtcp-fb:96 ack ccfb\r\n"]),
    ];
    for (offer, want) in cases {
        let (sdp, ua, mut leg, serve, _) = answer_from_serve_with(&["--cc"], "39870-39919", offer);
        for line in want {
            assert!(sdp.contains(line), "{line} in {sdp}");
        }
        assert!(!sdp.contains("transport-cc"), "{sdp}");
        hang_up_served(&ua, &mut leg, serve);
    }
}

#[test]
fn serve_refuses_bad_loss_recovery_values() {
    let bin = peers::bin();
    for bad in [
        &["--inactivity", "-1"][..],
        &["--inactivity", "soon"][..],
        &["--audio-jitter", "5000"][..],
        &[
            "--srtp-suites",
            "AES_CM_128_HMAC_SHA1_80,AES_256_CM_HMAC_SHA1_80",
        ][..],
        &["--srtp-suites", "AEAD_AES_128_GCM,AEAD_AES_128_GCM"][..],
        &["--srtp-suites", ","][..],
        &["--cc-start-kbps", "5000", "--cc-max-kbps", "1000"][..],
        &["--cc-max-kbps", "10"][..],
    ] {
        // Bounded: a serve that took the value would run until the timeout.
        let out = std::process::Command::new("timeout")
            .args(["20", bin.to_str().unwrap(), "serve", "--sip", "127.0.0.1:0"])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(bad[0]), "{bad:?}: {err}");
    }
}

/// `call` to a TCP port nobody listens on fails at once, and its JSON says why: a `failed`
/// progress line with 503 and the transport's reason, and a non-zero exit.
#[test]
fn call_over_tcp_to_a_closed_port_says_why_in_its_json() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = peers::bin();
    let began = std::time::Instant::now();
    // Bounded: timer B would take 32 s.
    let out = std::process::Command::new("timeout")
        .args(["20", bin.to_str().unwrap(), "call"])
        .arg(format!("sip:room@127.0.0.1:{port};transport=tcp"))
        .output()
        .unwrap();
    let took = began.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let failed = text
        .lines()
        .find(|l| l.contains("\"state\":\"failed\""))
        .unwrap_or_else(|| panic!("no failed line: {text}"));
    assert!(failed.contains("\"status\":503"), "{failed}");
    assert!(
        failed.contains("transport error") && failed.contains("refused"),
        "{failed}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// `serve --register` over TCP to a port nobody listens on: the `registration_failed` JSON
/// line comes at once with 503, the transport's reason and the retry.
#[test]
fn serve_register_over_tcp_to_a_closed_port_says_why_in_its_json() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let aor = format!("sip:alice@127.0.0.1:{port};transport=tcp");
    let (mut serve, _) = peers::spawn_serve(30, "39600-39619", &["--register", &aor]);
    let began = std::time::Instant::now();
    let (tx, lines) = crossbeam_channel::unbounded();
    let stdout = serve.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut failed = None;
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(15)) {
        if l.contains("\"event\":\"registration_failed\"") {
            failed = Some(l);
            break;
        }
    }
    let took = began.elapsed();
    peers::interrupt(&serve);
    let out = peers::wait_bounded(serve, Duration::from_secs(15));
    let failed = failed.unwrap_or_else(|| {
        panic!(
            "no registration_failed line: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(failed.contains("\"status\":503"), "{failed}");
    assert!(failed.contains("refused"), "{failed}");
    assert!(failed.contains("\"retry_in\":1"), "{failed}");
    // Serve's start-up included; timer F would take 32 s.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn call_and_serve_refuse_a_bad_rtp_port_range() {
    let bin = peers::bin();
    for (command, rest) in [
        ("call", &["sip:nobody@127.0.0.1:9"][..]),
        ("serve", &["--sip", "127.0.0.1:0"][..]),
    ] {
        for bad in ["5000-4000", "5000", "1-70000"] {
            // Bounded: a command that took the value would place its call or serve.
            let out = std::process::Command::new("timeout")
                .args(["20", bin.to_str().unwrap(), command])
                .args(rest)
                .args(["--rtp-ports", bad])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{command} {bad}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("--rtp-ports"), "{command} {bad}: {err}");
        }
    }
}
