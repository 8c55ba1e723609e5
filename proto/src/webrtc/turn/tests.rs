//! The TURN client against a scripted server on virtual time.

use super::*;

const SERVER: &str = "192.0.2.1:3478";
const PEER: &str = "198.51.100.7:40000";
const RELAYED: &str = "192.0.2.1:50000";
const MAPPED: &str = "203.0.113.9:61000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn key() -> [u8; 16] {
    long_term_key("u", "r", "p")
}

/// The server's answer to `req`, with the request's method and transaction id.
fn reply(req: &[u8], class: Class, attrs: &[(u16, Vec<u8>)], key: Option<&[u8; 16]>) -> Vec<u8> {
    let m = Message::parse(req).expect("the client sent a well-formed request");
    encode(class, m.method, &m.id, attrs, key)
}

fn error(code: u16, reason: &str) -> (u16, Vec<u8>) {
    let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
    v.extend_from_slice(reason.as_bytes());
    (ATTR_ERROR_CODE, v)
}

fn challenge(req: &[u8], nonce: &str) -> Vec<u8> {
    reply(
        req,
        Class::Error,
        &[
            error(401, "Unauthorized"),
            (ATTR_REALM, b"r".to_vec()),
            (ATTR_NONCE, nonce.as_bytes().to_vec()),
        ],
        None,
    )
}

fn allocated(req: &[u8], key: &[u8; 16]) -> Vec<u8> {
    let id = Message::parse(req).unwrap().id;
    reply(
        req,
        Class::Success,
        &[
            (ATTR_XOR_RELAYED_ADDRESS, xor_address(addr(RELAYED), &id)),
            (ATTR_XOR_MAPPED_ADDRESS, xor_address(addr(MAPPED), &id)),
            (ATTR_LIFETIME, 600u32.to_be_bytes().to_vec()),
        ],
        Some(key),
    )
}

/// A client through the 401 challenge: returns it and its authenticated Allocate.
fn challenged(now: Instant) -> (TurnClient, Vec<u8>) {
    let mut c = TurnClient::new(TurnConfig::new(addr(SERVER), "u", "p"), now);
    let first = c.poll_transmit().unwrap();
    let m = Message::parse(&first).unwrap();
    assert_eq!((m.class, m.method), (Class::Request, ALLOCATE));
    assert!(m.integrity_at.is_none() && m.attr(ATTR_USERNAME).is_none());
    assert_eq!(m.attr(ATTR_REQUESTED_TRANSPORT), Some(&[17, 0, 0, 0][..]));
    assert!(c
        .handle_input(now, addr(SERVER), &challenge(&first, "n1"))
        .is_none());
    let second = c.poll_transmit().unwrap();
    let m = Message::parse(&second).unwrap();
    assert_ne!(
        m.id,
        Message::parse(&first).unwrap().id,
        "a new transaction"
    );
    assert_eq!(m.text(ATTR_USERNAME).as_deref(), Some("u"));
    assert_eq!(m.text(ATTR_REALM).as_deref(), Some("r"));
    assert_eq!(m.text(ATTR_NONCE).as_deref(), Some("n1"));
    assert!(m.integrity_ok(&second, &key()), "keyed with MD5(u:r:p)");
    (c, second)
}

fn allocated_client(now: Instant) -> TurnClient {
    let (mut c, req) = challenged(now);
    c.handle_input(now, addr(SERVER), &allocated(&req, &key()));
    assert_eq!(c.state(), TurnState::Allocated);
    c
}

fn permitted_client(now: Instant) -> TurnClient {
    let mut c = allocated_client(now);
    while c.poll_event().is_some() {}
    c.create_permission(addr(PEER).ip(), now);
    let req = c.poll_transmit().unwrap();
    let m = Message::parse(&req).unwrap();
    assert_eq!(m.method, CREATE_PERMISSION);
    // The port of a permission's address is ignored (RFC 8656 §9.1): we write 0.
    let peer = SocketAddr::new(addr(PEER).ip(), 0);
    assert_eq!(
        m.attr(ATTR_XOR_PEER_ADDRESS),
        Some(&xor_address(peer, &m.id)[..])
    );
    assert!(m.integrity_ok(&req, &key()));
    c.handle_input(
        now,
        addr(SERVER),
        &reply(&req, Class::Success, &[], Some(&key())),
    );
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::PermissionCreated(addr(PEER).ip()))
    );
    c
}

