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
//! The other way round, we offer as a full ICE agent (controlling, `a=setup:actpass`) and
//! webrtcbin answers: libnice is then controlled and webrtcbin picks its DTLS role from our
//! `actpass` (it answers `active`, so we are the DTLS server). Both tests share the SDP, the
//! stream and the media checks below.
//!
//! `RKM_GST_STDERR=1` prints a timeline of our stream's ICE/DTLS state, our answer and
//! webrtcbin's stderr (with `GST_DEBUG=webrtcbin:4,dtlsconnection:4` for its side).

use crate::support;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use roomkit_media::engine::{
    BoundMedia, EngineConfig, MediaEngine, RtpSockets, SessionId, SessionSpec, StreamConfig,
    StreamEndReason, StreamStats,
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

/// Starts `bench/gst_webrtcbin.py` (`--answer` makes it the answerer).
fn spawn_webrtcbin(answer: bool) -> (Child, BufReader<ChildStdout>) {
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/gst_webrtcbin.py");
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "10", "60", "/usr/bin/python3"])
        .arg(&script)
        .args(["--seconds", &GST_SECONDS.to_string()]);
    if answer {
        cmd.arg("--answer");
    }
    let mut gst = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the webrtcbin script");
    let out = BufReader::new(gst.stdout.take().unwrap());
    (gst, out)
}

/// Hands webrtcbin our SDP as `kind` ("offer" or "answer").
fn send_sdp(gst: &mut Child, kind: &str, sdp: &str) {
    let stdin = gst.stdin.as_mut().unwrap();
    writeln!(stdin, "{kind} {}", hex(sdp.as_bytes())).unwrap();
    stdin.flush().unwrap();
}

/// Reads webrtcbin's SDP (`kind`) and its one m-line's transport attributes.
fn read_sdp(out: &mut BufReader<ChildStdout>, kind: &str) -> TransportAttrs {
    let text = read_line_with(out, kind, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("webrtcbin's {kind}"));
    let sdp = SessionDescription::parse(&unhex(&text)).expect("its SDP parses");
    let t = sdp.media[0].transport.clone();
    assert!(t.ice.is_some() && t.setup.is_some(), "{t:?}");
    assert!(!t.candidates.is_empty(), "{t:?}");
    assert!(!t.fingerprints.is_empty(), "{t:?}");
    t
}

/// Our side of the call: one socket on 127.0.0.1, an ICE agent (lite and controlled when we
/// answer, full and controlling when we offer), a fresh certificate.
struct Ours {
    sockets: RtpSockets,
    here: SocketAddr,
    ice: IceConfig,
    identity: DtlsIdentity,
}

impl Ours {
    fn new(offerer: bool) -> Ours {
        let sockets = RtpSockets::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let here = sockets.local_addr();
        Ours {
            sockets,
            here,
            ice: IceConfig {
                lite: !offerer,
                controlling: offerer,
                credentials: IceConfig::random_credentials(),
            },
            identity: DtlsIdentity::generate().unwrap(),
        }
    }

