//! ICE + DTLS-SRTP between two of our endpoints on virtual time (issue 19's foundation): each
//! side describes its transport in SDP (`sdp/transport.rs` writes and reads it), the two ICE
//! agents check and nominate over in-memory `netem` paths, the DTLS endpoints shake hands on
//! the selected pair with the fingerprints from the SDP, and the keys they export protect RTP
//! on one side that the other side's SRTP context opens. Also: ICE-lite against a full agent, a
//! wrong fingerprint refused, consent (RFC 7675) expiring on a blackholed path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roomkit_media::netem::{Netem, NetemConfig};
use roomkit_media::rtp::packet::MuxedKind;
use roomkit_media::rtp::srtp::{SrtpKeys, SrtpReceiver, SrtpSender, SrtpSuite};
use roomkit_media::sdp::{
    session_lines, Fingerprint, SessionDescription, SetupRole, TransportAttrs,
};
use roomkit_media::webrtc::{
    demux, Demux, DtlsEndpoint, DtlsError, DtlsEvent, DtlsIdentity, IceAgent, IceConfig,
    IceDtlsParams, IceEvent, IceState, CONSENT_TIMEOUT,
};

#[derive(Clone, Debug)]
struct Datagram {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// One side: its agent, its certificate, its DTLS endpoint once it has one, what it heard.
struct Side {
    addr: SocketAddr,
    ice: IceAgent,
    identity: DtlsIdentity,
    setup: SetupRole,
    dtls: Option<DtlsEndpoint>,
    keys: Option<SrtpKeys>,
    dtls_failed: Option<DtlsError>,
    ice_events: Vec<(Duration, IceEvent)>,
    /// Where DTLS goes until ICE has selected a pair: the source of the last DTLS datagram.
    dtls_peer: Option<SocketAddr>,
    client: bool,
    peer_fingerprints: Vec<Fingerprint>,
}

impl Side {
    fn new(addr: &str, lite: bool, controlling: bool) -> Side {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut ice = IceAgent::new(IceConfig {
            lite,
            controlling,
            credentials: IceConfig::random_credentials(),
        });
        assert!(ice.add_host_candidate(addr).is_some());
        Side {
            addr,
            ice,
            identity: DtlsIdentity::generate().unwrap(),
            setup: SetupRole::ActPass,
            dtls: None,
            keys: None,
            dtls_failed: None,
            ice_events: Vec::new(),
            dtls_peer: None,
            client: false,
            peer_fingerprints: Vec::new(),
        }
    }

    /// Our m-line's transport attributes and the session lines, as text an SDP carries.
    fn describe(&self) -> String {
        let attrs = TransportAttrs {
            ice: Some(self.ice.local_credentials().clone()),
            ice_lite: false,
            candidates: self.ice.local_candidates(),
            end_of_candidates: true,
            fingerprints: vec![self.identity.fingerprint().clone()],
            setup: Some(self.setup),
            mid: Some("0".into()),
        };
        let mut sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n",
            ip = self.addr.ip()
        );
        for line in session_lines(self.ice.is_lite(), &["0".to_string()]) {
            sdp.push_str(&format!("a={line}\r\n"));
        }
        sdp.push_str(&format!(
            "m=audio {} UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-mux\r\n",
            self.addr.port()
        ));
        for line in attrs.media_lines() {
            sdp.push_str(&format!("a={line}\r\n"));
        }
        sdp
    }

    fn target(&self) -> Option<SocketAddr> {
        self.ice.selected().map(|p| p.remote).or(self.dtls_peer)
    }
}

/// Two sides joined by two netem paths, driven on virtual time.
struct Pair {
    start: Instant,
    now: Instant,
    a: Side,
    b: Side,
    a_to_b: Netem<Datagram>,
    b_to_a: Netem<Datagram>,
    /// Set: both paths drop everything (a blackhole).
    cut: Arc<AtomicBool>,
    /// What B's SDP says A's fingerprint is (a test may spoil it).
    spoil_a_fingerprint: bool,
    /// Every datagram either side sent, for the fuzz target's smoke run.
    sent: Vec<Vec<u8>>,
}

