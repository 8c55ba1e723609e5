//! ICE + DTLS-SRTP against a browser-like peer: GStreamer's `webrtcbin` (libnice, a full ICE
//! agent; OpenSSL's DTLS; libsrtp), driven by `bench/gst_webrtcbin.py`, offers one sendrecv
//! PCMU m-line (BUNDLE, rtcp-mux, `a=setup:actpass`); we answer as a WHIP server would (ICE-lite,
//! `a=setup:active`, one host candidate on 127.0.0.1) with the SDP written by
//! `sdp/transport.rs`, and open an engine stream with `StreamConfig::ice_dtls` from what the
//! offer said. libnice checks us, nominates, the handshake runs with us as the DTLS client, and
//! PCMU flows both ways as SRTP. webrtcbin keeps its own certificate (RSA 2048, which the
//! default OpenSSL DTLS takes), checked against the fingerprint of its SDP, and gathers on
//! 127.0.0.1 only.
//!
//! `RKM_GST_STDERR=1` prints a timeline of our stream's ICE/DTLS state, our answer and
//! webrtcbin's stderr (with `GST_DEBUG=webrtcbin:4,dtlsconnection:4` for its side).

use crate::support;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roomkit_media::engine::{
    BoundMedia, EngineConfig, MediaEngine, RtpSockets, SessionId, SessionSpec, StreamConfig,
};
use roomkit_media::rtp::config::{AudioParams, MediaParams};
use roomkit_media::sdp::{session_lines, SessionDescription, SetupRole, TransportAttrs};
use roomkit_media::webrtc::{
    DtlsIdentity, IceAgent, IceConfig, IceDtlsParams, IceParams, TransportDtlsState,
    TransportIceState,
};
use support::peers::*;

/// How long webrtcbin runs after it starts; we send for most of it.
const GST_SECONDS: u64 = 10;

