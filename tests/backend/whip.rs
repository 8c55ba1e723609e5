//! The WHIP/WHEP endpoint over real loopback HTTP (and HTTPS) on a SIP video backend: a POSTed
//! offer becomes an ordinary session of the backend (`on_call`, media callbacks), DELETE ends
//! it; CORS preflight, the bearer token and the error answers as a browser meets them. The
//! offers here are plain RTP ones written by hand; the Chromium test (tests/interop) publishes
//! with ICE and DTLS-SRTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use roomkit_media::backend::{MediaBackend, SessionId, SipVideoBackend};
use roomkit_media::whip::{WhipConfig, WhipKind, WhipServer};

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

const AUTH: &str = "Authorization: Bearer tok\r\n";
const SDP: &str = "Content-Type: application/sdp\r\n";

#[test]
fn whip_offers_become_sessions_of_the_backend_and_delete_ends_them() {
    let be = Arc::new(SipVideoBackend::new(config(33)).unwrap());
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

    // The media peer: our UDP socket, sending PCMU.
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer_sdp = offer(
        peer.local_addr().unwrap().port(),
        Some((peer.local_addr().unwrap().port() + 2, "96", H264_ATTRS)),
        "sendonly",
    );
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

    // Media to the answer's audio port reaches the backend's audio callback.
    let to: SocketAddr = ([127, 0, 0, 1], m_port(answer, "audio")).into();
    let mut sent = 0u16;
    assert!(wait_until(Duration::from_secs(10), || {
        let mut pkt = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
        pkt[2..4].copy_from_slice(&sent.to_be_bytes());
        pkt[4..8].copy_from_slice(&(u32::from(sent) * 160).to_be_bytes());
        pkt.extend_from_slice(&[0xff; 160]);
        let _ = peer.send_to(&pkt, to);
        sent = sent.wrapping_add(1);
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
        &offer(peer.local_addr().unwrap().port(), None, "recvonly"),
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

    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sdp = offer(peer.local_addr().unwrap().port(), None, "sendonly");
    let r = post(addr, "/whip", &format!("{AUTH}{SDP}"), &sdp);
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    let location = header(&r, "Location").unwrap().to_string();
    let call: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(call["event"], "call", "{call}");
    assert_eq!(call["transport"], "whip", "{call}");
    assert_eq!(
        format!("/whip/{}", call["session"].as_str().unwrap()),
        location
    );
    let publish_to: SocketAddr = ([127, 0, 0, 1], m_port(body(&r), "audio")).into();

    // A WHEP player: its audio is what the publisher sends.
    let player = UdpSocket::bind("127.0.0.1:0").unwrap();
    player
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let r = post(
        addr,
        "/whep",
        &format!("{AUTH}{SDP}"),
        &offer(player.local_addr().unwrap().port(), None, "recvonly"),
    );
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    let played: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(played["transport"], "whep", "{played}");
    let (mut seq, mut relayed) = (0u16, 0);
    let mut buf = [0u8; 2048];
    assert!(wait_until(Duration::from_secs(10), || {
        let mut pkt = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        pkt.extend_from_slice(&[0xff; 160]);
        let _ = peer.send_to(&pkt, publish_to);
        seq = seq.wrapping_add(1);
        // RTP (not RTCP: payload type 0 in the second byte) at the player's port.
        while let Ok(n) = player.recv(&mut buf) {
            if n > 12 && buf[1] & 0x7f == 0 {
                relayed += 1;
            }
        }
        relayed >= 10
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