impl Pair {
    /// A offers, B answers: each reads the other's SDP (checking what `sdp/transport.rs`
    /// wrote reads back the same), B picks its `a=setup` per RFC 8842.
    fn new(a: Side, mut b: Side, spoil_a_fingerprint: bool) -> Pair {
        let offer = SessionDescription::parse(a.describe().as_bytes()).unwrap();
        let offered = offer.media[0].transport.clone();
        assert_eq!(offer.bundle, vec![vec!["0".to_string()]]);
        assert_eq!(offered.ice_lite, a.ice.is_lite());
        assert_eq!(offered.setup, Some(SetupRole::ActPass));
        assert_eq!(offered.mid.as_deref(), Some("0"));
        assert!(offered.end_of_candidates);
        assert_eq!(offered.candidates.len(), 1);
        b.setup = SetupRole::answer(offered.setup).unwrap();
        let answer = SessionDescription::parse(b.describe().as_bytes()).unwrap();
        let answered = answer.media[0].transport.clone();
        assert_eq!(answered.setup, Some(b.setup));

        let mut a_fps = offered.fingerprints.clone();
        assert_eq!(a_fps, vec![a.identity.fingerprint().clone()]);
        if spoil_a_fingerprint {
            a_fps[0].hash[5] ^= 0x40;
        }
        let mut pair = Pair::joined(a, b);
        pair.spoil_a_fingerprint = spoil_a_fingerprint;
        let start = pair.start;
        pair.a
            .ice
            .set_remote(answered.ice.as_ref().unwrap(), &answered.candidates);
        pair.b
            .ice
            .set_remote(offered.ice.as_ref().unwrap(), &offered.candidates);
        // Each side's DTLS endpoint, with the role its a=setup and the peer's give it. A client
        // starts once ICE has selected a pair (its ClientHello needs somewhere to go).
        let (a_client, b_client) = (
            SetupRole::we_are_client(
                pair.a.setup_answered(answered.setup),
                answered.setup.unwrap(),
            )
            .unwrap(),
            SetupRole::we_are_client(pair.b.setup, offered.setup.unwrap()).unwrap(),
        );
        assert_ne!(a_client, b_client);
        pair.a.dtls_expect(answered.fingerprints.clone(), a_client);
        pair.b.dtls_expect(a_fps, b_client);
        pair.a.ice.handle_timeout(start);
        pair.b.ice.handle_timeout(start);
        pair
    }

    /// A and B joined by two clean 10 ms paths, at virtual time zero.
    fn joined(a: Side, b: Side) -> Pair {
        let start = Instant::now();
        let cut = Arc::new(AtomicBool::new(false));
        let path = |seed| {
            let mut n = Netem::new(NetemConfig::clean(Duration::from_millis(10)), seed);
            let cut = cut.clone();
            n.set_filter(Box::new(move |_: &Datagram| cut.load(Ordering::Relaxed)));
            n
        };
        Pair {
            start,
            now: start,
            a,
            b,
            a_to_b: path(1),
            b_to_a: path(2),
            cut,
            spoil_a_fingerprint: false,
            sent: Vec::new(),
        }
    }

