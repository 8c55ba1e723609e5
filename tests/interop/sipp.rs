//! sipp (a SIP tool nobody here wrote) drives `roomkit-media serve` with our scenarios in
//! `tests/sipp/`: A/V call, audio-only, video without a common codec, CANCEL before answer,
//! OPTIONS, re-INVITE with hold, BYE from our side, 50 concurrent calls (also with `serve`'s RTP
//! on 2 shared I/O threads), and a call during which
//! sipp plays H.264 RTP from a pcap that `serve --record` writes and ffmpeg decodes to the
//! clip's own pictures. sipp's exit code 0 means every scenario step matched.

use crate::support;

use support::peers;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use roomkit_media::codec::annexb::access_units;
use roomkit_media::codec::h264::{H264Packetizer, PacketizationMode};
use roomkit_media::codec::{Packetizer, PayloadList};

fn scenario(name: &str) -> PathBuf {
    support::sipp::scenario(name)
}

/// A running `serve` and the JSON lines it printed so far.
struct Serve {
    child: Option<Child>,
    lines: Receiver<String>,
    port: u16,
    /// The `listening` line.
    listening: String,
}

/// The RTP range of test `k`: tests run in parallel (threads or processes), and each gets its
/// own ports.
fn rtp_range(k: u16) -> String {
    let start = 34000 + k * 300;
    format!("{start}-{}", start + 299)
}

impl Serve {
    fn start(k: u16, extra: &[&str]) -> Serve {
        let (mut child, port) = peers::spawn_serve(180, &rtp_range(k), extra);
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = unbounded();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("serve printed nothing");
        assert!(first.contains("\"listening\""), "{first}");
        Serve {
            child: Some(child),
            lines,
            port,
            listening: first,
        }
    }

    /// Waits for `serve` to exit (after `--max-calls`, or now with SIGINT when `interrupt`) and
    /// returns every line it printed.
    fn finish(mut self, interrupt: bool) -> Vec<String> {
        let child = self.child.take().unwrap();
        if interrupt {
            peers::interrupt(&child);
        }
        let out = peers::wait_bounded(child, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "serve failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v: Vec<String> = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            v.push(l);
        }
        assert!(
            v.last().is_some_and(|l| l.contains("\"stats\"")),
            "no closing stats line: {v:?}"
        );
        v
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs sipp with `scenario` against `serve`, panicking with its error log unless it exits 0.
fn sipp(scenario: &Path, port: u16, extra: &[&str]) {
    support::sipp::run(scenario, &format!("127.0.0.1:{port}"), extra);
}

fn events<'a>(lines: &'a [String], kind: &str) -> Vec<&'a String> {
    let tag = format!("\"event\":\"{kind}\"");
    lines.iter().filter(|l| l.contains(&tag)).collect()
}

#[test]
fn sipp_av_call() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let s = Serve::start(1, &["--max-calls", "1"]);
    sipp(&scenario("av_call.xml"), s.port, &["-d", "500"]);
    let lines = s.finish(false);
    let call = events(&lines, "call");
    assert_eq!(call.len(), 1, "{lines:?}");
    assert!(call[0].contains("\"has_video\":true"), "{}", call[0]);
    assert!(call[0].contains("\"video_codec\":\"h264\""), "{}", call[0]);
    assert!(call[0].contains("\"room_id\":\"sipp-room\""), "{}", call[0]);
    assert!(
        call[0].contains("\"caller_display_name\":\"SIPp AV\""),
        "{}",
        call[0]
    );
    assert_eq!(events(&lines, "video_ready").len(), 1);
    assert_eq!(events(&lines, "hangup").len(), 1);
}

#[test]
fn sipp_audio_only_call() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let s = Serve::start(2, &["--max-calls", "1"]);
    sipp(&scenario("audio_only.xml"), s.port, &["-d", "200"]);
    let lines = s.finish(false);
    let call = events(&lines, "call");
    assert!(call[0].contains("\"has_video\":false"), "{}", call[0]);
    assert!(events(&lines, "video_ready").is_empty());
}

