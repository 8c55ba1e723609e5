//! The WHIP/WHEP endpoint over real loopback HTTP (and HTTPS) on a SIP video backend: a POSTed
//! offer becomes an ordinary session of the backend (`on_call`, media callbacks), DELETE ends
//! it; CORS preflight, the bearer token and the error answers as a browser meets them. The
//! client is a WebRTC-style one: its offer built by our own SDP code with ICE and DTLS-SRTP,
//! its streams run by an engine with `StreamConfig::ice_dtls`, as a browser would (plain-RTP
//! offers are refused); the Chromium test (tests/interop) publishes from a real browser.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roomkit_media::backend::{MediaBackend, SessionId, SipVideoBackend};
use roomkit_media::engine::{
    BoundMedia, EngineConfig, MediaEngine, RtpSockets, SessionSpec, StreamConfig,
};
use roomkit_media::rtp::config::{AudioParams, MediaParams, VideoParams};
use roomkit_media::sdp::{
    build_offer, parse_answer, AudioCodec, DtlsSrtpPolicy, IcePolicy, Offer, OfferConfig,
};
use roomkit_media::webrtc::DtlsIdentity;
use roomkit_media::whip::{WhipConfig, WhipKind, WhipServer};
use roomkit_media::VideoCodec;

use crate::support::sip::{config, offer, H264_ATTRS};
use crate::support::tls::Pki;
use crate::support::wait_until;

