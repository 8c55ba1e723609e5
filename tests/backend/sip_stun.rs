//! Server-reflexive candidates in SIP calls (issue 19), on loopback: the answering backend's
//! STUN server (a responder in the test) says its sockets are seen from a "public" address,
//! which is a socket of the test: the caller's ICE agent checks it, so the candidate was in the
//! answer. The caller's STUN server never answers: the caller waits its bounded budget, offers
//! its host candidate only, and the call connects and keys all the same; the next call does not
//! ask the silent server again (it is left alone for 30 s).
//!
//! The same behind real NATs (namespaces, nftables, coturn) is `tests/interop/nat.rs`.

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roomkit_media::backend::{DialOptions, SipBackendConfig, SipVideoBackend};
use roomkit_media::prelude::*;
use roomkit_media::DtlsSrtpPolicy;
use support::sip::*;

const T: Duration = Duration::from_secs(10);

/// A STUN server on loopback that answers every Binding request with `mapped` (XOR-encoded)
/// and counts the requests; runs until `stop`.
fn responder(
    mapped: SocketAddr,
    stop: Arc<AtomicBool>,
) -> (SocketAddr, std::thread::JoinHandle<u32>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut requests = 0;
        let mut buf = [0u8; 1500];
        // Bounded: 60 s at most.
        for _ in 0..1200 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if n < 20 || buf[..2] != [0x00, 0x01] {
                continue;
            }
            requests += 1;
            let SocketAddr::V4(m) = mapped else {
                unreachable!("v4 only")
            };
            let mut r = vec![0x01, 0x01, 0x00, 0x0c];
            r.extend_from_slice(&buf[4..20]);
            r.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
            r.extend_from_slice(&(m.port() ^ 0x2112).to_be_bytes());
            let cookie = [0x21, 0x12, 0xA4, 0x42];
            let ip = m.ip().octets();
            r.extend((0..4).map(|i| ip[i] ^ cookie[i]));
            let _ = sock.send_to(&r, from);
        }
        requests
    });
    (addr, h)
}

#[test]
fn srflx_from_the_stun_server_is_offered_and_a_silent_server_costs_only_its_budget() {
    // The answerer's "public" address: checks arriving here prove it was a candidate.
    let public = UdpSocket::bind("127.0.0.1:0").unwrap();
    public
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (stun, stun_thread) = responder(public.local_addr().unwrap(), stop.clone());
    // Bound and never read: requests to it go unanswered.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();

    let be = SipVideoBackend::new(SipBackendConfig {
        ice: true,
        dtls_srtp: DtlsSrtpPolicy::Mandatory,
        stun_server: Some(stun),
        ..config(80)
    })
    .unwrap();
    let (tx, calls) = crossbeam_channel::unbounded();
    be.on_call(move |s| {
        let _ = tx.send(s.id);
    });
    start(&be);
    let uac = SipVideoBackend::new(SipBackendConfig {
        local_sip_addr: "127.0.0.1:0".parse().unwrap(),
        local_rtp_ip: [127, 0, 0, 1].into(),
        rtp_port_start: 58200,
        rtp_port_end: 58299,
        ice: true,
        dtls_srtp: DtlsSrtpPolicy::Mandatory,
        stun_server: Some(silent.local_addr().unwrap()),
        ..SipBackendConfig::default()
    })
    .unwrap();
    uac.start().unwrap();

    let dialed = Instant::now();
    let call = dial_ok(
        &uac,
        &format!("sip:room@{}", sip_addr(&be)),
        DialOptions::default(),
    );
    let answered = dialed.elapsed();
    let id = calls.recv_timeout(T).expect("on_call");
    // The caller waited for its silent server (3 requests over 500 ms) before its offer.
    assert!(answered >= Duration::from_millis(450), "{answered:?}");
    eprintln!("sip_stun: dial to answer with a silent STUN server {answered:?}");

    let keyed = |s: &roomkit_media::engine::SessionStats| s.audio.dtls_state == 3;
    assert!(
        wait_until(T, || uac.stats(call).is_ok_and(|s| keyed(&s))
            && be.stats(id).is_ok_and(|s| keyed(&s))),
        "keyed on both sides over the host pair: {:?}",
        uac.stats(call).map(|s| s.audio)
    );
    // The caller's agent checked the answerer's server-reflexive candidate too.
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    let mut checks = 0;
    while checks == 0 && start.elapsed() < T {
        if let Ok((n, _)) = public.recv_from(&mut buf) {
            checks += u32::from(n >= 20 && buf[..2] == [0x00, 0x01]);
        }
    }
    assert!(checks > 0, "no ICE check reached the srflx candidate");

    // Counted: the caller's bindings failed, the answerer's were answered (audio and video).
    assert!(uac.sip_stats().srflx_failed >= 1, "{:?}", uac.sip_stats());
    assert_eq!(uac.sip_stats().srflx_gathered, 0);
    assert!(be.sip_stats().srflx_gathered >= 1, "{:?}", be.sip_stats());
    assert_eq!(be.sip_stats().srflx_failed, 0);

    uac.hangup(call).unwrap();
    assert!(wait_ended(&uac, call, T));

    // The silent server got the first call's requests (3 per socket); a second call within
    // 30 s does not ask it again (host candidates only, counted), and connects.
    let failed_before = uac.sip_stats().srflx_failed;
    let call = dial_ok(
        &uac,
        &format!("sip:room@{}", sip_addr(&be)),
        DialOptions::default(),
    );
    let id = calls.recv_timeout(T).expect("on_call");
    assert!(
        wait_until(T, || uac.stats(call).is_ok_and(|s| keyed(&s))
            && be.stats(id).is_ok_and(|s| keyed(&s))),
        "the second call keyed"
    );
    assert!(uac.sip_stats().srflx_failed > failed_before);
    silent.set_nonblocking(true).unwrap();
    let mut requests = 0;
    while silent.recv_from(&mut buf).is_ok() {
        requests += 1;
    }
    assert!(
        requests % 3 == 0 && (3..=6).contains(&requests),
        "{requests} requests"
    );
    uac.hangup(call).unwrap();
    assert!(wait_ended(&uac, call, T));
    stop.store(true, Ordering::Relaxed);
    // One request per socket answered at once: audio and video of the answerer.
    assert!(stun_thread.join().unwrap() >= 1);
}
