//! DTLS-SRTP against a real RSA peer without SIP: GStreamer 1.22's `dtlssrtpdec`/`dtlssrtpenc`
//! (gst-plugins-bad, OpenSSL underneath) over UDP loopback, against our `webrtc::DtlsEndpoint`
//! on its default engine (OpenSSL), driven by a small socket loop here. GStreamer presents an
//! RSA 2048 certificate we made (its `pem` property), so we know its fingerprint and check it as
//! SDP would have announced it. Both DTLS roles. Both directions of media: GStreamer decrypts the
//! SRTP we protect with the exported keys and hands the plain RTP back to a second socket (byte
//! for byte what we sent), and we decrypt the Opus SRTP GStreamer protects with its keys. And
//! a GStreamer certificate that is not the announced one is refused in both roles.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use roomkit_media::rtp::srtp::{SrtpReceiver, SrtpSender};
use roomkit_media::webrtc::{
    demux, fingerprint, Demux, DtlsEndpoint, DtlsEngine, DtlsError, DtlsEvent, DtlsIdentity,
};

use crate::support::peers::{
    free_udp_port, have_peers, interrupt, spawn, wait_bounded, wait_udp_bound,
};
use crate::support::rsa::rsa_certificate;

/// An RTP packet we send: PT 96, SSRC 0x0badcafe, sequence `seq`, a payload naming it.
fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend(seq.to_be_bytes());
    p.extend((u32::from(seq) * 960).to_be_bytes());
    p.extend(0x0bad_cafe_u32.to_be_bytes());
    p.extend(format!("packet {seq} through GStreamer's srtpdec").as_bytes());
    p
}

