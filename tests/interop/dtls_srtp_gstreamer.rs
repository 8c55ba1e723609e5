//! DTLS-SRTP without ICE (RFC 5763/5764, as SIP peers with `mediaenc=dtls_srtp` run it) between
//! an engine stream opened with `StreamConfig::ice_dtls` and GStreamer's `dtlssrtpenc` /
//! `dtlssrtpdec` (OpenSSL's DTLS, libsrtp) driven by `bench/gst_dtls_srtp.py`: one socket each,
//! DTLS then SRTP both ways, PCMU. We check GStreamer's certificate against the fingerprint we
//! were given (GStreamer accepts any certificate); with a wrong one the stream ends with
//! `TransportFailed` and nothing reaches GStreamer.

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use roomkit_media::engine::{
    BoundMedia, EngineConfig, MediaEngine, RtpSockets, SessionId, SessionSpec, StreamConfig,
    StreamEndReason,
};
use roomkit_media::rtp::config::{AudioParams, MediaParams};
use roomkit_media::webrtc::{
    fingerprint, DtlsError, DtlsIdentity, IceDtlsParams, TransportDtlsState, TransportFailure,
};
use support::peers::*;

/// How long GStreamer runs; we send for a little less.
const GST_SECONDS: u64 = 8;

struct Outcome {
    /// What GStreamer decrypted, from its last line.
    gst_received: u64,
    gst_line: String,
    /// Our audio stream's counters near the end (`None` when the session had ended).
    ours: Option<roomkit_media::engine::StreamStats>,
    suite: Option<roomkit_media::SrtpSuite>,
    ended: Vec<StreamEndReason>,
}

fn run(we_are_client: bool, spoil_fingerprint: bool) -> Option<Outcome> {
    if !crate::srtp_peers::have_python_gst() {
        return None;
    }
    let dir = TempDir::new("dtls-gst");
    // GStreamer's certificate (ECDSA P-256, self-signed), and its fingerprint for our side.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = dir.path("gst.pem");
    std::fs::write(&pem, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
    let mut gst_fp = fingerprint(cert.der(), "sha-256").unwrap();
    if spoil_fingerprint {
        gst_fp.hash[0] ^= 0x80;
    }

    let sockets = RtpSockets::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
    let ours = sockets.local_addr().to_string();
    let gst_port = free_udp_port();
    let gst_addr: SocketAddr = format!("127.0.0.1:{gst_port}").parse().unwrap();
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/gst_dtls_srtp.py");
    let (port_arg, secs) = (gst_port.to_string(), GST_SECONDS.to_string());
    let mut args = vec![
        script.to_str().unwrap(),
        "--to",
        &ours,
        "--port",
        &port_arg,
        "--pem",
        pem.to_str().unwrap(),
        "--seconds",
        &secs,
    ];
    if !we_are_client {
        args.push("--client");
    }
    let gst = spawn(60, "/usr/bin/python3", &args);
    assert!(
        wait_udp_bound(gst_port, Duration::from_secs(20)),
        "GStreamer bound its port"
    );

    let engine = MediaEngine::new(EngineConfig::default()).unwrap();
    let (et, er) = unbounded();
    engine.callbacks().set_stream_ended(move |_, e| {
        let _ = et.send(e.reason.clone());
    });
    let id = SessionId::new_v4();
    let spec = SessionSpec {
        room_id: "room".into(),
        participant_id: "gst".into(),
        metadata: HashMap::new(),
        video_metadata: HashMap::new(),
        audio: StreamConfig {
            media: MediaParams::Audio(AudioParams::default()),
            remote_addr: gst_addr,
            rtcp_mux: true,
            ice_dtls: Some(IceDtlsParams {
                ice: None,
                identity: DtlsIdentity::generate().unwrap(),
                remote_fingerprints: vec![gst_fp],
                dtls_client: we_are_client,
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
    // PCMU silence, 20 ms a packet, paced by the clock.
    let payload = [0xffu8; 160];
    let start = Instant::now();
    let mut n = 0u64;
    let (mut last_stats, mut suite) = (None, None);
    while start.elapsed() < Duration::from_secs(GST_SECONDS - 1) {
        let Ok(s) = engine.session(id) else { break };
        // A stream whose transport failed refuses media: that is checked below.
        let _ = s.send_audio_payload(&payload, 20);
        n += 1;
        if n.is_multiple_of(25) {
            last_stats = Some(s.stats().audio);
            suite = s.current_info().audio.srtp_suite;
        }
        let due = start + Duration::from_millis(20 * n);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    drop(engine);
    let out = wait_bounded(gst, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("received "))
        .unwrap_or_else(|| {
            panic!(
                "no result from the GStreamer script: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string();
    let gst_received = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    Some(Outcome {
        gst_received,
        gst_line: line,
        ours: last_stats,
        suite,
        ended: er.try_iter().collect(),
    })
}

fn check_flows(we_are_client: bool) {
    let Some(o) = run(we_are_client, false) else {
        return;
    };
    let s = o.ours.expect("the session lived");
    // 7 s of packets at 50 a second both ways; the handshake takes well under a second.
    assert!(
        o.gst_received >= 150,
        "GStreamer decrypted {} ({}); ours: {s:?}; ended: {:?}",
        o.gst_received,
        o.gst_line,
        o.ended
    );
    assert!(o.gst_line.contains("errors 0"), "{}", o.gst_line);
    assert!(o.gst_line.contains("peer-cert 1"), "{}", o.gst_line);
    assert_eq!(s.dtls_state, TransportDtlsState::Connected as u32, "{s:?}");
    assert!(s.packets_received >= 150, "{s:?}");
    // GStreamer sends RTP from the start, before its side of the handshake is done: what
    // arrives before our keys is dropped on arrival, and the odd packet around the moment the
    // keys come fails authentication. Nothing later does.
    assert!(s.srtp_auth_failed <= 5, "{s:?}");
    assert!(s.transport_dropped < 50, "{s:?}");
    assert!(o.suite.is_some());
    assert!(o.ended.is_empty(), "{:?}", o.ended);
    eprintln!(
        "DTLS-SRTP with GStreamer (we are the {}): suite {:?}, we got {} packets ({} dropped \
         before the keys), it decrypted {}",
        if we_are_client { "client" } else { "server" },
        o.suite,
        s.packets_received,
        s.transport_dropped,
        o.gst_received
    );
}

#[test]
fn gstreamer_dtls_client_and_our_server_exchange_srtp() {
    check_flows(false);
}

#[test]
fn our_dtls_client_and_gstreamer_server_exchange_srtp() {
    check_flows(true);
}

#[test]
fn a_gstreamer_certificate_not_matching_the_fingerprint_ends_the_stream() {
    let Some(o) = run(true, true) else {
        return;
    };
    assert_eq!(o.gst_received, 0, "{}", o.gst_line);
    assert!(o.suite.is_none());
    assert_eq!(
        o.ended,
        vec![StreamEndReason::TransportFailed(TransportFailure::Dtls(
            DtlsError::FingerprintMismatch
        ))]
    );
}
