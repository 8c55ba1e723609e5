//! Shared plumbing for the interop tests: finding the real peers, making clips, running programs
//! with bounds, and comparing decoded pictures.
//!
//! Every external program runs under `timeout`, and every wait here is bounded. When a peer is
//! missing, `CI=true` turns that into a failure; elsewhere the test says so and returns.

#![allow(dead_code)]

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
