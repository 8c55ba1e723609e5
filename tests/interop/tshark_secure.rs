//! The proof that a TLS + SRTP call hides what it carries: tshark captures loopback while our
//! `call` (video + audio) talks to `serve`, then reads the capture back. A CONTROL run of the
//! same call over plain TCP and plain RTP must show SIP (dissected, and `SIP/2.0` in the TCP
//! bytes) and the H.264 NAL units of the clip we sent (SPS, PPS, IDR) in RTP payloads: so the
//! detector works and this test can fail. The SECURE run (`;transport=tls`, SRTP mandatory on
//! both sides) must show none of them, while tshark still sees the TLS handshake and the RTP
//! packets (headers in the clear, payloads not).
//!
//! The capture is bounded in time (`-a duration:`) and packets (`-c`), and its filter keeps only
//! the call's ports: serve's SIP ports and its RTP range, which is this test's alone (every
//! media packet of the call has serve's port at one end).

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use roomkit_media::codec::testclip::TestClip;
use support::peers::{self, listening_port, TempDir};
use support::tls::Pki;

/// serve's RTP ports: no other test uses them.
const RTP_PORTS: (u16, u16) = (41100, 41199);

/// The NAL units of the clip's key pictures: the needles.
struct Needles {
    sps: Vec<u8>,
    pps: Vec<u8>,
    idr: Vec<Vec<u8>>,
}

/// Writes a 2 s clip (30 fps, a key picture every 15) of a size no other test sends, and
/// returns its SPS, PPS and IDR NAL units (without start codes).
fn write_clip(path: &Path) -> Needles {
    let mut gen = TestClip::new(336, 208, 15);
    let mut file = Vec::new();
    let mut needles = Needles {
        sps: Vec::new(),
        pps: Vec::new(),
        idr: Vec::new(),
    };
    for _ in 0..60 {
        let (pic, _) = gen.next_picture();
        for nal in split_annexb(&pic) {
            match nal[0] & 0x1f {
                7 => needles.sps = nal.to_vec(),
                8 => needles.pps = nal.to_vec(),
                5 => needles.idr.push(nal.to_vec()),
                _ => {}
            }
        }
        file.extend_from_slice(&pic);
    }
    assert!(!needles.sps.is_empty() && !needles.pps.is_empty() && needles.idr.len() >= 2);
    std::fs::write(path, file).unwrap();
    needles
}