/// Runs GStreamer in the given DTLS role; with `spoil`, we expect a fingerprint its certificate
/// does not have and must refuse it.
fn run(gst_is_client: bool, spoil: bool) {
    if !have_peers(&["gst-launch-1.0"]) {
        return;
    }
    let (cert, key) = rsa_certificate("gstreamer");
    let mut gst_fingerprint = fingerprint(&cert.to_der().unwrap(), "sha-256").unwrap();
    if spoil {
        gst_fingerprint.hash[0] ^= 1;
    }
    let pem = format!(
        "{}{}",
        String::from_utf8(cert.to_pem().unwrap()).unwrap(),
        String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap()
    );

    let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
    ours.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
    plain.set_nonblocking(true).unwrap();
    let gst_port = free_udp_port();
    let ours_port = ours.local_addr().unwrap().port();
    let plain_port = plain.local_addr().unwrap().port();

    // One process, one connection id: the decoder takes the peer's DTLS records and our SRTP,
    // the encoder sends GStreamer's DTLS records and its Opus SRTP.
    let head = format!(
        "udpsrc address=127.0.0.1 port={gst_port} caps=application/x-srtp ! \
         dtlssrtpdec name=dec connection-id=rkm"
    );
    let tail = format!(
        "dec.rtp_src ! udpsink host=127.0.0.1 port={plain_port} sync=false async=false \
         audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=1 ! opusenc ! \
         rtpopuspay pt=111 ssrc=287454020 ! enc.rtp_sink_0 \
         dtlssrtpenc name=enc connection-id=rkm is-client={gst_is_client} ! \
         udpsink host=127.0.0.1 port={ours_port} sync=false async=false"
    );
    // gst-launch joins its arguments into one description: the PEM, with its spaces and line
    // breaks, is one quoted value.
    let pem_arg = format!("pem=\"{pem}\"");
    let args: Vec<&str> = head
        .split_whitespace()
        .chain(std::iter::once(pem_arg.as_str()))
        .chain(tail.split_whitespace())
        .collect();
    let gst = spawn(60, "gst-launch-1.0", &args);
    assert!(
        wait_udp_bound(gst_port, Duration::from_secs(15)),
        "GStreamer did not bind its port"
    );

    let identity = DtlsIdentity::generate().unwrap();
    let start = Instant::now();
    let mut dtls = DtlsEndpoint::new(
        &identity,
        !gst_is_client,
        std::slice::from_ref(&gst_fingerprint),
        start,
    );
    assert_eq!(dtls.engine(), Some(DtlsEngine::OpenSsl));
    let mut keys = None;
    let mut failed = None;
    let (mut tx, mut rx) = (None::<SrtpSender>, None::<SrtpReceiver>);
    let mut sent: HashMap<u16, Vec<u8>> = HashMap::new();
    let (mut seq, mut decrypted_by_gst, mut decrypted_by_us, mut bad) = (0u16, 0usize, 0, 0);
    let mut next_send = start;
    let mut buf = [0u8; 2048];
    // Bounded in time and in turns (each turn waits at most 10 ms on the socket).
    for _ in 0..3000 {
        if start.elapsed() > Duration::from_secs(25)
            || (decrypted_by_gst >= 20 && decrypted_by_us >= 20)
            || failed.is_some()
        {
            break;
        }
        while let Some(d) = dtls.poll_transmit() {
            ours.send_to(&d, ("127.0.0.1", gst_port)).unwrap();
        }
        while let Some(e) = dtls.poll_event() {
            match e {
                DtlsEvent::Connected(k) => {
                    tx = Some(SrtpSender::new(&k.send).unwrap());
                    rx = Some(SrtpReceiver::new(&k.recv).unwrap());
                    keys = Some(k);
                }
                DtlsEvent::Failed(e) => failed = Some(e),
                DtlsEvent::Closed => {}
            }
        }
        if dtls.poll_timeout().is_some_and(|t| t <= Instant::now()) {
            dtls.handle_timeout(Instant::now());
        }
        // Media every 20 ms once keyed.
        if let Some(tx) = tx.as_mut() {
            if Instant::now() >= next_send && seq < 500 {
                seq += 1;
                let p = rtp(seq);
                ours.send_to(&tx.protect_rtp(&p).unwrap(), ("127.0.0.1", gst_port))
                    .unwrap();
                sent.insert(seq, p);
                next_send += Duration::from_millis(20);
            }
        }
        if let Ok((n, _)) = ours.recv_from(&mut buf) {
            let d = &buf[..n];
            match demux(d) {
                Demux::Dtls => dtls.handle_input(Instant::now(), d),
                Demux::Rtp(_) => {
                    if let Some(rx) = rx.as_mut() {
                        match rx.unprotect_rtp(d) {
                            Ok(p) if p.len() > 12 && p[1] & 0x7f == 111 => decrypted_by_us += 1,
                            _ => bad += 1,
                        }
                    }
                }
                _ => bad += 1,
            }
        }
        while let Ok(n) = plain.recv(&mut buf) {
            let p = &buf[..n];
            assert!(p.len() > 12, "GStreamer's plain RTP: {n} bytes");
            let s = u16::from_be_bytes([p[2], p[3]]);
            assert_eq!(
                sent.get(&s).map(Vec::as_slice),
                Some(p),
                "GStreamer's plain RTP"
            );
            decrypted_by_gst += 1;
        }
        if keys.is_none() {
            next_send = Instant::now();
        }
    }
    interrupt(&gst);
    let out = wait_bounded(gst, Duration::from_secs(10));
    let log = format!(
        "GStreamer stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if spoil {
        assert_eq!(
            failed,
            Some(DtlsError::FingerprintMismatch),
            "a certificate that is not the announced one\n{log}"
        );
        assert!(keys.is_none() && tx.is_none());
        return;
    }
    let keys = keys.unwrap_or_else(|| panic!("no DTLS keys ({failed:?}) after 25 s\n{log}"));
    eprintln!(
        "GStreamer {} with RSA, us {}: suite {:?}, handshake + media in {:?}; GStreamer decrypted \
         {decrypted_by_gst} of our {seq} packets, we decrypted {decrypted_by_us} of its (bad {bad})",
        if gst_is_client { "client" } else { "server" },
        if gst_is_client { "server" } else { "client" },
        keys.suite(),
        start.elapsed(),
    );
    // Floors with margin: 20 of each way (about 0.4 s of media at 50 packets a second).
    assert!(
        decrypted_by_gst >= 20,
        "GStreamer decrypted {decrypted_by_gst}\n{log}"
    );
    assert!(
        decrypted_by_us >= 20,
        "we decrypted {decrypted_by_us}\n{log}"
    );
}

#[test]
fn gstreamer_dtls_server_with_rsa_keys_our_srtp_both_ways() {
    run(false, false);
}

#[test]
fn gstreamer_dtls_client_with_rsa_keys_our_srtp_both_ways() {
    run(true, false);
}

#[test]
fn gstreamer_certificate_that_is_not_the_announced_one_is_refused() {
    run(true, true);
    run(false, true);
}