/// RFC 5769 §2.4: the sample request with long-term authentication (username "マトリックス",
/// password "TheMatrIX" after SASLprep, realm "example.org"): our encoder writes it byte for
/// byte and our check accepts it, and refuses it with one bit changed.
#[test]
fn rfc_5769_long_term_vector() {
    let vector = hex(concat!(
        "000100602112a44278ad3433c6ad72c029da412e",
        "00060012e3839ee38388e383aae38383e382afe382b90000",
        "0015001c662f2f3439396b39353464364f4c33346f4c394653547679363473",
        "41",
        "0014000b6578616d706c652e6f726700",
        "00080014f67024656dd64a3e02b8e0712e85c9a28ca89666",
    ));
    let key = long_term_key("マトリックス", "example.org", "TheMatrIX");
    let m = Message::parse(&vector).expect("the vector parses");
    assert_eq!((m.class, m.method), (Class::Request, 0x001));
    assert!(m.integrity_ok(&vector, &key));
    let attrs: Vec<(u16, Vec<u8>)> = m.attrs.iter().map(|(t, v)| (*t, v.to_vec())).collect();
    assert_eq!(
        encode(Class::Request, 0x001, &m.id, &attrs, Some(&key)),
        vector
    );
    let mut bad = vector.clone();
    bad[30] ^= 1;
    assert!(!Message::parse(&bad).unwrap().integrity_ok(&bad, &key));
    assert!(!m.integrity_ok(&vector, &long_term_key("マトリックス", "example.org", "x")));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn allocates_permits_and_relays_both_ways() {
    let now = Instant::now();
    let (mut c, req) = challenged(now);
    c.handle_input(now, addr(SERVER), &allocated(&req, &key()));
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Allocated {
            relayed: addr(RELAYED),
            mapped: Some(addr(MAPPED)),
            lifetime: Duration::from_secs(600),
        })
    );
    assert_eq!(c.relayed(), Some(addr(RELAYED)));
    // No permission yet: sending is refused, data from the peer dropped.
    assert_eq!(c.wrap_send(addr(PEER), b"x"), Err(TurnError::NotAllowed));
    let mut c = permitted_client(now);

    let out = c.wrap_send(addr(PEER), b"hello peer").unwrap();
    let m = Message::parse(&out).unwrap();
    assert_eq!((m.class, m.method), (Class::Indication, SEND));
    assert_eq!(
        read_address(m.attr(ATTR_XOR_PEER_ADDRESS).unwrap(), Some(&m.id)),
        Some(addr(PEER))
    );
    assert_eq!(m.attr(ATTR_DATA), Some(&b"hello peer"[..]));

    let id = [7u8; 12];
    let data_ind = |from: &str, payload: &[u8]| {
        encode(
            Class::Indication,
            DATA,
            &id,
            &[
                (ATTR_XOR_PEER_ADDRESS, xor_address(addr(from), &id)),
                (ATTR_DATA, payload.to_vec()),
            ],
            None,
        )
    };
    let ind = data_ind(PEER, b"hello back");
    assert_eq!(
        c.handle_input(now, addr(SERVER), &ind),
        Some((addr(PEER), &b"hello back"[..]))
    );
    // The same from elsewhere than the server, or from a peer without a permission: dropped.
    assert_eq!(c.handle_input(now, addr(PEER), &ind), None);
    let stranger = data_ind("198.51.100.99:1", b"spam");
    assert_eq!(c.handle_input(now, addr(SERVER), &stranger), None);
    let n = c.counters();
    assert_eq!((n.not_from_server, n.no_permission), (1, 1));
}