/// Sends `request` raw and returns the whole answer (the server closes after it).
fn http(addr: SocketAddr, request: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn post(addr: SocketAddr, path: &str, headers: &str, body: &str) -> String {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The port of the answer's `m=KIND` line.
fn m_port(sdp: &str, kind: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix(&format!("m={kind} ")))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m={kind} in {sdp}"))
}

/// A WebRTC-style client on loopback: full ICE (controlling) and DTLS-SRTP on its own
/// sockets, its offer written by our SDP code, its streams run by an engine once answered.
struct Client {
    identity: DtlsIdentity,
    offer: Offer,
    sockets: Option<BoundMedia>,
    engine: MediaEngine,
    id: SessionId,
}

impl Client {
    /// A client offering PCMU audio (and H.264 video when `video`) in `direction`.
    fn new(direction: &str, video: bool) -> Client {
        let identity = DtlsIdentity::generate().unwrap();
        let bind = || RtpSockets::bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let audio = bind();
        let video = video.then(bind);
        let mut cfg = OfferConfig::new(
            [127, 0, 0, 1].into(),
            audio.local_addr().port(),
            video.as_ref().map_or(0, |v| v.local_addr().port()),
        );
        cfg.local.audio_codecs = vec![AudioCodec::Pcmu];
        cfg.local.video_codecs = vec![VideoCodec::H264];
        cfg.local.rtcp_mux = true;
        cfg.local.dtls_srtp = DtlsSrtpPolicy::Mandatory;
        cfg.local.dtls_fingerprint = Some(identity.fingerprint().clone());
        cfg.local.ice = IcePolicy::On;
        cfg.dtmf_pt = None;
        let mut offer = build_offer(&cfg);
        offer.sdp = offer.sdp.replace("a=sendrecv", &format!("a={direction}"));
        Client {
            identity,
            offer,
            sockets: Some(BoundMedia { audio, video }),
            engine: MediaEngine::new(EngineConfig::default()).unwrap(),
            id: SessionId::new_v4(),
        }
    }

    /// Runs the streams the answer agreed to (ICE, then the DTLS handshake, then SRTP).
    fn start(&mut self, answer: &str) {
        let neg = parse_answer(&self.offer, answer.as_bytes()).expect("a usable answer");
        let stream =
            |media, remote, t: Option<&roomkit_media::sdp::NegotiatedTransport>| StreamConfig {
                media,
                remote_addr: remote,
                rtcp_mux: true,
                rtcp_interval: Duration::from_millis(500),
                ice_dtls: Some(t.expect("DTLS-SRTP agreed").params(&self.identity)),
                ..StreamConfig::default()
            };
        let audio = stream(
            MediaParams::Audio(AudioParams {
                payload_type: neg.audio.pt,
                clock_rate: neg.audio.clock_rate,
                dtmf_payload_type: None,
                ..AudioParams::default()
            }),
            neg.audio.remote,
            neg.audio.transport.as_ref(),
        );
        let video = neg.video.as_ref().map(|v| {
            stream(
                MediaParams::Video(VideoParams {
                    payload_type: v.pt,
                    codec: v.codec,
                    ..VideoParams::default()
                }),
                v.remote,
                v.transport.as_ref(),
            )
        });
        let mut bound = self.sockets.take().expect("started once");
        if video.is_none() {
            bound.video = None;
        }
        let spec = SessionSpec {
            room_id: "whip-client".into(),
            participant_id: "client".into(),
            metadata: Default::default(),
            video_metadata: Default::default(),
            audio,
            video,
        };
        self.engine
            .create_session_bound(self.id, spec, bound)
            .unwrap();
    }

    /// Sends one 20 ms PCMU frame (dropped by the stream until it is keyed).
    fn send_audio(&self) {
        let s = self.engine.session(self.id).unwrap();
        let _ = s.send_audio_payload(&[0xff; 160], 20);
    }

    /// RTP packets its audio stream received.
    fn audio_received(&self) -> u64 {
        self.engine
            .session(self.id)
            .map_or(0, |s| s.stats().audio.packets_received)
    }
}

const AUTH: &str = "Authorization: Bearer tok\r\n";
const SDP: &str = "Content-Type: application/sdp\r\n";

#[test]
fn whip_offers_become_sessions_of_the_backend_and_delete_ends_them() {
    let mut cfg = config(33);
    cfg.dtls_srtp = roomkit_media::DtlsSrtpPolicy::Optional;
    let be = Arc::new(SipVideoBackend::new(cfg).unwrap());
    let calls = Arc::new(AtomicU32::new(0));
    let audio = Arc::new(AtomicU32::new(0));
    let (c, a) = (calls.clone(), audio.clone());
    be.on_call(move |_| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    be.on_audio_received(move |_, _| {
        a.fetch_add(1, Ordering::Relaxed);
    });
    be.start().unwrap();
    let cfg = WhipConfig {
        token: Some("tok".into()),
        whep: true,
    };
    let mut server = WhipServer::start("127.0.0.1:0".parse().unwrap(), None, cfg, &be).unwrap();
    let addr = server.local_addr();
    assert_eq!(server.url(WhipKind::Whip), format!("http://{addr}/whip"));

    // The preflight a page on another origin sends first: no credentials, CORS answered.
    let pre = http(
        addr,
        "OPTIONS /whip HTTP/1.1\r\nHost: x\r\nOrigin: http://127.0.0.1:1\r\n\
         Access-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: authorization, content-type\r\n\r\n",
    );
    assert!(pre.starts_with("HTTP/1.1 204"), "{pre}");
    assert_eq!(header(&pre, "Access-Control-Allow-Origin"), Some("*"));
    assert!(header(&pre, "Access-Control-Allow-Headers")
        .unwrap()
        .contains("Authorization"));

    // The publishing client: ICE and DTLS-SRTP, audio and video.
    let mut client = Client::new("sendonly", true);
    let offer_sdp = client.offer.sdp.clone();
    let r = post(addr, "/whip", SDP, &offer_sdp);
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = post(
        addr,
        "/whip",
        &format!("{AUTH}Content-Type: text/plain\r\n"),
        &offer_sdp,
    );
    assert!(r.starts_with("HTTP/1.1 415"), "{r}");
    let r = post(
        addr,
        "/whip",
        &format!("{AUTH}{SDP}"),
        "v=0\r\nnonsense\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // A plain-RTP offer, and a DTLS-SRTP one without ICE, are refused: with no consent check,
    // they could aim our media at anyone's address.
    let plain = offer(40_000, Some((40_002, "96", H264_ATTRS)), "sendonly");
    let no_ice = offer_sdp
        .lines()
        .filter(|l| !l.starts_with("a=ice-") && !l.starts_with("a=candidate"))
        .map(|l| format!("{l}\r\n"))
        .collect::<String>();
    for refused in [plain, no_ice] {
        let r = post(addr, "/whip", &format!("{AUTH}{SDP}"), &refused);
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        assert!(
            body(&r).contains("needs ICE") || body(&r).contains("not acceptable"),
            "{r}"
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 0);

    let r = post(addr, "/whip", &format!("{AUTH}{SDP}"), &offer_sdp);
    assert!(r.starts_with("HTTP/1.1 201 Created"), "{r}");
    assert_eq!(header(&r, "Content-Type"), Some("application/sdp"));
    assert_eq!(
        header(&r, "Access-Control-Expose-Headers"),
        Some("Location")
    );
    let location = header(&r, "Location").expect("a Location").to_string();
    let session: SessionId = location
        .strip_prefix("/whip/")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{location}"));
    let answer = body(&r);
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(answer.contains("H264/90000"), "{answer}");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    // Listed at once (a hangup now would find it), announced with on_call.
    assert!(be.call_id(session).is_some());
    assert!(wait_until(Duration::from_secs(5), || calls
        .load(Ordering::Relaxed)
        == 1));
    assert_eq!(
        be.get_session(session)
            .unwrap()
            .metadata
            .get("signalling")
            .map(String::as_str),
        Some("whip")
    );

    // Once ICE and DTLS are done, the client's SRTP reaches the backend's audio callback.
    client.start(answer);
    assert!(wait_until(Duration::from_secs(15), || {
        client.send_audio();
        std::thread::sleep(Duration::from_millis(20));
        audio.load(Ordering::Relaxed) >= 10
    }));

    // DELETE ends it, once.
    let del = format!("DELETE {location} HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n");
    let r = http(
        addr,
        &format!("DELETE {location} HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = http(addr, &del);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(wait_until(Duration::from_secs(5), || be
        .call_id(session)
        .is_none()));
    assert!(http(addr, &del).starts_with("HTTP/1.1 404"));
    let patch = format!("PATCH {location} HTTP/1.1\r\nHost: x\r\n{AUTH}Content-Length: 0\r\n\r\n");
    assert!(http(addr, &patch).starts_with("HTTP/1.1 405"));

    // WHEP: a receiving offer gets a sending answer under /whep.
    let r = post(
        addr,
        "/whep",
        &format!("{AUTH}{SDP}"),
        &Client::new("recvonly", false).offer.sdp,
    );
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    assert!(header(&r, "Location").unwrap().starts_with("/whep/"));
    assert!(body(&r).contains("a=sendonly"), "{}", body(&r));
    assert!(http(addr, "GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));

    server.stop();
    assert!(TcpStream::connect(addr).is_err(), "the socket is closed");
}

#[test]
fn whip_over_https_with_the_sip_tls_certificate() {
    let pki = Pki::new("whip");
    let be = Arc::new(SipVideoBackend::new(config(34)).unwrap());
    be.start().unwrap();
    let (cert, key) = (pki.path("cert.pem"), pki.path("key.pem"));
    let server = WhipServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Some((&cert, &key)),
        WhipConfig::default(),
        &be,
    )
    .unwrap();
    let addr = server.local_addr();
    assert_eq!(server.url(WhipKind::Whip), format!("https://{addr}/whip"));

    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"OPTIONS /whip HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    assert_eq!(header(&out, "Accept-Post"), Some("application/sdp"));
}

/// A client that trickles its TLS ClientHello a byte at a time, each byte within the socket
/// timeout, is cut once the connection's deadline (`IO_TIMEOUT`, 2 s) has passed: rustls reads
/// over a socket that knows that deadline.
#[test]
fn a_client_trickling_its_tls_handshake_is_cut_at_the_deadline() {
    let pki = Pki::new("whip-slow");
    let be = Arc::new(SipVideoBackend::new(config(34)).unwrap());
    be.start().unwrap();
    let (cert, key) = (pki.path("cert.pem"), pki.path("key.pem"));
    let server = WhipServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Some((&cert, &key)),
        WhipConfig::default(),
        &be,
    )
    .unwrap();
    let mut sock = TcpStream::connect(server.local_addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let start = std::time::Instant::now();
    // A handshake record announcing 16 KiB, of which only a few bytes ever come.
    let record = [
        0x16u8, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc, 0x03, 0x03, 0, 0, 0,
    ];
    let mut cut = None;
    for b in record {
        if sock.write_all(&[b]).is_err() {
            cut = Some(start.elapsed());
            break;
        }
        let mut one = [0u8; 1];
        match sock.read(&mut one) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            _ => {
                cut = Some(start.elapsed());
                break;
            }
        }
    }
    let cut = cut.expect("the trickling client was never cut");
    // The deadline is 2 s; one more read timeout to notice, and slack for a loaded machine.
    assert!(cut < Duration::from_secs(5), "cut after {cut:?}");
    assert!(
        cut >= Duration::from_millis(1900),
        "cut early, after {cut:?}"
    );
}

/// `serve --whip --whep --whip-token`: the URLs in the `listening` line; a WHIP session is a
/// call in serve's JSON lines (`transport` `whip`) that DELETE ends; what it publishes is
/// relayed to a WHEP player.
#[test]
fn serve_takes_whip_sessions_beside_sip_calls() {
    let (mut serve, _) = crate::support::peers::spawn_serve(
        30,
        "39920-39969",
        &[
            "--quiet-frames",
            "--whip",
            "127.0.0.1:0",
            "--whep",
            "--whip-token",
            "tok",
        ],
    );
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let listening: serde_json::Value =
        serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let whip = listening["whip"].as_str().expect("a whip URL").to_string();
    let whep = listening["whep"].as_str().expect("a whep URL");
    let addr: SocketAddr = whip
        .strip_prefix("http://")
        .and_then(|r| r.strip_suffix("/whip"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(whep, format!("http://{addr}/whep"));

    let mut publisher = Client::new("sendonly", false);
    let r = post(
        addr,
        "/whip",
        &format!("{AUTH}{SDP}"),
        &publisher.offer.sdp.clone(),
    );
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    let location = header(&r, "Location").unwrap().to_string();
    let call: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(call["event"], "call", "{call}");
    assert_eq!(call["transport"], "whip", "{call}");
    assert_eq!(
        format!("/whip/{}", call["session"].as_str().unwrap()),
        location
    );
    publisher.start(body(&r));

    // A WHEP player: its audio is what the publisher sends.
    let mut player = Client::new("recvonly", false);
    let r = post(
        addr,
        "/whep",
        &format!("{AUTH}{SDP}"),
        &player.offer.sdp.clone(),
    );
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    let played: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(played["transport"], "whep", "{played}");
    player.start(body(&r));
    assert!(wait_until(Duration::from_secs(15), || {
        publisher.send_audio();
        std::thread::sleep(Duration::from_millis(20));
        player.audio_received() >= 10
    }));
    let r = http(
        addr,
        &format!("DELETE {location} HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n"),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Bounded: serve's own lifetime (spawn_serve's 30 s) ends the wait at the latest.
    let hangup = lines
        .by_ref()
        .map_while(|l| l.ok())
        .find(|l| l.contains("\"hangup\""))
        .expect("a hangup line");
    assert!(
        hangup.contains(call["session"].as_str().unwrap()),
        "{hangup}"
    );
    crate::support::peers::interrupt(&serve);
    drop(lines);
    crate::support::peers::wait_bounded(serve, Duration::from_secs(10));
}

/// The answer to a real Chromium offer (`tests/data/chromium-offer.sdp`, captured from headless
/// Chromium 156): both m-lines taken over DTLS-SRTP with ICE-lite, we the DTLS server
/// (`a=setup:passive`), our candidate on the stream's socket, the offer's mids echoed, its
/// BUNDLE group accepted: both m-lines on one port (one socket, one transport).
#[test]
fn a_chromium_offer_gets_an_ice_lite_dtls_answer() {
    let mut cfg = config(37);
    cfg.dtls_srtp = roomkit_media::DtlsSrtpPolicy::Optional;
    let be = SipVideoBackend::new(cfg).unwrap();
    be.start().unwrap();
    let offer = include_str!("../data/chromium-offer.sdp");
    let (session, answer) = be
        .accept_offer(offer, WhipKind::Whip, "127.0.0.1:9".parse().unwrap())
        .expect("an answer");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("a=group:BUNDLE 0 1\r\n"), "{answer}");
    assert_eq!(
        m_port(&answer, "audio"),
        m_port(&answer, "video"),
        "{answer}"
    );
    for (kind, mid) in [("audio", "0"), ("video", "1")] {
        let m = answer
            .split("m=")
            .find(|s| s.starts_with(kind))
            .unwrap_or_else(|| panic!("no m={kind} in {answer}"));
        let port = m_port(&format!("m={m}"), kind);
        assert!(port > 0, "{kind} refused: {answer}");
        assert!(m.contains("UDP/TLS/RTP/SAVPF"), "{m}");
        assert!(m.contains("a=setup:passive"), "{m}");
        assert!(m.contains("a=fingerprint:sha-256 "), "{m}");
        assert!(m.contains(&format!("a=mid:{mid}")), "{m}");
        assert!(
            m.contains("a=ice-ufrag:") && m.contains("a=ice-pwd:"),
            "{m}"
        );
        assert!(
            m.contains(&format!("127.0.0.1 {port} typ host")),
            "our candidate on the stream's socket: {m}"
        );
        assert!(m.contains("a=recvonly"), "{m}");
    }
    assert!(be.call_id(session).is_some());
    let info = be.get_session(session).unwrap();
    assert_eq!(
        info.video.as_ref().map(|v| v.local_addr),
        Some(info.audio.local_addr),
        "one socket: {info:?}"
    );
    be.hangup(session).unwrap();
}
