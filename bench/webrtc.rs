//! The cost of a WebRTC-style transport setup in our pure layers (issue 19): a full ICE agent
//! (controlling) and a lite one (a WHIP server's role) check and nominate, then DTLS-SRTP shakes
//! hands and both sides export keys, over an in-memory path with no delay; and the RFC 7983
//! demultiplexer's cost per packet; and the DTLS handshake alone on each engine (OpenSSL, the
//! default; dimpl), ECDSA both sides and, on OpenSSL, against an RSA 2048 peer. Time inside the cores is virtual (ICE paces its checks 50 ms
//! apart, which costs nothing here), so what is measured is the CPU work of a setup: the thread's
//! CPU time and the wall time, p50 and p99 over many setups. No socket: the engine's share
//! (a loopback round trip or two per flight) comes on top once it is wired.
//!
//! Run: `cargo bench --bench webrtc` (release). One line per measure:
//! `NAME n=N cpu_p50_us=.. cpu_p99_us=.. wall_p50_us=.. wall_p99_us=..`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[path = "cpu.rs"]
mod cpu;
#[path = "../tests/support/rsa.rs"]
mod rsa;

use cpu::{percentile, thread_cpu_ns};
use roomkit_media::rtp::srtp::SrtpKeys;
use roomkit_media::webrtc::{
    demux, Demux, DtlsEndpoint, DtlsEngine, DtlsEvent, DtlsIdentity, IceAgent, IceConfig,
};

/// One side: ICE agent, certificate, DTLS endpoint (a client's is made once ICE selected).
struct Side {
    addr: SocketAddr,
    ice: IceAgent,
    dtls: Option<DtlsEndpoint>,
    client: bool,
    keys: Option<SrtpKeys>,
    /// Where DTLS goes before ICE selected a pair (a lite server answers the ClientHello
    /// before the nomination reaches it): the source of the last DTLS datagram.
    dtls_peer: Option<SocketAddr>,
}

fn side(addr: &str, lite: bool, client: bool) -> Side {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut ice = IceAgent::new(IceConfig {
        lite,
        controlling: !lite,
        credentials: IceConfig::random_credentials(),
    });
    ice.add_host_candidate(addr).unwrap();
    Side {
        addr,
        ice,
        dtls: None,
        client,
        keys: None,
        dtls_peer: None,
    }
}

