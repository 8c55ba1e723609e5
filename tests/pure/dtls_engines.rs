//! The two DTLS engines behind `webrtc::DtlsEndpoint` (README "Dependencies"), in memory: OpenSSL
//! and dimpl shake hands with each other in both roles, OpenSSL takes an RSA peer (as baresip
//! and GStreamer present) in both roles, the exported keys open each other's SRTP, a
//! certificate that does not match its fingerprint is refused, garbage is dropped without a
//! panic, and lost datagrams are sent again on virtual time. No socket: datagrams move between
//! the two endpoints by hand.

use std::time::{Duration, Instant};

use roomkit_media::rtp::srtp::SrtpKeys;
use roomkit_media::sdp::Fingerprint;
use roomkit_media::webrtc::{DtlsEndpoint, DtlsEngine, DtlsError, DtlsEvent, DtlsIdentity};

use super::webrtc::check_keys;

/// An identity on an RSA 2048 certificate, as GStreamer's DTLS elements and baresip's
/// `dtls_srtp` present.
fn rsa_identity() -> DtlsIdentity {
    let (cert, key) = crate::rsa::rsa_certificate("rsa-peer");
    DtlsIdentity::from_der(
        &cert.to_der().unwrap(),
        &key.private_key_to_pkcs8().unwrap(),
    )
    .unwrap()
}

/// What one side of a handshake ended with.
#[derive(Debug, Default)]
struct Outcome {
    keys: Option<SrtpKeys>,
    failed: Option<DtlsError>,
}

fn events(e: &mut DtlsEndpoint, out: &mut Outcome) {
    while let Some(ev) = e.poll_event() {
        match ev {
            DtlsEvent::Connected(k) => out.keys = Some(k),
            DtlsEvent::Failed(err) => out.failed = Some(err),
            DtlsEvent::Closed => {}
        }
    }
}

/// Moves datagrams between `client` and `server` (dropping the first `lose` the client sends)
/// until neither has anything to send or both have an outcome; bounded in rounds.
fn shake(
    client: &mut DtlsEndpoint,
    server: &mut DtlsEndpoint,
    start: Instant,
) -> (Outcome, Outcome) {
    let (mut c, mut s) = (Outcome::default(), Outcome::default());
    for round in 0..50u64 {
        let now = start + Duration::from_millis(round);
        let mut moved = false;
        while let Some(d) = client.poll_transmit() {
            server.handle_input(now, &d);
            moved = true;
        }
        while let Some(d) = server.poll_transmit() {
            client.handle_input(now, &d);
            moved = true;
        }
        events(client, &mut c);
        events(server, &mut s);
        let settled = |o: &Outcome| o.keys.is_some() || o.failed.is_some();
        if !moved || (settled(&c) && settled(&s)) {
            break;
        }
    }
    (c, s)
}

fn endpoints(
    client: (DtlsEngine, &DtlsIdentity),
    server: (DtlsEngine, &DtlsIdentity),
    now: Instant,
) -> (DtlsEndpoint, DtlsEndpoint) {
    let c = DtlsEndpoint::with_engine(
        client.0,
        client.1,
        true,
        std::slice::from_ref(server.1.fingerprint()),
        now,
    );
    let s = DtlsEndpoint::with_engine(
        server.0,
        server.1,
        false,
        std::slice::from_ref(client.1.fingerprint()),
        now,
    );
    assert_eq!((c.engine(), s.engine()), (Some(client.0), Some(server.0)));
    (c, s)
}

fn connects(client: (DtlsEngine, &DtlsIdentity), server: (DtlsEngine, &DtlsIdentity)) {
    let now = Instant::now();
    let (mut c, mut s) = endpoints(client, server, now);
    let (co, so) = shake(&mut c, &mut s, now);
    let what = format!("{:?} client, {:?} server", client.0, server.0);
    let (Some(ck), Some(sk)) = (co.keys, so.keys) else {
        panic!(
            "{what}: no keys: client {:?}, server {:?}",
            co.failed, so.failed
        );
    };
    assert_eq!(ck.send.suite(), sk.recv.suite(), "{what}");
    check_keys(&ck, &sk);
    // Done: no timer left to run, nothing more to send.
    assert_eq!(c.poll_transmit(), None, "{what}");
    assert_eq!(s.poll_transmit(), None, "{what}");
}

#[test]
fn openssl_and_dimpl_shake_hands_in_both_roles() {
    let (a, b) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    for client in [DtlsEngine::OpenSsl, DtlsEngine::Dimpl] {
        for server in [DtlsEngine::OpenSsl, DtlsEngine::Dimpl] {
            connects((client, &a), (server, &b));
        }
    }
    assert_eq!(DtlsEngine::default(), DtlsEngine::OpenSsl);
}