#[test]
fn sipp_video_without_common_codec() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let s = Serve::start(3, &["--max-calls", "1"]);
    sipp(&scenario("video_no_common.xml"), s.port, &["-d", "200"]);
    let lines = s.finish(false);
    let call = events(&lines, "call");
    assert!(call[0].contains("\"has_video\":false"), "{}", call[0]);
    assert!(call[0].contains("\"video_codec\":\"\""), "{}", call[0]);
}

#[test]
fn sipp_cancel_before_answer() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let s = Serve::start(4, &["--answer-after", "5000", "--max-calls", "1"]);
    sipp(&scenario("cancel.xml"), s.port, &[]);
    let lines = s.finish(false);
    assert!(
        events(&lines, "call").is_empty(),
        "never answered: {lines:?}"
    );
    let stats = events(&lines, "stats");
    assert!(stats[0].contains("\"calls_answered\":0"), "{}", stats[0]);
}

#[test]
fn sipp_options_and_sigint() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let s = Serve::start(5, &[]);
    sipp(&scenario("options.xml"), s.port, &["-m", "5", "-r", "50"]);
    let lines = s.finish(true);
    assert!(events(&lines, "stats")[0].contains("\"calls_answered\":0"));
}

#[test]
fn sipp_reinvite_hold() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let s = Serve::start(6, &["--max-calls", "1"]);
    sipp(&scenario("reinvite.xml"), s.port, &[]);
    let lines = s.finish(false);
    assert_eq!(events(&lines, "call").len(), 1);
    assert_eq!(events(&lines, "hangup").len(), 1);
}

#[test]
fn sipp_bye_from_our_side() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let s = Serve::start(7, &["--hangup-after", "300", "--max-calls", "1"]);
    sipp(&scenario("bye_from_server.xml"), s.port, &[]);
    let lines = s.finish(false);
    assert_eq!(events(&lines, "hangup").len(), 1);
    assert!(events(&lines, "stats")[0].contains("\"bye_timeouts\":0"));
}

/// `serve`'s RTP on one thread per stream (`--io-threads 0`).
#[test]
fn sipp_fifty_concurrent_calls() {
    fifty_concurrent_calls(8, &["--io-threads", "0"]);
}

/// The same with `serve`'s RTP on 2 shared I/O threads (its default on 2 cores).
#[test]
fn sipp_fifty_concurrent_calls_on_shared_io_threads() {
    fifty_concurrent_calls(19, &["--io-threads", "2"]);
}

fn fifty_concurrent_calls(k: u16, extra: &[&str]) {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let mut args = vec!["--max-calls", "50"];
    args.extend_from_slice(extra);
    let s = Serve::start(k, &args);
    sipp(
        &scenario("av_call.xml"),
        s.port,
        &["-m", "50", "-l", "50", "-r", "100", "-d", "2000"],
    );
    let lines = s.finish(false);
    assert_eq!(events(&lines, "call").len(), 50);
    assert_eq!(events(&lines, "hangup").len(), 50);
    assert!(events(&lines, "stats")[0].contains("\"calls_answered\":50"));
}

/// Overload control seen from sipp: one source placing calls much faster than
/// `--source-rate` lets through gets 503 + Retry-After for the excess, and every call ends
/// answered or refused, none by a timeout (sipp fails a call whose INVITE or BYE goes
/// unanswered, and exits non-zero). Floors only: how many get through depends on the machine.
#[test]
fn sipp_flood_is_refused_with_503_never_left_to_time_out() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let s = Serve::start(32, &["--source-rate", "20", "--quiet-frames"]);
    let calls = 300;
    let log = support::sipp::Sipp::spawn(
        &scenario("av_call_or_503.xml"),
        Some(&format!("127.0.0.1:{}", s.port)),
        &["-m", "300", "-l", "300", "-r", "200", "-d", "0"],
    )
    .wait_log(Duration::from_secs(100))
    .unwrap_or_else(|e| panic!("{e}"));
    let count = |what: &str| log.lines().filter(|l| l.starts_with(what)).count();
    let (answered, refused) = (count("answered"), count("refused"));
    assert_eq!(answered + refused, calls, "{log}");
    assert!(answered >= 20, "the burst at least: {answered} answered");
    assert!(refused >= 100, "{refused} refused");
    let lines = s.finish(true);
    let stats = events(&lines, "stats")[0];
    assert!(
        stats.contains(&format!("\"calls_answered\":{answered},")),
        "{stats}"
    );
    assert!(
        stats.contains(&format!("\"calls_refused_overload\":{refused},")),
        "every 503 counted: {stats}"
    );
    let limited: usize = stats
        .split("\"requests_rate_limited\":")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(limited >= 100 && limited <= refused, "{stats}");
}