    /// Two sides made from what SDP negotiation gave each (`sdp::NegotiatedTransport::params`):
    /// their agents, candidates, credentials, DTLS roles and fingerprints, as the stream core
    /// takes them.
    fn from_params(a: &IceDtlsParams, b: &IceDtlsParams) -> Pair {
        let mut pair = Pair::joined(Side::from_params(a), Side::from_params(b));
        let start = pair.start;
        pair.a.ice.handle_timeout(start);
        pair.b.ice.handle_timeout(start);
        pair
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Runs until `done` or `limit` of virtual time; bounded in steps too.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        for _ in 0..200_000 {
            if done(self) {
                return true;
            }
            self.flush();
            let next = [
                self.a.ice.poll_timeout(),
                self.b.ice.poll_timeout(),
                self.a.dtls.as_ref().and_then(|d| d.poll_timeout()),
                self.b.dtls.as_ref().and_then(|d| d.poll_timeout()),
                self.a_to_b.poll_timeout(),
                self.b_to_a.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { return done(self) };
            if next - self.start > limit {
                return done(self);
            }
            self.now = self.now.max(next);
            let now = self.now;
            while let Some(d) = self.a_to_b.poll_output(now) {
                deliver(&mut self.b, now, d);
            }
            while let Some(d) = self.b_to_a.poll_output(now) {
                deliver(&mut self.a, now, d);
            }
            for side in [&mut self.a, &mut self.b] {
                side.ice.handle_timeout(now);
                if let Some(d) = side.dtls.as_mut() {
                    d.handle_timeout(now);
                }
            }
        }
        panic!("the simulation did not settle in its step bound");
    }

    /// Sends what both sides queued and takes their events.
    fn flush(&mut self) {
        let now = self.now;
        let start = self.start;
        let sent = &mut self.sent;
        for (side, path) in [
            (&mut self.a, &mut self.a_to_b),
            (&mut self.b, &mut self.b_to_a),
        ] {
            while let Some(t) = side.ice.poll_transmit() {
                sent.push(t.payload.clone());
                path.handle_input(
                    now,
                    Datagram {
                        from: t.source,
                        to: t.destination,
                        bytes: t.payload,
                    },
                );
            }
            while let Some(e) = side.ice.poll_event() {
                side.ice_events.push((now - start, e));
            }
            side.start_dtls_client(now);
            if let Some(d) = side.dtls.as_mut() {
                while let Some(e) = d.poll_event() {
                    match e {
                        DtlsEvent::Connected(keys) => side.keys = Some(keys),
                        DtlsEvent::Failed(e) => side.dtls_failed = Some(e),
                        DtlsEvent::Closed => {}
                    }
                }
            }
            let target = side.target();
            if let (Some(d), Some(to)) = (side.dtls.as_mut(), target) {
                while let Some(bytes) = d.poll_transmit() {
                    sent.push(bytes.clone());
                    path.handle_input(
                        now,
                        Datagram {
                            from: side.addr,
                            to,
                            bytes,
                        },
                    );
                }
            }
        }
    }
}

impl Side {
    /// A side from negotiated parameters (ICE required here: the host candidate is its
    /// address).
    fn from_params(p: &IceDtlsParams) -> Side {
        let ice_params = p.ice.as_ref().expect("ICE was negotiated");
        let addr = ice_params.host_candidates[0];
        let mut ice = IceAgent::new(ice_params.config.clone());
        assert!(ice.add_host_candidate(addr).is_some());
        ice.set_remote(
            &ice_params.remote_credentials,
            &ice_params.remote_candidates,
        );
        let mut side = Side {
            addr,
            ice,
            identity: p.identity.clone(),
            setup: if p.dtls_client {
                SetupRole::Active
            } else {
                SetupRole::Passive
            },
            dtls: None,
            keys: None,
            dtls_failed: None,
            ice_events: Vec::new(),
            dtls_peer: None,
            client: false,
            peer_fingerprints: Vec::new(),
        };
        side.dtls_expect(p.remote_fingerprints.clone(), p.dtls_client);
        side
    }

    /// The role A ends up with once B answered (A offered actpass).
    fn setup_answered(&mut self, answer: Option<SetupRole>) -> SetupRole {
        self.setup = match answer {
            Some(SetupRole::Active) => SetupRole::Passive,
            _ => SetupRole::Active,
        };
        self.setup
    }

    /// Our DTLS role and the peer's fingerprints; a server's endpoint is made at once.
    fn dtls_expect(&mut self, fingerprints: Vec<Fingerprint>, client: bool) {
        self.client = client;
        self.peer_fingerprints = fingerprints;
        if !client {
            self.dtls = Some(DtlsEndpoint::new(
                &self.identity,
                false,
                &self.peer_fingerprints,
                Instant::now(),
            ));
        }
    }