/// webrtcbin with libnice and the GObject bindings of the "bad" set: missing in CI is a failure.
fn have_webrtcbin() -> bool {
    if !crate::srtp_peers::have_python_gst() {
        return false;
    }
    let ok = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('GstWebRTC','1.0'); \
             from gi.repository import Gst; Gst.init(None); \
             assert Gst.ElementFactory.find('nicesrc') and Gst.ElementFactory.find('webrtcbin')",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || !in_ci(),
        "webrtcbin needs gstreamer1.0-nice and gir1.2-gst-plugins-bad-1.0"
    );
    ok
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn webrtcbin_offer_our_lite_answer_srtp_both_ways() {
    if !have_webrtcbin() {
        return;
    }
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/gst_webrtcbin.py");
    let mut gst = Command::new("timeout")
        .args(["-k", "10", "60", "/usr/bin/python3"])
        .arg(&script)
        .args(["--seconds", &GST_SECONDS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the webrtcbin script");
    let mut out = BufReader::new(gst.stdout.take().unwrap());
    let offer_hex =
        read_line_with(&mut out, "offer", Duration::from_secs(20)).expect("webrtcbin's offer");
    let offer = SessionDescription::parse(&unhex(&offer_hex)).expect("the offer parses");
    let offered = offer.media[0].transport.clone();
    let (Some(remote_credentials), Some(their_setup)) = (offered.ice.clone(), offered.setup) else {
        panic!("no ICE credentials or a=setup in the offer: {offered:?}");
    };
    assert!(!offered.candidates.is_empty(), "{offered:?}");
    assert!(!offered.fingerprints.is_empty(), "{offered:?}");

    // Our side: ICE-lite, controlled, one host candidate; DTLS role per RFC 8842.
    let sockets = RtpSockets::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
    let here = sockets.local_addr();
    let ice = IceConfig {
        lite: true,
        controlling: false,
        credentials: IceConfig::random_credentials(),
    };
    let ours = SetupRole::answer(Some(their_setup)).unwrap();
    let client = SetupRole::we_are_client(ours, their_setup).unwrap();
    let identity = DtlsIdentity::generate().unwrap();
    let candidate = IceAgent::new(ice.clone()).add_host_candidate(here).unwrap();
    let answer_attrs = TransportAttrs {
        ice: Some(ice.credentials.clone()),
        ice_lite: true,
        candidates: vec![candidate],
        end_of_candidates: true,
        fingerprints: vec![identity.fingerprint().clone()],
        setup: Some(ours),
        mid: offered.mid.clone(),
    };
    let mids: Vec<String> = offered.mid.iter().cloned().collect();
    let mut answer = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nt=0 0\r\n",
        ip = here.ip()
    );
    for l in session_lines(true, &mids) {
        answer.push_str(&format!("a={l}\r\n"));
    }
    answer.push_str(&format!(
        "m=audio {} UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 {}\r\na=rtcp-mux\r\na=sendrecv\r\n\
         a=rtpmap:0 PCMU/8000\r\n",
        here.port(),
        here.ip()
    ));
    for l in answer_attrs.media_lines() {
        answer.push_str(&format!("a={l}\r\n"));
    }

    let engine = MediaEngine::new(EngineConfig::default()).unwrap();
    let (et, er) = crossbeam_channel::unbounded();
    engine.callbacks().set_stream_ended(move |_, e| {
        let _ = et.send(e.reason.clone());
    });
    let id = SessionId::new_v4();
    let first = offered.candidates[0].addr();
    let spec = SessionSpec {
        room_id: "room".into(),
        participant_id: "webrtcbin".into(),
        metadata: HashMap::new(),
        video_metadata: HashMap::new(),
        audio: StreamConfig {
            media: MediaParams::Audio(AudioParams::default()),
            remote_addr: first,
            rtcp_mux: true,
            ice_dtls: Some(IceDtlsParams {
                ice: Some(IceParams {
                    config: ice,
                    host_candidates: vec![here],
                    srflx_candidates: Vec::new(),
                    remote_credentials,
                    remote_candidates: offered.candidates.clone(),
                }),
                identity,
                // webrtcbin's own RSA certificate, as its offer names it.
                remote_fingerprints: offered.fingerprints.clone(),
                dtls_client: client,
            }),
            ..StreamConfig::default()
        },
        video: None,
    };
    engine
        .create_session_bound(
            id,
            spec,
            BoundMedia {
                audio: sockets,
                video: None,
            },
        )
        .unwrap();
    {
        let stdin = gst.stdin.as_mut().unwrap();
        writeln!(stdin, "answer {}", hex(answer.as_bytes())).unwrap();
        stdin.flush().unwrap();
    }

    let payload = [0xffu8; 160];
    let start = Instant::now();
    let mut n = 0u64;
    let (mut stats, mut suite, mut connected_at) = (None, None, None);
    while start.elapsed() < Duration::from_secs(GST_SECONDS - 3) {
        // A failed transport ends the session: the checks below say why.
        let Ok(s) = engine.session(id) else { break };
        s.send_audio_payload(&payload, 20).unwrap();
        n += 1;
        if n.is_multiple_of(5) {
            let st = s.stats().audio;
            if connected_at.is_none() && st.dtls_state == TransportDtlsState::Connected as u32 {
                connected_at = Some(start.elapsed());
            }
            if std::env::var_os("RKM_GST_STDERR").is_some() {
                eprintln!(
                    "{:?} ice {} dtls {} stun {}/{} sel {:?} dtls_dropped {}",
                    start.elapsed(),
                    st.ice_state,
                    st.dtls_state,
                    st.stun_accepted,
                    st.stun_refused,
                    st.ice_remote,
                    st.dtls_dropped
                );
            }
            stats = Some(st);
            suite = s.current_info().audio.srtp_suite;
        }
        let due = start + Duration::from_millis(20 * n);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    drop(engine);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    let done = wait_bounded(gst, Duration::from_secs(30));
    let line = rest
        .lines()
        .find(|l| l.starts_with("received "))
        .unwrap_or_else(|| {
            panic!(
                "no result from webrtcbin: {rest} {}",
                String::from_utf8_lossy(&done.stderr)
            )
        })
        .to_string();
    if std::env::var_os("RKM_GST_STDERR").is_some() {
        eprintln!("{answer}\n{}", String::from_utf8_lossy(&done.stderr));
    }
    let ended: Vec<_> = er.try_iter().collect();
    assert!(ended.is_empty(), "the session ended: {ended:?} ({line})");
    let s = stats.expect("stats were read");
    let gst_received: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    eprintln!(
        "webrtcbin (libnice full, controlling) with our lite agent: {line}; we got {} packets (STUN refused {} malformed {}, dropped {}), \
         suite {suite:?}, selected {:?} -> {:?}, STUN accepted {}, keyed after {connected_at:?}, RTCP from it {}",
        s.packets_received, s.stun_refused, s.stun_malformed, s.transport_dropped, s.ice_local, s.ice_remote, s.stun_accepted,
        s.rtcp_received
    );
    assert_eq!(s.ice_state, TransportIceState::Connected as u32, "{s:?}");
    assert_eq!(s.dtls_state, TransportDtlsState::Connected as u32, "{s:?}");
    assert!(suite.is_some());
    assert_eq!(s.srtp_auth_failed, 0, "{s:?}");
    // 7 s of PCMU each way at 50 packets a second; connecting takes well under a second.
    assert!(s.packets_received >= 150, "{s:?}");
    assert!(gst_received >= 150, "{line}");
    // Its rtpbin's reports come as SRTCP and open with the same keys.
    assert!(s.rtcp_received >= 1, "{s:?}");
    assert!(line.contains("errors 0"), "{line}");
}
