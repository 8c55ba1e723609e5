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