    /// A client's endpoint (and its ClientHello) once ICE has selected a pair.
    fn start_dtls_client(&mut self, now: Instant) {
        if self.client && self.dtls.is_none() && self.ice.selected().is_some() {
            self.dtls = Some(DtlsEndpoint::new(
                &self.identity,
                true,
                &self.peer_fingerprints,
                now,
            ));
        }
    }
}

/// A datagram arriving at `side`, handed on by its first byte (RFC 7983).
fn deliver(side: &mut Side, now: Instant, d: Datagram) {
    assert_eq!(d.to, side.addr);
    match demux(&d.bytes) {
        Demux::Stun => {
            side.ice.handle_input(now, d.from, d.to, &d.bytes);
        }
        Demux::Dtls => {
            side.dtls_peer = Some(d.from);
            if let Some(dtls) = side.dtls.as_mut() {
                dtls.handle_input(now, &d.bytes);
            }
        }
        Demux::Rtp(_) | Demux::Other => panic!("nothing but STUN and DTLS is sent here"),
    }
}

/// An RTP packet: version 2, PT 111, the given sequence number, SSRC 0x01020304.
fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 111];
    p.extend(seq.to_be_bytes());
    p.extend(960u32.wrapping_mul(u32::from(seq)).to_be_bytes());
    p.extend(0x0102_0304u32.to_be_bytes());
    p.extend(b"twenty ms of opus, or so");
    p
}

/// The keys each side exported open what the other side protects, both ways.
pub(crate) fn check_keys(a: &SrtpKeys, b: &SrtpKeys) {
    assert_eq!(a.send, b.recv);
    assert_eq!(a.recv, b.send);
    assert_ne!(a.send, a.recv);
    let mut a_tx = SrtpSender::new(&a.send).unwrap();
    let mut b_rx = SrtpReceiver::new(&b.recv).unwrap();
    let mut b_tx = SrtpSender::new(&b.send).unwrap();
    let mut a_rx = SrtpReceiver::new(&a.recv).unwrap();
    for seq in 1..=3 {
        let srtp = a_tx.protect_rtp(&rtp(seq)).unwrap();
        assert_ne!(srtp[12..], rtp(seq)[12..], "the payload is encrypted");
        assert_eq!(demux(&srtp), Demux::Rtp(MuxedKind::Rtp));
        assert_eq!(b_rx.unprotect_rtp(&srtp).unwrap(), rtp(seq));
        let back = b_tx.protect_rtp(&rtp(seq + 100)).unwrap();
        assert_eq!(a_rx.unprotect_rtp(&back).unwrap(), rtp(seq + 100));
    }
    // Our own key does not open what we sent: the two directions are keyed apart.
    let mut wrong = SrtpReceiver::new(&a.recv).unwrap();
    let srtp = a_tx.protect_rtp(&rtp(9)).unwrap();
    assert!(wrong.unprotect_rtp(&srtp).is_err());
}

fn connected(p: &Pair) -> bool {
    p.a.keys.is_some() && p.b.keys.is_some()
}

#[test]
fn full_agents_connect_and_export_matching_srtp_keys() {
    let a = Side::new("10.0.0.1:5000", false, true);
    let b = Side::new("10.0.0.2:6000", false, false);
    let mut p = Pair::new(a, b, false);
    assert!(p.run_until(Duration::from_secs(10), connected), "no keys");
    let took = p.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?} of virtual time");
    let (ka, kb) = (p.a.keys.clone().unwrap(), p.b.keys.clone().unwrap());
    check_keys(&ka, &kb);
    // Both DTLS engines prefer AES-256-GCM; our SRTP layer has it for DTLS-SRTP.
    assert_eq!(ka.suite(), SrtpSuite::AeadAes256Gcm);
    // Both agents selected the same pair, seen from each end.
    let (sa, sb) = (p.a.ice.selected().unwrap(), p.b.ice.selected().unwrap());
    assert_eq!((sa.local, sa.remote), (sb.remote, sb.local));
    assert_eq!(p.a.ice.state(), IceState::Connected);
    assert!(p.a.ice.may_send() && p.b.ice.may_send());
    // B answered actpass with active: B is the DTLS client.
    assert!(p.b.dtls.as_ref().unwrap().is_client());
    assert!(!p.a.dtls.as_ref().unwrap().is_client());
    assert!(p.a.ice.counters().accepted > 0);
    assert_eq!(p.a.ice.counters().malformed, 0);
}