    /// Our SDP: one PCMU m-line with the transport lines of `sdp/transport.rs`.
    fn sdp(&self, setup: SetupRole, mid: Option<String>) -> String {
        let candidate = IceAgent::new(self.ice.clone())
            .add_host_candidate(self.here)
            .unwrap();
        let attrs = TransportAttrs {
            ice: Some(self.ice.credentials.clone()),
            ice_lite: self.ice.lite,
            candidates: vec![candidate],
            end_of_candidates: true,
            fingerprints: vec![self.identity.fingerprint().clone()],
            setup: Some(setup),
            mid: mid.clone(),
        };
        let mids: Vec<String> = mid.into_iter().collect();
        let mut sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nt=0 0\r\n",
            ip = self.here.ip()
        );
        for l in session_lines(self.ice.lite, &mids) {
            sdp.push_str(&format!("a={l}\r\n"));
        }
        sdp.push_str(&format!(
            "m=audio {} UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 {}\r\na=rtcp-mux\r\na=sendrecv\r\n\
             a=rtpmap:0 PCMU/8000\r\n",
            self.here.port(),
            self.here.ip()
        ));
        for l in attrs.media_lines() {
            sdp.push_str(&format!("a={l}\r\n"));
        }
        sdp
    }

    /// Opens the engine stream towards webrtcbin's transport; `client` is our DTLS role.
    fn open(
        self,
        theirs: &TransportAttrs,
        client: bool,
    ) -> (
        MediaEngine,
        SessionId,
        crossbeam_channel::Receiver<StreamEndReason>,
        Instant,
    ) {
        let engine = MediaEngine::new(EngineConfig::default()).unwrap();
        let (et, er) = crossbeam_channel::unbounded();
        engine.callbacks().set_stream_ended(move |_, e| {
            let _ = et.send(e.reason.clone());
        });
        let id = SessionId::new_v4();
        let opened = Instant::now();
        let spec = SessionSpec {
            room_id: "room".into(),
            participant_id: "webrtcbin".into(),
            metadata: HashMap::new(),
            video_metadata: HashMap::new(),
            audio: StreamConfig {
                media: MediaParams::Audio(AudioParams::default()),
                remote_addr: theirs.candidates[0].addr(),
                rtcp_mux: true,
                ice_dtls: Some(IceDtlsParams {
                    ice: Some(IceParams {
                        config: self.ice,
                        host_candidates: vec![self.here],
                        srflx_candidates: Vec::new(),
                        remote_credentials: theirs.ice.clone().unwrap(),
                        remote_candidates: theirs.candidates.clone(),
                        relay: None,
                    }),
                    identity: self.identity,
                    // webrtcbin's own RSA certificate, as its SDP names it.
                    remote_fingerprints: theirs.fingerprints.clone(),
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
                    audio: self.sockets,
                    video: None,
                },
            )
            .unwrap();
        (engine, id, er, opened)
    }
}

/// Sends PCMU on our stream while webrtcbin runs, then checks both sides got SRTP: ICE and
/// DTLS connected, floors on the packets each way (loaded 2-core CI), its SRTCP opened.
fn exchange_and_check(
    engine: MediaEngine,
    id: SessionId,
    ended: crossbeam_channel::Receiver<StreamEndReason>,
    opened: Instant,
    gst: Child,
    mut out: BufReader<ChildStdout>,
    label: &str,
) {
    // The set-up time, from opening our stream to its keys (polled every millisecond, 5 s at
    // most): reported beside bench/webrtc_loopback.rs's engine-to-engine figure, not asserted.
    let mut connected_at = None;
    while opened.elapsed() < Duration::from_secs(5) {
        let Ok(s) = engine.session(id) else { break };
        if s.stats().audio.dtls_state == TransportDtlsState::Connected as u32 {
            connected_at = Some(opened.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let payload = [0xffu8; 160];
    let start = Instant::now();
    let mut n = 0u64;
    let (mut stats, mut suite): (Option<StreamStats>, _) = (None, None);
    while start.elapsed() < Duration::from_secs(GST_SECONDS - 3) {
        // A failed transport ends the session: the checks below say why.
        let Ok(s) = engine.session(id) else { break };
        s.send_audio_payload(&payload, 20).unwrap();
        n += 1;
        if n.is_multiple_of(5) {
            let st = s.stats().audio;
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
        eprintln!("{}", String::from_utf8_lossy(&done.stderr));
    }
    let ended: Vec<_> = ended.try_iter().collect();
    assert!(ended.is_empty(), "the session ended: {ended:?} ({line})");
    let s = stats.expect("stats were read");
    let gst_received: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    eprintln!(
        "{label}: {line}; we got {} packets (STUN refused {} malformed {}, dropped {}), \
         suite {suite:?}, selected {:?} -> {:?}, STUN accepted {}, keyed {connected_at:?} after opening, RTCP from it {}",
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

#[test]
fn webrtcbin_offer_our_lite_answer_srtp_both_ways() {
    if !have_webrtcbin() {
        return;
    }
    let (mut gst, mut out) = spawn_webrtcbin(false);
    let offered = read_sdp(&mut out, "offer");
    let their_setup = offered.setup.unwrap();
    // Our side: ICE-lite, controlled, one host candidate; DTLS role per RFC 8842.
    let ours = Ours::new(false);
    let setup = SetupRole::answer(Some(their_setup)).unwrap();
    let client = SetupRole::we_are_client(setup, their_setup).unwrap();
    let answer = ours.sdp(setup, offered.mid.clone());
    let (engine, id, ended, opened) = ours.open(&offered, client);
    send_sdp(&mut gst, "answer", &answer);
    exchange_and_check(
        engine,
        id,
        ended,
        opened,
        gst,
        out,
        "webrtcbin (libnice full, controlling) with our lite agent",
    );
}

#[test]
fn our_full_offer_webrtcbin_answer_srtp_both_ways() {
    if !have_webrtcbin() {
        return;
    }
    // Our side: a full agent, controlling, `actpass`; the answer decides the DTLS roles.
    let ours = Ours::new(true);
    let offer = ours.sdp(SetupRole::ActPass, Some("0".into()));
    let (mut gst, mut out) = spawn_webrtcbin(true);
    send_sdp(&mut gst, "offer", &offer);
    let answered = read_sdp(&mut out, "answer");
    assert!(!answered.ice_lite, "{answered:?}");
    let their_setup = answered.setup.unwrap();
    let client = SetupRole::we_are_client(SetupRole::ActPass, their_setup)
        .unwrap_or_else(|| panic!("webrtcbin answered actpass with {their_setup:?}"));
    let (engine, id, ended, opened) = ours.open(&answered, client);
    exchange_and_check(
        engine,
        id,
        ended,
        opened,
        gst,
        out,
        &format!(
            "our full agent (controlling) with webrtcbin (libnice, controlled, a=setup:{})",
            their_setup.as_str()
        ),
    );
}
