//! Headless Chromium (Debian's package) against `serve --whip`: a page served by the test from
//! its own loopback HTTP server (another origin than the WHIP endpoint, so the CORS preflight
//! is exercised) publishes the fake camera and microphone with RTCPeerConnection, optionally
//! plays from `--whep` at the same time, and POSTs its `getStats()` numbers back to the test.
//! serve's JSON lines say what arrived. Every process and wait is bounded; Chromium is killed
//! at the end.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use roomkit_media::engine::http::{HttpServer, Response};
use serde_json::Value;

use crate::support::peers::{self, TempDir};
use crate::support::tls::Pki;

const PAGE: &str = include_str!("../data/whip_chromium.html");
const TOKEN: &str = "chromium-test-token";

/// What one run saw: the page's report, serve's JSON lines, and serve's recordings.
struct Run {
    report: Value,
    lines: Vec<Value>,
    record: TempDir,
    /// The WHIP URL of serve's `listening` line.
    whip_url: String,
}

impl Run {
    /// serve's lines of this event.
    fn events(&self, event: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["event"] == event).collect()
    }

    /// The `hangup` line of the session whose `call` line has this transport.
    fn hangup_of(&self, transport: &str) -> &Value {
        let call = self
            .events("call")
            .into_iter()
            .find(|c| c["transport"] == transport)
            .unwrap_or_else(|| panic!("no {transport} call in {:?}", self.lines));
        self.events("hangup")
            .into_iter()
            .find(|h| h["session"] == call["session"])
            .unwrap_or_else(|| panic!("no hangup of {call} in {:?}", self.lines))
    }
}

