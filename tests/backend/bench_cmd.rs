//! `roomkit-media bench`: short runs in each set-up (two RTP backends, two SIP backends, a
//! `serve --echo` at a URI, and with sessions replaced as they close) report every field with
//! media delivered; Ctrl-C ends a run early with its report; bad arguments exit 2. Floors only:
//! speed is measured by running the command, never asserted here.

use crate::support;

use support::peers;

use std::time::Duration;

/// Every field of the closing line.
const FIELDS: &[&str] = &[
    "event",
    "mode",
    "sessions",
    "seconds",
    "media_seconds",
    "sessions_up",
    "sessions_closed",
    "setup_failed",
    "video_missing",
    "ended_early",
    "setup_rate",
    "setup_ms_p50",
    "setup_ms_p99",
    "video_sent",
    "video_delivered",
    "video_loss_pct",
    "keyframes_delivered",
    "video_unstamped",
    "audio_sent",
    "audio_delivered",
    "audio_loss_pct",
    "audio_concealed",
    "events_dropped_slow_callback",
    "sends_late",
    "send_errors",
    "latency",
    "latency_ms_p50",
    "latency_ms_p99",
    "latency_ms_max",
    "cpu_cores",
    "rss_mb_at_start",
    "rss_mb",
    "peak_rss_mb",
    "threads",
    "peak_threads",
    "interrupted",
    "ok",
];