/// One setup from nothing to keys on both sides; returns the virtual time it took.
fn setup(engine: DtlsEngine, a_id: &DtlsIdentity, b_id: &DtlsIdentity) -> Duration {
    let start = Instant::now();
    // The browser-like full agent is the DTLS client (it answered actpass with active).
    let mut a = side("192.0.2.10:50000", false, true);
    let mut b = side("198.51.100.1:7000", true, false);
    let (ca, cb) = (a.ice.local_candidates(), b.ice.local_candidates());
    let (ka, kb) = (
        a.ice.local_credentials().clone(),
        b.ice.local_credentials().clone(),
    );
    a.ice.set_remote(&kb, &cb);
    b.ice.set_remote(&ka, &ca);
    b.dtls = Some(DtlsEndpoint::with_engine(
        engine,
        b_id,
        false,
        &[a_id.fingerprint().clone()],
        start,
    ));
    let mut now = start;
    a.ice.handle_timeout(now);
    b.ice.handle_timeout(now);
    let mut wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
    for _ in 0..10_000 {
        for (s, id, peer_fp) in [(&mut a, a_id, b_id), (&mut b, b_id, a_id)] {
            while let Some(t) = s.ice.poll_transmit() {
                wire.push((t.source, t.destination, t.payload));
            }
            while s.ice.poll_event().is_some() {}
            if s.client && s.dtls.is_none() && s.ice.selected().is_some() {
                s.dtls = Some(DtlsEndpoint::with_engine(
                    engine,
                    id,
                    true,
                    &[peer_fp.fingerprint().clone()],
                    now,
                ));
            }
            if let Some(d) = s.dtls.as_mut() {
                while let Some(e) = d.poll_event() {
                    match e {
                        DtlsEvent::Connected(k) => s.keys = Some(k),
                        other => panic!("setup failed: {other:?}"),
                    }
                }
                let to = s.ice.selected().map(|p| p.remote).or(s.dtls_peer);
                while let Some(bytes) = d.poll_transmit() {
                    let to = to.expect("DTLS with nowhere to go");
                    wire.push((s.addr, to, bytes));
                }
            }
        }
        if a.keys.is_some() && b.keys.is_some() {
            return now - start;
        }
        if wire.is_empty() {
            let next = [
                a.ice.poll_timeout(),
                b.ice.poll_timeout(),
                a.dtls.as_ref().and_then(|d| d.poll_timeout()),
                b.dtls.as_ref().and_then(|d| d.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("something to wait for");
            now = now.max(next);
            for s in [&mut a, &mut b] {
                s.ice.handle_timeout(now);
                if let Some(d) = s.dtls.as_mut() {
                    d.handle_timeout(now);
                }
            }
            continue;
        }
        for (from, to, bytes) in std::mem::take(&mut wire) {
            let s = if to == a.addr { &mut a } else { &mut b };
            match demux(&bytes) {
                Demux::Stun => {
                    s.ice.handle_input(now, from, to, &bytes);
                }
                Demux::Dtls => {
                    s.dtls_peer = Some(from);
                    if let Some(d) = s.dtls.as_mut() {
                        d.handle_input(now, &bytes);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    panic!("setup did not finish");
}

/// A DTLS handshake alone, in memory, client on `c` with identity `a`, server on `s` with `b`.
fn handshake(c: DtlsEngine, s: DtlsEngine, a: &DtlsIdentity, b: &DtlsIdentity) {
    let now = Instant::now();
    let mut client = DtlsEndpoint::with_engine(c, a, true, &[b.fingerprint().clone()], now);
    let mut server = DtlsEndpoint::with_engine(s, b, false, &[a.fingerprint().clone()], now);
    let (mut ck, mut sk) = (false, false);
    for _ in 0..50 {
        while let Some(d) = client.poll_transmit() {
            server.handle_input(now, &d);
        }
        while let Some(d) = server.poll_transmit() {
            client.handle_input(now, &d);
        }
        for (e, done) in [(&mut client, &mut ck), (&mut server, &mut sk)] {
            while let Some(ev) = e.poll_event() {
                match ev {
                    DtlsEvent::Connected(_) => *done = true,
                    other => panic!("handshake failed: {other:?}"),
                }
            }
        }
        if ck && sk {
            return;
        }
    }
    panic!("handshake did not finish");
}

fn report(name: &str, mut cpu: Vec<f64>, mut wall: Vec<f64>) {
    println!(
        "{name} n={} cpu_p50_us={:.0} cpu_p99_us={:.0} wall_p50_us={:.0} wall_p99_us={:.0}",
        cpu.len(),
        percentile(&mut cpu, 0.5) / 1e3,
        percentile(&mut cpu, 0.99) / 1e3,
        percentile(&mut wall, 0.5) / 1e3,
        percentile(&mut wall, 0.99) / 1e3,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    let mut ids = Vec::new();
    for _ in 0..100 {
        let (c0, w0) = (thread_cpu_ns(), Instant::now());
        ids.push(DtlsIdentity::generate().unwrap());
        cpu.push(thread_cpu_ns() - c0);
        wall.push(w0.elapsed().as_nanos() as f64);
    }
    report("certificate", cpu, wall);

    for (engine, name) in [
        (DtlsEngine::OpenSsl, "ice_lite_dtls_setup_openssl"),
        (DtlsEngine::Dimpl, "ice_lite_dtls_setup_dimpl"),
    ] {
        let (mut cpu, mut wall) = (Vec::new(), Vec::new());
        let mut virtual_ms = Vec::new();
        for i in 0..300 {
            let (a, b) = (&ids[i % ids.len()], &ids[(i + 1) % ids.len()]);
            let (c0, w0) = (thread_cpu_ns(), Instant::now());
            let took = setup(engine, a, b);
            cpu.push(thread_cpu_ns() - c0);
            wall.push(w0.elapsed().as_nanos() as f64);
            virtual_ms.push(took.as_secs_f64() * 1e3);
        }
        report(name, cpu, wall);
        println!(
            "{name} virtual_ms_p50={:.0} (ICE pacing on a zero-delay path)",
            percentile(&mut virtual_ms, 0.5)
        );
    }

    // The DTLS handshake alone (both sides' CPU on this thread).
    let (cert, key) = rsa::rsa_certificate("rsa-peer");
    let rsa = DtlsIdentity::from_der(
        &cert.to_der().unwrap(),
        &key.private_key_to_pkcs8().unwrap(),
    )
    .unwrap();
    let (o, d) = (DtlsEngine::OpenSsl, DtlsEngine::Dimpl);
    for (name, c, s, rsa_server) in [
        ("dtls_handshake_openssl_openssl", o, o, false),
        ("dtls_handshake_dimpl_dimpl", d, d, false),
        ("dtls_handshake_openssl_client_dimpl_server", o, d, false),
        (
            "dtls_handshake_openssl_client_rsa_openssl_server",
            o,
            o,
            true,
        ),
    ] {
        let (mut cpu, mut wall) = (Vec::new(), Vec::new());
        for i in 0..200 {
            let a = &ids[i % ids.len()];
            let b = if rsa_server {
                &rsa
            } else {
                &ids[(i + 1) % ids.len()]
            };
            let (c0, w0) = (thread_cpu_ns(), Instant::now());
            handshake(c, s, a, b);
            cpu.push(thread_cpu_ns() - c0);
            wall.push(w0.elapsed().as_nanos() as f64);
        }
        report(name, cpu, wall);
    }

    // The demultiplexer on a mix of what one socket carries.
    let packets: Vec<Vec<u8>> = vec![
        vec![0x00, 0x01, 0x00, 0x00],
        vec![22, 0xfe, 0xfd, 0],
        vec![0x80, 111, 0, 1],
        vec![0x80, 200, 0, 6],
        vec![0x10, 0, 0, 0],
    ];
    const N: usize = 5_000_000;
    let (c0, w0) = (thread_cpu_ns(), Instant::now());
    let mut rtp = 0usize;
    for i in 0..N {
        if let Demux::Rtp(_) = demux(std::hint::black_box(&packets[i % packets.len()])) {
            rtp += 1;
        }
    }
    let (cpu, wall) = (thread_cpu_ns() - c0, w0.elapsed().as_nanos() as f64);
    println!(
        "demux n={N} cpu_ns_per_packet={:.2} wall_ns_per_packet={:.2} (rtp {rtp})",
        cpu / N as f64,
        wall / N as f64
    );
}