#[test]
fn openssl_takes_an_rsa_peer_in_both_roles() {
    let rsa = rsa_identity();
    let ecdsa = DtlsIdentity::generate().unwrap();
    let ossl = DtlsEngine::OpenSsl;
    connects((ossl, &ecdsa), (ossl, &rsa));
    connects((ossl, &rsa), (ossl, &ecdsa));
    connects((ossl, &rsa), (ossl, &rsa));
    // dimpl cannot sign with RSA: it refuses at once rather than fail mid-handshake.
    let mut e = DtlsEndpoint::with_engine(
        DtlsEngine::Dimpl,
        &rsa,
        true,
        std::slice::from_ref(ecdsa.fingerprint()),
        Instant::now(),
    );
    assert_eq!(
        e.poll_event(),
        Some(DtlsEvent::Failed(DtlsError::Certificate))
    );
    assert_eq!(e.engine(), None);
    assert_eq!(e.poll_transmit(), None);
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn openssl_refuses_a_certificate_that_does_not_match_its_fingerprint() {
    let (a, b) = (DtlsIdentity::generate().unwrap(), rsa_identity());
    let wrong = Fingerprint {
        algorithm: "sha-256".into(),
        hash: vec![0x42; 32],
    };
    for spoil_client_side in [true, false] {
        for other in [DtlsEngine::OpenSsl, DtlsEngine::Dimpl] {
            let now = Instant::now();
            let (c_id, s_id) = if other == DtlsEngine::Dimpl {
                (&a, &a)
            } else {
                (&a, &b)
            };
            // The spoiled side runs OpenSSL and expects the wrong fingerprint.
            let (c_engine, s_engine) = if spoil_client_side {
                (DtlsEngine::OpenSsl, other)
            } else {
                (other, DtlsEngine::OpenSsl)
            };
            let c_expects = if spoil_client_side {
                wrong.clone()
            } else {
                s_id.fingerprint().clone()
            };
            let s_expects = if spoil_client_side {
                c_id.fingerprint().clone()
            } else {
                wrong.clone()
            };
            let mut c = DtlsEndpoint::with_engine(c_engine, c_id, true, &[c_expects], now);
            let mut s = DtlsEndpoint::with_engine(s_engine, s_id, false, &[s_expects], now);
            let (co, so) = shake(&mut c, &mut s, now);
            let what = format!("spoiled client side {spoil_client_side}, other {other:?}");
            let spoiled = if spoil_client_side { &co } else { &so };
            assert_eq!(
                spoiled.failed,
                Some(DtlsError::FingerprintMismatch),
                "{what}"
            );
            assert!(spoiled.keys.is_none(), "{what}");
            assert_eq!(
                if spoil_client_side { &c } else { &s }.poll_timeout(),
                None,
                "{what}: done"
            );
            // The honest side got no keys either (the handshake never finished for it, or it
            // finished first and the alert tells it nothing it must act on).
            if !spoil_client_side {
                assert!(co.keys.is_none() || so.keys.is_none(), "{what}");
            }
        }
    }
}

#[test]
fn garbage_in_the_dtls_range_is_dropped_without_a_panic() {
    let id = DtlsIdentity::generate().unwrap();
    let expected = Fingerprint {
        algorithm: "sha-256".into(),
        hash: vec![0x5a; 32],
    };
    let mut seed = 0x1234_5678_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for client in [true, false] {
        let now = Instant::now();
        let mut e = DtlsEndpoint::with_engine(
            DtlsEngine::OpenSsl,
            &id,
            client,
            std::slice::from_ref(&expected),
            now,
        );
        for i in 0..300u32 {
            let len = (next() % 300) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half look like DTLS 1.2 handshake records: content type 22, version fe fd.
            if i % 2 == 0 && d.len() >= 13 {
                d[..3].copy_from_slice(&[22, 0xfe, 0xfd]);
            } else if let Some(b) = d.first_mut() {
                *b = 20 + *b % 44;
            }
            e.handle_input(now + Duration::from_millis(u64::from(i)), &d);
            e.handle_timeout(now + Duration::from_millis(u64::from(i)));
            while e.poll_transmit().is_some() {}
            while let Some(ev) = e.poll_event() {
                assert!(
                    !matches!(ev, DtlsEvent::Connected(_)),
                    "garbage completed a handshake"
                );
            }
        }
    }
}

#[test]
fn openssl_sends_a_lost_client_hello_again_on_virtual_time() {
    let (a, b) = (
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    );
    let start = Instant::now();
    let ossl = DtlsEngine::OpenSsl;
    let (mut c, mut s) = endpoints((ossl, &a), (ossl, &b), start);
    let mut lost = 0;
    while c.poll_transmit().is_some() {
        lost += 1;
    }
    assert!(lost >= 1, "the ClientHello left at once");
    let due = c.poll_timeout().expect("a retransmission timer");
    assert_eq!(due - start, Duration::from_secs(1));
    // Not before its time; then the same flight again, without waiting for any real clock.
    c.handle_timeout(start + Duration::from_millis(999));
    assert_eq!(c.poll_transmit(), None);
    c.handle_timeout(due);
    let mut resent = 0;
    while let Some(d) = c.poll_transmit() {
        s.handle_input(due, &d);
        resent += 1;
    }
    assert_eq!(resent, lost, "the ClientHello was sent again");
    // The next timer backs off (2 s).
    assert_eq!(c.poll_timeout(), Some(due + Duration::from_secs(2)));
    let (co, so) = shake(&mut c, &mut s, due);
    check_keys(
        &co.keys.expect("client keys"),
        &so.keys.expect("server keys"),
    );
}

/// Runs a handshake on virtual time, dropping the datagrams whose index (in the order both
/// sides sent them) is in `drop`, with both sides' timers driven; returns the outcomes and the
/// virtual time it took and how many datagrams were sent.
fn lossy(
    client: (DtlsEngine, &DtlsIdentity),
    server: (DtlsEngine, &DtlsIdentity),
    drop: &[usize],
) -> (Outcome, Outcome, Duration, usize) {
    let start = Instant::now();
    let (mut c, mut s) = endpoints(client, server, start);
    let (mut co, mut so) = (Outcome::default(), Outcome::default());
    let mut now = start;
    let mut n = 0usize;
    // Bounded in steps and in virtual time (40 s is the handshake's own limit).
    for _ in 0..1000 {
        let mut moved = true;
        while moved {
            moved = false;
            while let Some(d) = c.poll_transmit() {
                if !drop.contains(&n) {
                    s.handle_input(now, &d);
                }
                n += 1;
                moved = true;
            }
            while let Some(d) = s.poll_transmit() {
                if !drop.contains(&n) {
                    c.handle_input(now, &d);
                }
                n += 1;
                moved = true;
            }
        }
        events(&mut c, &mut co);
        events(&mut s, &mut so);
        let settled = |o: &Outcome| o.keys.is_some() || o.failed.is_some();
        if settled(&co) && settled(&so) {
            break;
        }
        let Some(next) = [c.poll_timeout(), s.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        if next - start > Duration::from_secs(45) {
            break;
        }
        now = now.max(next);
        c.handle_timeout(now);
        s.handle_timeout(now);
    }
    (co, so, now - start, n)
}

#[test]
fn openssl_recovers_any_lost_datagram_on_virtual_time() {
    let (a, b) = (DtlsIdentity::generate().unwrap(), rsa_identity());
    let ecdsa_b = DtlsIdentity::generate().unwrap();
    let (o, d) = (DtlsEngine::OpenSsl, DtlsEngine::Dimpl);
    // Each datagram of a clean handshake lost once (every flight, the last one included), then
    // every other one; OpenSSL on both sides (an RSA server), and OpenSSL against dimpl both
    // ways.
    for (client, server) in [
        ((o, &a), (o, &b)),
        ((o, &a), (d, &ecdsa_b)),
        ((d, &a), (o, &ecdsa_b)),
    ] {
        let (.., clean) = lossy(client, server, &[]);
        assert!(clean >= 4, "{clean} datagrams");
        let mut patterns: Vec<Vec<usize>> = (0..clean).map(|i| vec![i]).collect();
        patterns.push((0..clean).step_by(2).collect());
        patterns.push((1..clean).step_by(2).collect());
        eprintln!(
            "{:?} client, {:?} server: {clean} datagrams",
            client.0, server.0
        );
        for drop in &patterns {
            let what = format!(
                "{:?} client, {:?} server, dropped {drop:?}",
                client.0, server.0
            );
            let (co, so, took, _) = lossy(client, server, drop);
            let (Some(ck), Some(sk)) = (co.keys, so.keys) else {
                panic!(
                    "{what}: no keys after {took:?}: {:?} {:?}",
                    co.failed, so.failed
                );
            };
            check_keys(&ck, &sk);
            assert!(took < Duration::from_secs(20), "{what}: {took:?}");
        }
    }
}