#[test]
fn wrong_password_fails_with_unauthorized() {
    let now = Instant::now();
    let (mut c, req) = challenged(now);
    c.handle_input(now, addr(SERVER), &challenge(&req, "n2"));
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Failed(TurnError::Unauthorized))
    );
    assert_eq!(c.state(), TurnState::Failed);
    assert_eq!(c.poll_transmit(), None);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn success_with_a_bad_integrity_is_dropped() {
    let now = Instant::now();
    let (mut c, req) = challenged(now);
    let forged = allocated(&req, &long_term_key("u", "r", "guess"));
    c.handle_input(now, addr(SERVER), &forged);
    // Also one without any MESSAGE-INTEGRITY.
    let id = Message::parse(&req).unwrap().id;
    let bare = reply(
        &req,
        Class::Success,
        &[(ATTR_XOR_RELAYED_ADDRESS, xor_address(addr(RELAYED), &id))],
        None,
    );
    c.handle_input(now, addr(SERVER), &bare);
    assert_eq!(c.counters().integrity_failures, 2);
    assert_eq!(c.state(), TurnState::Allocating);
    // The real answer still lands: the transaction was kept.
    c.handle_input(now, addr(SERVER), &allocated(&req, &key()));
    assert_eq!(c.state(), TurnState::Allocated);
}

#[test]
fn stale_nonce_is_retried_with_the_new_one() {
    let now = Instant::now();
    let (mut c, req) = challenged(now);
    let stale = reply(
        &req,
        Class::Error,
        &[
            error(438, "Stale Nonce"),
            (ATTR_REALM, b"r".to_vec()),
            (ATTR_NONCE, b"n2".to_vec()),
        ],
        None,
    );
    c.handle_input(now, addr(SERVER), &stale);
    let again = c.poll_transmit().unwrap();
    let m = Message::parse(&again).unwrap();
    assert_eq!(m.text(ATTR_NONCE).as_deref(), Some("n2"));
    assert!(m.integrity_ok(&again, &key()));
    assert_eq!(c.counters().stale_nonces, 1);
    c.handle_input(now, addr(SERVER), &allocated(&again, &key()));
    assert_eq!(c.state(), TurnState::Allocated);
}

#[test]
fn closing_while_allocating_stops_everything() {
    let now = Instant::now();
    let (mut c, req) = challenged(now);
    c.close(now);
    assert_eq!(c.poll_transmit(), None);
    assert_eq!(c.poll_timeout(), None);
    // The answer that comes late is nobody's.
    c.handle_input(now, addr(SERVER), &allocated(&req, &key()));
    assert_eq!(c.state(), TurnState::Closed);
    assert_eq!(c.relayed(), None);
    assert_eq!(c.counters().unmatched, 1);
}

#[test]
fn other_errors_are_reported_with_their_code() {
    let now = Instant::now();
    let (mut c, req) = challenged(now);
    c.handle_input(
        now,
        addr(SERVER),
        &reply(
            &req,
            Class::Error,
            &[error(486, "Allocation Quota Reached")],
            None,
        ),
    );
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Failed(TurnError::Refused {
            code: 486,
            reason: "Allocation Quota Reached".into()
        }))
    );
}

#[test]
fn retransmits_then_times_out_on_virtual_time() {
    let start = Instant::now();
    let mut c = TurnClient::new(TurnConfig::new(addr(SERVER), "u", "p"), start);
    let first = c.poll_transmit().unwrap();
    let mut now = start;
    let mut sends = 1;
    for _ in 0..20 {
        let Some(t) = c.poll_timeout() else { break };
        now = t;
        c.handle_timeout(now);
        while let Some(again) = c.poll_transmit() {
            assert_eq!(again, first, "the same transaction, byte for byte");
            sends += 1;
        }
    }
    assert_eq!(sends, MAX_SENDS);
    assert_eq!(c.poll_event(), Some(TurnEvent::Failed(TurnError::Timeout)));
    // 0.5 + 1 + 2 + 4 + 8 + 8 + 8 s.
    assert_eq!(now - start, Duration::from_millis(31_500));
    assert_eq!(c.counters().retransmits, (MAX_SENDS - 1) as u64);
}