/// GETs `/metrics` from `serve --metrics` and returns the value of each sample line.
fn scrape(addr: &str) -> std::collections::HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// `serve --metrics` counts what sipp did: 20 A/V calls, 10 at once, answered and ended, each
/// with its setup time; their sessions started and ended; RTP went out to sipp.
#[test]
fn sipp_calls_are_counted_in_the_metrics() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let s = Serve::start(31, &["--metrics", "127.0.0.1:0", "--quiet-frames"]);
    let addr = s
        .listening
        .split("\"metrics\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no metrics address in {}", s.listening))
        .to_string();
    sipp(
        &scenario("av_call.xml"),
        s.port,
        &["-m", "20", "-l", "10", "-r", "50", "-d", "1000"],
    );
    // The last BYEs are answered before sipp exits; the sessions close right after.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let m = loop {
        let m = scrape(&addr);
        if m["rkm_sessions_ended_total{instance=\"rkm0\"}"] >= 20.0 {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sessions never ended: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let get = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("no {k}"));
    assert_eq!(get("rkm_calls_answered_total{instance=\"rkm0\"}"), 20.0);
    assert_eq!(get("rkm_calls_ended_total{instance=\"rkm0\"}"), 20.0);
    assert_eq!(get("rkm_calls_refused_total{instance=\"rkm0\"}"), 0.0);
    assert_eq!(get("rkm_sessions_started_total{instance=\"rkm0\"}"), 20.0);
    assert_eq!(get("rkm_sessions{instance=\"rkm0\"}"), 0.0);
    assert_eq!(
        get("rkm_call_setup_seconds_count{instance=\"rkm0\",direction=\"incoming\"}"),
        20.0
    );
    assert!(
        get("rkm_sip_datagrams_received_total{instance=\"rkm0\"}") >= 60.0,
        "INVITE, ACK, BYE each"
    );
    assert!(
        get("rkm_rtcp_sent_total{instance=\"rkm0\",media=\"video\"}") >= 20.0,
        "a BYE per call at least"
    );
    let lines = s.finish(true);
    assert_eq!(events(&lines, "call").len(), 20);
}