/// What our SDP negotiation agrees (issue 19: `sdp::build_offer`, `answer`, `parse_answer`)
/// is enough for both sides to connect: the parameters of each stream, audio and video, run
/// the agents and handshakes to matching keys. Full against full (a SIP call), and a full
/// offerer against a lite answerer that answers `actpass` with `passive` (a WHIP server).
#[test]
fn negotiated_params_connect_every_stream() {
    use roomkit_media::sdp::{
        answer, build_offer, parse_answer, AnswerConfig, DtlsSrtpPolicy, IcePolicy, OfferConfig,
    };
    for (lite, answer_setup) in [(false, SetupRole::Active), (true, SetupRole::Passive)] {
        let (id_a, id_b) = (
            DtlsIdentity::generate().unwrap(),
            DtlsIdentity::generate().unwrap(),
        );
        let mut oc = OfferConfig::new("10.0.0.1".parse().unwrap(), 5000, 5002);
        oc.local.dtls_srtp = DtlsSrtpPolicy::Mandatory;
        oc.local.dtls_fingerprint = Some(id_a.fingerprint().clone());
        oc.local.ice = IcePolicy::On;
        let offer = build_offer(&oc);
        let mut ac = AnswerConfig::new("10.0.0.2".parse().unwrap(), 6000, 6002);
        ac.local.dtls_srtp = DtlsSrtpPolicy::Mandatory;
        ac.local.dtls_fingerprint = Some(id_b.fingerprint().clone());
        ac.local.ice = if lite { IcePolicy::Lite } else { IcePolicy::On };
        ac.local.dtls_answer_setup = answer_setup;
        let ans = answer(
            &SessionDescription::parse(offer.sdp.as_bytes()).unwrap(),
            &ac,
        )
        .unwrap();
        let neg = parse_answer(&offer, ans.sdp.as_bytes()).unwrap();
        let streams = [
            (
                neg.audio.transport.clone(),
                ans.negotiation.audio.transport.clone(),
            ),
            (
                neg.video.as_ref().and_then(|v| v.transport.clone()),
                ans.negotiation
                    .video
                    .as_ref()
                    .and_then(|v| v.transport.clone()),
            ),
        ];
        for (ta, tb) in streams {
            let (pa, pb) = (ta.unwrap().params(&id_a), tb.unwrap().params(&id_b));
            let mut p = Pair::from_params(&pa, &pb);
            assert_eq!(p.b.ice.is_lite(), lite);
            assert!(
                p.run_until(Duration::from_secs(10), connected),
                "lite {lite}: no keys"
            );
            check_keys(p.a.keys.as_ref().unwrap(), p.b.keys.as_ref().unwrap());
            let b_client = answer_setup == SetupRole::Active;
            assert_eq!(p.b.dtls.as_ref().unwrap().is_client(), b_client);
            assert_eq!(p.a.dtls.as_ref().unwrap().is_client(), !b_client);
        }
    }
}

#[test]
fn lite_server_and_full_client_connect() {
    // A browser (full, controlling) publishing to a WHIP server (lite, controlled).
    let a = Side::new("192.0.2.10:50000", false, true);
    let b = Side::new("198.51.100.1:7000", true, false);
    let mut p = Pair::new(a, b, false);
    assert!(p.b.ice.is_lite() && !p.b.ice.controlling());
    assert!(p.run_until(Duration::from_secs(10), connected), "no keys");
    check_keys(p.a.keys.as_ref().unwrap(), p.b.keys.as_ref().unwrap());
    assert_eq!(p.b.ice.selected().unwrap().remote, p.a.addr);
    // The lite side sent no checks of its own: only answers.
    assert!(p.b.ice.counters().accepted > 0);
}

