//! Shared plumbing for the interop tests: finding the real peers, making clips, running programs
//! with bounds, and comparing decoded pictures.
//!
//! Every external program runs under `timeout`, and every wait here is bounded. When a peer is
//! missing, `CI=true` turns that into a failure; elsewhere the test says so and returns.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// True when running under CI, where a missing peer is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Checks that every program in `tools` is on PATH. Returns false (after printing why) when the
/// test should be skipped; panics under CI.
pub fn have_peers(tools: &[&str]) -> bool {
    for t in tools {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            if in_ci() {
                panic!("interop peer `{t}` is missing (CI=true): run ./scripts/test, which installs it");
            }
            eprintln!("SKIP: interop peer `{t}` is not installed (./scripts/test installs it)");
            return false;
        }
    }
    true
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "rkm-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("RKM_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The release or debug build of our command line, built by cargo for integration tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_roomkit-media"))
}

/// Runs a command to completion under `timeout SECS`, panicking with its stderr on failure.
pub fn run(secs: u32, program: &str, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .arg("-k")
        .arg("30")
        .arg(secs.to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if !out.status.success() {
        panic!(
            "{program} {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Starts a command under `timeout SECS` in the background, stdout and stderr piped.
pub fn spawn(secs: u32, program: &str, args: &[&str]) -> Child {
    Command::new("timeout")
        .arg("-k")
        .arg("30")
        .arg(secs.to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

/// Sends SIGINT to the process group leader `timeout` started, which passes it on to the peer.
pub fn interrupt(child: &Child) {
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
}

/// Waits for a child with a bound; kills it when the bound passes. Returns its output.
pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    child.wait_with_output().expect("collect child output")
}

/// A UDP port that was free a moment ago (the peer binds it next).
pub fn free_udp_port() -> u16 {
    // Even ports keep RTCP (port + 1) out of the way of other tests' RTP ports.
    for _ in 0..200 {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind probe socket");
        let p = s.local_addr().unwrap().port();
        if p.is_multiple_of(2) && p < 65534 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free even UDP port found");
}

/// Waits (bounded) until some process has bound UDP `port` on loopback, by reading /proc/net/udp.
pub fn wait_udp_bound(port: u16, limit: Duration) -> bool {
    let needle = format!(":{port:04X} ");
    let start = Instant::now();
    while start.elapsed() < limit {
        for table in ["/proc/net/udp", "/proc/net/udp6"] {
            if let Ok(t) = std::fs::read_to_string(table) {
                if t.lines().skip(1).any(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|local| format!("{local} ").ends_with(&needle))
                }) {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Reads lines from a child's stderr until one starts with `prefix`, with a bound. Returns the
/// rest of that line; the reader keeps the remaining stream.
pub fn read_line_with<R: BufRead>(reader: &mut R, prefix: &str, limit: Duration) -> Option<String> {
    let start = Instant::now();
    let mut line = String::new();
    while start.elapsed() < limit {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {
                if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                    return Some(rest.trim().to_string());
                }
            }
            Err(_) => return None,
        }
    }
    None
}

/// Buffered reader over a child's stderr.
pub fn stderr_reader(child: &mut Child) -> BufReader<std::process::ChildStderr> {
    BufReader::new(child.stderr.take().expect("stderr piped"))
}

/// One md5 per decoded picture, in order, from `ffmpeg -f framemd5`.
pub fn frame_md5s(file: &Path, input_args: &[&str]) -> Vec<String> {
    let path = file.to_str().unwrap();
    let mut args: Vec<&str> = vec!["-nostdin", "-v", "error"];
    args.extend_from_slice(input_args);
    args.extend_from_slice(&["-i", path, "-f", "framemd5", "-"]);
    let out = run(120, "ffmpeg", &args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Starts `roomkit-media serve` (stopped after `secs` at the latest) on a free loopback SIP
/// port, its RTP on loopback in `rtp_ports` ("A-B"), with `extra` arguments; returns it, its
/// stdout piped, and its SIP port.
pub fn spawn_serve(secs: u32, rtp_ports: &str, extra: &[&str]) -> (Child, u16) {
    let port = free_udp_port();
    let sip = format!("127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        "--sip",
        &sip,
        "--rtp-ip",
        "127.0.0.1",
        "--rtp-ports",
        rtp_ports,
    ];
    args.extend_from_slice(extra);
    (spawn(secs, bin().to_str().unwrap(), &args), port)
}

/// The port of listener `key` (`"sip"`, `"sip_tcp"`, `"sip_tls"`) in serve's `listening` line.
pub fn listening_port(line: &str, key: &str) -> u16 {
    let v: serde_json::Value = serde_json::from_str(line).expect("listening JSON");
    let addr = v[key].as_str().unwrap_or_else(|| panic!("{key} in {line}"));
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Generates a 16-bit PCM WAV of a `freq` Hz sine at `rate` Hz, `channels` channels, `seconds`
/// long, with ffmpeg.
pub fn make_tone_wav(out: &Path, freq: f64, rate: u32, channels: u32, seconds: u32) {
    let source = format!("sine=frequency={freq}:sample_rate={rate}");
    let (t, ch) = (seconds.to_string(), channels.to_string());
    run(
        60,
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &source,
            "-t",
            &t,
            "-ac",
            &ch,
            "-c:a",
            "pcm_s16le",
            out.to_str().unwrap(),
        ],
    );
}

/// Generates an Annex-B H.264 clip with ffmpeg/libx264. `extra` goes before the output options.
pub fn make_h264_clip(out: &Path, source: &str, seconds: u32, extra: &[&str]) {
    let t = seconds.to_string();
    let mut args = vec![
        "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-t", &t, "-pix_fmt",
        "yuv420p", "-c:v", "libx264",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "-bsf:v",
        "h264_mp4toannexb",
        "-f",
        "h264",
        out.to_str().unwrap(),
    ]);
    run(180, "ffmpeg", &args);
}

/// Generates a VP8 clip in IVF with ffmpeg/libvpx.
pub fn make_vp8_clip(out: &Path, source: &str, seconds: u32) {
    let t = seconds.to_string();
    run(
        180,
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            source,
            "-t",
            &t,
            "-c:v",
            "libvpx",
            "-b:v",
            "1M",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-f",
            "ivf",
            out.to_str().unwrap(),
        ],
    );
}

/// Parses the final JSON stats line our `send`/`recv` print, as (key, integer) pairs.
pub fn json_stats(stdout: &[u8]) -> Vec<(String, i64)> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| {
            panic!("no JSON stats line in output:\n{text}");
        });
    line.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((
                k.trim().trim_matches('"').to_string(),
                v.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// Looks up one key of [`json_stats`].
pub fn stat(stats: &[(String, i64)], key: &str) -> i64 {
    stats
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no `{key}` in {stats:?}"))
}

/// Starts ffmpeg's RTP demuxer on a free port, from an SDP file written to `sdp` whose media
/// section is `media` (rtpmap/fmtp lines, `{port}` filled in), with `output` as the rest of
/// its command line. Returns it, and the port, once it has bound the port. It stops by itself
/// once no packet came for a second (`-rw_timeout`).
pub fn ffmpeg_rtp_receiver(sdp: &Path, media: &str, output: &[&str]) -> (Child, u16) {
    let port = free_udp_port();
    let media = media.replace("{port}", &port.to_string());
    std::fs::write(
        sdp,
        format!("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=roomkit-media\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}"),
    )
    .unwrap();
    let mut args = vec![
        "-nostdin",
        "-v",
        "error",
        "-rw_timeout",
        "1000000",
        "-protocol_whitelist",
        "file,udp,rtp",
        "-buffer_size",
        "8388608",
        "-i",
        sdp.to_str().unwrap(),
    ];
    args.extend_from_slice(output);
    let ff = spawn(120, "ffmpeg", &args);
    assert!(
        wait_udp_bound(port, Duration::from_secs(20)),
        "ffmpeg did not bind its port"
    );
    (ff, port)
}

/// Plays `clip` with `roomkit-media send` (real-time pace, `send_args` added) into an ffmpeg
/// receiver started from an SDP file whose media section is `media` (rtpmap/fmtp lines, with
/// `{port}` filled in), and returns once ffmpeg has written `out` in `format`.
///
/// ffmpeg stops by itself once no packet came for a second (`-rw_timeout`); a SIGINT would race
/// its output flush. The pace is real time because ffmpeg's RTP demuxer derives DTS from arrival
/// as well as RTP time, and rejects its own output when pictures come faster than that.
pub fn send_to_ffmpeg_receiver(
    clip: &Path,
    out: &Path,
    media: &str,
    format: &str,
    send_args: &[&str],
) {
    let dir = out.parent().expect("output in a directory");
    let (ff, port) = ffmpeg_rtp_receiver(
        &dir.join("in.sdp"),
        media,
        &["-c", "copy", "-f", format, out.to_str().unwrap()],
    );
    let to = format!("127.0.0.1:{port}");
    let mut args = vec!["send", "--to", &to, clip.to_str().unwrap(), "--fps", "30"];
    args.extend_from_slice(send_args);
    run(120, bin().to_str().unwrap(), &args);
    let done = wait_bounded(ff, Duration::from_secs(60));
    assert!(
        out.exists(),
        "ffmpeg wrote nothing: {}",
        String::from_utf8_lossy(&done.stderr)
    );
}

/// Asserts that `received` decodes to the pictures of `source`, in order, with at most
/// `allow_missing_tail` pictures missing at the end.
pub fn assert_same_pictures(source: &Path, received: &Path, allow_missing_tail: usize) {
    let want = frame_md5s(source, &[]);
    let got = frame_md5s(received, &[]);
    assert!(!want.is_empty(), "source clip decoded to no pictures");
    assert!(
        got.len() <= want.len() && got.len() + allow_missing_tail >= want.len(),
        "received {} pictures, sent {}",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "picture {i} differs");
    }
}

/// Starts `roomkit-media recv` on an ephemeral port and returns it with the port it bound.
pub fn start_recv(out: &Path, codec: &str, frames: Option<usize>) -> (std::process::Child, u16) {
    let out_s = out.to_str().unwrap();
    let frames_s = frames.map(|f| f.to_string());
    let mut args = vec![
        "recv",
        "--listen",
        "127.0.0.1:0",
        "--out",
        out_s,
        "--codec",
        codec,
        "--timeout",
        "3",
    ];
    if let Some(f) = frames_s.as_deref() {
        args.extend_from_slice(&["--frames", f]);
    }
    let mut child = spawn(120, bin().to_str().unwrap(), &args);
    let mut err = stderr_reader(&mut child);
    let addr = read_line_with(&mut err, "listening on", Duration::from_secs(20))
        .expect("recv printed its address");
    // Keep draining stderr so recv never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::BufRead::read_line(&mut err, &mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.clear();
        }
    });
    let port = addr.rsplit(':').next().unwrap().parse().expect("port");
    (child, port)
}

/// Waits (bounded by `limit`) until `path` exists and its size has not changed for `quiet`.
pub fn wait_file_stable(path: &Path, quiet: Duration, limit: Duration) {
    let start = Instant::now();
    let mut last = (u64::MAX, Instant::now());
    while start.elapsed() < limit {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size != last.0 {
            last = (size, Instant::now());
        } else if size > 0 && last.1.elapsed() >= quiet {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fails the test (with the program's stderr) unless `out` is a successful exit; returns it.
#[track_caller]
pub fn check_ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `wait_bounded`, then `check_ok`.
#[track_caller]
pub fn wait_ok(child: Child, limit: Duration) -> Output {
    check_ok(wait_bounded(child, limit))
}