/// Writes RTP packets (H.264 PT 96, 90 kHz, 30 fps) of `clip` into a classic pcap file, each in
/// an Ethernet/IPv4/UDP frame from 127.0.0.1:5000 to 127.0.0.1:6000 (sipp rewrites the
/// destination to the negotiated video port).
fn write_pcap(clip: &[u8], out: &Path) -> usize {
    let mut pk = H264Packetizer::new(1200, PacketizationMode::NonInterleaved);
    let mut list = PayloadList::new();
    let mut file = Vec::new();
    // Global header: magic, v2.4, tz 0, sigfigs 0, snaplen 65535, linktype 1 (Ethernet).
    file.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&4u16.to_le_bytes());
    file.extend_from_slice(&0i32.to_le_bytes());
    file.extend_from_slice(&0u32.to_le_bytes());
    file.extend_from_slice(&65535u32.to_le_bytes());
    file.extend_from_slice(&1u32.to_le_bytes());
    let mut seq: u16 = 1000;
    let mut pictures = 0;
    for (i, range) in access_units(clip).enumerate() {
        let au = &clip[range];
        list.clear();
        pk.packetize(au, &mut list).expect("packetize");
        let ts = 90_000u32 / 30 * i as u32;
        let usec = 1_000_000u64 / 30 * i as u64;
        for p in 0..list.len() {
            let mut rtp = vec![
                0x80,
                96 | if list.marker(p) { 0x80 } else { 0 },
                (seq >> 8) as u8,
                seq as u8,
            ];
            rtp.extend_from_slice(&ts.to_be_bytes());
            rtp.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            list.copy_payload(p, au, &mut rtp);
            seq = seq.wrapping_add(1);
            let udp_len = 8 + rtp.len();
            let ip_len = 20 + udp_len;
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![
                0x45,
                0,
                (ip_len >> 8) as u8,
                ip_len as u8,
                0,
                0,
                0x40,
                0,
                64,
                17,
                0,
                0,
            ];
            ip.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
            let sum = {
                let mut s: u32 = ip
                    .chunks(2)
                    .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                    .sum();
                while s > 0xffff {
                    s = (s & 0xffff) + (s >> 16);
                }
                !(s as u16)
            };
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            frame.extend_from_slice(&ip);
            frame.extend_from_slice(&5000u16.to_be_bytes());
            frame.extend_from_slice(&6000u16.to_be_bytes());
            frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
            frame.extend_from_slice(&0u16.to_be_bytes());
            frame.extend_from_slice(&rtp);
            file.extend_from_slice(&((usec / 1_000_000) as u32).to_le_bytes());
            file.extend_from_slice(&((usec % 1_000_000) as u32).to_le_bytes());
            file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            file.extend_from_slice(&frame);
        }
        pictures += 1;
    }
    std::fs::write(out, file).unwrap();
    pictures
}

#[test]
fn sipp_plays_pcap_video_and_the_recording_decodes() {
    if !peers::have_peers(&["sipp", "ffmpeg"]) {
        return;
    }
    let dir = peers::TempDir::new("sipp-pcap");
    let clip = dir.path("clip.h264");
    peers::make_h264_clip(
        &clip,
        "testsrc=size=320x240:rate=30",
        2,
        &["-profile:v", "baseline", "-g", "30", "-bf", "0"],
    );
    let bytes = std::fs::read(&clip).unwrap();
    let pcap = dir.path("video.pcap");
    let pictures = write_pcap(&bytes, &pcap);
    assert_eq!(pictures, 60);
    let xml = std::fs::read_to_string(scenario("pcap_video.xml"))
        .unwrap()
        .replace("@PCAP@", pcap.to_str().unwrap())
        .replace("@PAUSE_MS@", "3500");
    let sf = dir.path("pcap_video.xml");
    std::fs::write(&sf, xml).unwrap();
    let rec = dir.path("rec");
    let s = Serve::start(9, &["--record", rec.to_str().unwrap(), "--max-calls", "1"]);
    sipp(&sf, s.port, &[]);
    let lines = s.finish(false);
    let hangup = events(&lines, "hangup");
    // sipp plays the 2 s capture in real time while the scenario waits 3.5 s before its BYE; a
    // loaded machine can push the last pictures past the BYE. Two thirds at least, every one
    // of them intact (a prefix of the clip).
    let frames: usize = hangup[0]
        .split("\"frames\":")
        .nth(1)
        .and_then(|s| s.split([',', '}']).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!((40..=60).contains(&frames), "{}", hangup[0]);
    let recorded: Vec<PathBuf> = std::fs::read_dir(&rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "h264"))
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let want = peers::frame_md5s(&clip, &["-framerate", "30"]);
    let got = peers::frame_md5s(&recorded[0], &["-framerate", "30"]);
    assert_eq!(want.len(), 60);
    assert_eq!(got.len(), frames, "every picture counted was recorded");
    assert_eq!(
        got,
        want[..got.len().min(60)],
        "recorded pictures decode to the clip's pictures"
    );
    let wav = recorded[0].with_extension("wav");
    assert!(wav.is_file(), "audio recording next to the video");
}