#[test]
fn a_certificate_that_does_not_match_its_fingerprint_is_refused() {
    let a = Side::new("10.0.0.1:5000", false, true);
    let b = Side::new("10.0.0.2:6000", false, false);
    let mut p = Pair::new(a, b, true);
    assert!(p.spoil_a_fingerprint);
    // B is the DTLS client and checks A's certificate against the spoiled fingerprint.
    let settled = p.run_until(Duration::from_secs(20), |p| p.b.dtls_failed.is_some());
    assert!(settled, "B did not refuse");
    assert_eq!(p.b.dtls_failed, Some(DtlsError::FingerprintMismatch));
    assert!(p.b.keys.is_none());
    // A never completes: B stopped before its Finished.
    let _ = p.run_until(Duration::from_secs(30), |p| p.a.keys.is_some());
    assert!(
        p.a.keys.is_none(),
        "A must not get keys from a refused handshake"
    );
}

#[test]
fn consent_expires_when_the_path_is_blackholed() {
    for b_lite in [false, true] {
        let a = Side::new("10.0.0.1:5000", false, true);
        let b = Side::new("10.0.0.2:6000", b_lite, false);
        let mut p = Pair::new(a, b, false);
        assert!(p.run_until(Duration::from_secs(10), connected), "no keys");
        // Consent holds over a quiet minute while checks are answered.
        let quiet = p.elapsed() + Duration::from_secs(60);
        let _ = p.run_until(quiet, |_| false);
        assert!(p.a.ice.may_send() && p.b.ice.may_send(), "lite: {b_lite}");
        p.cut.store(true, Ordering::Relaxed);
        let cut_at = p.elapsed();
        let expired = |s: &Side| {
            s.ice_events
                .iter()
                .find(|(_, e)| *e == IceEvent::ConsentExpired)
                .map(|(t, _)| *t)
        };
        let _ = p.run_until(cut_at + Duration::from_secs(45), |p| {
            expired(&p.a).is_some() && expired(&p.b).is_some()
        });
        for (name, side) in [("A", &p.a), ("B", &p.b)] {
            let at =
                expired(side).unwrap_or_else(|| panic!("{name} (lite B: {b_lite}): no expiry"));
            let after = at - cut_at;
            // The last consent came at most one check interval before the cut.
            assert!(
                after <= CONSENT_TIMEOUT + Duration::from_secs(1)
                    && after >= CONSENT_TIMEOUT - Duration::from_secs(10),
                "{name} (lite B: {b_lite}): expired {after:?} after the cut"
            );
            assert!(!side.ice.may_send(), "{name}: media must stop");
        }
    }
}

/// The `webrtc` fuzz target's checks on the datagrams of a real handshake, each sent whole,
/// truncated and with bytes flipped (a seeded generator: the run is the same every time).
#[test]
fn fuzz_target_smoke_on_real_handshake_datagrams() {
    let a = Side::new("10.0.0.1:5000", false, true);
    let b = Side::new("10.0.0.2:6000", false, false);
    let mut p = Pair::new(a, b, false);
    assert!(p.run_until(Duration::from_secs(10), connected), "no keys");
    let seeds: Vec<Vec<u8>> = p.sent.iter().filter(|d| d.len() < 256).cloned().collect();
    assert!(seeds.iter().any(|d| demux(d) == Demux::Stun));
    assert!(seeds.iter().any(|d| demux(d) == Demux::Dtls));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300 {
        let mut input = vec![round as u8];
        for _ in 0..3 {
            let mut d = seeds[next() as usize % seeds.len()].clone();
            match next() % 3 {
                0 => {}
                1 => d.truncate(next() as usize % (d.len() + 1)),
                _ => {
                    let at = next() as usize % d.len().max(1);
                    if let Some(x) = d.get_mut(at) {
                        *x ^= (next() as u8) | 1;
                    }
                }
            }
            input.push(d.len() as u8);
            input.extend(d);
        }
        crate::fuzz_support::webrtc::datagrams(&input);
    }
}