/// The NAL units of an Annex-B buffer (3- or 4-byte start codes).
fn split_annexb(b: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= b.len() {
        if b[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(b.len(), |&n| n - 3);
        while end > s && b[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            out.push(&b[s..end]);
        }
    }
    out
}

/// What one RTP payload, parsed as H.264 (RFC 6184: single NAL unit, STAP-A, FU-A), carries of
/// the needles: `[sps, pps, idr]` counts. A whole NAL unit must equal the one sent; a first
/// FU-A fragment (header rebuilt, 16 bytes at least) must begin an IDR sent.
fn h264_hits(payload: &[u8], n: &Needles) -> [usize; 3] {
    let mut hits = [0; 3];
    let mut whole = |nal: &[u8]| {
        hits[0] += usize::from(nal == n.sps.as_slice());
        hits[1] += usize::from(nal == n.pps.as_slice());
        hits[2] += usize::from(n.idr.iter().any(|i| i.as_slice() == nal));
    };
    let Some(&first) = payload.first() else {
        return hits;
    };
    match first & 0x1f {
        1..=23 => whole(payload),
        24 => {
            let mut rest = &payload[1..];
            while rest.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if len == 0 || rest.len() < 2 + len {
                    break;
                }
                whole(&rest[2..2 + len]);
                rest = &rest[2 + len..];
            }
        }
        28 if payload.len() >= 18 && payload[1] & 0x80 != 0 => {
            let mut frag = vec![(first & 0xe0) | (payload[1] & 0x1f)];
            frag.extend_from_slice(&payload[2..]);
            hits[2] += usize::from(n.idr.iter().any(|i| i.starts_with(&frag)));
        }
        _ => {}
    }
    hits
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// `tshark -r capture` with `args`; its stdout lines.
fn tshark_read(capture: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["-r", capture.to_str().unwrap(), "-n"];
    all.extend_from_slice(args);
    let out = peers::run(120, "tshark", &all);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// What tshark found in one capture.
#[derive(Debug)]
struct Findings {
    /// Frames tshark dissected as SIP (by port or by its heuristics).
    sip_frames: usize,
    /// TCP segments whose bytes contain `SIP/2.0`.
    tcp_sip_text: usize,
    /// TLS ClientHellos (decoding serve's TLS port as TLS).
    tls_hellos: usize,
    /// Datagrams on serve's RTP ports dissected as RTP.
    rtp_packets: usize,
    /// SPSs tshark's own H.264 dissector parsed in those payloads (the video's payload type
    /// decoded as H.264). Only meaningful in the clear: SRTP payloads are noise to it.
    dissected_sps: usize,
    /// RTP payloads carrying the clip's SPS, PPS and IDR NAL units.
    sps: usize,
    pps: usize,
    idr: usize,
}

fn examine(capture: &Path, sip_stream_port: u16, video_pt: u8, needles: &Needles) -> Findings {
    let rtp = format!("udp.port=={}-{},rtp", RTP_PORTS.0, RTP_PORTS.1);
    let h264 = format!("rtp.pt=={video_pt},h264");
    let tls = format!("tcp.port=={sip_stream_port},tls");
    let sip_frames = tshark_read(
        capture,
        &["-Y", "sip", "-T", "fields", "-e", "frame.number"],
    )
    .len();
    let tcp_sip_text = tshark_read(
        capture,
        &["-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.payload"],
    )
    .iter()
    .filter(|l| hex(l).windows(7).any(|w| w == b"SIP/2.0"))
    .count();
    let tls_hellos = tshark_read(
        capture,
        &[
            "-d",
            &tls,
            "-Y",
            "tls.handshake.type == 1",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    )
    .len();
    let payloads = tshark_read(
        capture,
        &["-d", &rtp, "-Y", "rtp", "-T", "fields", "-e", "rtp.payload"],
    );
    let dissected_sps = tshark_read(
        capture,
        &[
            "-d",
            &rtp,
            "-d",
            &h264,
            "-Y",
            "h264.seq_parameter_set_id",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    )
    .len();
    let mut f = Findings {
        dissected_sps,
        sip_frames,
        tcp_sip_text,
        tls_hellos,
        rtp_packets: payloads.len(),
        sps: 0,
        pps: 0,
        idr: 0,
    };
    for p in &payloads {
        let [s, pp, i] = h264_hits(&hex(p), needles);
        f.sps += s;
        f.pps += pp;
        f.idr += i;
    }
    f
}

/// One call from our `call` to `serve`, captured: plain TCP + RTP, or TLS + SRTP (mandatory).
/// Returns what tshark found and the output lines of serve, then of call.
fn captured_call(
    dir: &TempDir,
    pki: &Pki,
    clip: &Path,
    needles: &Needles,
    secure: bool,
) -> (Findings, Vec<String>) {
    let tag = if secure { "secure" } else { "control" };
    let rtp_ports = format!("{}-{}", RTP_PORTS.0, RTP_PORTS.1);
    let mut extra = vec!["--max-calls".to_string(), "1".to_string()];
    if secure {
        extra.extend(pki.serve_tls_args(Some("mandatory")));
    } else {
        extra.extend(["--sip-tcp".to_string(), "127.0.0.1:0".to_string()]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (mut serve, sip_port) = peers::spawn_serve(120, &rtp_ports, &extra);
    let mut serve_out = BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = serve_out.next().expect("serve output").unwrap();
    let stream_port = listening_port(&first, if secure { "sip_tls" } else { "sip_tcp" });

    // Only the call's ports, bounded in time and packets.
    let filter = format!(
        "udp port {sip_port} or tcp port {stream_port} or udp portrange {}-{}",
        RTP_PORTS.0, RTP_PORTS.1
    );
    let capture = dir.path(&format!("{tag}.pcapng"));
    let mut tshark = peers::spawn(
        90,
        "tshark",
        &[
            "-i",
            "lo",
            "-f",
            &filter,
            "-a",
            "duration:60",
            "-c",
            "50000",
            "-q",
            "-w",
            capture.to_str().unwrap(),
        ],
    );
    let mut err = peers::stderr_reader(&mut tshark);
    assert!(
        peers::read_line_with(&mut err, "Capturing on", Duration::from_secs(30)).is_some(),
        "tshark did not start capturing"
    );
    std::thread::sleep(Duration::from_millis(300));

    let uri = format!(
        "sip:test@127.0.0.1:{stream_port};transport={}",
        if secure { "tls" } else { "tcp" }
    );
    let ca = pki.path("ca.pem");
    let mut args = vec![
        "call",
        &uri,
        "--video",
        clip.to_str().unwrap(),
        "--seconds",
        "2",
    ];
    if secure {
        args.extend_from_slice(&["--tls-ca", ca.to_str().unwrap(), "--srtp", "mandatory"]);
    }
    let call = peers::run(60, peers::bin().to_str().unwrap(), &args);
    let served = peers::wait_bounded(serve, Duration::from_secs(30));
    // serve's lines, then call's (its summary last).
    let mut lines: Vec<String> = serve_out.map_while(Result::ok).collect();
    lines.extend(
        String::from_utf8_lossy(&call.stdout)
            .lines()
            .map(str::to_string),
    );
    assert!(
        served.status.success(),
        "serve: {}",
        String::from_utf8_lossy(&served.stderr)
    );
    // Let the last packets reach the capture, then stop it.
    std::thread::sleep(Duration::from_millis(500));
    peers::interrupt(&tshark);
    let stopped = peers::wait_bounded(tshark, Duration::from_secs(30));
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert!(capture.exists(), "no capture ({}): {rest}", stopped.status);
    let video_pt = lines
        .iter()
        .find(|l| l.contains("\"event\":\"video_ready\""))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["pt"].as_u64())
        .and_then(|pt| u8::try_from(pt).ok())
        .unwrap_or_else(|| panic!("no video_ready line: {lines:?}"));
    (examine(&capture, stream_port, video_pt, needles), lines)
}

#[test]
fn tshark_finds_no_sip_and_no_h264_in_a_tls_srtp_call() {
    if !peers::have_peers(&["tshark"]) {
        return;
    }
    // Capturing needs root (or capabilities this test does not set up); CI runs as root.
    let uid = peers::run(10, "id", &["-u"]);
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        assert!(
            !peers::in_ci(),
            "capturing with tshark needs root (CI=true)"
        );
        eprintln!("SKIP: capturing with tshark needs root");
        return;
    }
    let dir = TempDir::new("tshark");
    let pki = Pki::new("tshark");
    let clip = dir.path("clip.h264");
    let needles = write_clip(&clip);
    let sent_idr = needles.idr.len();

    // CONTROL: the same call in the clear. The detector must see everything.
    let (plain, lines) = captured_call(&dir, &pki, &clip, &needles, false);
    assert!(plain.sip_frames >= 4, "control: {plain:?}\n{lines:?}");
    assert!(plain.tcp_sip_text >= 4, "control: {plain:?}");
    assert!(plain.rtp_packets >= 100, "control: {plain:?}");
    assert!(plain.sps >= 1 && plain.pps >= 1, "control: {plain:?}");
    // tshark's own H.264 dissector agrees that the payloads are H.264.
    assert!(plain.dissected_sps >= 1, "control: {plain:?}");
    assert!(
        plain.idr * 3 >= sent_idr * 2,
        "control: {plain:?}, {sent_idr} IDR sent"
    );

    // SECURE: TLS signalling, SRTP media; media still flows, nothing readable.
    let (secure, lines) = captured_call(&dir, &pki, &clip, &needles, true);
    let summary = lines.last().cloned().unwrap_or_default();
    assert!(
        summary.contains("\"transport\":\"tls\"")
            && summary.contains("\"audio_srtp\":\"AES")
            && summary.contains("\"video_srtp\":\"AES"),
        "not a TLS + SRTP call: {summary}"
    );
    eprintln!("tshark: control {plain:?}\ntshark: secure {secure:?}");
    assert!(
        secure.tls_hellos >= 1,
        "secure: no TLS handshake seen: {secure:?}"
    );
    assert!(
        secure.rtp_packets >= 100,
        "secure: too few RTP packets: {secure:?}"
    );
    assert_eq!(secure.sip_frames, 0, "secure: SIP dissected: {secure:?}");
    assert_eq!(
        secure.tcp_sip_text, 0,
        "secure: SIP text on TCP: {secure:?}"
    );
    assert_eq!(
        (secure.sps, secure.pps, secure.idr),
        (0, 0, 0),
        "secure: H.264 NAL units readable: {secure:?}"
    );
}