#[test]
fn refreshes_the_allocation_and_permissions_in_time() {
    let start = Instant::now();
    let mut c = permitted_client(start);
    // Permissions first (4 min), then the allocation (10 min less one).
    let t = c.poll_timeout().unwrap();
    assert_eq!(t - start, Duration::from_secs(240));
    c.handle_timeout(t);
    let req = c.poll_transmit().unwrap();
    assert_eq!(Message::parse(&req).unwrap().method, CREATE_PERMISSION);
    c.handle_input(
        t,
        addr(SERVER),
        &reply(&req, Class::Success, &[], Some(&key())),
    );
    let t = c.poll_timeout().unwrap();
    assert_eq!(t - start, Duration::from_secs(480));
    c.handle_timeout(t);
    let req = c.poll_transmit().unwrap();
    assert_eq!(Message::parse(&req).unwrap().method, CREATE_PERMISSION);
    c.handle_input(
        t,
        addr(SERVER),
        &reply(&req, Class::Success, &[], Some(&key())),
    );
    let t = c.poll_timeout().unwrap();
    assert_eq!(t - start, Duration::from_secs(540));
    c.handle_timeout(t);
    let req = c.poll_transmit().unwrap();
    let m = Message::parse(&req).unwrap();
    assert_eq!(m.method, REFRESH);
    assert_eq!(m.lifetime(), Some(Duration::from_secs(600)));
    assert!(m.integrity_ok(&req, &key()));
    let ok = reply(
        &req,
        Class::Success,
        &[(ATTR_LIFETIME, 100u32.to_be_bytes().to_vec())],
        Some(&key()),
    );
    c.handle_input(t, addr(SERVER), &ok);
    // A short lifetime is refreshed half-way; the next permission refresh comes first.
    assert_eq!(c.poll_timeout().unwrap() - t, Duration::from_secs(50));
    assert_eq!(c.state(), TurnState::Allocated);

    // Close: a Refresh with lifetime 0, and nothing sent through the relay any more.
    c.close(t);
    let req = c.poll_transmit().unwrap();
    assert_eq!(
        Message::parse(&req).unwrap().lifetime(),
        Some(Duration::ZERO)
    );
    assert_eq!(c.wrap_send(addr(PEER), b"x"), Err(TurnError::NotAllowed));
}

#[test]
fn bad_input_is_counted_never_a_panic() {
    let now = Instant::now();
    let (mut c, req) = challenged(now);
    let good = allocated(&req, &key());
    // Every truncation and every one-byte change of a real answer, and some junk.
    for n in 0..good.len() {
        assert_eq!(c.handle_input(now, addr(SERVER), &good[..n]), None);
    }
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x41;
        let _ = c.handle_input(now, addr(SERVER), &bad);
    }
    for junk in [&[0x40u8, 0, 0, 4, 1, 2, 3, 4][..], &[0x80, 96, 0, 1], &[]] {
        assert_eq!(c.handle_input(now, addr(SERVER), junk), None);
    }
    let n = c.counters();
    assert!(n.malformed >= good.len() as u64, "{n:?}");
    assert!(n.unmatched >= 1, "{n:?}");
    // A success for a transaction we never started.
    let mut other = good.clone();
    other[19] ^= 0xff;
    let _ = c.handle_input(now, addr(SERVER), &other);
    assert_eq!(
        c.state(),
        TurnState::Allocating,
        "no forged answer was taken"
    );
    c.handle_input(now, addr(SERVER), &good);
    assert_eq!(c.state(), TurnState::Allocated);
}

#[test]
fn xor_addresses_round_trip_in_both_families() {
    let id = [0x5a; 12];
    for a in ["192.0.2.1:3478", "[2001:db8::1:2]:50000"] {
        let v = xor_address(addr(a), &id);
        assert_eq!(read_address(&v, Some(&id)), Some(addr(a)));
    }
}

