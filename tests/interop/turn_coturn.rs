//! Our TURN client (`webrtc::TurnClient`, RFC 8656) against coturn's `turnserver` on loopback:
//! an allocation with long-term credentials, a permission for a peer (a plain UDP socket here),
//! datagrams both ways through the relay, and a wrong password refused.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roomkit_media::webrtc::{TurnClient, TurnConfig, TurnError, TurnEvent, TurnState};

use crate::support::peers::{self, TempDir};

/// A running `turnserver`; dropping it stops it (SIGTERM through `timeout`, bounded wait).
struct Coturn {
    child: Option<Child>,
    addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Coturn {
    /// coturn on 127.0.0.1 with one user `u:p` in realm `r`, UDP only, relaying on loopback
    /// ports taken from a range of its own. None when it is not installed (outside CI).
    fn start() -> Option<Coturn> {
        if !peers::have_peers(&["turnserver"]) {
            return None;
        }
        let dir = TempDir::new("coturn");
        let port = peers::free_udp_port();
        // Relay ports: 200 of them above 40000, placed by our process id so that two test runs
        // at once rarely share them (coturn tries another port when one is taken).
        let min = 40_000 + (std::process::id() % 100) * 200;
        let log = dir.path("turnserver.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new("timeout")
            .args(["-k", "10", "120", "turnserver", "-n"])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            .args(["--min-port", &min.to_string()])
            .args(["--max-port", &(min + 199).to_string()])
            .args(["--lt-cred-mech", "--user", "u:p", "--realm", "r"])
            // coturn refuses loopback peers by default: our peer is on loopback.
            .args([
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
            ])
            .arg("--pidfile")
            .arg(dir.path("turnserver.pid"))
            .arg("--userdb")
            .arg(dir.path("turndb"))
            .args(["--log-file", "stdout", "--simple-log"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start turnserver");
        let c = Coturn {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _dir: dir,
        };
        assert!(
            peers::wait_udp_bound(port, Duration::from_secs(20)),
            "turnserver did not bind {port}:\n{}",
            c.log()
        );
        Some(c)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = peers::wait_bounded(child, Duration::from_secs(15));
        }
    }
}

/// Our client on a real socket: sends what it queues, feeds it what arrives, runs its timers.
struct Driver {
    client: TurnClient,
    sock: UdpSocket,
    events: Vec<TurnEvent>,
    /// Datagrams relayed to us from peers.
    received: Vec<(SocketAddr, Vec<u8>)>,
}

impl Driver {
    fn new(server: SocketAddr, password: &str) -> Driver {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Driver {
            client: TurnClient::new(TurnConfig::new(server, "u", password), Instant::now()),
            sock,
            events: Vec::new(),
            received: Vec::new(),
        }
    }

    /// Runs the client until `done` holds or `limit` passes; returns whether `done` held.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&Driver) -> bool) -> bool {
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while start.elapsed() < limit {
            while let Some(out) = self.client.poll_transmit() {
                self.sock.send_to(&out, self.client.server()).unwrap();
            }
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                if let Some((peer, data)) =
                    self.client.handle_input(Instant::now(), from, &buf[..n])
                {
                    self.received.push((peer, data.to_vec()));
                }
            }
            let now = Instant::now();
            if self.client.poll_timeout().is_some_and(|t| t <= now) {
                self.client.handle_timeout(now);
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if done(self) {
                return true;
            }
        }
        false
    }
}

#[test]
fn coturn_relays_both_ways() {
    let Some(coturn) = Coturn::start() else {
        return;
    };
    let mut d = Driver::new(coturn.addr, "p");
    let allocated = d.run(Duration::from_secs(15), |d| {
        d.client.state() != TurnState::Allocating
    });
    assert!(
        allocated && d.client.state() == TurnState::Allocated,
        "no allocation: {:?}\n{}",
        d.events,
        coturn.log()
    );
    let relayed = d.client.relayed().unwrap();
    assert_eq!(relayed.ip(), coturn.addr.ip());
    assert!(matches!(
        d.events[0],
        TurnEvent::Allocated { mapped: Some(m), .. } if m == d.sock.local_addr().unwrap()
    ));

    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let peer_addr = peer.local_addr().unwrap();
    d.client.create_permission(peer_addr.ip(), Instant::now());
    assert!(
        d.run(Duration::from_secs(15), |d| d
            .client
            .has_permission(peer_addr.ip())),
        "no permission: {:?}\n{}",
        d.events,
        coturn.log()
    );

    // Us → relay → peer: the peer sees the datagrams come from the relayed address.
    const N: usize = 20;
    for i in 0..N {
        let out = d
            .client
            .wrap_send(peer_addr, format!("to peer {i}").as_bytes())
            .unwrap();
        d.sock.send_to(&out, coturn.addr).unwrap();
    }
    let mut at_peer = 0;
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(10);
    while at_peer < N && Instant::now() < deadline {
        if let Ok((n, from)) = peer.recv_from(&mut buf) {
            assert_eq!(
                from, relayed,
                "relayed datagrams come from the relayed address"
            );
            assert!(buf[..n].starts_with(b"to peer "));
            at_peer += 1;
        }
    }
    // Loopback hardly loses anything; the floor leaves room for a loaded machine.
    assert!(at_peer >= N / 2, "{at_peer}/{N} reached the peer");

    // Peer → relay → us, unwrapped from Data indications.
    for i in 0..N {
        peer.send_to(format!("to us {i}").as_bytes(), relayed)
            .unwrap();
    }
    d.run(Duration::from_secs(10), |d| d.received.len() >= N);
    assert!(
        d.received.len() >= N / 2,
        "{}/{N} came back through the relay\n{}",
        d.received.len(),
        coturn.log()
    );
    assert!(d
        .received
        .iter()
        .all(|(from, data)| *from == peer_addr && data.starts_with(b"to us ")));
    let counters = d.client.counters();
    assert_eq!(
        (counters.integrity_failures, counters.malformed),
        (0, 0),
        "{counters:?}"
    );

    d.client.close(Instant::now());
    while let Some(out) = d.client.poll_transmit() {
        d.sock.send_to(&out, coturn.addr).unwrap();
    }
}

#[test]
fn coturn_refuses_a_wrong_password() {
    let Some(coturn) = Coturn::start() else {
        return;
    };
    let mut d = Driver::new(coturn.addr, "not-p");
    d.run(Duration::from_secs(15), |d| {
        d.client.state() != TurnState::Allocating
    });
    assert_eq!(
        d.events,
        vec![TurnEvent::Failed(TurnError::Unauthorized)],
        "{}",
        coturn.log()
    );
    assert_eq!(d.client.relayed(), None);
}

/// Issue 19: two `IceDtlsTransport`s on loopback sockets where the hosts cannot reach each
/// other (this driver drops every datagram between the two host addresses): A offers the
/// relayed candidate coturn allocated for its socket, B host candidates only. ICE selects the
/// relayed pair, DTLS completes through coturn, and media crosses it both ways, handed back
/// unwrapped with the peer as source.
#[test]
fn ice_dtls_transport_connects_through_a_coturn_relay() {
    use roomkit_media::webrtc::{
        Candidate, DtlsIdentity, IceAgent, IceConfig, IceDtlsParams, IceDtlsTransport, IceParams,
        RelayParams, Route, TransportEvent,
    };
    let Some(turn) = Coturn::start() else { return };
    let mut relay = Driver::new(turn.addr, "p");
    assert!(
        relay.run(Duration::from_secs(10), |d| d.client.state()
            == TurnState::Allocated),
        "no allocation: {:?}\n{}",
        relay.events,
        turn.log()
    );
    let relayed = relay.client.relayed().unwrap();
    let sock_a = relay.sock;
    let sock_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_host, b_host) = (sock_a.local_addr().unwrap(), sock_b.local_addr().unwrap());
    for s in [&sock_a, &sock_b] {
        s.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
    }
    let ids = [
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    ];
    let creds = [
        IceConfig::random_credentials(),
        IceConfig::random_credentials(),
    ];
    let config = |i: usize| IceConfig {
        lite: false,
        controlling: i == 0,
        credentials: creds[i].clone(),
    };
    let host_cand = |i: usize, at| IceAgent::new(config(i)).add_host_candidate(at).unwrap();
    let params = |i: usize, host, remote: Vec<Candidate>, relay| IceDtlsParams {
        ice: Some(IceParams {
            config: config(i),
            host_candidates: vec![host],
            srflx_candidates: Vec::new(),
            remote_credentials: creds[1 - i].clone(),
            remote_candidates: remote,
            relay,
        }),
        identity: ids[i].clone(),
        remote_fingerprints: vec![ids[1 - i].fingerprint().clone()],
        dtls_client: i == 0,
    };
    let start = Instant::now();
    let pa = params(
        0,
        a_host,
        vec![host_cand(1, b_host)],
        Some(RelayParams {
            client: relay.client,
            base: a_host,
        }),
    );
    let relayed_cand = Candidate::relayed(relayed, a_host, "udp").unwrap();
    let pb = params(1, b_host, vec![host_cand(0, a_host), relayed_cand], None);
    let mut a = IceDtlsTransport::new(&pa, b_host, false, start);
    let mut b = IceDtlsTransport::new(&pb, a_host, false, start);

    // Sends what both queued (never host to host), then takes what arrived.
    let rtp = [0x80u8, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3];
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    let mut buf = [0u8; 2048];
    type Got = Vec<(SocketAddr, Vec<u8>)>;
    let mut step =
        |a: &mut IceDtlsTransport, b: &mut IceDtlsTransport, got_a: &mut Got, got_b: &mut Got| {
            while let Some((to, bytes)) = a.poll_transmit() {
                if to != b_host {
                    let _ = sock_a.send_to(&bytes, to);
                }
            }
            while let Some((to, bytes)) = b.poll_transmit() {
                if to != a_host {
                    let _ = sock_b.send_to(&bytes, to);
                }
            }
            let now = Instant::now();
            if let Ok((n, from)) = sock_a.recv_from(&mut buf) {
                if let Route::Media { from, data, .. } = a.handle_datagram(now, from, &buf[..n]) {
                    got_a.push((from, data.to_vec()));
                }
            }
            if let Ok((n, from)) = sock_b.recv_from(&mut buf) {
                if let Route::Media { from, data, .. } = b.handle_datagram(now, from, &buf[..n]) {
                    got_b.push((from, data.to_vec()));
                }
            }
            let now = Instant::now();
            for t in [&mut *a, &mut *b] {
                if t.poll_timeout().is_some_and(|d| d <= now) {
                    t.handle_timeout(now);
                }
            }
        };
    let (mut keyed_a, mut keyed_b) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        step(&mut a, &mut b, &mut got_a, &mut got_b);
        while let Some(e) = a.poll_event() {
            keyed_a |= matches!(e, TransportEvent::Keys(_));
        }
        while let Some(e) = b.poll_event() {
            keyed_b |= matches!(e, TransportEvent::Keys(_));
        }
        let selected = a.stats().selected.is_some() && b.stats().selected.is_some();
        if keyed_a && keyed_b && selected && a.may_send_media() && b.may_send_media() {
            break;
        }
    }
    assert!(
        keyed_a && keyed_b,
        "A {:?}\nB {:?}\n{}",
        a.stats(),
        b.stats(),
        turn.log()
    );
    assert_eq!(a.stats().selected.map(|p| p.local), Some(relayed));
    assert_eq!(b.media_remote(), Some(relayed));