/// Starts `chromium` headless on `url`, its output in `dir`, bounded by `secs`.
fn chromium(dir: &TempDir, url: &str, secs: u32) -> Child {
    let log = std::fs::File::create(dir.path("chromium.log")).unwrap();
    Command::new("timeout")
        .args(["-k", "5", &secs.to_string(), "chromium"])
        .args([
            "--headless=new",
            "--no-sandbox",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            // The HTTPS run's endpoint has a test CA's certificate.
            "--ignore-certificate-errors",
        ])
        .arg(format!("--user-data-dir={}", dir.path("profile").display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("chromium starts")
}

/// serve with WHIP and WHEP on loopback (over HTTPS with `https`, a test certificate that
/// Chromium is told to accept); the page publishes (`codec`: force that video codec) and, with
/// `play`, plays from WHEP; returns the page's report and serve's lines.
fn run(rtp_ports: &str, codec: Option<&str>, play: bool, seconds: u32, https: bool) -> Run {
    let record = TempDir::new("whip-record");
    let record_dir = record.0.to_str().unwrap().to_string();
    let pki = https.then(|| Pki::new("whip-chromium"));
    let mut args: Vec<String> = [
        "--record",
        &record_dir,
        "--quiet-frames",
        "--video-codecs",
        "H264,VP8",
        "--whip",
        "127.0.0.1:0",
        "--whep",
        "--whip-token",
        TOKEN,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    if let Some(p) = &pki {
        for (flag, file) in [("--tls-cert", "cert.pem"), ("--tls-key", "key.pem")] {
            args.extend([flag.to_string(), p.path(file).display().to_string()]);
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut serve, _) = peers::spawn_serve(seconds + 90, rtp_ports, &args);
    let mut out = BufReader::new(serve.stdout.take().unwrap()).lines();
    let listening: Value = serde_json::from_str(&out.next().unwrap().unwrap()).unwrap();
    // serve's lines, read on a thread of their own until serve exits.
    let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
    let reader = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in out.map_while(|l| l.ok()) {
                if let Ok(v) = serde_json::from_str(&l) {
                    lines.lock().unwrap().push(v);
                }
            }
        })
    };

    let report: Arc<Mutex<Option<String>>> = Arc::default();
    let page = {
        let report = report.clone();
        HttpServer::start(
            "127.0.0.1:0".parse().unwrap(),
            None,
            "test-page",
            move |r| match (r.method.as_str(), r.path.as_str()) {
                ("GET", "/page.html") => Response::new(200, "text/html; charset=utf-8", PAGE),
                ("POST", "/result") => {
                    *report.lock().unwrap() = Some(String::from_utf8_lossy(&r.body).into());
                    Response::empty(204)
                }
                _ => Response::text(404, "not found\n"),
            },
        )
        .unwrap()
    };
    let base: SocketAddr = page.local_addr();
    let mut url = format!(
        "http://{base}/page.html?token={TOKEN}&seconds={seconds}&report=http://{base}/result&whip={}",
        listening["whip"].as_str().expect("a whip URL")
    );
    if let Some(c) = codec {
        url.push_str(&format!("&codec={c}"));
    }
    if play {
        // The page that publishes and plays does both with `max-bundle` (one transport
        // required), the others with the default `balanced`.
        url.push_str(&format!(
            "&whep={}&bundle=max-bundle",
            listening["whep"].as_str().expect("a whep URL")
        ));
    }
    let dir = TempDir::new("whip-chromium");
    let limit = seconds + 60;
    let mut browser = chromium(&dir, &url, limit);
    let deadline = Instant::now() + Duration::from_secs(u64::from(limit));
    let report = loop {
        if let Some(r) = report.lock().unwrap().take() {
            break r;
        }
        if Instant::now() >= deadline || browser.try_wait().ok().flatten().is_some() {
            let log = std::fs::read_to_string(dir.path("chromium.log")).unwrap_or_default();
            // Through `timeout`, which passes the signal on (killing `timeout` would leave
            // Chromium running until its bound).
            peers::interrupt(&browser);
            peers::wait_bounded(browser, Duration::from_secs(10));
            peers::interrupt(&serve);
            panic!("no report from the page within {limit} s; chromium said:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    peers::interrupt(&browser);
    peers::wait_bounded(browser, Duration::from_secs(10));
    // serve ends the sessions the page did not DELETE, then prints its `stats` and exits.
    peers::interrupt(&serve);
    peers::wait_bounded(serve, Duration::from_secs(20));
    let _ = reader.join();
    let lines = std::mem::take(&mut *lines.lock().unwrap());
    eprintln!("page report: {report}");
    Run {
        report: serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}")),
        lines,
        record,
        whip_url: listening["whip"].as_str().unwrap().to_string(),
    }
}

/// The harness itself, before any media: Chromium runs headless here, loads the page from one
/// origin and reaches the WHIP endpoint on another through the CORS preflight, with the bearer
/// token, and reads its answer (its status, and the Location header when 201).
#[test]
fn chromium_reaches_the_whip_endpoint_across_origins() {
    if !peers::have_peers(&["chromium"]) {
        return;
    }
    let run = run("39970-39989", None, false, 1, false);
    let whip = &run.report["whip"];
    assert!(
        whip["status"].is_u64(),
        "the POST did not get through (CORS, network): {}",
        run.report
    );
    if whip["status"] == 201 {
        assert!(
            whip["location"].as_str().unwrap().starts_with("/whip/"),
            "{}",
            run.report
        );
    }
}

/// Publishes camera and microphone with `codec` forced, and checks both ends: the page sent
/// and encoded, serve received pictures and audio (floors far below 15 fps and 50 audio
/// frames a second, for a loaded 2-core machine) and its recordings decode (ffmpeg), the
/// DELETE ended the session.
fn publishes(codec: &str, rtp_ports: &str) {
    if !peers::have_peers(&["chromium", "ffmpeg"]) {
        return;
    }
    let run = run(rtp_ports, Some(codec), false, 6, false);
    let r = &run.report;
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(r["whip"]["pairState"], "succeeded", "{r}");
    assert!(r["whip"]["framesEncoded"].as_u64().unwrap_or(0) > 0, "{r}");
    assert!(
        r["whip"]["audioPacketsSent"].as_u64().unwrap_or(0) > 0,
        "{r}"
    );
    assert_eq!(r["deleted"][0], 200, "{r}");
    // Our answer took the offer's BUNDLE group: audio and video on one ICE/DTLS transport.
    assert_eq!(r["whip"]["transports"], 1, "{r}");
    let call = run
        .events("call")
        .into_iter()
        .find(|c| c["transport"] == "whip")
        .cloned()
        .unwrap();
    assert_eq!(call["video_codec"], codec.to_lowercase(), "{call}");
    let hangup = run.hangup_of("whip");
    assert!(hangup["frames"].as_u64().unwrap() >= 10, "{hangup}");
    assert!(hangup["keyframes"].as_u64().unwrap() >= 1, "{hangup}");
    assert!(hangup["audio_frames"].as_u64().unwrap() >= 50, "{hangup}");
    // What serve recorded decodes: ffmpeg reads the pictures back, and the audio is there
    // (at least a second of 48 kHz 16-bit mono after the WAV header).
    let base = format!("whip-{}", call["session"].as_str().unwrap());
    let ext = if codec == "VP8" { "ivf" } else { "h264" };
    let video = run.record.path(&format!("{base}.{ext}"));
    let pictures = peers::frame_md5s(&video, &[]);
    assert!(
        pictures.len() >= 10,
        "{} pictures decoded from {}",
        pictures.len(),
        video.display()
    );
    let wav = std::fs::metadata(run.record.path(&format!("{base}.wav")))
        .unwrap()
        .len();
    assert!(wav >= 44 + 96_000, "{wav} bytes of audio");
}

#[test]
fn chromium_publishes_h264_over_whip() {
    publishes("H264", "39700-39749");
}

#[test]
fn chromium_publishes_vp8_over_whip() {
    publishes("VP8", "39750-39799");
}

/// The page publishes over WHIP and plays from WHEP at once; serve relays the publisher's
/// pictures and audio to the player, whose decoder reports frames.
#[test]
fn chromium_plays_from_whep_what_whip_publishes() {
    if !peers::have_peers(&["chromium"]) {
        return;
    }
    let run = run("39800-39869", Some("VP8"), true, 6, false);
    let r = &run.report;
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(r["whep"]["pairState"], "succeeded", "{r}");
    assert!(r["whep"]["framesDecoded"].as_u64().unwrap_or(0) > 0, "{r}");
    // Both directions bundled: one transport each.
    assert_eq!(
        (&r["whip"]["transports"], &r["whep"]["transports"]),
        (&1.into(), &1.into()),
        "{r}"
    );
    assert!(
        r["whep"]["audioPacketsReceived"].as_u64().unwrap_or(0) > 0,
        "{r}"
    );
}

/// `serve --whip` over HTTPS (`--tls-cert`/`--tls-key`, rustls): the page publishes through it
/// as over HTTP.
#[test]
fn chromium_publishes_over_https() {
    if !peers::have_peers(&["chromium"]) {
        return;
    }
    let run = run("39990-39999", Some("H264"), false, 2, true);
    let r = &run.report;
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(r["whip"]["status"], 201, "{r}");
    assert_eq!(r["whip"]["pairState"], "succeeded", "{r}");
    assert!(r["whip"]["framesEncoded"].as_u64().unwrap_or(0) > 0, "{r}");
    assert!(
        run.whip_url.starts_with("https://127.0.0.1:"),
        "{}",
        run.whip_url
    );
}