/// A scripted TURN server for [`relayed_candidate_carries_ice_dtls_and_media`]: it answers
/// CreatePermission and Refresh, turns Send indications into datagrams from the relayed
/// address, and what reaches the relayed address from a permitted peer into Data indications.
/// What [`ScriptedRelay::serve_client`] makes of a client's datagram.
enum Served {
    /// The server's answer, for the client.
    Answer(Vec<u8>),
    /// A Send indication's payload, sent from the relayed address to this peer.
    ToPeer(SocketAddr, Vec<u8>),
}

struct ScriptedRelay {
    permitted: Vec<IpAddr>,
    sends: u64,
    datas: u64,
}

impl ScriptedRelay {
    /// A datagram from the client: the server's answer, or what the relay sends to a peer.
    fn serve_client(&mut self, req: &[u8]) -> Option<Served> {
        let m = Message::parse(req)?;
        match (m.class, m.method) {
            (Class::Request, CREATE_PERMISSION) => {
                // The one peer of the test (a permission's port is 0, which `read_address`
                // refuses).
                let peer = SocketAddr::new(addr(PEER).ip(), 0);
                if m.attr(ATTR_XOR_PEER_ADDRESS)? != &xor_address(peer, &m.id)[..] {
                    return None;
                }
                self.permitted.push(peer.ip());
                Some(Served::Answer(reply(
                    req,
                    Class::Success,
                    &[],
                    Some(&key()),
                )))
            }
            (Class::Request, REFRESH) => Some(Served::Answer(reply(
                req,
                Class::Success,
                &[(ATTR_LIFETIME, 600u32.to_be_bytes().to_vec())],
                Some(&key()),
            ))),
            (Class::Indication, SEND) => {
                let peer = read_address(m.attr(ATTR_XOR_PEER_ADDRESS)?, Some(&m.id))?;
                if !self.permitted.contains(&peer.ip()) {
                    return None;
                }
                self.sends += 1;
                Some(Served::ToPeer(peer, m.attr(ATTR_DATA)?.to_vec()))
            }
            _ => None,
        }
    }

    /// A datagram from `peer` to the relayed address: the Data indication for the client.
    fn relay_to_client(&mut self, peer: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
        if !self.permitted.contains(&peer.ip()) {
            return None;
        }
        self.datas += 1;
        let id: [u8; 12] = rand::random();
        Some(encode(
            Class::Indication,
            DATA,
            &id,
            &[
                (ATTR_XOR_PEER_ADDRESS, xor_address(peer, &id)),
                (ATTR_DATA, data.to_vec()),
            ],
            None,
        ))
    }
}

