//! Kamailio 5.6 as a real registrar and record-routing proxy with digest authentication
//! (`tests/kamailio/proxy.cfg`), between our command line, sipp and baresip:
//! - `serve --register` registers (401 answered), sipp calls it through Kamailio (407
//!   answered by sipp), and our BYE travels back through Kamailio (its log shows it
//!   loose-routed); after Ctrl-C the binding is gone: sipp's INVITE gets 404.
//! - baresip registers behind Kamailio and `call` reaches it through the proxy, answering the
//!   407, with audio and video both ways.
//! - With SHA-256 digest only: `serve --register` and `call` through Kamailio.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use support::kamailio::Kamailio;
use support::peers;
use support::sipp;

const PASSWORD: &str = "k4m-secret";

/// `serve` with its JSON lines collected as they come.
struct Serve {
    child: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Serve {
    fn start(rtp_ports: &str, extra: &[&str]) -> Serve {
        let (mut child, _) = peers::spawn_serve(120, rtp_ports, extra);
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = unbounded();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Serve {
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a line with event `kind`.
    fn wait_event(&mut self, kind: &str, limit: Duration) -> String {
        let tag = format!("\"event\":\"{kind}\"");
        if let Some(l) = self.seen.iter().find(|l| l.contains(&tag)) {
            return l.clone();
        }
        let end = std::time::Instant::now() + limit;
        while let Ok(l) = self
            .lines
            .recv_timeout(end.saturating_duration_since(std::time::Instant::now()))
        {
            self.seen.push(l.clone());
            if l.contains(&tag) {
                return l;
            }
        }
        panic!(
            "serve printed no {kind} event within {limit:?}: {:?}",
            self.seen
        );
    }

    /// Ctrl-C, then everything it printed; panics unless it exits 0.
    fn stop(mut self) -> Vec<String> {
        let child = self.child.take().unwrap();
        peers::interrupt(&child);
        let out = peers::wait_bounded(child, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "serve failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        self.seen.clone()
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

#[test]
fn registered_backend_takes_a_call_through_kamailio_and_hangs_up_through_it() {
    if !peers::have_peers(&["sipp"]) {
        return;
    }
    let Some(k) = Kamailio::start(PASSWORD, "MD5", 120) else {
        return;
    };
    let aor = format!("sip:roomkit@{}", k.addr());
    let mut serve = Serve::start(
        "49000-49099",
        &[
            "--register",
            &aor,
            "--password",
            PASSWORD,
            "--expires",
            "60",
            "--hangup-after",
            "1000",
        ],
    );
    let listening = serve.wait_event("listening", Duration::from_secs(20));
    let our_port = support::peers::listening_port(&listening, "sip").to_string();
    let reg = serve.wait_event("registered", Duration::from_secs(20));
    assert!(reg.contains("\"expires\":60"), "{reg}");
    assert!(
        k.wait_line(
            &["challenge REGISTER", "sip:roomkit@"],
            Duration::from_secs(5)
        )
        .is_some(),
        "the REGISTER was challenged first: {:?}",
        k.script_lines()
    );
    assert!(k
        .wait_line(&["saved sip:roomkit@", &our_port], Duration::from_secs(5))
        .is_some());

    // sipp calls the registered user through the proxy, answering its 407; we answer, and hang
    // up a second later.
    sipp::run(
        &sipp::scenario("proxy/uac_callee_hangs_up.xml"),
        &k.addr(),
        &["-s", "roomkit", "-au", "sipp", "-ap", PASSWORD],
    );
    let call = serve.wait_event("call", Duration::from_secs(5));
    assert!(call.contains("\"has_video\":true"), "{call}");
    assert!(call.contains("\"room_id\":\"proxy-room\""), "{call}");
    serve.wait_event("hangup", Duration::from_secs(10));
    // Our BYE went to Kamailio (from our SIP port) and Kamailio routed it on to sipp.
    let bye = k
        .wait_line(
            &["BYE ", &format!("from 127.0.0.1:{our_port}")],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no BYE from us at the proxy: {:?}", k.script_lines()));
    assert!(bye.starts_with("BYE sip:sipp@"), "{bye}");
    assert!(
        k.wait_line(&["loose-routed BYE"], Duration::from_secs(5))
            .is_some(),
        "{:?}",
        k.script_lines()
    );

    // Ctrl-C: the registration is removed before serve exits.
    let lines = serve.stop();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"event\":\"unregistered\"")),
        "{lines:?}"
    );
    assert!(k
        .wait_line(&["saved sip:roomkit@", "expires 0"], Duration::from_secs(5))
        .is_some());
    // Nobody is registered as roomkit any more: 404 from the proxy.
    sipp::run(
        &sipp::scenario("proxy/uac_not_found.xml"),
        &k.addr(),
        &["-s", "roomkit", "-au", "sipp", "-ap", PASSWORD],
    );
    assert!(k
        .wait_line(&["no binding for sip:roomkit@"], Duration::from_secs(5))
        .is_some());
}

/// JSON `"key":number` values of one line.
fn num(line: &str, key: &str) -> i64 {
    let tag = format!("\"{key}\":");
    line.split_once(&tag)
        .and_then(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit() && c != '-')
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn our_uac_reaches_baresip_registered_behind_kamailio() {
    if !peers::have_peers(&["baresip", "ffmpeg"]) {
        return;
    }
    let Some(k) = Kamailio::start(PASSWORD, "MD5", 180) else {
        return;
    };
    let dir = peers::TempDir::new("kamailio-baresip");
    let media = support::baresip::Media::generate(&dir, 30, "320x240", 30);
    // What we send: a real H.264 clip (baseline, a key picture a second), as a camera would.
    let clip = dir.path("ours.h264");
    peers::make_h264_clip(
        &clip,
        "testsrc2=size=320x240:rate=30",
        2,
        &["-profile:v", "baseline", "-g", "30", "-preset", "ultrafast"],
    );
    let accounts = support::baresip::template("registered.accounts")
        .replace("@PROXY_PORT@", &k.port.to_string())
        .replace("@PASSWORD@", PASSWORD);
    let conf = support::baresip::write_config(
        &dir,
        peers::free_udp_port(),
        "40400-40499",
        &media,
        &accounts,
    );
    let baresip = peers::spawn(
        90,
        "baresip",
        &["-4", "-f", conf.to_str().unwrap(), "-t", "40"],
    );
    assert!(
        k.wait_line(&["saved sip:bob@"], Duration::from_secs(20))
            .is_some(),
        "baresip did not register: {:?}",
        k.script_lines()
    );

    let target = format!("sip:bob@{}", k.addr());
    let out = peers::run(
        90,
        peers::bin().to_str().unwrap(),
        &[
            "call",
            &target,
            "--proxy",
            &k.addr(),
            "--auth-user",
            "alice",
            "--password",
            PASSWORD,
            "--video",
            clip.to_str().unwrap(),
            "--seconds",
            "5",
        ],
    );
    peers::interrupt(&baresip);
    let b_out = peers::wait_bounded(baresip, Duration::from_secs(20));
    let b_text = format!(
        "{}{}",
        String::from_utf8_lossy(&b_out.stdout),
        String::from_utf8_lossy(&b_out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    let states: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("\"event\":\"progress\""))
        .map(|l| {
            l.split("\"state\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(states.first(), Some(&"trying"), "{text}");
    assert!(states.contains(&"answered"), "{text}");
    assert_eq!(states.last(), Some(&"ended"), "{text}");
    // The proxy challenged our INVITE, and relayed the authenticated one to baresip's binding.
    assert!(k
        .wait_line(
            &["challenge INVITE from sip:alice@"],
            Duration::from_secs(2)
        )
        .is_some());
    assert!(
        k.wait_line(&["relay INVITE to sip:"], Duration::from_secs(2))
            .is_some(),
        "{:?}",
        k.script_lines()
    );
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.contains("\"has_video\":true"),
        "{text}\n--- baresip ---\n{b_text}"
    );
    // About 5 s of baresip's 30 fps video and 50 packets/s of audio came back.
    assert!(
        num(last, "frames_received") >= 30,
        "{last}\n--- baresip ---\n{b_text}"
    );
    assert!(num(last, "audio_frames_received") >= 100, "{last}");
    assert!(num(last, "pictures_sent") >= 100, "{last}");
    assert!(last.contains("\"bye_answered\":true"), "{last}");
    // And baresip received our video and decoded it. Every picture is at least one packet, so
    // two thirds of the pictures we sent is a floor a loaded machine still clears (the call's
    // five seconds start late there, and baresip stops counting at the BYE).
    let sent = num(last, "pictures_sent");
    let received = baresip_video_received(&b_text);
    assert!(
        received.is_some_and(|n| n as i64 * 3 >= sent * 2),
        "baresip's video receive count {received:?} for {sent} pictures sent:\n{b_text}"
    );
    assert!(
        b_text.contains("video: receiving with resolution 320 x 240"),
        "{b_text}"
    );
}

/// The video packets baresip received, from its end-of-call statistics (`rtp_stats yes`): the
/// `packets:` row under the `video  Transmit:  Receive:` heading.
fn baresip_video_received(out: &str) -> Option<u64> {
    let mut lines = out.lines();
    lines.find(|l| l.starts_with("video") && l.contains("Receive:"))?;
    let row = lines.find(|l| l.trim_start().starts_with("packets:"))?;
    row.split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok())
        .nth(1)
}

#[test]
fn sha256_digest_through_kamailio_between_serve_and_call() {
    let Some(k) = Kamailio::start(PASSWORD, "SHA-256", 120) else {
        return;
    };
    let aor = format!("sip:roomkit@{}", k.addr());
    let mut serve = Serve::start(
        "49200-49299",
        &["--register", &aor, "--password", PASSWORD, "--echo"],
    );
    serve.wait_event("registered", Duration::from_secs(20));
    let out = peers::run(
        60,
        peers::bin().to_str().unwrap(),
        &[
            "call",
            &aor,
            "--proxy",
            &k.addr(),
            "--auth-user",
            "carol",
            "--password",
            PASSWORD,
            "--seconds",
            "2",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let last = text.lines().last().unwrap_or_default().to_string();
    assert!(last.contains("\"has_video\":true"), "{text}");
    assert!(num(&last, "frames_received") >= 20, "echoed video: {text}");
    serve.wait_event("hangup", Duration::from_secs(10));
    let lines = serve.stop();
    assert!(
        lines.iter().any(|l| l.contains("unregistered")),
        "{lines:?}"
    );
    let script = k.script_lines();
    assert!(
        script
            .iter()
            .any(|l| l.starts_with("challenge INVITE from sip:carol@")),
        "{script:?}"
    );
    assert!(script
        .iter()
        .any(|l| l.starts_with("relay INVITE to sip:roomkit@")));
}