    // Media both ways through coturn (a few sends: UDP on a loaded machine may lose one).
    let deadline = Instant::now() + Duration::from_secs(10);
    while (got_a.is_empty() || got_b.is_empty()) && Instant::now() < deadline {
        if let Some((to, out)) = a.route_media(a.media_remote().unwrap(), rtp.to_vec()) {
            assert_eq!(to, turn.addr);
            let _ = sock_a.send_to(&out, to);
        }
        if let Some((to, out)) = b.route_media(b.media_remote().unwrap(), rtp.to_vec()) {
            let _ = sock_b.send_to(&out, to);
        }
        for _ in 0..10 {
            step(&mut a, &mut b, &mut got_a, &mut got_b);
        }
    }
    assert!(got_a.contains(&(b_host, rtp.to_vec())), "A got {got_a:?}");
    assert!(got_b.contains(&(relayed, rtp.to_vec())), "B got {got_b:?}");
}

/// Issue 19 end to end: two SIP backends on loopback with ICE, DTLS-SRTP and coturn as their
/// TURN server; the caller offers its relayed candidates alone (`turn_relay_only`), so its
/// media can only go through coturn. The call keys, audio flows both ways, and the caller's
/// selected local candidate is coturn's relayed address (not its own socket).
#[test]
fn sip_call_media_goes_through_coturn_when_relay_only() {
    use roomkit_media::backend::{CallState, DialOptions, SipBackendConfig, SipVideoBackend};
    use roomkit_media::prelude::*;
    use roomkit_media::DtlsSrtpPolicy;

    let Some(turn) = Coturn::start() else { return };
    const T: Duration = Duration::from_secs(10);
    let cfg = |ports: u16, relay_only: bool| SipBackendConfig {
        local_sip_addr: "127.0.0.1:0".parse().unwrap(),
        local_rtp_ip: [127, 0, 0, 1].into(),
        rtp_port_start: ports,
        rtp_port_end: ports + 99,
        ice: true,
        dtls_srtp: DtlsSrtpPolicy::Mandatory,
        turn_server: Some(turn.addr),
        turn_user: "u".into(),
        turn_password: "p".into(),
        turn_relay_only: relay_only,
        ..SipBackendConfig::default()
    };
    let be = SipVideoBackend::new(cfg(36100, false)).unwrap();
    let (tx, calls) = crossbeam_channel::unbounded();
    be.on_call(move |s| {
        let _ = tx.send(s.id);
    });
    be.start().unwrap();
    let uac = SipVideoBackend::new(cfg(36000, true)).unwrap();
    uac.start().unwrap();
    let uri = format!("sip:room@{}", be.local_sip_addr().unwrap());
    let call = uac.dial(&uri, DialOptions::default()).expect("dial");
    let answered = uac.wait_call(call, T).expect("an answer");
    assert_eq!(answered.state, CallState::Answered, "{answered:?}");
    let id = calls.recv_timeout(T).expect("on_call");

    // Audio both ways every 20 ms until each side has a floor of packets (8 s at most).
    let deadline = Instant::now() + Duration::from_secs(8);
    let got = |s: Result<roomkit_media::engine::SessionStats, _>| {
        s.map(|s| s.audio.packets_received).unwrap_or(0)
    };
    while Instant::now() < deadline && (got(uac.stats(call)) < 10 || got(be.stats(id)) < 10) {
        let _ = uac.send_audio(call, &[0i16; 960]);
        let _ = be.send_audio(id, &[0i16; 960]);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (a, b) = (uac.stats(call).unwrap().audio, be.stats(id).unwrap().audio);
    assert!(
        a.packets_received >= 10 && b.packets_received >= 10,
        "caller {a:?}\nanswerer {b:?}\n{}",
        turn.log()
    );
    assert_eq!((a.dtls_state, b.dtls_state), (3, 3));
    // The caller's pair starts at coturn's relayed address (not one of its own ports), and
    // the answerer sends to that same address.
    let local = a.ice_local.expect("a selected pair");
    assert!(!(36000..36100).contains(&local.port()), "{local}");
    assert_eq!(b.ice_remote, Some(local));
    eprintln!(
        "turn_coturn: relayed call, caller got {} packets, answerer {}",
        a.packets_received, b.packets_received
    );
    uac.hangup(call).unwrap();
}