/// The JSON line of a finished `bench` run (which must have exited 0 unless `interrupt`).
fn report(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("{\"event\":\"bench\""))
        .unwrap_or_else(|| {
            panic!(
                "no bench line:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let json: serde_json::Value = serde_json::from_str(line).expect("bench JSON");
    let mut keys: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = FIELDS.to_vec();
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{json}");
    json
}

/// Runs `bench` with `args`, checks it succeeded, returns its report.
fn bench(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    let child = peers::spawn(90, peers::bin().to_str().unwrap(), &all);
    let out = peers::wait_bounded(child, Duration::from_secs(90));
    let json = report(&out);
    assert!(
        out.status.success(),
        "{json}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json
}

fn n(json: &serde_json::Value, key: &str) -> f64 {
    json[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key}: {json}"))
}

/// Sessions came up and both kinds of media arrived, well above a floor that a loaded machine
/// still clears; the figures are sane (not their size: that is the command's job to report).
fn media_flowed(json: &serde_json::Value, sessions: f64) {
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["interrupted"], false, "{json}");
    assert!(n(json, "sessions_up") >= sessions - 1.0, "{json}");
    assert!(n(json, "setup_rate") > 0.0, "{json}");
    for kind in ["video", "audio"] {
        let (sent, delivered) = (
            n(json, &format!("{kind}_sent")),
            n(json, &format!("{kind}_delivered")),
        );
        assert!(sent > 0.0, "{kind}: {json}");
        assert!(delivered * 2.0 >= sent, "{kind}: {json}");
        assert!(delivered <= sent, "{kind}: {json}");
    }
    assert!(n(json, "keyframes_delivered") >= 1.0, "{json}");
    assert_eq!(n(json, "video_unstamped"), 0.0, "{json}");
    let (p50, p99, max) = (
        n(json, "latency_ms_p50"),
        n(json, "latency_ms_p99"),
        n(json, "latency_ms_max"),
    );
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{json}");
    assert!(n(json, "cpu_cores") > 0.0, "{json}");
    assert!(n(json, "media_seconds") >= 2.0, "{json}");
    assert!(n(json, "peak_rss_mb") > 0.0, "{json}");
    assert!(n(json, "threads") >= 1.0, "{json}");
}

#[test]
fn bench_rtp_in_process_reports_one_way_media() {
    let json = bench(&["--sessions", "5", "--seconds", "2"]);
    assert_eq!(json["mode"], "rtp", "{json}");
    assert_eq!(json["latency"], "one_way", "{json}");
    media_flowed(&json, 5.0);
}

#[test]
fn bench_sip_in_process_dials_and_reports_media() {
    let json = bench(&[
        "--sessions",
        "5",
        "--seconds",
        "2",
        "--sip",
        "--rtp-ports",
        "33000-33999",
    ]);
    assert_eq!(json["mode"], "sip", "{json}");
    assert!(n(&json, "setup_ms_p50") > 0.0, "{json}");
    media_flowed(&json, 5.0);
}

#[test]
fn bench_sip_on_shared_io_threads_reports_media() {
    let json = bench(&[
        "--sessions",
        "5",
        "--seconds",
        "2",
        "--sip",
        "--io-threads",
        "2",
        "--rtp-ports",
        "35000-35999",
    ]);
    media_flowed(&json, 5.0);
    // No thread per stream: 20 streams would be 20 threads.
    assert!(n(&json, "threads") < 20.0, "{json}");
}

#[test]
fn bench_with_hold_replaces_sessions_as_they_close() {
    let json = bench(&["--sessions", "4", "--seconds", "3", "--hold", "0.5"]);
    media_flowed(&json, 4.0);
    // Each closed session was replaced: more came up than run at once.
    let (up, closed) = (n(&json, "sessions_up"), n(&json, "sessions_closed"));
    assert!(closed >= 1.0 && up >= 4.0 + closed - 1.0, "{json}");
    // Sessions are closed by the thread that sends on them: no send races a close.
    assert_eq!(n(&json, "send_errors"), 0.0, "{json}");
    assert_eq!(n(&json, "ended_early"), 0.0, "{json}");
    // Every session came up with the video it asked for.
    assert_eq!(n(&json, "video_missing"), 0.0, "{json}");
}

#[test]
fn bench_against_serve_echo_reports_the_round_trip() {
    let (serve, port) = peers::spawn_serve(60, "34000-34999", &["--echo"]);
    let target = format!("sip:echo@127.0.0.1:{port}");
    // serve binds its port after start-up: the ramp's first calls would be retransmitted.
    std::thread::sleep(Duration::from_millis(300));
    let json = bench(&[
        "--sessions",
        "3",
        "--seconds",
        "2",
        "--target",
        &target,
        "--rtp-ports",
        "35000-35999",
    ]);
    peers::interrupt(&serve);
    let _ = peers::wait_bounded(serve, Duration::from_secs(10));
    assert_eq!(json["mode"], "remote", "{json}");
    assert_eq!(json["latency"], "round_trip", "{json}");
    media_flowed(&json, 3.0);
}

#[test]
fn ctrl_c_ends_a_bench_early_with_its_report() {
    let child = peers::spawn(
        60,
        peers::bin().to_str().unwrap(),
        &["bench", "--sessions", "3", "--seconds", "50"],
    );
    let mut child = child;
    // Interrupted once it says it started (its signal handler is in place), media flowing.
    let mut first = String::new();
    let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    std::io::BufRead::read_line(&mut err, &mut first).expect("bench's first line");
    assert!(first.starts_with("bench: 3 rtp sessions"), "{first}");
    std::thread::sleep(Duration::from_millis(500));
    peers::interrupt(&child);
    let started = std::time::Instant::now();
    let out = peers::wait_bounded(child, Duration::from_secs(20));
    assert!(started.elapsed() < Duration::from_secs(20), "not stopped");
    let json = report(&out);
    assert_eq!(json["interrupted"], true, "{json}");
    assert!(n(&json, "video_sent") > 0.0, "{json}");
}

#[test]
fn bench_refuses_bad_arguments_with_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["--target", "http://x"], "not a sip: URI"),
        (&["--sessions", "0"], "--sessions"),
        (&["--fps", "0"], "--fps"),
        (&["--sip", "--target", "sip:a@127.0.0.1:9"], "--target"),
        (&["--audio-only", "--video-only"], "--video-only"),
        (&["--clip", "x.h264", "--bitrate", "100"], "--bitrate"),
        (&["--clip", "/nonexistent/x.h264"], "cannot read"),
        (&["--rtp-ports", "3000-2000"], "--rtp-ports"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["bench", "--seconds", "1"];
        all.extend_from_slice(args);
        let child = peers::spawn(20, peers::bin().to_str().unwrap(), &all);
        let out = peers::wait_bounded(child, Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: `{err}` lacks `{needle}`");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