/// Issue 19: a transport whose SDP carried a relayed candidate, against a peer with host
/// candidates only, where the two hosts cannot reach each other (every direct datagram is
/// lost): ICE selects the relayed pair, DTLS completes through Send and Data indications, and
/// media goes both ways through the relay, handed back unwrapped with the peer as source.
#[test]
fn relayed_candidate_carries_ice_dtls_and_media() {
    use crate::webrtc::{
        Candidate, DtlsIdentity, IceAgent, IceConfig, IceDtlsParams, IceDtlsTransport, IceParams,
        RelayParams, Route, TransportEvent,
    };
    let a_host = addr("10.0.0.1:5000");
    let b_host = addr(PEER);
    let start = Instant::now();
    let mut client = allocated_client(start);
    while client.poll_event().is_some() {}
    let ids = [
        DtlsIdentity::generate().unwrap(),
        DtlsIdentity::generate().unwrap(),
    ];
    let creds = [
        IceConfig::random_credentials(),
        IceConfig::random_credentials(),
    ];
    let host_cand = |i: usize, at: SocketAddr| {
        IceAgent::new(IceConfig {
            lite: false,
            controlling: i == 0,
            credentials: creds[i].clone(),
        })
        .add_host_candidate(at)
        .unwrap()
    };
    let relayed_cand = Candidate::relayed(addr(RELAYED), a_host, "udp").unwrap();
    let params = |i: usize, host: SocketAddr, remote: Vec<Candidate>, relay| IceDtlsParams {
        ice: Some(IceParams {
            config: IceConfig {
                lite: false,
                controlling: i == 0,
                credentials: creds[i].clone(),
            },
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
    let pa = params(
        0,
        a_host,
        vec![host_cand(1, b_host)],
        Some(RelayParams {
            client,
            base: a_host,
        }),
    );
    let pb = params(1, b_host, vec![host_cand(0, a_host), relayed_cand], None);
    let mut a = IceDtlsTransport::new(&pa, b_host, false, start);
    let mut b = IceDtlsTransport::new(&pb, a_host, false, start);
    let mut server = ScriptedRelay {
        permitted: Vec::new(),
        sends: 0,
        datas: 0,
    };
    let server_addr = addr(SERVER);
    let (mut keyed_a, mut keyed_b) = (false, false);
    let mut now = start;
    // Virtual time, 10 ms steps, 20 s at most; each step's datagrams delivered in rounds.
    for _ in 0..2000 {
        a.handle_timeout(now);
        b.handle_timeout(now);
        for _ in 0..50 {
            let mut moved = false;
            while let Some((to, bytes)) = a.poll_transmit() {
                moved = true;
                if to != server_addr {
                    continue; // A's host cannot reach B.
                }
                match server.serve_client(&bytes) {
                    Some(Served::Answer(answer)) => {
                        let _ = a.handle_datagram(now, server_addr, &answer);
                    }
                    Some(Served::ToPeer(peer, data)) if peer == b_host => {
                        let _ = b.handle_datagram(now, addr(RELAYED), &data);
                    }
                    _ => {}
                }
            }
            while let Some((to, bytes)) = b.poll_transmit() {
                moved = true;
                if to != addr(RELAYED) {
                    continue; // B cannot reach A's host.
                }
                if let Some(ind) = server.relay_to_client(b_host, &bytes) {
                    let _ = a.handle_datagram(now, server_addr, &ind);
                }
            }
            if !moved {
                break;
            }
        }
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
        now += Duration::from_millis(10);
    }
    assert!(keyed_a && keyed_b, "A {:?} B {:?}", a.stats(), b.stats());
    assert!(a.may_send_media() && b.may_send_media());
    assert_eq!(a.stats().selected.map(|p| p.local), Some(addr(RELAYED)));
    assert_eq!(b.media_remote(), Some(addr(RELAYED)));
    assert_eq!(a.media_remote(), Some(b_host));
    assert!(server.sends > 0 && server.datas > 0);

    // B's media to the relayed address reaches A unwrapped, as from B.
    let rtp = [0x80u8, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3];
    let (to, out) = b
        .route_media(b.media_remote().unwrap(), rtp.to_vec())
        .unwrap();
    assert_eq!((to, &out[..]), (addr(RELAYED), &rtp[..]));
    let ind = server.relay_to_client(b_host, &out).unwrap();
    match a.handle_datagram(now, server_addr, &ind) {
        Route::Media { from, data, .. } => assert_eq!((from, data), (b_host, &rtp[..])),
        r => panic!("A routed relayed media as {r:?}"),
    }
    // A's media leaves in a Send indication for the server, and reaches B from the relay.
    let (to, wrapped) = a.route_media(b_host, rtp.to_vec()).unwrap();
    assert_eq!(to, server_addr);
    let Some(Served::ToPeer(peer, data)) = server.serve_client(&wrapped) else {
        panic!("A's media was not a Send indication to B");
    };
    assert_eq!((peer, &data[..]), (b_host, &rtp[..]));
    match b.handle_datagram(now, addr(RELAYED), &data) {
        Route::Media { from, data, .. } => assert_eq!((from, data), (addr(RELAYED), &rtp[..])),
        r => panic!("B routed media as {r:?}"),
    }
}
