//! The command line's contract: bad arguments and unreadable files give a clear message and exit
//! code 2 (a mistyped name with a suggestion); `--help` and `completions` exit 0; `recv --frames`
//! and `--timeout` stop it by themselves; `send` → `recv` runs over SRTP with a pre-shared key.

use crate::support;

use support::peers;

use peers::*;
use std::process::Command;
use std::time::Duration;

fn exit_code(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run roomkit-media");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let dir = TempDir::new("cli");
    let clip = dir.path("x.h264");
    std::fs::write(&clip, support::h264_picture(true, 64, 1)).unwrap();
    let clip_s = clip.to_str().unwrap();
    let two = dir.path("two.h264");
    let mut bytes = support::h264_picture(true, 64, 1);
    bytes.extend(support::h264_picture(false, 64, 2));
    std::fs::write(&two, bytes).unwrap();
    let ladder = format!("{clip_s},{}", two.to_str().unwrap());
    let cases: &[(&[&str], &str)] = &[
        (&[], "Usage"),
        (&["frobnicate"], "unrecognized subcommand"),
        (&["sned"], "a similar subcommand exists: 'send'"),
        (&["send", clip_s], "--to"),
        (
            &["send", "--to", "127.0.0.1:9", "/nonexistent/clip.h264"],
            "cannot read",
        ),
        (&["send", "--to", "not-an-address", clip_s], "HOST:PORT"),
        (
            &["send", "--to", "127.0.0.1:9", "--pt", "300", clip_s],
            "--pt",
        ),
        (
            &["send", "--to", "127.0.0.1:9", "--mtu", "10", clip_s],
            "--mtu",
        ),
        (
            &["send", "--to", "127.0.0.1:9", "--fps", "abc", clip_s],
            "--fps",
        ),
        (
            &["send", "--to", "127.0.0.1:9", "--codec", "h265", clip_s],
            "--codec",
        ),
        (
            &["send", "--to", "127.0.0.1:9", "--bogus", "1", clip_s],
            "unexpected argument '--bogus'",
        ),
        (
            &["send", "--too", "127.0.0.1:9", clip_s],
            "a similar argument exists: '--to'",
        ),
        (
            &["send", "--to", "127.0.0.1:9", "--rtx-pt", "96", clip_s],
            "--rtx-pt",
        ),
        // A ladder of files that are not one clip, a ladder and a FILE, a start above the max.
        (
            &["send", "--to", "127.0.0.1:9", "--ladder", &ladder],
            "renditions must be one clip",
        ),
        (
            &["send", "--to", "127.0.0.1:9", "--ladder", &ladder, clip_s],
            "cannot be used with",
        ),
        (
            &[
                "send",
                "--to",
                "127.0.0.1:9",
                "--cc-start-kbps",
                "5000",
                "--cc-max-kbps",
                "1000",
                clip_s,
            ],
            "--cc-start-kbps 5000 is above --cc-max-kbps 1000",
        ),
        (
            &["call", "sip:bob@127.0.0.1:9", "--ring-timeout", "0.1"],
            "--ring-timeout",
        ),
        (
            &["call", "sip:bob@127.0.0.1:9", "--auth-user", "a"],
            "--password",
        ),
        (
            &["serve", "--sip", "127.0.0.1:0", "--expires", "60"],
            "--register",
        ),
        (&["netsim", "--loss", "5"], "--pipe"),
        (&["completions", "tcsh"], "tcsh"),
        (
            &[
                "send",
                "--to",
                "127.0.0.1:9",
                "--srtp-key",
                "AES_CM_128_HMAC_SHA1_80:AAAA",
                clip_s,
            ],
            "--srtp-key: the key is not base64 of 30 bytes",
        ),
        (
            &[
                "send",
                "--to",
                "127.0.0.1:9",
                "--srtp-key",
                "F8_128_HMAC_SHA1_80:AAAA",
                clip_s,
            ],
            "is not an SRTP suite",
        ),
        (
            &[
                "send",
                "--to",
                "127.0.0.1:9",
                "--srtp-key",
                "x",
                "--srtp-key-file",
                "k",
                clip_s,
            ],
            "cannot be used with",
        ),
        (&["recv", "--out", "x.h264"], "--listen"),
        (&["recv", "--listen", "127.0.0.1:0"], "--out"),
        (
            &[
                "recv",
                "--listen",
                "127.0.0.1:0",
                "--out",
                "/nonexistent/dir/x.h264",
            ],
            "cannot create",
        ),
        (
            &[
                "recv",
                "--listen",
                "127.0.0.1:0",
                "--out",
                "x.h264",
                "--timeout",
                "-1",
            ],
            "--timeout",
        ),
    ];
    for (args, needle) in cases {
        let (code, err) = exit_code(args);
        assert_eq!(code, 2, "{args:?} exited {code}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: message `{err}` does not mention `{needle}`"
        );
    }
    let vp8 = dir.path("bad.ivf");
    std::fs::write(&vp8, b"not an ivf file at all, just text").unwrap();
    let (code, err) = exit_code(&["send", "--to", "127.0.0.1:9", vp8.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn help_and_completions_exit_0() {
    let out = Command::new(bin())
        .args(["call", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--ring-timeout"), "{help}");
    let out = Command::new(bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("roomkit-media"));
}

#[test]
fn recv_stops_after_its_idle_timeout_and_reports_zero() {
    let dir = TempDir::new("cli-idle");
    let out = dir.path("o.h264");
    let child = spawn(
        30,
        bin().to_str().unwrap(),
        &[
            "recv",
            "--listen",
            "127.0.0.1:0",
            "--out",
            out.to_str().unwrap(),
            "--timeout",
            "0.5",
        ],
    );
    let done = wait_bounded(child, Duration::from_secs(20));
    assert!(done.status.success());
    let stats = json_stats(&done.stdout);
    assert_eq!(stat(&stats, "packets"), 0);
    assert_eq!(stat(&stats, "frames"), 0);
}

#[test]
fn recv_stops_after_n_frames_from_our_own_sender() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("cli-frames");
    let clip = dir.path("clip.h264");
    make_h264_clip(
        &clip,
        "testsrc=size=320x240:rate=30",
        2,
        &["-profile:v", "baseline", "-g", "10"],
    );
    let out = dir.path("o.h264");
    let mut recv = spawn(
        60,
        bin().to_str().unwrap(),
        &[
            "recv",
            "--listen",
            "127.0.0.1:0",
            "--out",
            out.to_str().unwrap(),
            "--frames",
            "12",
            "--timeout",
            "10",
        ],
    );
    let mut err = stderr_reader(&mut recv);
    let addr = read_line_with(&mut err, "listening on", Duration::from_secs(20)).expect("address");
    let sent = run(
        60,
        bin().to_str().unwrap(),
        &["send", "--to", &addr, clip.to_str().unwrap(), "--fps", "0"],
    );
    let s = json_stats(&sent.stdout);
    assert_eq!(stat(&s, "frames"), 60);
    assert!(stat(&s, "keyframes") >= 6);
    let done = wait_bounded(recv, Duration::from_secs(20));
    assert!(done.status.success());
    let r = json_stats(&done.stdout);
    assert_eq!(stat(&r, "frames"), 12, "{r:?}");
    assert_eq!(frame_md5s(&out, &[]).len(), 12);
}

/// `recv` on a free port, its stdout and stderr captured; returns it and its address.
fn recv_on_free_port(out: &std::path::Path, extra: &[&str]) -> (std::process::Child, String) {
    let mut args = vec![
        "recv",
        "--listen",
        "127.0.0.1:0",
        "--out",
        out.to_str().unwrap(),
        "--timeout",
        "3",
    ];
    args.extend_from_slice(extra);
    let mut recv = spawn(60, bin().to_str().unwrap(), &args);
    let mut err = stderr_reader(&mut recv);
    let addr = read_line_with(&mut err, "listening on", Duration::from_secs(20)).expect("address");
    (recv, addr)
}

#[test]
fn send_to_recv_over_srtp_delivers_pictures_and_a_wrong_key_none() {
    if !have_peers(&["ffmpeg"]) {
        return;
    }
    let dir = TempDir::new("cli-srtp");
    let clip = dir.path("clip.h264");
    make_h264_clip(
        &clip,
        "testsrc=size=320x240:rate=30",
        2,
        &["-profile:v", "baseline", "-g", "10"],
    );
    let clip_s = clip.to_str().unwrap();
    // Fixed test keys (28 bytes for GCM, 30 for AES-CM), as `head -c N /dev/urandom | base64`.
    let gcm = "AEAD_AES_128_GCM:CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQ==";
    let cm = "AES_CM_128_HMAC_SHA1_32:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let wrong = "AES_CM_128_HMAC_SHA1_32:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk";

    // The right key (the receiver reads it from a file): every picture arrives and decodes.
    let key_file = dir.path("key");
    std::fs::write(&key_file, format!("{gcm}\n")).unwrap();
    let out = dir.path("o.h264");
    let (recv, addr) = recv_on_free_port(&out, &["--srtp-key-file", key_file.to_str().unwrap()]);
    let sent = run(
        60,
        bin().to_str().unwrap(),
        &[
            "send",
            "--to",
            &addr,
            clip_s,
            "--fps",
            "0",
            "--srtp-key",
            gcm,
        ],
    );
    let s = json_stats(&sent.stdout);
    assert_eq!(stat(&s, "frames"), 60);
    let done = wait_bounded(recv, Duration::from_secs(30));
    assert!(done.status.success());
    let r = json_stats(&done.stdout);
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(text.contains(r#""srtp":"AEAD_AES_128_GCM""#), "{text}");
    // Floors, not exact counts: a loaded machine may lose a packet NACK cannot bring back.
    assert!(stat(&r, "frames") >= 50, "{r:?}");
    assert_eq!(stat(&r, "srtp_auth_failed"), 0, "{r:?}");
    assert!(frame_md5s(&out, &[]).len() >= 50);

    // A wrong key: everything is counted as failing authentication, nothing is delivered.
    let out = dir.path("wrong.h264");
    let (recv, addr) = recv_on_free_port(&out, &["--srtp-key", wrong]);
    let sent = run(
        60,
        bin().to_str().unwrap(),
        &[
            "send",
            "--to",
            &addr,
            clip_s,
            "--fps",
            "0",
            "--srtp-key",
            cm,
        ],
    );
    let sent_packets = stat(&json_stats(&sent.stdout), "packets");
    let done = wait_bounded(recv, Duration::from_secs(30));
    assert!(done.status.success());
    let r = json_stats(&done.stdout);
    assert_eq!(stat(&r, "frames"), 0, "{r:?}");
    assert_eq!(stat(&r, "packets"), 0, "{r:?}");
    assert!(
        stat(&r, "srtp_auth_failed") >= sent_packets / 2,
        "{r:?}, {sent_packets} sent"
    );
}
