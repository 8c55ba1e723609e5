//! The user agent core on virtual time, without sockets: two cores calling each other through an
//! in-memory network (with loss), and one core against hand-written peers (a UAS that rings,
//! challenges, redirects or never answers; a registrar; a record-routing proxy).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::call::MEDIA_LEFT_GRACE;
use super::command::{Command, DialRequest, RegisterRequest};
use super::events::{
    CallDirectory, CallProgress, CallState, RegistrationEvent, SipCounters, SipEvent,
};
use super::host::{FakeHostState, FakeMediaHost, HostCall, MediaError};
use super::state::{SipCore, SipHooks};
use crate::backend::sip_config::SipBackendConfig;
use crate::engine::{EndReason, Outbox, SessionId, SipPeer};
use crate::frame::DtmfEvent;
use crate::netem::{DropFilter, Netem, NetemConfig};
use crate::sdp::{answer, AnswerConfig, SessionDescription};
use crate::sip::auth::{AuthOutcome, Credentials, DigestAuthenticator};
use crate::sip::transaction::Timers;
use crate::sip::{
    parse, ConnId, Method, RequestBuilder, ResponseBuilder, SipMessage, SipRng, SipTransportKind,
};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One user agent core with a fake media host, and what it said.
struct Ua {
    core: SipCore,
    host: Arc<Mutex<FakeHostState>>,
    dir: Arc<CallDirectory>,
    counters: Arc<SipCounters>,
    addr: SocketAddr,
    /// What messages arrive on: UDP datagrams, or connection 1 of a TCP/TLS link.
    link: SipTransportKind,
    out: Outbox,
    events: Vec<SipEvent>,
}

impl Ua {
    fn new(port: u16, tune: impl FnOnce(&mut SipBackendConfig)) -> Ua {
        let mut cfg = SipBackendConfig {
            local_sip_addr: addr(port),
            local_rtp_ip: [127, 0, 0, 1].into(),
            ..SipBackendConfig::default()
        };
        tune(&mut cfg);
        let (host, state) = FakeMediaHost::new(64);
        let dir = Arc::new(CallDirectory::default());
        let counters = Arc::new(SipCounters::default());
        Ua {
            core: SipCore::new(
                cfg,
                true,
                Box::new(host),
                Arc::new(SipHooks::default()),
                addr(port),
                SipRng::seeded(u64::from(port)),
            ),
            host: state,
            dir,
            counters,
            addr: addr(port),
            link: SipTransportKind::Udp,
            out: Outbox::default(),
            events: Vec::new(),
        }
    }

    fn drain_events(&mut self) {
        while let Some(u) = self.core.poll_update() {
            self.dir.apply(&u);
            self.counters.apply(&u);
        }
        while let Some(e) = self.core.poll_event() {
            self.events.push(e);
        }
    }

    /// Makes messages arrive on connection 1 of a `transport` link, and has the core name
    /// `port` as where it listens for that transport.
    fn over(&mut self, transport: SipTransportKind, port: u16) {
        self.link = transport;
        self.core.listen_on(transport, port);
    }

    fn recv(&mut self, data: &[u8], from: SocketAddr, now: Instant) {
        let from = match self.link {
            SipTransportKind::Udp => SipPeer::udp(from),
            t => SipPeer::on_conn(from, t, ConnId(1)),
        };
        self.core.handle_datagram(data, from, now, &mut self.out);
        self.drain_events();
    }

    fn cmd(&mut self, cmd: Command, now: Instant) {
        self.core.handle_command(cmd, now, &mut self.out);
        self.drain_events();
    }

    fn tick(&mut self, now: Instant) {
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now, &mut self.out);
            self.drain_events();
        }
    }

    /// What the core sent since the last call, parsed, with its destination.
    fn sent(&mut self) -> Vec<(SipMessage, SocketAddr)> {
        self.out
            .drain()
            .map(|(d, to)| (parse(&d).expect("we send valid SIP"), to.addr))
            .collect()
    }

    /// The progress events of dialed calls so far.
    fn progress(&self) -> Vec<CallProgress> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SipEvent::CallState(_, p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    fn states(&self) -> Vec<CallState> {
        self.progress().iter().map(|p| p.state).collect()
    }

    fn host_calls(&self) -> Vec<HostCall> {
        self.host.lock().calls.clone()
    }

    fn live_media(&self) -> usize {
        self.host.lock().live.len()
    }

    fn reserved(&self) -> usize {
        self.host.lock().reserved.len()
    }
}

fn dial_to(session: SessionId, target: &str, hop: SocketAddr) -> DialRequest {
    DialRequest {
        session,
        call_id: format!("{session}@test"),
        target: target.to_string(),
        from_uri: String::new(),
        display_name: Some("Caller \"One\"".into()),
        contact_user: "alice".into(),
        next_hop: SipPeer::udp(hop),
        route: None,
        credentials: Some(Credentials::new("alice", "secret")),
        headers: vec![("X-Room-ID".into(), "room-7".into())],
        video: true,
        ring_timeout: Duration::from_secs(30),
        room_id: "room-7".into(),
        audio_codecs: Vec::new(),
    }
}

/// The network between two cores: the crate's impairment model once per direction, with no
/// delay and no random loss, losing only what a test aims at with a drop filter (which sees the
/// parsed message). It keeps what `a` sent to `b`, lost or not, for tests that look at it.
struct Link {
    /// `a` → `b`.
    ab: Netem<Vec<u8>>,
    /// `b` → `a`.
    ba: Netem<Vec<u8>>,
    /// What `a` sent to `b`.
    from_a: Vec<SipMessage>,
    /// Where each message each side sent was meant to go, in order.
    dests_a: Vec<SipPeer>,
    dests_b: Vec<(SipMessage, SipPeer)>,
}

impl Link {
    fn new(ab: Option<DropFilter<Vec<u8>>>, ba: Option<DropFilter<Vec<u8>>>) -> Link {
        let path = |filter: Option<DropFilter<Vec<u8>>>| {
            let mut p = Netem::new(NetemConfig::clean(Duration::ZERO), 0);
            if let Some(f) = filter {
                p.set_filter(f);
            }
            p
        };
        Link {
            ab: path(ab),
            ba: path(ba),
            from_a: Vec::new(),
            dests_a: Vec::new(),
            dests_b: Vec::new(),
        }
    }
}

/// A drop filter losing every message `pick` chooses.
fn lose(mut pick: impl FnMut(&SipMessage) -> bool + Send + 'static) -> Option<DropFilter<Vec<u8>>> {
    Some(Box::new(move |d: &Vec<u8>| pick(&parse(d).unwrap())))
}

/// A drop filter losing the first message `pick` chooses, and no other.
fn lose_first(
    mut pick: impl FnMut(&SipMessage) -> bool + Send + 'static,
) -> Option<DropFilter<Vec<u8>>> {
    let mut done = false;
    lose(move |m| {
        let hit = !done && pick(m);
        done |= hit;
        hit
    })
}

/// Carries messages between two cores through `link` until both are quiet.
fn pump(a: &mut Ua, b: &mut Ua, now: Instant, link: &mut Link) {
    for _ in 0..100 {
        let from_a: Vec<_> = a.out.drain().collect();
        let from_b: Vec<_> = b.out.drain().collect();
        if from_a.is_empty() && from_b.is_empty() {
            return;
        }
        for (d, to) in from_a {
            let m = parse(&d).unwrap();
            link.dests_a.push(to);
            if to.addr == b.addr {
                link.from_a.push(m);
                link.ab.handle_input(now, d);
            }
        }
        for (d, to) in from_b {
            link.dests_b
                .push((parse(&d).expect("b sends valid SIP"), to));
            if to.addr == a.addr {
                link.ba.handle_input(now, d);
            }
        }
        while let Some(d) = link.ab.poll_output(now) {
            b.recv(&d, a.addr, now);
        }
        while let Some(d) = link.ba.poll_output(now) {
            a.recv(&d, b.addr, now);
        }
    }
    panic!("the two cores never went quiet");
}

/// Runs both cores' timers up to `until`, carrying messages as they go.
fn run(a: &mut Ua, b: &mut Ua, now: &mut Instant, until: Instant, link: &mut Link) {
    pump(a, b, *now, link);
    loop {
        let next = [a.core.poll_timeout(), b.core.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= until => {
                *now = t.max(*now);
                a.tick(*now);
                b.tick(*now);
                pump(a, b, *now, link);
            }
            _ => break,
        }
    }
    *now = until.max(*now);
}

/// [`run`] for `d` from now.
fn run_for(a: &mut Ua, b: &mut Ua, now: &mut Instant, d: Duration, link: &mut Link) {
    let until = *now + d;
    run(a, b, now, until, link);
}

/// A link that loses nothing.
fn keep_all() -> Link {
    Link::new(None, None)
}

/// The answer a scripted UAS gives to an INVITE's offer.
fn sdp_answer(invite: &SipMessage, port: u16) -> String {
    let offer = SessionDescription::parse(invite.body()).unwrap();
    let mut cfg = AnswerConfig::new([127, 0, 0, 1].into(), port, port + 2);
    cfg.local.session_id = 77;
    answer(&offer, &cfg).unwrap().sdp
}

/// A scripted response to `req`.
fn reply(
    req: &SipMessage,
    status: u16,
    tag: Option<&str>,
    extra: &[(&str, &str)],
    sdp: Option<&str>,
) -> Vec<u8> {
    let mut b = ResponseBuilder::new(req.echo(), status);
    if let Some(t) = tag {
        b = b.to_tag(t);
    }
    for (n, v) in extra {
        b = b.header(n, v);
    }
    if let Some(s) = sdp {
        b = b.body("application/sdp", s.as_bytes());
    }
    b.build()
}

#[test]
fn two_cores_call_each_other_through_loss() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Ua::new(5061, |_| {});
    let mut b = Ua::new(5062, |_| {});
    let session = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(session, "sip:bob@127.0.0.1:5062", b.addr))),
        now,
    );
    // The first INVITE and the first 200 are lost: timer A and the 2xx retransmission recover.
    let mut lossy = Link::new(
        lose_first(|m| m.method() == &Method::Invite),
        lose_first(|m| m.status() == Some(200)),
    );
    run(
        &mut a,
        &mut b,
        &mut now,
        t0 + Duration::from_secs(5),
        &mut lossy,
    );
    assert_eq!((lossy.ab.stats().dropped, lossy.ba.stats().dropped), (1, 1));
    assert_eq!(
        a.states(),
        [CallState::Trying, CallState::Ringing, CallState::Answered],
        "{:?}",
        a.progress()
    );
    let incoming = b
        .events
        .iter()
        .find_map(|e| match e {
            SipEvent::Call(info) => Some(info.clone()),
            _ => None,
        })
        .expect("b announced the call");
    assert_eq!(incoming.metadata["room_id"], "room-7");
    assert_eq!(incoming.metadata["caller_display_name"], "Caller \"One\"");
    assert_eq!(incoming.metadata["has_video"], "true");
    assert_eq!((a.live_media(), b.live_media()), (1, 1));
    assert_eq!(a.reserved(), 0, "the reservation became the session");
    assert!(a.dir.contains(session));
    // Both sides agree on each other's ports: what a's session sends to is b's port.
    let a_remote = match a
        .host_calls()
        .iter()
        .find(|c| matches!(c, HostCall::Start { .. }))
    {
        Some(HostCall::Start { has_video, .. }) => *has_video,
        _ => false,
    };
    assert!(a_remote, "video on the dialed call");

    // a hangs up: BYE (retransmitted once lost), b ends the call.
    let mut lossy = Link::new(lose_first(|m| m.method() == &Method::Bye), None);
    a.cmd(Command::Hangup(session), now);
    run_for(&mut a, &mut b, &mut now, Duration::from_secs(5), &mut lossy);
    assert_eq!(lossy.ab.stats().dropped, 1, "the first BYE was lost");
    assert_eq!((a.live_media(), b.live_media()), (0, 0));
    assert_eq!(a.core.call_count() + b.core.call_count(), 0);
    assert_eq!(a.states().last(), Some(&CallState::Ended));
    assert_eq!(a.counters.snapshot().byes_answered, 1);
    assert!(!a.dir.contains(session));
    // Every transaction winds down.
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(60),
        &mut keep_all(),
    );
    assert_eq!(a.core.transaction_count() + b.core.transaction_count(), 0);
    assert_eq!(a.core.poll_timeout(), None);
}

/// Setup time is measured on the core's clock: an incoming call from its INVITE to our 200
/// (here held back by `answer_after`), a dialed one from `dial` to the 2xx (here one lost
/// INVITE, so timer A's 500 ms retransmission is part of it).
#[test]
fn call_setup_time_is_measured_on_virtual_time_both_ways() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Ua::new(5081, |_| {});
    let mut b = Ua::new(5082, |c| c.answer_after = Duration::from_millis(300));
    let session = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(session, "sip:bob@127.0.0.1:5082", b.addr))),
        now,
    );
    let mut lossy = Link::new(lose_first(|m| m.method() == &Method::Invite), None);
    run(
        &mut a,
        &mut b,
        &mut now,
        t0 + Duration::from_secs(3),
        &mut lossy,
    );
    assert_eq!(a.states().last(), Some(&CallState::Answered));
    let (out, inc) = (
        a.counters.setup_outgoing.snapshot(),
        b.counters.setup_incoming.snapshot(),
    );
    assert_eq!((out.count, inc.count), (1, 1));
    assert_eq!(a.counters.setup_incoming.snapshot().count, 0);
    assert!((inc.sum_seconds - 0.3).abs() < 0.011, "{inc:?}");
    assert!((out.sum_seconds - 0.8).abs() < 0.021, "{out:?}");
    // 0.8 s falls in the 1 s bucket (index 9), 0.3 s in the 0.5 s one (index 8).
    assert_eq!((out.buckets[9], inc.buckets[8]), (1, 1));
}

#[test]
fn early_media_then_answer_then_remote_bye() {
    let now = Instant::now();
    let mut a = Ua::new(5071, |_| {});
    let peer = addr(6000);
    let s = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(s, "sip:bob@127.0.0.1:6000", peer))),
        now,
    );
    let (invite, to) = a.sent().remove(0);
    assert_eq!(to, peer);
    assert_eq!(invite.header("Session-Expires"), Some("1800"));
    assert!(invite.header("Supported").unwrap().contains("timer"));
    assert_eq!(invite.header("X-Room-ID"), Some("room-7"));
    let contact = [("Contact", "<sip:bob@127.0.0.1:6000>")];
    let sdp = sdp_answer(&invite, 40000);
    a.recv(
        &reply(&invite, 183, Some("b1"), &contact, Some(&sdp)),
        peer,
        now,
    );
    assert_eq!(a.states(), [CallState::Trying, CallState::EarlyMedia]);
    assert_eq!(a.live_media(), 1, "media before the answer");
    a.recv(
        &reply(&invite, 200, Some("b1"), &contact, Some(&sdp)),
        peer,
        now,
    );
    assert_eq!(a.states().last(), Some(&CallState::Answered));
    let sent = a.sent();
    let ack = sent
        .iter()
        .find(|(m, _)| m.method() == &Method::Ack)
        .expect("ACK");
    assert_eq!(
        ack.0.request_uri().unwrap().as_str(),
        "sip:bob@127.0.0.1:6000"
    );
    assert_eq!(ack.0.to().tag(), Some("b1"));
    // A retransmitted 200 gets the same ACK again.
    a.recv(
        &reply(&invite, 200, Some("b1"), &contact, Some(&sdp)),
        peer,
        now,
    );
    let again = a.sent();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0.top_via().branch(), ack.0.top_via().branch());
    // The far end hangs up.
    let bye = format!(
        "BYE sip:alice@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bKbye1\r\n\
         From: <sip:bob@127.0.0.1:6000>;tag=b1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        invite.echo().from.as_deref().unwrap(),
        invite.call_id()
    );
    a.recv(bye.as_bytes(), peer, now);
    let ok = a.sent().remove(0).0;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(a.states().last(), Some(&CallState::Ended));
    assert_eq!(a.live_media(), 0);
}

#[test]
fn challenges_are_answered_and_a_wrong_password_fails_once() {
    let mut now = Instant::now();
    let mut a = Ua::new(5081, |_| {});
    let peer = addr(6001);
    let mut proxy = DigestAuthenticator::new("example", Duration::from_secs(30));
    let s = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(s, "sip:bob@127.0.0.1:6001", peer))),
        now,
    );
    let first = a.sent().remove(0).0;
    // 407 from a proxy: the INVITE comes again with Proxy-Authorization and a new CSeq.
    let ch = proxy.challenge(now, false);
    a.recv(
        &reply(&first, 407, Some("p"), &[("Proxy-Authenticate", &ch)], None),
        peer,
        now,
    );
    let sent = a.sent();
    assert!(
        sent.iter().any(|(m, _)| m.method() == &Method::Ack),
        "407 ACKed"
    );
    let second = sent
        .into_iter()
        .find(|(m, _)| m.method() == &Method::Invite)
        .expect("a new INVITE")
        .0;
    assert_eq!(second.cseq().number, first.cseq().number + 1);
    assert_ne!(second.top_via().branch(), first.top_via().branch());
    assert_eq!(second.call_id(), first.call_id());
    let creds = second.header("Proxy-Authorization").expect("credentials");
    assert!(matches!(
        proxy.verify(creds, "INVITE", now, |u| (u == "alice")
            .then(|| "secret".into())),
        AuthOutcome::Authorized { .. }
    ));
    // Then a 401 of the UAS's realm: answered too, keeping the proxy's credentials.
    now += Duration::from_millis(10);
    let mut uas = DigestAuthenticator::new("bob-phone", Duration::from_secs(30));
    let ch = uas.challenge(now, false);
    a.recv(
        &reply(&second, 401, Some("u"), &[("WWW-Authenticate", &ch)], None),
        peer,
        now,
    );
    let third = a
        .sent()
        .into_iter()
        .find(|(m, _)| m.method() == &Method::Invite)
        .unwrap()
        .0;
    assert!(third.header("Authorization").is_some());
    assert!(third.header("Proxy-Authorization").is_some());
    // The same realm again without stale: the password is wrong, the call fails.
    let ch = uas.challenge(now, false);
    a.recv(
        &reply(&third, 401, Some("u"), &[("WWW-Authenticate", &ch)], None),
        peer,
        now,
    );
    assert!(a.sent().iter().all(|(m, _)| m.method() != &Method::Invite));
    let last = a.progress().pop().unwrap();
    assert_eq!((last.state, last.status), (CallState::Failed, 401));
    assert_eq!(a.reserved() + a.live_media(), 0, "ports released");
    assert!(!a.dir.contains(s));
}

#[test]
fn one_redirect_is_followed() {
    let now = Instant::now();
    let mut a = Ua::new(5091, |_| {});
    let peer = addr(6002);
    let s = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(s, "sip:bob@127.0.0.1:6002", peer))),
        now,
    );
    let first = a.sent().remove(0).0;
    a.recv(
        &reply(
            &first,
            302,
            Some("r"),
            &[(
                "Contact",
                "<sip:bob2@127.0.0.1:6003>;q=0.5, <sip:bob3@127.0.0.1:6004>",
            )],
            None,
        ),
        peer,
        now,
    );
    let (second, to) = a
        .sent()
        .into_iter()
        .find(|(m, _)| m.method() == &Method::Invite)
        .unwrap();
    assert_eq!(to, addr(6004), "the best q first");
    assert_eq!(
        second.request_uri().unwrap().as_str(),
        "sip:bob3@127.0.0.1:6004"
    );
    assert_eq!(
        second.to().uri().as_str(),
        "sip:bob@127.0.0.1:6002",
        "To stays"
    );
    // A second redirect is not followed.
    a.recv(
        &reply(
            &second,
            301,
            Some("r2"),
            &[("Contact", "<sip:x@127.0.0.1:6005>")],
            None,
        ),
        to,
        now,
    );
    assert!(a.sent().iter().all(|(m, _)| m.method() != &Method::Invite));
    let last = a.progress().pop().unwrap();
    assert_eq!((last.state, last.status), (CallState::Failed, 301));
}

#[test]
fn no_answer_is_cancelled_after_the_ring_time() {
    let t0 = Instant::now();
    let mut a = Ua::new(5101, |_| {});
    let peer = addr(6006);
    let s = SessionId::new_v4();
    let mut req = dial_to(s, "sip:bob@127.0.0.1:6006", peer);
    req.ring_timeout = Duration::from_secs(10);
    a.cmd(Command::Dial(Box::new(req)), t0);
    let invite = a.sent().remove(0).0;
    a.recv(
        &reply(
            &invite,
            180,
            Some("r"),
            &[("Contact", "<sip:bob@127.0.0.1:6006>")],
            None,
        ),
        peer,
        t0,
    );
    assert_eq!(a.states(), [CallState::Trying, CallState::Ringing]);
    a.tick(t0 + Duration::from_secs(9));
    assert!(a.sent().is_empty(), "nothing before the ring time");
    a.tick(t0 + Duration::from_secs(10));
    let (cancel, to) = a.sent().remove(0);
    assert_eq!((cancel.method(), to), (&Method::Cancel, peer));
    assert_eq!(cancel.top_via().branch(), invite.top_via().branch());
    assert_eq!(cancel.to().tag(), None);
    let t = t0 + Duration::from_secs(10);
    a.recv(&reply(&cancel, 200, Some("r"), &[], None), peer, t);
    a.recv(&reply(&invite, 487, Some("r"), &[], None), peer, t);
    let sent = a.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.method(), &Method::Ack, "the 487 is ACKed");
    let last = a.progress().pop().unwrap();
    assert_eq!((last.state, last.status), (CallState::Failed, 487));
    assert!(last.reason.contains("no answer within 10 s"), "{last:?}");
}

#[test]
fn hanging_up_before_any_response_cancels_after_the_first() {
    let now = Instant::now();
    let mut a = Ua::new(5111, |_| {});
    let peer = addr(6007);
    let s = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(s, "sip:bob@127.0.0.1:6007", peer))),
        now,
    );
    let invite = a.sent().remove(0).0;
    a.cmd(Command::Hangup(s), now);
    assert!(
        a.sent().is_empty(),
        "no CANCEL before a provisional response (RFC 3261 §9.1)"
    );
    a.recv(&reply(&invite, 100, None, &[], None), peer, now);
    let sent = a.sent();
    assert_eq!(sent[0].0.method(), &Method::Cancel);
    // The UAS answered anyway: ACK and BYE, and the call is reported cancelled.
    let sdp = sdp_answer(&invite, 40100);
    a.recv(
        &reply(
            &invite,
            200,
            Some("late"),
            &[("Contact", "<sip:bob@127.0.0.1:6007>")],
            Some(&sdp),
        ),
        peer,
        now,
    );
    let methods: Vec<Method> = a.sent().iter().map(|(m, _)| m.method().clone()).collect();
    assert_eq!(methods, [Method::Ack, Method::Bye]);
    let last = a.progress().pop().unwrap();
    assert_eq!((last.state, last.status), (CallState::Failed, 487));
    assert_eq!(a.live_media() + a.reserved(), 0);
}

/// `hangup_with`'s Reason (RFC 3326) goes on the CANCEL of a call being dialled, even one
/// deferred until the first provisional response, and on the BYE of an answered call.
#[test]
fn hanging_up_with_a_reason_puts_it_on_the_cancel_and_the_bye() {
    let now = Instant::now();
    let mut a = Ua::new(5113, |_| {});
    let peer = addr(6009);
    let reason = crate::sip::reason::q850_reason(Some(31), Some("no \"thanks\""))
        .unwrap()
        .unwrap();
    // A call to bob: its session and INVITE.
    let dial = |a: &mut Ua| {
        let s = SessionId::new_v4();
        let to = dial_to(s, "sip:bob@127.0.0.1:6009", peer);
        a.cmd(Command::Dial(Box::new(to)), now);
        (s, a.sent().remove(0).0)
    };
    // bob's 200 to `invite`, its SDP answer on `port`.
    let answered = |invite: &SipMessage, port: u16, tag: &str| {
        let sdp = sdp_answer(invite, port);
        let contact = [("Contact", "<sip:bob@127.0.0.1:6009>")];
        reply(invite, 200, Some(tag), &contact, Some(&sdp))
    };
    let (s, invite) = dial(&mut a);
    a.cmd(Command::HangupWithReason(s, reason.clone()), now);
    assert!(
        a.sent().is_empty(),
        "the CANCEL waits for a provisional response"
    );
    a.recv(&reply(&invite, 180, Some("r1"), &[], None), peer, now);
    let sent = a.sent();
    assert_eq!(sent[0].0.method(), &Method::Cancel);
    assert_eq!(sent[0].0.header("Reason"), Some(reason.as_str()));

    let (s, invite) = dial(&mut a);
    a.recv(&answered(&invite, 40102, "r2"), peer, now);
    assert_eq!(a.sent()[0].0.method(), &Method::Ack);
    a.cmd(Command::HangupWithReason(s, reason.clone()), now);
    let sent = a.sent();
    assert_eq!(sent[0].0.method(), &Method::Bye);
    assert_eq!(sent[0].0.header("Reason"), Some(reason.as_str()));
    assert_eq!(a.states().last(), Some(&CallState::Ended));

    // Hung up before any response, then answered at once (the 200 beats the CANCEL): the BYE
    // that ends the answered call carries the Reason.
    let (s, invite) = dial(&mut a);
    a.cmd(Command::HangupWithReason(s, reason.clone()), now);
    assert!(a.sent().is_empty());
    a.recv(&answered(&invite, 40104, "r3"), peer, now);
    let sent = a.sent();
    let bye = sent
        .iter()
        .find(|(m, _)| m.method() == &Method::Bye)
        .expect("a BYE after the late 200");
    assert_eq!(bye.0.header("Reason"), Some(reason.as_str()));
}

#[test]
fn route_sets_are_followed_both_ways() {
    let now = Instant::now();
    let proxy = addr(7000);
    let rr = "<sip:127.0.0.1:7000;lr>";
    // Outgoing: the 200 records the proxy's route; ACK and BYE go to the proxy with Route.
    let mut a = Ua::new(5121, |_| {});
    let s = SessionId::new_v4();
    let mut req = dial_to(s, "sip:bob@example.com", proxy);
    req.route = Some(rr.to_string());
    a.cmd(Command::Dial(Box::new(req)), now);
    let (invite, to) = a.sent().remove(0);
    assert_eq!(to, proxy);
    assert_eq!(invite.routes()[0].raw(), rr);
    assert_eq!(
        invite.request_uri().unwrap().as_str(),
        "sip:bob@example.com"
    );
    let sdp = sdp_answer(&invite, 40200);
    a.recv(
        &reply(
            &invite,
            200,
            Some("b"),
            &[
                ("Record-Route", rr),
                ("Contact", "<sip:bob@192.0.2.50:5090>"),
            ],
            Some(&sdp),
        ),
        proxy,
        now,
    );
    let (ack, to) = a.sent().remove(0);
    assert_eq!(to, proxy, "the ACK follows the route set");
    assert_eq!(ack.routes()[0].raw(), rr);
    assert_eq!(
        ack.request_uri().unwrap().as_str(),
        "sip:bob@192.0.2.50:5090"
    );
    a.cmd(Command::Hold(s, true), now);
    let (reinvite, to) = a.sent().remove(0);
    assert_eq!((reinvite.method(), to), (&Method::Invite, proxy));
    assert!(String::from_utf8_lossy(reinvite.body()).contains("a=sendonly"));
    a.cmd(Command::Hangup(s), now);
    let sent = a.sent();
    let (bye, to) = sent
        .iter()
        .find(|(m, _)| m.method() == &Method::Bye)
        .unwrap();
    assert_eq!(*to, proxy);
    assert_eq!(bye.routes()[0].raw(), rr);

    // Incoming: the INVITE came through the proxy; our 200 echoes Record-Route and our BYE
    // goes back through it, not to the caller's Contact.
    let mut b = Ua::new(5122, |_| {});
    let offer = "v=0\r\no=x 1 1 IN IP4 192.0.2.60\r\ns=x\r\nc=IN IP4 192.0.2.60\r\nt=0 0\r\n\
                 m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let inv = format!(
        "INVITE sip:roomkit@127.0.0.1:5122 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKprx1\r\n\
         Via: SIP/2.0/UDP 192.0.2.60:5060;branch=z9hG4bKcaller1\r\n\
         Record-Route: {rr}\r\nFrom: <sip:carol@example.com>;tag=c1\r\nTo: <sip:roomkit@example.com>\r\n\
         Call-ID: rr-in@x\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@192.0.2.60:5060>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        offer.len()
    );
    b.recv(inv.as_bytes(), proxy, now);
    let sent = b.sent();
    let ok = sent.iter().find(|(m, _)| m.status() == Some(200)).unwrap();
    assert_eq!(ok.1, proxy, "responses go back where the request came from");
    assert_eq!(
        ok.0.record_routes()[0].raw(),
        rr,
        "Record-Route echoed in the 200"
    );
    let session = match &b.events[0] {
        SipEvent::Call(info) => info.id,
        e => panic!("{e:?}"),
    };
    b.cmd(Command::Hangup(session), now);
    let (bye, to) = b.sent().remove(0);
    assert_eq!(bye.method(), &Method::Bye);
    assert_eq!(to, proxy, "our BYE travels back through the proxy");
    assert_eq!(
        bye.request_uri().unwrap().as_str(),
        "sip:carol@192.0.2.60:5060"
    );
    assert_eq!(bye.routes()[0].raw(), rr);
}

#[test]
fn hold_resume_and_glare() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Ua::new(5131, |_| {});
    let mut b = Ua::new(5132, |_| {});
    let s = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(s, "sip:bob@127.0.0.1:5132", b.addr))),
        now,
    );
    run(
        &mut a,
        &mut b,
        &mut now,
        t0 + Duration::from_secs(1),
        &mut keep_all(),
    );
    let bs = match b.events.iter().find(|e| matches!(e, SipEvent::Call(_))) {
        Some(SipEvent::Call(i)) => i.id,
        _ => panic!("no call at b"),
    };
    // a holds b: b's media stops sending, a's still may.
    a.cmd(Command::Hold(s, true), now);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(1),
        &mut keep_all(),
    );
    assert_eq!(b.host.lock().live.get(&bs), Some(&false), "b is held");
    assert_eq!(a.host.lock().live.get(&s), Some(&true), "a keeps sending");
    a.cmd(Command::Hold(s, false), now);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(1),
        &mut keep_all(),
    );
    assert_eq!(b.host.lock().live.get(&bs), Some(&true), "resumed");

    // Both hold at once: the re-INVITEs cross, both get 491, and they retry until one wins.
    a.cmd(Command::Hold(s, true), now);
    b.cmd(Command::Hold(bs, true), now);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(30),
        &mut keep_all(),
    );
    assert_eq!(b.host.lock().live.get(&bs), Some(&false));
    assert_eq!(
        a.host.lock().live.get(&s),
        Some(&false),
        "both held each other"
    );
    assert_eq!(a.core.call_count(), 1);
}

#[test]
fn session_timer_is_refreshed_and_a_silent_peer_is_hung_up() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Ua::new(5141, |c| c.session_expires = 120);
    let mut b = Ua::new(5142, |_| {});
    let s = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(s, "sip:bob@127.0.0.1:5142", b.addr))),
        now,
    );
    let mut link = keep_all();
    run(
        &mut a,
        &mut b,
        &mut now,
        t0 + Duration::from_secs(200),
        &mut link,
    );
    let reinvites = link
        .from_a
        .iter()
        .filter(|m| m.method() == &Method::Invite && m.to().tag().is_some())
        .count();
    // 120 s with the caller refreshing at half: two refreshes in 200 s, the call still up.
    assert!(reinvites >= 2, "{reinvites} refreshes");
    assert_eq!((a.core.call_count(), b.core.call_count()), (1, 1));
    // The caller goes silent (its refreshes are lost): the callee ends the call with BYE
    // before the interval is over.
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(200),
        &mut Link::new(lose(|m| m.method() == &Method::Invite), None),
    );
    assert_eq!(b.core.call_count(), 0, "b hung up the expired session");
    assert_eq!(a.core.call_count(), 0, "and a got the BYE");
    assert_eq!(a.states().last(), Some(&CallState::Ended));
}

#[test]
fn uas_hardening_420_503_and_info_dtmf() {
    let now = Instant::now();
    let mut b = Ua::new(5151, |c| c.max_sessions = 1);
    let caller = addr(6100);
    let offer = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = |cid: &str, extra: &str| {
        format!(
            "INVITE sip:roomkit@127.0.0.1:5151 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6100;branch=z9hG4bK{cid}\r\n\
             From: <sip:c@127.0.0.1>;tag=t{cid}\r\nTo: <sip:roomkit@127.0.0.1>\r\nCall-ID: {cid}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:c@127.0.0.1:6100>\r\n{extra}\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            offer.len()
        )
    };
    b.recv(
        invite("req1", "Require: 100rel, foo\r\n").as_bytes(),
        caller,
        now,
    );
    let r = b.sent().pop().unwrap().0;
    assert_eq!(r.status(), Some(420));
    assert_eq!(r.header("Unsupported"), Some("100rel, foo"));
    assert_eq!(
        b.reserved() + b.live_media(),
        0,
        "no port for a refused call"
    );
    b.recv(
        invite(
            "call1",
            "Require: timer\r\nSession-Expires: 300;refresher=uac\r\nSupported: timer\r\n",
        )
        .as_bytes(),
        caller,
        now,
    );
    let ok = b.sent().pop().unwrap().0;
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.header("Session-Expires"), Some("300;refresher=uac"));
    assert_eq!(ok.header("Require"), Some("timer"));
    b.recv(invite("call2", "").as_bytes(), caller, now);
    let busy = b.sent().pop().unwrap().0;
    assert_eq!(busy.status(), Some(503));
    assert_eq!(busy.header("Retry-After"), Some("10 (busy)"));
    let st = b.counters.snapshot();
    assert_eq!(
        (st.calls_refused, st.calls_refused_overload),
        (1, 1),
        "the 503 (a 420 is not counted there)"
    );
    // INFO DTMF in the call reaches the application; other bodies are refused.
    let info = |cseq: u32, ctype: &str, body: &str| {
        format!(
            "INFO sip:roomkit@127.0.0.1:5151 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6100;branch=z9hG4bKinfo{cseq}\r\n\
             From: <sip:c@127.0.0.1>;tag=tcall1\r\nTo: <sip:roomkit@127.0.0.1>;tag={}\r\nCall-ID: call1\r\n\
             CSeq: {cseq} INFO\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
            ok.to().tag().unwrap(),
            body.len()
        )
    };
    b.recv(
        info(2, "application/dtmf-relay", "Signal=5\r\nDuration=160\r\n").as_bytes(),
        caller,
        now,
    );
    assert_eq!(b.sent().pop().unwrap().0.status(), Some(200));
    b.recv(info(3, "application/dtmf", "#").as_bytes(), caller, now);
    assert_eq!(b.sent().pop().unwrap().0.status(), Some(200));
    b.recv(info(4, "text/plain", "hello").as_bytes(), caller, now);
    assert_eq!(b.sent().pop().unwrap().0.status(), Some(415));
    b.recv(
        info(5, "application/dtmf-relay", "Signal=Z\r\n").as_bytes(),
        caller,
        now,
    );
    assert_eq!(b.sent().pop().unwrap().0.status(), Some(400));
    let digits: Vec<DtmfEvent> = b
        .host_calls()
        .into_iter()
        .filter_map(|c| match c {
            HostCall::Dtmf(_, ev) => Some(ev),
            _ => None,
        })
        .collect();
    assert_eq!(
        digits,
        [
            DtmfEvent {
                digit: '5',
                duration_ms: 160
            },
            DtmfEvent {
                digit: '#',
                duration_ms: 250
            }
        ]
    );
}

/// A registrar that challenges once, then grants `grant` seconds.
struct Registrar {
    auth: DigestAuthenticator,
    grant: u32,
    bindings: usize,
    registers: usize,
}

impl Registrar {
    fn answer(&mut self, req: &SipMessage, now: Instant) -> Vec<u8> {
        assert_eq!(req.method(), &Method::Register);
        self.registers += 1;
        let Some(creds) = req.header("Authorization") else {
            let ch = self.auth.challenge(now, false);
            return reply(req, 401, Some("reg"), &[("WWW-Authenticate", &ch)], None);
        };
        match self.auth.verify(creds, "REGISTER", now, |u| {
            (u == "alice").then(|| "pw".into())
        }) {
            AuthOutcome::Authorized { .. } => {}
            _ => {
                let ch = self.auth.challenge(now, true);
                return reply(req, 401, Some("reg"), &[("WWW-Authenticate", &ch)], None);
            }
        }
        let expires = req.expires().unwrap_or(3600);
        if expires == 0 {
            self.bindings = 0;
            return reply(req, 200, Some("reg"), &[], None);
        }
        self.bindings = 1;
        let contact = format!("<{}>;expires={}", req.contact().unwrap().uri(), self.grant);
        reply(req, 200, Some("reg"), &[("Contact", &contact)], None)
    }
}

#[test]
fn registrations_refresh_and_end_on_shutdown() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Ua::new(5161, |_| {});
    let registrar = addr(6200);
    let mut reg = Registrar {
        auth: DigestAuthenticator::new("example.com", Duration::from_secs(300)),
        grant: 120,
        bindings: 0,
        registers: 0,
    };
    let req = |aor: &str| RegisterRequest {
        aor: aor.into(),
        registrar: String::new(),
        next_hop: SipPeer::udp(registrar),
        route: None,
        credentials: Some(Credentials::new("alice", "pw")),
        expires: 600,
    };
    a.cmd(
        Command::Register(1, Box::new(req("sip:alice@example.com"))),
        now,
    );
    a.cmd(
        Command::Register(2, Box::new(req("sip:alice2@example.com"))),
        now,
    );
    // Serve the registrar for 10 minutes of virtual time.
    let end = t0 + Duration::from_secs(600);
    loop {
        // Answer everything sent (and what the answers make it send) before time moves on.
        loop {
            let sent = a.sent();
            if sent.is_empty() {
                break;
            }
            for (m, to) in sent {
                assert_eq!(to, registrar);
                let r = reg.answer(&m, now);
                a.recv(&r, registrar, now);
            }
        }
        match a.core.poll_timeout() {
            Some(t) if t <= end => {
                now = t;
                a.tick(now);
            }
            _ => break,
        }
    }
    let registered = |id: u64, a: &Ua| {
        a.events
            .iter()
            .filter(|e| matches!(e, SipEvent::Registration(i, RegistrationEvent::Registered { expires: 120 }) if *i == id))
            .count()
    };
    // Granted 120 s, refreshed 64×T1 = 32 s before it lapses (at 88 s): seven registrations
    // each in 600 s.
    assert!(
        (6..=8).contains(&registered(1, &a)),
        "{} registrations: {:?}",
        registered(1, &a),
        a.events
    );
    assert!((6..=8).contains(&registered(2, &a)));
    // The registrar's nonces are single-use: each refresh is challenged (stale) once, never
    // more, and nothing is retransmitted.
    let total = registered(1, &a) + registered(2, &a);
    assert_eq!(reg.registers, 2 * total, "{}", reg.registers);
    assert_eq!(a.core.registration_count(), 2);
    // Stopping sends Expires: 0 and lingers until it is answered.
    a.core.shutdown(now, &mut a.out);
    assert!(a.core.is_lingering());
    for _ in 0..4 {
        for (m, _) in a.sent() {
            assert_eq!(m.expires(), Some(0));
            let r = reg.answer(&m, now);
            a.recv(&r, registrar, now);
        }
    }
    assert!(!a.core.is_lingering());
    assert_eq!(reg.bindings, 0);
    let unregistered = a
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                SipEvent::Registration(_, RegistrationEvent::Unregistered)
            )
        })
        .count();
    assert_eq!(unregistered, 2);
}

#[test]
fn a_second_fork_answering_is_acked_and_hung_up() {
    let now = Instant::now();
    let mut a = Ua::new(5171, |_| {});
    let peer = addr(6300);
    let s = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(s, "sip:bob@127.0.0.1:6300", peer))),
        now,
    );
    let invite = a.sent().remove(0).0;
    let sdp = sdp_answer(&invite, 40300);
    a.recv(
        &reply(
            &invite,
            200,
            Some("fork1"),
            &[("Contact", "<sip:bob@127.0.0.1:6300>")],
            Some(&sdp),
        ),
        peer,
        now,
    );
    assert_eq!(a.sent().len(), 1, "ACK");
    a.recv(
        &reply(
            &invite,
            200,
            Some("fork2"),
            &[("Contact", "<sip:bob@127.0.0.1:6301>")],
            Some(&sdp),
        ),
        peer,
        now,
    );
    let sent = a.sent();
    let methods: Vec<(Method, Option<String>)> = sent
        .iter()
        .map(|(m, _)| (m.method().clone(), m.to().tag().map(str::to_string)))
        .collect();
    assert_eq!(
        methods,
        [
            (Method::Ack, Some("fork2".into())),
            (Method::Bye, Some("fork2".into()))
        ]
    );
    // Its retransmission gets the ACK only.
    a.recv(
        &reply(
            &invite,
            200,
            Some("fork2"),
            &[("Contact", "<sip:bob@127.0.0.1:6301>")],
            Some(&sdp),
        ),
        peer,
        now,
    );
    assert_eq!(a.sent().len(), 1);
    assert_eq!(a.core.call_count(), 1, "the first fork's call stands");
}

#[test]
fn dialing_without_ports_fails_with_503() {
    let now = Instant::now();
    let mut a = Ua::new(5181, |_| {});
    let peer = addr(6400);
    // 64 ports, two per video call: 32 calls, then none.
    for _ in 0..32 {
        a.cmd(
            Command::Dial(Box::new(dial_to(
                SessionId::new_v4(),
                "sip:b@127.0.0.1:6400",
                peer,
            ))),
            now,
        );
    }
    let s = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(s, "sip:b@127.0.0.1:6400", peer))),
        now,
    );
    let last = a.progress().pop().unwrap();
    assert_eq!((last.state, last.status), (CallState::Failed, 503));
    assert_eq!(a.core.call_count(), 32);
    // Shutdown ends them all (CANCEL is deferred without a provisional; the calls go at once).
    a.core.shutdown(now, &mut a.out);
    assert_eq!(a.core.call_count(), 0);
    assert_eq!(a.reserved() + a.live_media(), 0);
    let _ = Timers::default();
}

#[test]
fn a_challenged_reinvite_is_sent_again_with_credentials() {
    let now = Instant::now();
    let mut a = Ua::new(5191, |_| {});
    let peer = addr(6500);
    let s = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(s, "sip:bob@127.0.0.1:6500", peer))),
        now,
    );
    let invite = a.sent().remove(0).0;
    let sdp = sdp_answer(&invite, 40500);
    let contact = [("Contact", "<sip:bob@127.0.0.1:6500>")];
    a.recv(
        &reply(&invite, 200, Some("b"), &contact, Some(&sdp)),
        peer,
        now,
    );
    a.sent();
    a.cmd(Command::Hold(s, true), now);
    let reinvite = a.sent().remove(0).0;
    assert!(
        reinvite.header("Authorization").is_none(),
        "no challenge learned yet"
    );
    let mut uas = DigestAuthenticator::new("bob", Duration::from_secs(30));
    let ch = uas.challenge(now, false);
    a.recv(
        &reply(
            &reinvite,
            401,
            Some("b"),
            &[("WWW-Authenticate", &ch)],
            None,
        ),
        peer,
        now,
    );
    let again = a
        .sent()
        .into_iter()
        .find(|(m, _)| m.method() == &Method::Invite)
        .expect("the re-INVITE again")
        .0;
    assert_eq!(again.cseq().number, reinvite.cseq().number + 1);
    assert!(String::from_utf8_lossy(again.body()).contains("a=sendonly"));
    let creds = again.header("Authorization").unwrap();
    assert!(matches!(
        uas.verify(creds, "INVITE", now, |u| (u == "alice")
            .then(|| "secret".into())),
        AuthOutcome::Authorized { .. }
    ));
    // Refused for good this time: the call stays up, not held.
    let ch = uas.challenge(now, false);
    a.recv(
        &reply(&again, 401, Some("b"), &[("WWW-Authenticate", &ch)], None),
        peer,
        now,
    );
    assert!(a.sent().iter().all(|(m, _)| m.method() != &Method::Invite));
    assert_eq!(a.core.call_count(), 1);
}

#[test]
fn a_reinvite_left_proceeding_is_cancelled_when_its_call_ends() {
    let now = Instant::now();
    let mut a = Ua::new(5201, |_| {});
    let peer = addr(6600);
    let s = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(s, "sip:bob@127.0.0.1:6600", peer))),
        now,
    );
    let invite = a.sent().remove(0).0;
    let sdp = sdp_answer(&invite, 40600);
    let contact = [("Contact", "<sip:bob@127.0.0.1:6600>")];
    a.recv(
        &reply(&invite, 200, Some("b"), &contact, Some(&sdp)),
        peer,
        now,
    );
    a.sent();
    a.cmd(Command::Hold(s, true), now);
    let reinvite = a.sent().remove(0).0;
    a.recv(&reply(&reinvite, 100, None, &[], None), peer, now);
    // The far end never answers the re-INVITE; we hang up.
    a.cmd(Command::Hangup(s), now);
    let methods: Vec<Method> = a.sent().iter().map(|(m, _)| m.method().clone()).collect();
    assert!(methods.contains(&Method::Bye), "{methods:?}");
    assert!(
        methods.contains(&Method::Cancel),
        "the re-INVITE is cancelled: {methods:?}"
    );
    // Unanswered, the CANCEL gives up after 64×T1 and the INVITE transaction with it.
    let later = now + Duration::from_secs(40);
    a.tick(later);
    a.tick(later + Duration::from_secs(40));
    assert_eq!(a.core.transaction_count(), 0);
    assert_eq!(a.core.poll_timeout(), None);
}

#[test]
fn video_is_added_and_removed_with_reinvites_both_ways() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Ua::new(5211, |_| {});
    let mut b = Ua::new(5212, |_| {});
    let s = SessionId::new_v4();
    let mut req = dial_to(s, "sip:bob@127.0.0.1:5212", b.addr);
    req.video = false;
    a.cmd(Command::Dial(Box::new(req)), now);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(1),
        &mut keep_all(),
    );
    let bs = match b.events.iter().find(|e| matches!(e, SipEvent::Call(_))) {
        Some(SipEvent::Call(i)) => i.id,
        _ => panic!("no call at b"),
    };
    assert!(a.host.lock().video.is_empty() && b.host.lock().video.is_empty());
    // a adds video: both sides get a video stream, on ports they bound first.
    a.cmd(Command::Video(s, true), now);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(1),
        &mut keep_all(),
    );
    assert!(a.host.lock().video.contains(&s), "{:?}", a.host_calls());
    assert!(b.host.lock().video.contains(&bs), "{:?}", b.host_calls());
    assert_eq!(
        a.reserved() + b.reserved(),
        0,
        "the video ports went to the streams"
    );
    // b removes it: both lose the video stream, the call goes on.
    b.cmd(Command::Video(bs, false), now);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(1),
        &mut keep_all(),
    );
    assert!(a.host.lock().video.is_empty() && b.host.lock().video.is_empty());
    assert_eq!((a.live_media(), b.live_media()), (1, 1));
    // And b adds it back.
    b.cmd(Command::Video(bs, true), now);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(1),
        &mut keep_all(),
    );
    assert!(a.host.lock().video.contains(&s) && b.host.lock().video.contains(&bs));
    a.cmd(Command::Hangup(s), now);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(60),
        &mut keep_all(),
    );
    assert_eq!(
        a.live_media() + b.live_media() + a.reserved() + b.reserved(),
        0
    );
    assert!(a.host.lock().video.is_empty() && b.host.lock().video.is_empty());
}

/// SDES over SIP: both sides mandatory negotiate RTP/SAVP on audio and video, each side's send
/// key being the other's receive key; a mandatory callee refuses a plain offer with 488; an
/// optional caller reaches a plain callee without SRTP.
#[test]
fn srtp_is_negotiated_both_ways_and_a_plain_offer_to_a_mandatory_callee_gets_488() {
    use crate::SrtpPolicy;
    let keys_of = |ua: &Ua, s: SessionId| ua.host.lock().srtp.get(&s).cloned();
    let call = |a_policy, b_policy, port: u16| {
        let t0 = Instant::now();
        let mut now = t0;
        let mut a = Ua::new(port, |c| c.srtp = a_policy);
        let mut b = Ua::new(port + 1, |c| c.srtp = b_policy);
        let s = SessionId::new_v4();
        let target = format!("sip:bob@127.0.0.1:{}", port + 1);
        a.cmd(Command::Dial(Box::new(dial_to(s, &target, b.addr))), now);
        run(
            &mut a,
            &mut b,
            &mut now,
            t0 + Duration::from_secs(2),
            &mut keep_all(),
        );
        let bs = b.events.iter().find_map(|e| match e {
            SipEvent::Call(i) => Some(i.id),
            _ => None,
        });
        (a, b, s, bs)
    };

    let (a, b, s, bs) = call(SrtpPolicy::Mandatory, SrtpPolicy::Mandatory, 5301);
    assert_eq!(a.states().last(), Some(&CallState::Answered));
    let (a_audio, a_video) = keys_of(&a, s).expect("a started media");
    let (b_audio, b_video) = keys_of(&b, bs.expect("b took the call")).unwrap();
    let (a_audio, b_audio) = (a_audio.expect("SRTP audio"), b_audio.expect("SRTP audio"));
    assert_eq!(
        (&a_audio.send, &a_audio.recv),
        (&b_audio.recv, &b_audio.send)
    );
    let (a_video, b_video) = (a_video.expect("SRTP video"), b_video.expect("SRTP video"));
    assert_eq!(
        (&a_video.send, &a_video.recv),
        (&b_video.recv, &b_video.send)
    );
    assert_ne!(a_audio.send, a_video.send, "a key per stream");
    assert_eq!(a_audio.suite(), crate::SrtpSuite::AesCm128HmacSha1_80);

    // Optional to mandatory-less optional: SRTP too (plain proto with crypto lines).
    let (a, _, s, _) = call(SrtpPolicy::Optional, SrtpPolicy::Optional, 5303);
    assert!(keys_of(&a, s).unwrap().0.is_some());

    // Plain caller, mandatory callee: 488 and no media on either side.
    let (a, b, _, bs) = call(SrtpPolicy::Off, SrtpPolicy::Mandatory, 5305);
    let last = a.progress().last().cloned().unwrap();
    assert_eq!(
        (last.state, last.status),
        (CallState::Failed, 488),
        "{last:?}"
    );
    assert!(bs.is_none());
    assert_eq!((a.live_media(), b.live_media()), (0, 0));

    // Optional caller, plain callee: the call is plain RTP.
    let (a, _, s, _) = call(SrtpPolicy::Optional, SrtpPolicy::Off, 5307);
    assert_eq!(a.states().last(), Some(&CallState::Answered));
    assert_eq!(keys_of(&a, s).unwrap(), (None, None));
}

/// `srtp_suites` decides the offer and the answer: an offer lists exactly our suites, in our
/// order; an answer takes the first of ours the offer has (not the offerer's first); no suite in
/// common is a 488 when SRTP is mandatory and a plain call when it is optional.
#[test]
fn configured_srtp_suites_shape_offers_and_answers() {
    use crate::SrtpPolicy;
    use crate::SrtpSuite::*;
    let call = |a_suites: Vec<crate::SrtpSuite>,
                b_suites: Vec<crate::SrtpSuite>,
                policy: SrtpPolicy,
                port: u16| {
        let t0 = Instant::now();
        let mut now = t0;
        let mut a = Ua::new(port, |c| {
            c.srtp = policy;
            c.srtp_suites = a_suites;
        });
        let mut b = Ua::new(port + 1, |c| {
            c.srtp = policy;
            c.srtp_suites = b_suites;
        });
        let s = SessionId::new_v4();
        let target = format!("sip:bob@127.0.0.1:{}", port + 1);
        a.cmd(Command::Dial(Box::new(dial_to(s, &target, b.addr))), now);
        let mut link = keep_all();
        run(
            &mut a,
            &mut b,
            &mut now,
            t0 + Duration::from_secs(2),
            &mut link,
        );
        let invite = link
            .from_a
            .iter()
            .find(|m| m.method() == &Method::Invite)
            .map(|m| String::from_utf8_lossy(m.body()).into_owned())
            .expect("a sent an INVITE");
        let keys = a.host.lock().srtp.get(&s).cloned();
        (a, invite, keys)
    };
    let crypto_lines = |sdp: &str| -> Vec<String> {
        sdp.lines()
            .filter_map(|l| l.strip_prefix("a=crypto:"))
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };

    // Offer: only ours, in our order, tags from 1, on audio and on video. Answer: the
    // callee's first choice among them.
    let (a, invite, keys) = call(
        vec![AesCm128HmacSha1_32, AeadAes128Gcm],
        vec![AeadAes128Gcm, AesCm128HmacSha1_80, AesCm128HmacSha1_32],
        SrtpPolicy::Mandatory,
        5311,
    );
    let ours = ["1 AES_CM_128_HMAC_SHA1_32", "2 AEAD_AES_128_GCM"];
    assert_eq!(crypto_lines(&invite), [ours, ours].concat(), "{invite}");
    assert_eq!(a.states().last(), Some(&CallState::Answered));
    let (audio, video) = keys.expect("a started media");
    assert_eq!(audio.expect("SRTP audio").suite(), AeadAes128Gcm);
    assert_eq!(video.expect("SRTP video").suite(), AeadAes128Gcm);

    // The callee's preference decides even when the offerer lists it last.
    let (_, _, keys) = call(
        vec![AesCm128HmacSha1_80, AesCm128HmacSha1_32],
        vec![AesCm128HmacSha1_32, AesCm128HmacSha1_80],
        SrtpPolicy::Mandatory,
        5313,
    );
    let (audio, _) = keys.expect("a started media");
    assert_eq!(audio.expect("SRTP audio").suite(), AesCm128HmacSha1_32);

    // Nothing in common, mandatory: 488, no media.
    let (a, invite, keys) = call(
        vec![AesCm128HmacSha1_32],
        vec![AeadAes128Gcm],
        SrtpPolicy::Mandatory,
        5315,
    );
    assert_eq!(crypto_lines(&invite), ["1 AES_CM_128_HMAC_SHA1_32"; 2]);
    let last = a.progress().last().cloned().unwrap();
    assert_eq!(
        (last.state, last.status),
        (CallState::Failed, 488),
        "{last:?}"
    );
    assert!(keys.is_none());

    // Nothing in common, optional: the call goes ahead in plain RTP.
    let (a, _, keys) = call(
        vec![AesCm128HmacSha1_32],
        vec![AeadAes128Gcm],
        SrtpPolicy::Optional,
        5317,
    );
    assert_eq!(a.states().last(), Some(&CallState::Answered));
    assert_eq!(keys.unwrap(), (None, None));
}

/// Two cores over a TCP or TLS link (as the engine delivers it: every message from the peer
/// on connection 1): Via and Contact name the transport and the port we listen on for it, the
/// answers go back on the connection the request came on, and nothing is retransmitted.
#[test]
fn calls_over_tcp_and_tls_name_their_transport_and_stay_on_the_connection() {
    // A TLS dialog set up with a `sips:` Request-URI has `sips:` Contacts both ways (RFC 3261
    // §8.1.1.8, §12.1.1); one set up with `sip:...;transport=tls` keeps that form, which is what
    // a peer such as baresip can route its ACK to.
    for (transport, target, contact, answer_contact) in [
        (
            SipTransportKind::Tcp,
            "sip:bob@127.0.0.1:5062;transport=tcp",
            "<sip:alice@127.0.0.1:5061;transport=tcp>",
            "<sip:roomkit@127.0.0.1:5062;transport=tcp>",
        ),
        (
            SipTransportKind::Tls,
            "sips:bob@127.0.0.1:5062",
            "<sips:alice@127.0.0.1:5061>",
            "<sips:roomkit@127.0.0.1:5062>",
        ),
        (
            SipTransportKind::Tls,
            "sip:bob@127.0.0.1:5062;transport=tls",
            "<sip:alice@127.0.0.1:5061;transport=tls>",
            "<sip:roomkit@127.0.0.1:5062;transport=tls>",
        ),
    ] {
        let t0 = Instant::now();
        let mut now = t0;
        let mut a = Ua::new(5061, |_| {});
        let mut b = Ua::new(5062, |_| {});
        let via = transport.via_token();
        // Listening on the UDP port numbers, as SIP servers do (5060 for UDP and TCP): the
        // Contact each side sends is where the other's network delivers.
        let (a_port, b_port) = (5061, 5062);
        a.over(transport, a_port);
        b.over(transport, b_port);
        let session = SessionId::new_v4();
        let mut req = dial_to(session, target, b.addr);
        req.next_hop = SipPeer::new(b.addr, transport);
        a.cmd(Command::Dial(Box::new(req)), now);
        let mut link = keep_all();
        run_for(&mut a, &mut b, &mut now, Duration::from_secs(5), &mut link);
        assert_eq!(
            a.states(),
            [CallState::Trying, CallState::Ringing, CallState::Answered],
            "{transport:?}"
        );
        let invites: Vec<_> = link
            .from_a
            .iter()
            .filter(|m| m.method() == &Method::Invite)
            .collect();
        assert_eq!(
            invites.len(),
            1,
            "{transport:?}: one INVITE, never retransmitted"
        );
        let invite = invites[0];
        assert!(
            invite
                .top_via()
                .raw()
                .starts_with(&format!("SIP/2.0/{via} 127.0.0.1:{a_port};")),
            "{}",
            invite.top_via().raw()
        );
        assert_eq!(invite.header("Contact"), Some(contact));
        // The first request asks for a connection to the target (none is open yet).
        assert_eq!(link.dests_a[0], SipPeer::new(b.addr, transport));
        assert!(link.dests_a.iter().all(|p| p.transport == transport));
        // Every answer and request of b goes back on the connection the INVITE came on.
        assert!(!link.dests_b.is_empty());
        for (m, to) in &link.dests_b {
            assert_eq!(
                (to.transport, to.conn),
                (transport, Some(ConnId(1))),
                "{m:?}"
            );
        }
        let ok = link
            .dests_b
            .iter()
            .find(|(m, _)| m.status() == Some(200))
            .expect("200")
            .0
            .clone();
        assert_eq!(ok.header("Contact"), Some(answer_contact), "{target}");
        assert_eq!(
            link.dests_b
                .iter()
                .filter(|(m, _)| m.status() == Some(200))
                .count(),
            1
        );
        // b hangs up: its BYE goes on the same connection, its Via names the transport.
        b.cmd(Command::Hangup(session_of(&b)), now);
        run_for(&mut a, &mut b, &mut now, Duration::from_secs(1), &mut link);
        assert_eq!(a.states().last(), Some(&CallState::Ended));
        let (bye, to) = link
            .dests_b
            .iter()
            .find(|(m, _)| m.method() == &Method::Bye)
            .expect("BYE");
        assert_eq!(to.conn, Some(ConnId(1)));
        assert!(bye
            .top_via()
            .raw()
            .starts_with(&format!("SIP/2.0/{via} 127.0.0.1:{b_port};")));
        // The BYE transactions end at once over a connection (no timers J and K; over UDP they
        // would linger); the INVITE ones stay 64×T1 whatever the transport (RFC 6026).
        run_for(
            &mut a,
            &mut b,
            &mut now,
            Duration::from_millis(10),
            &mut link,
        );
        assert_eq!(
            (a.core.transaction_count(), b.core.transaction_count()),
            (1, 1)
        );
    }
}

/// The session of the first call `ua` announced.
fn session_of(ua: &Ua) -> SessionId {
    ua.events
        .iter()
        .find_map(|e| match e {
            SipEvent::Call(info) => Some(info.id),
            _ => None,
        })
        .expect("a call")
}

/// An INVITE over TCP to a peer that takes the connection and never answers goes out once and
/// times out after 64×T1 (timer B); over UDP it is retransmitted (timer A).
#[test]
fn over_tcp_an_unanswered_invite_is_sent_once_and_times_out() {
    for (transport, at_least, at_most) in
        [(SipTransportKind::Tcp, 1, 1), (SipTransportKind::Udp, 6, 7)]
    {
        let t0 = Instant::now();
        let mut now = t0;
        let mut a = Ua::new(5061, |_| {});
        let mut b = Ua::new(5062, |_| {});
        let mut req = dial_to(SessionId::new_v4(), "sip:bob@127.0.0.1:5062", b.addr);
        req.next_hop = SipPeer::new(b.addr, transport);
        req.ring_timeout = Duration::from_secs(60);
        a.cmd(Command::Dial(Box::new(req)), now);
        let mut silent = Link::new(lose(|_| true), None);
        run_for(
            &mut a,
            &mut b,
            &mut now,
            Duration::from_secs(40),
            &mut silent,
        );
        let sent = silent
            .from_a
            .iter()
            .filter(|m| m.method() == &Method::Invite)
            .count();
        assert!(
            (at_least..=at_most).contains(&sent),
            "{transport:?}: {sent} INVITEs"
        );
        let last = a.progress().pop().unwrap();
        assert_eq!(
            (last.state, last.status),
            (CallState::Failed, 408),
            "{transport:?}"
        );
    }
}

/// A TCP/TLS peer the engine cannot reach (connection refused, handshake failed) fails the
/// dialed call at once with 503, instead of after timer B.
#[test]
fn a_transport_error_fails_the_dial_at_once_with_503() {
    let now = Instant::now();
    let mut a = Ua::new(5061, |_| {});
    let peer = SipPeer::new(addr(6000), SipTransportKind::Tls);
    let mut req = dial_to(SessionId::new_v4(), "sips:bob@127.0.0.1:6000", addr(6000));
    req.next_hop = peer;
    a.cmd(Command::Dial(Box::new(req)), now);
    assert_eq!(a.sent().len(), 1);
    // Another peer's failure changes nothing.
    a.core.handle_transport_error(
        SipPeer::new(addr(6001), SipTransportKind::Tls),
        "connection refused",
        now,
        &mut a.out,
    );
    // Nor does another connection to the same peer, when ours is known.
    a.drain_events();
    assert_eq!(a.states(), [CallState::Trying]);
    // The engine names the connection it opened for the INVITE: that one fails it.
    let reason = "TLS failed: invalid peer certificate: UnknownIssuer";
    a.core.handle_transport_error(
        SipPeer::on_conn(peer.addr, peer.transport, ConnId(7)),
        reason,
        now,
        &mut a.out,
    );
    a.drain_events();
    let last = a.progress().pop().unwrap();
    assert_eq!(
        (last.state, last.status, last.reason.as_str()),
        (
            CallState::Failed,
            503,
            format!("transport error: {reason}").as_str()
        ),
        "{last:?}"
    );
    assert_eq!(a.core.transaction_count(), 0);
    assert_eq!(a.reserved(), 0, "the call's ports are back");
}

/// A REGISTER over TLS that the transport cannot carry fails at once with a 503 that says why,
/// and is retried after the back-off on a new connection; once registered, the connection
/// dying (a keep-alive unanswered) brings a re-REGISTER, while another peer's connection
/// failing changes nothing.
#[test]
fn a_transport_error_fails_a_register_at_once_and_a_lost_flow_re_registers() {
    let t0 = Instant::now();
    let mut a = Ua::new(5171, |_| {});
    let registrar = SipPeer::new(addr(6300), SipTransportKind::Tls);
    a.cmd(
        Command::Register(
            1,
            Box::new(RegisterRequest {
                aor: "sips:alice@127.0.0.1:6300".into(),
                registrar: String::new(),
                next_hop: registrar,
                route: None,
                credentials: None,
                expires: 600,
            }),
        ),
        t0,
    );
    let first = a.sent();
    assert_eq!(first.len(), 1);
    assert!(first[0].0.top_via().raw().contains("SIP/2.0/TLS"));
    let reason = "TLS failed: invalid peer certificate: UnknownIssuer";
    a.core.handle_transport_error(
        SipPeer::on_conn(registrar.addr, registrar.transport, ConnId(1)),
        reason,
        t0,
        &mut a.out,
    );
    a.drain_events();
    let failed = a
        .events
        .iter()
        .find_map(|e| match e {
            SipEvent::Registration(
                1,
                RegistrationEvent::Failed {
                    status,
                    reason,
                    retry_in,
                },
            ) => Some((*status, reason.clone(), *retry_in)),
            _ => None,
        })
        .expect("the registration failed");
    assert_eq!(
        failed,
        (
            503,
            format!("transport error: {reason}"),
            Some(Duration::from_secs(1))
        )
    );
    // No retransmission over TLS, and the retry 1 s later.
    a.tick(t0 + Duration::from_millis(900));
    assert!(a.sent().is_empty());
    let at = t0 + Duration::from_secs(1);
    a.tick(at);
    let retry = a.sent();
    assert_eq!(retry.len(), 1);
    let ok = reply(&retry[0].0, 200, Some("reg"), &[], None);
    a.recv(&ok, registrar.addr, at);
    a.drain_events();
    assert!(a.events.iter().any(|e| matches!(
        e,
        SipEvent::Registration(1, RegistrationEvent::Registered { .. })
    )));
    // Another peer's connection dies: nothing. Ours dies two minutes on: a re-REGISTER.
    let later = at + Duration::from_secs(120);
    a.core.handle_transport_error(
        SipPeer::on_conn(addr(6301), SipTransportKind::Tls, ConnId(2)),
        "connection closed by the peer",
        later,
        &mut a.out,
    );
    a.tick(later);
    assert!(a.sent().is_empty());
    a.core.handle_transport_error(
        SipPeer::on_conn(registrar.addr, registrar.transport, ConnId(3)),
        "keep-alive ping not answered within 10 s",
        later,
        &mut a.out,
    );
    a.tick(later);
    let again = a.sent();
    assert_eq!(again.len(), 1, "re-registered on a new connection");
    assert_eq!(again[0].0.method(), &Method::Register);
}

/// Video added by a re-INVITE to an SRTP call is offered with SDES keys (RTP/SAVP, crypto
/// lines), the answer picks one, and both sides' video streams are keyed crosswise; the audio
/// keys stay as they were.
#[test]
fn video_added_to_an_srtp_call_is_keyed_with_sdes() {
    use crate::SrtpPolicy;
    let t0 = Instant::now();
    let mut now = t0;
    let mut a = Ua::new(5321, |c| c.srtp = SrtpPolicy::Mandatory);
    let mut b = Ua::new(5322, |c| c.srtp = SrtpPolicy::Optional);
    let s = SessionId::new_v4();
    let mut req = dial_to(s, "sip:bob@127.0.0.1:5322", b.addr);
    req.video = false;
    a.cmd(Command::Dial(Box::new(req)), now);
    let mut link = keep_all();
    run_for(&mut a, &mut b, &mut now, Duration::from_secs(1), &mut link);
    let bs = b
        .events
        .iter()
        .find_map(|e| match e {
            SipEvent::Call(i) => Some(i.id),
            _ => None,
        })
        .expect("b took the call");
    let keys = |ua: &Ua, s: SessionId| ua.host.lock().srtp.get(&s).cloned().unwrap();
    let (a_audio, a_video) = keys(&a, s);
    assert!(a_audio.is_some() && a_video.is_none());
    a.cmd(Command::Video(s, true), now);
    run_for(&mut a, &mut b, &mut now, Duration::from_secs(1), &mut link);
    let reinvite = link
        .from_a
        .iter()
        .rev()
        .find(|m| m.method() == &Method::Invite)
        .unwrap();
    let offer = String::from_utf8_lossy(reinvite.body()).to_string();
    let video = &offer[offer.find("m=video").expect("video offered")..];
    assert!(
        video.starts_with("m=video ") && video.contains(" RTP/SAVP "),
        "{offer}"
    );
    assert!(video.contains("a=crypto:1 "), "{offer}");
    assert!(a.host.lock().video.contains(&s) && b.host.lock().video.contains(&bs));
    let (a_audio2, a_video) = keys(&a, s);
    let (b_audio, b_video) = keys(&b, bs);
    assert_eq!(a_audio2, a_audio, "the audio keys stay");
    let (a_video, b_video) = (a_video.expect("SRTP video"), b_video.expect("SRTP video"));
    assert_eq!(
        (&a_video.send, &a_video.recv),
        (&b_video.recv, &b_video.send)
    );
    assert_ne!(a_video.send, a_audio.unwrap().send, "a key of its own");
    assert!(b_audio.is_some());
}

/// A peer's re-INVITE with a new SDES key (RFC 4568 §7.1.4) re-keys the running stream: the
/// host gets the new receive key and our send key unchanged. One that would turn the SRTP
/// audio into plain RTP is refused with 488, and the call goes on with its keys.
#[test]
fn a_re_key_is_installed_and_a_downgrade_is_refused_with_488() {
    use crate::rtp::srtp::{SrtpKey, SrtpSuite};
    use crate::sdp::format_crypto;
    use crate::SrtpPolicy;
    let now = Instant::now();
    let mut a = Ua::new(5331, |c| c.srtp = SrtpPolicy::Mandatory);
    let peer = addr(6600);
    let s = SessionId::new_v4();
    let mut req = dial_to(s, "sip:bob@127.0.0.1:6600", peer);
    req.video = false;
    a.cmd(Command::Dial(Box::new(req)), now);
    let invite = a.sent().remove(0).0;
    let k1 = SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_80);
    let k2 = SrtpKey::from_os_rng(SrtpSuite::AesCm128HmacSha1_80);
    // The peer answers with the first of our suites (tag 1) and its key k1.
    let sdp = |version: u32, proto: &str, key: Option<&SrtpKey>| {
        let crypto = key.map_or(String::new(), |k| {
            format!(
                "a=crypto:1 {}\r\n",
                format_crypto(1, k).split_once(' ').unwrap().1
            )
        });
        format!(
            "v=0\r\no=- 9 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 40600 {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n{crypto}"
        )
    };
    let contact = [("Contact", "<sip:bob@127.0.0.1:6600>")];
    let answer = sdp(1, "RTP/SAVP", Some(&k1));
    a.recv(
        &reply(&invite, 200, Some("b"), &contact, Some(&answer)),
        peer,
        now,
    );
    a.sent();
    let first = a.host.lock().srtp.get(&s).cloned().unwrap().0.unwrap();
    assert_eq!(first.recv, k1);
    let our_contact = invite.contact().unwrap().uri().as_str().to_string();
    let reinvite = |cseq: u32, body: &str| {
        RequestBuilder::new(Method::Invite, &our_contact)
            .via(&format!(
                "SIP/2.0/UDP 127.0.0.1:6600;branch=z9hG4bKre{cseq}"
            ))
            .from("<sip:bob@127.0.0.1:6600>;tag=b")
            .to(invite.from().raw())
            .call_id(invite.call_id())
            .cseq(cseq)
            .contact("sip:bob@127.0.0.1:6600")
            .body("application/sdp", body.as_bytes())
            .build()
    };
    a.recv(&reinvite(2, &sdp(2, "RTP/SAVP", Some(&k2))), peer, now);
    let ok = a.sent().into_iter().find(|(m, _)| m.status() == Some(200));
    assert!(ok.is_some(), "the re-key was answered");
    let change = a
        .host_calls()
        .into_iter()
        .rev()
        .find_map(|c| match c {
            HostCall::Update(id, change) if id == s => Some(*change),
            _ => None,
        })
        .expect("the media was updated");
    let rekeyed = change.audio_srtp.expect("new audio keys");
    assert_eq!((&rekeyed.recv, &rekeyed.send), (&k2, &first.send));
    assert_eq!(change.video_srtp, None);
    let updates = |a: &Ua| {
        a.host_calls()
            .iter()
            .filter(|c| matches!(c, HostCall::Update(..)))
            .count()
    };
    let before = updates(&a);
    // Plain RTP now: 488, no change to the media, the call goes on.
    a.recv(&reinvite(3, &sdp(3, "RTP/AVP", None)), peer, now);
    let statuses: Vec<u16> = a.sent().iter().filter_map(|(m, _)| m.status()).collect();
    assert!(statuses.contains(&488), "{statuses:?}");
    assert_eq!(updates(&a), before);
    assert_eq!(a.core.call_count(), 1);
    assert_eq!(a.live_media(), 1);
    assert_eq!(
        a.host.lock().srtp.get(&s).cloned().unwrap().0,
        Some(rekeyed)
    );
}

/// Sets up a call from `a` to `b`; returns the caller's and the callee's sessions, and the time.
fn call_up(
    a: &mut Ua,
    b: &mut Ua,
    link: &mut Link,
    t0: Instant,
) -> (SessionId, SessionId, Instant) {
    let mut now = t0;
    let caller = SessionId::new_v4();
    a.cmd(
        Command::Dial(Box::new(dial_to(caller, "sip:bob@127.0.0.1:5062", b.addr))),
        now,
    );
    run(a, b, &mut now, t0 + Duration::from_secs(2), link);
    assert_eq!(a.states().last(), Some(&CallState::Answered));
    (caller, session_of(b), now)
}

fn byes(sent: &[(SipMessage, SipPeer)]) -> usize {
    sent.iter()
        .filter(|(m, _)| m.status().is_none() && m.method() == &Method::Bye)
        .count()
}

/// A peer that leaves with RTCP BYE and then hangs up in SIP (its BYE slower, through proxies)
/// is not sent a BYE of ours crossing its own; a peer that never sends its SIP BYE is hung up
/// after the grace; a silent peer (inactivity) is hung up at once.
#[test]
fn media_left_with_rtcp_bye_waits_for_the_peers_bye() {
    let t0 = Instant::now();
    // The peer's BYE comes within the grace: we answer it and send none.
    let (mut a, mut b) = (Ua::new(5061, |_| {}), Ua::new(5062, |_| {}));
    let mut link = keep_all();
    let (caller, callee, mut now) = call_up(&mut a, &mut b, &mut link, t0);
    b.cmd(Command::MediaEnded(callee, EndReason::RtcpBye), now);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_millis(500),
        &mut link,
    );
    assert_eq!(byes(&link.dests_b), 0, "no BYE of ours during the grace");
    assert_eq!(b.core.call_count(), 1);
    a.cmd(Command::Hangup(caller), now);
    run_for(&mut a, &mut b, &mut now, Duration::from_secs(5), &mut link);
    assert_eq!(byes(&link.dests_b), 0, "the peer's BYE ended the call");
    assert_eq!(a.core.call_count() + b.core.call_count(), 0);
    assert_eq!(a.counters.snapshot().byes_answered, 1);

    // The peer never says BYE in SIP: ours goes out once the grace is over, not before.
    let (mut a, mut b) = (Ua::new(5061, |_| {}), Ua::new(5062, |_| {}));
    let mut link = keep_all();
    let (_, callee, mut now) = call_up(&mut a, &mut b, &mut link, t0);
    b.cmd(Command::MediaEnded(callee, EndReason::RtcpBye), now);
    let left = now;
    run_for(&mut a, &mut b, &mut now, MEDIA_LEFT_GRACE / 2, &mut link);
    assert_eq!(byes(&link.dests_b), 0);
    run_for(&mut a, &mut b, &mut now, MEDIA_LEFT_GRACE, &mut link);
    assert_eq!(byes(&link.dests_b), 1);
    assert!(now - left >= MEDIA_LEFT_GRACE);
    assert_eq!(a.core.call_count() + b.core.call_count(), 0);
    assert_eq!(a.states().last(), Some(&CallState::Ended));

    // Silence (the inactivity timeout): BYE at once.
    let (mut a, mut b) = (Ua::new(5061, |_| {}), Ua::new(5062, |_| {}));
    let mut link = keep_all();
    let (_, callee, mut now) = call_up(&mut a, &mut b, &mut link, t0);
    b.cmd(Command::MediaEnded(callee, EndReason::RtpTimeout), now);
    pump(&mut a, &mut b, now, &mut link);
    assert_eq!(byes(&link.dests_b), 1);
    run_for(&mut a, &mut b, &mut now, Duration::from_secs(1), &mut link);
    assert_eq!(a.core.call_count() + b.core.call_count(), 0);
}

/// A new INVITE (no To tag) from `from` with Call-ID `cid`, and the ACK and BYE of its call.
fn plain_invite(cid: &str, from: SocketAddr) -> String {
    let offer = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE sip:roomkit@127.0.0.1:5151 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{cid}\r\n\
         From: <sip:c@127.0.0.1>;tag=t{cid}\r\nTo: <sip:roomkit@127.0.0.1>\r\nCall-ID: {cid}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:c@{from}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        offer.len()
    )
}

fn in_dialog(method: &str, cid: &str, to_tag: &str, cseq: u32, from: SocketAddr) -> String {
    format!(
        "{method} sip:roomkit@127.0.0.1:5151 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{cid}{method}{cseq}\r\n\
         From: <sip:c@127.0.0.1>;tag=t{cid}\r\nTo: <sip:roomkit@127.0.0.1>;tag={to_tag}\r\nCall-ID: {cid}\r\n\
         CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn final_status(sent: &[(SipMessage, SocketAddr)]) -> Option<u16> {
    sent.iter()
        .filter_map(|(m, _)| m.status())
        .filter(|s| *s >= 200)
        .last()
}

#[test]
fn a_backlog_refuses_new_invites_with_503_but_not_in_dialog_requests() {
    use super::overload::SipLoad;
    let mut now = Instant::now();
    let mut b = Ua::new(5151, |c| {
        c.overload.max_backlog = Duration::from_millis(200)
    });
    let caller = addr(6100);
    // Not behind: the call is answered.
    b.core.set_load(SipLoad {
        backlog: Duration::from_millis(199),
    });
    b.recv(plain_invite("ok1", caller).as_bytes(), caller, now);
    let sent = b.sent();
    assert_eq!(final_status(&sent), Some(200));
    let tag = sent.last().unwrap().0.to().tag().unwrap().to_string();
    b.recv(
        in_dialog("ACK", "ok1", &tag, 1, caller).as_bytes(),
        caller,
        now,
    );
    // Behind: a new INVITE gets 503 with a small Retry-After (after the transaction's 100),
    // and no port.
    b.core.set_load(SipLoad {
        backlog: Duration::from_millis(250),
    });
    let refused = plain_invite("late1", caller);
    b.recv(refused.as_bytes(), caller, now);
    let sent = b.sent();
    assert_eq!(final_status(&sent), Some(503));
    let r = &sent.last().unwrap().0;
    assert_eq!(r.status(), Some(503));
    let secs: u32 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=4).contains(&secs), "{secs}");
    assert_eq!(b.core.call_count(), 1);
    assert_eq!(
        b.reserved() + b.live_media(),
        1,
        "the first call's media only"
    );
    // Its retransmission, even once the backlog is gone, gets the same answer from the
    // transaction: no new work.
    b.core.set_load(SipLoad::default());
    now += Duration::from_millis(500);
    b.tick(now);
    let _ = b.sent();
    b.recv(refused.as_bytes(), caller, now);
    let again = b.sent();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0.status(), Some(503));
    assert_eq!(again[0].0.header("Retry-After"), r.header("Retry-After"));
    // Behind again: the call's BYE is still handled (it frees resources).
    b.core.set_load(SipLoad {
        backlog: Duration::from_secs(2),
    });
    b.recv(
        in_dialog("BYE", "ok1", &tag, 2, caller).as_bytes(),
        caller,
        now,
    );
    assert_eq!(final_status(&b.sent()), Some(200));
    assert_eq!(b.core.call_count(), 0);
    let st = b.counters.snapshot();
    assert_eq!((st.calls_refused, st.calls_refused_overload), (1, 1));
    assert_eq!(st.requests_rate_limited, 0);
    // Zero turns the check off.
    let mut c = Ua::new(5152, |c| c.overload.max_backlog = Duration::ZERO);
    c.core.set_load(SipLoad {
        backlog: Duration::from_secs(5),
    });
    c.recv(plain_invite("x1", caller).as_bytes(), caller, now);
    assert_eq!(final_status(&c.sent()), Some(200));
}

#[test]
fn one_flooding_source_is_limited_and_another_still_gets_through() {
    let mut now = Instant::now();
    let mut b = Ua::new(5151, |c| {
        c.overload.source_rate = 10;
        c.overload.source_burst = 10;
    });
    let flooder = addr(6100);
    let polite = SocketAddr::from(([127, 0, 0, 2], 6200));
    let (mut flood_ok, mut flood_503, mut polite_ok) = (0, 0, 0);
    // 2 s: the flooder sends 1,000 INVITEs and OPTIONS a second, the other caller 5 calls.
    for ms in 0..2000u32 {
        let cid = format!("f{ms}");
        let msg = if ms % 2 == 0 {
            plain_invite(&cid, flooder)
        } else {
            format!(
                "OPTIONS sip:roomkit@127.0.0.1:5151 SIP/2.0\r\nVia: SIP/2.0/UDP {flooder};branch=z9hG4bK{cid}\r\n\
                 From: <sip:c@127.0.0.1>;tag=t{cid}\r\nTo: <sip:roomkit@127.0.0.1>\r\nCall-ID: {cid}\r\n\
                 CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
        };
        b.recv(msg.as_bytes(), flooder, now);
        match final_status(&b.sent()) {
            Some(503) => flood_503 += 1,
            Some(200) => flood_ok += 1,
            other => panic!("{other:?}"),
        }
        if ms % 400 == 0 {
            let cid = format!("p{ms}");
            b.recv(plain_invite(&cid, polite).as_bytes(), polite, now);
            let sent = b.sent();
            assert_eq!(
                final_status(&sent),
                Some(200),
                "the polite caller's call {cid}"
            );
            polite_ok += 1;
            let tag = sent.last().unwrap().0.to().tag().unwrap().to_string();
            // In-dialog requests are not counted against the source.
            b.recv(
                in_dialog("ACK", &cid, &tag, 1, polite).as_bytes(),
                polite,
                now,
            );
            b.recv(
                in_dialog("BYE", &cid, &tag, 2, polite).as_bytes(),
                polite,
                now,
            );
            assert_eq!(final_status(&b.sent()), Some(200));
        }
        now += Duration::from_millis(1);
    }
    assert_eq!(polite_ok, 5);
    // The burst, then 10 a second.
    assert!((25..=35).contains(&flood_ok), "{flood_ok}");
    assert_eq!(flood_ok + flood_503, 2000);
    let st = b.counters.snapshot();
    assert_eq!(st.requests_rate_limited, flood_503);
    // Only the refused INVITEs count as refused calls; the 503s kept no transaction.
    assert!(st.calls_refused_overload >= 950 && st.calls_refused_overload < 1000);
    assert!(
        b.core.transaction_count() < 100,
        "{}",
        b.core.transaction_count()
    );
}

/// Media started off the SIP thread (`MediaHost::start_deferred`, the engine's setup worker):
/// the 200 waits for the host's report; a retransmitted INVITE meanwhile is absorbed by its
/// transaction (the 180 again, no new work); setups queued longer than `max_backlog` refuse
/// new INVITEs with 503; a call cancelled while its media starts has the session closed when
/// it reports; a failed start refuses the call.
#[test]
fn media_started_off_thread_answers_when_ready_and_sheds_a_setup_backlog() {
    let mut now = Instant::now();
    let mut b = Ua::new(5151, |c| {
        c.overload.max_backlog = Duration::from_millis(200)
    });
    b.host.lock().defer_start = true;
    let caller = addr(6100);
    let count = |b: &Ua, f: fn(&HostCall) -> bool| b.host_calls().iter().filter(|c| f(c)).count();
    let is_reserve: fn(&HostCall) -> bool = |c| matches!(c, HostCall::Reserve { .. });
    let is_start: fn(&HostCall) -> bool = |c| matches!(c, HostCall::Start { .. });
    let invite = plain_invite("d1", caller);
    b.recv(invite.as_bytes(), caller, now);
    let sent = b.sent();
    let statuses: Vec<_> = sent.iter().filter_map(|(m, _)| m.status()).collect();
    assert_eq!(statuses, [100, 180], "no 200 before the media runs");
    assert_eq!(b.core.starting.len(), 1);
    // Retransmitted twice while the setup waits: the 180 again, nothing reserved or started.
    for _ in 0..2 {
        now += Duration::from_millis(500);
        b.tick(now);
        b.recv(invite.as_bytes(), caller, now);
        let again: Vec<_> = b.sent().iter().filter_map(|(m, _)| m.status()).collect();
        assert_eq!(again, [180]);
    }
    assert_eq!((count(&b, is_reserve), count(&b, is_start)), (1, 1));
    // The setup has waited 1 s, over the 200 ms limit: a new INVITE is refused, with no port.
    b.recv(plain_invite("d2", caller).as_bytes(), caller, now);
    let sent = b.sent();
    assert_eq!(final_status(&sent), Some(503));
    assert!(sent.last().unwrap().0.header("Retry-After").is_some());
    assert_eq!(count(&b, is_reserve), 1);
    // The report: the 200 with the answer, and the application hears of the call.
    let (session, result) = b.host.lock().deferred.remove(0);
    b.cmd(Command::MediaStarted(session, result), now);
    let sent = b.sent();
    assert_eq!(final_status(&sent), Some(200));
    assert!(!sent.last().unwrap().0.body().is_empty());
    assert!(b
        .events
        .iter()
        .any(|e| matches!(e, SipEvent::Call(i) if i.id == session)));
    assert_eq!(b.core.starting.len(), 0);
    // Nothing queued now: the next call is taken, and cancelled while its media starts.
    b.recv(plain_invite("d3", caller).as_bytes(), caller, now);
    assert_eq!(final_status(&b.sent()), None);
    let cancel = format!(
        "CANCEL sip:roomkit@127.0.0.1:5151 SIP/2.0\r\nVia: SIP/2.0/UDP {caller};branch=z9hG4bKd3\r\n\
         From: <sip:c@127.0.0.1>;tag=td3\r\nTo: <sip:roomkit@127.0.0.1>\r\nCall-ID: d3\r\n\
         CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    b.recv(cancel.as_bytes(), caller, now);
    let statuses: Vec<_> = b.sent().iter().filter_map(|(m, _)| m.status()).collect();
    assert_eq!(statuses, [200, 487]);
    let (s3, r3) = b.host.lock().deferred.remove(0);
    assert!(r3.is_ok());
    assert!(!b.host_calls().contains(&HostCall::Close(s3)));
    b.cmd(Command::MediaStarted(s3, r3), now);
    assert!(
        b.host_calls().contains(&HostCall::Close(s3)),
        "closed once it reported"
    );
    assert!(b.sent().is_empty());
    // A start that fails refuses its call with the host's status.
    b.recv(plain_invite("d4", caller).as_bytes(), caller, now);
    let _ = b.sent();
    let (s4, _) = b.host.lock().deferred.remove(0);
    let err = MediaError {
        status: 503,
        reason: "media: no threads".into(),
    };
    b.cmd(Command::MediaStarted(s4, Err(err)), now);
    let sent = b.sent();
    assert_eq!(final_status(&sent), Some(503));
    assert!(sent.last().unwrap().0.header("Warning").is_some());
    assert_eq!(b.core.call_count(), 1, "the first call only");
    assert_eq!(b.core.starting.len(), 0);
}

/// The SIP thread's backlog sheds with hysteresis: refusing starts at `max_backlog` and goes on
/// until the backlog is under a quarter of it, so the receive queue empties instead of hovering
/// at the limit; each refusal is counted under its reason.
#[test]
fn a_sip_backlog_sheds_until_it_is_under_a_quarter_of_the_limit() {
    use super::overload::SipLoad;
    let now = Instant::now();
    let mut b = Ua::new(5151, |c| {
        c.overload.max_backlog = Duration::from_millis(200)
    });
    let caller = addr(6100);
    let load = |ms| SipLoad {
        backlog: Duration::from_millis(ms),
    };
    let outcome = |b: &mut Ua, cid: &str, ms: u64| {
        b.core.set_load(load(ms));
        b.recv(plain_invite(cid, caller).as_bytes(), caller, now);
        final_status(&b.sent())
    };
    assert_eq!(outcome(&mut b, "h1", 150), Some(200), "under the limit");
    assert_eq!(outcome(&mut b, "h2", 200), Some(503), "at the limit");
    assert_eq!(outcome(&mut b, "h3", 150), Some(503), "still shedding");
    assert_eq!(outcome(&mut b, "h4", 51), Some(503), "still over a quarter");
    assert_eq!(
        outcome(&mut b, "h5", 49),
        Some(200),
        "under a quarter: taken again"
    );
    assert_eq!(outcome(&mut b, "h6", 150), Some(200), "and until the limit");
    let st = b.counters.snapshot();
    assert_eq!(st.calls_refused_overload, 3);
    assert_eq!(
        (
            st.calls_refused_sip_backlog,
            st.calls_refused_setup_queue,
            st.calls_refused_capacity
        ),
        (3, 0, 0)
    );
}

/// Admission before work: the core learns the host's pace from its reports and takes a new
/// call only while the sessions pending would all start within `max_backlog` at that pace, so
/// a call it takes is answered in time instead of timing out in the setup queue (before the
/// oldest pending start is itself `max_backlog` old). Refusals name the setup queue; once the
/// host catches up, calls are taken again.
#[test]
fn the_setup_queue_takes_only_what_the_host_can_start_in_time() {
    let mut now = Instant::now();
    let mut b = Ua::new(5151, |c| {
        c.overload.max_backlog = Duration::from_millis(200)
    });
    b.host.lock().defer_start = true;
    let caller = addr(6100);
    let report = |b: &mut Ua, now: Instant| {
        let (session, result) = b.host.lock().deferred.remove(0);
        b.cmd(Command::MediaStarted(session, result), now);
    };
    // Two calls at once: the second waits for the first, whose session takes the host 50 ms,
    // and then takes 50 ms itself: the pace (the first, handed to an idle host, does not
    // count).
    b.recv(plain_invite("p0", caller).as_bytes(), caller, now);
    b.recv(plain_invite("q0", caller).as_bytes(), caller, now);
    for _ in 0..2 {
        now += Duration::from_millis(50);
        report(&mut b, now);
        assert_eq!(final_status(&b.sent()), Some(200));
    }
    // A burst: four are taken (at 50 ms each, the fourth starts within 200 ms), the fifth
    // would wait 200 ms and is refused at once, with no port taken.
    let mut statuses = Vec::new();
    for i in 1..=5 {
        b.recv(
            plain_invite(&format!("p{i}"), caller).as_bytes(),
            caller,
            now,
        );
        statuses.push(final_status(&b.sent()));
    }
    assert_eq!(statuses, [None, None, None, None, Some(503)]);
    assert_eq!(b.core.starting.len(), 4);
    assert_eq!(b.host.lock().deferred.len(), 4);
    // The host gets through them at its pace: every call taken is answered, and new calls
    // are taken again.
    for _ in 0..4 {
        now += Duration::from_millis(50);
        report(&mut b, now);
        assert_eq!(final_status(&b.sent()), Some(200));
    }
    b.recv(plain_invite("p6", caller).as_bytes(), caller, now);
    assert_eq!(b.core.starting.len(), 1, "taken again");
    let st = b.counters.snapshot();
    assert_eq!(st.calls_answered, 6);
    assert_eq!(
        (
            st.calls_refused_overload,
            st.calls_refused_setup_queue,
            st.calls_refused_sip_backlog
        ),
        (1, 1, 0)
    );
}

/// A long churn leaves nothing in the core: while one call stays up, 1,000 calls one after
/// another, hung up by either side; their ended timers are not kept behind the live ones (each
/// call's session timer is half an hour away), and once the last call ends and the
/// transactions' timers have run, every map and queue of both cores is empty (the soak's
/// memory check, on virtual time).
#[test]
fn a_thousand_sequential_calls_leave_no_state_behind() {
    let t0 = Instant::now();
    let mut a = Ua::new(5061, |_| {});
    let mut b = Ua::new(5062, |_| {});
    let mut link = keep_all();
    // The call that stays up: its timers stay earlier than those the others leave behind.
    let (long, _, mut now) = call_up(&mut a, &mut b, &mut link, t0);
    for i in 0..1000 {
        let (caller, _, at) = call_up(&mut a, &mut b, &mut link, now);
        now = at;
        let callee = b
            .events
            .iter()
            .rev()
            .find_map(|e| match e {
                SipEvent::Call(info) => Some(info.id),
                _ => None,
            })
            .expect("b announced the call");
        if i % 2 == 0 {
            a.cmd(Command::Hangup(caller), now);
        } else {
            b.cmd(Command::Hangup(callee), now);
        }
        run_for(
            &mut a,
            &mut b,
            &mut now,
            Duration::from_millis(100),
            &mut link,
        );
        assert_eq!(a.states().last(), Some(&CallState::Ended), "call {i}");
        // The harness's own record of events is not the core's; keep it small.
        a.events.clear();
        b.events.clear();
        a.host.lock().calls.clear();
        b.host.lock().calls.clear();
    }
    for ua in [&a, &b] {
        assert_eq!(ua.core.call_count(), 1, "the long call is up");
        let (live, kept) = (ua.core.timers.len(), ua.core.timers.entries());
        assert!(
            kept <= 2 * live + 64,
            "{kept} timer entries kept for {live} live"
        );
    }
    a.cmd(Command::Hangup(long), now);
    run_for(&mut a, &mut b, &mut now, Duration::from_secs(60), &mut link);
    for ua in [&a, &b] {
        let left: Vec<_> = ua
            .core
            .table_sizes()
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .collect();
        assert!(left.is_empty(), "left in the core: {left:?}");
        assert!(ua.core.timers.entries() <= 64);
        assert_eq!(ua.live_media() + ua.reserved(), 0);
        assert_eq!(ua.dir.len(), 0);
    }
    assert_eq!(a.counters.snapshot().calls_ended, 1001);
}

/// Two cores on ports `port_a` and `port_a + 1` with an answered call from a to b, over a
/// lossless link: a's and b's session ids of it.
fn answered_pair(port_a: u16, now: &mut Instant) -> (Ua, Ua, SessionId, SessionId) {
    let mut a = Ua::new(port_a, |_| {});
    let mut b = Ua::new(port_a + 1, |_| {});
    let session = SessionId::new_v4();
    let uri = format!("sip:bob@127.0.0.1:{}", port_a + 1);
    a.cmd(
        Command::Dial(Box::new(dial_to(session, &uri, b.addr))),
        *now,
    );
    run_for(&mut a, &mut b, now, Duration::from_secs(5), &mut keep_all());
    assert_eq!(a.states().last(), Some(&CallState::Answered));
    let theirs = session_of(&b);
    (a, b, session, theirs)
}

/// More commands than one wake-up takes (here `COMMANDS_PER_WAKE` that find no call, then the
/// hang-up of a live one): the rest is due at once, as a time the I/O loop already reached,
/// so its next turn takes it without another command to wake it. (Due at a fresh clock
/// reading instead, it never was: 1,000 calls hung up at once left some up on both ends.)
#[test]
fn a_command_backlog_is_taken_on_the_next_turn_without_another_wake() {
    use super::thread::{SipThread, COMMANDS_PER_WAKE};
    use crate::engine::dispatch::Dispatcher;
    use crate::engine::SipHandler;

    // Virtual time behind the real clock, which the I/O loop reads before it asks.
    let t0 = Instant::now()
        .checked_sub(Duration::from_secs(60))
        .expect("a clock running for a minute");
    let mut now = t0;
    let (_a, b, _, theirs) = answered_pair(5091, &mut now);
    // b's core as its SIP thread drives it; the hang-up comes last in a long queue.
    let Ua {
        core,
        dir,
        counters,
        ..
    } = b;
    let dispatcher =
        Arc::new(Dispatcher::new(1, 64, "rkm-test-cb", Arc::new(|_: SipEvent| {})).unwrap());
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut thread = SipThread::new(core, rx, dispatcher, dir, counters);
    for _ in 0..COMMANDS_PER_WAKE {
        tx.send(Command::Hangup(SessionId::new_v4())).unwrap();
    }
    tx.send(Command::Hangup(theirs)).unwrap();
    let mut out = Outbox::default();
    thread.on_wake(now, &mut out);
    assert_eq!(
        tx.len(),
        1,
        "one wake-up takes {COMMANDS_PER_WAKE} commands"
    );
    assert_eq!(out.drain().count(), 0, "no BYE yet");
    // The loop's next turn reads its clock, then asks when the handler is due.
    let reading = Instant::now();
    let due = thread.poll_timeout().expect("a backlog is a timeout");
    assert!(
        due <= reading,
        "the backlog is due at a time the loop reached"
    );
    thread.on_timeout(reading, &mut out);
    assert!(tx.is_empty());
    let sent: Vec<SipMessage> = out.drain().map(|(d, _)| parse(&d).unwrap()).collect();
    assert!(
        sent.iter().any(|m| m.method() == &Method::Bye),
        "the hang-up at the end of the queue sent its BYE: {sent:?}"
    );
    assert_eq!(thread.core.call_count(), 0);
    // With the queue empty the thread sleeps until its own timers (BYE retransmission).
    assert!(thread.poll_timeout().is_some_and(|t| t > reading));
}

/// Both ends hang up at once: each BYE reaches a peer whose own BYE is still unanswered. The
/// dialog lives until then, so each is answered 200 (RFC 3261 §15.1.2), not 481; the call
/// ends once on each side, and the dialog is forgotten when the BYE transactions end. A BYE
/// in that dialog with the wrong tag still gets 481.
#[test]
fn crossing_byes_are_both_answered_200() {
    let t0 = Instant::now();
    let mut now = t0;
    let (mut a, mut b, session, theirs) = answered_pair(5093, &mut now);
    a.cmd(Command::Hangup(session), now);
    b.cmd(Command::Hangup(theirs), now);
    assert_eq!(a.core.call_count() + b.core.call_count(), 0);
    // b's BYE as sent, kept to forge one with a wrong tag below.
    let b_sent: Vec<_> = b.out.drain().collect();
    let b_bye = b_sent
        .iter()
        .find(|(d, _)| parse(d).unwrap().method() == &Method::Bye)
        .map(|(d, _)| d.clone())
        .expect("b sent a BYE");
    for (d, to) in b_sent {
        b.out.push(d, to);
    }
    let mut link = keep_all();
    run_for(&mut a, &mut b, &mut now, Duration::from_secs(1), &mut link);
    let bye_answers = |sent: Vec<&SipMessage>| -> Vec<u16> {
        sent.into_iter()
            .filter(|m| m.cseq().method == Method::Bye)
            .filter_map(SipMessage::status)
            .collect()
    };
    assert_eq!(
        bye_answers(link.from_a.iter().collect()),
        [200],
        "a's answer"
    );
    assert_eq!(
        bye_answers(link.dests_b.iter().map(|(m, _)| m).collect()),
        [200],
        "b's answer"
    );
    for ua in [&a, &b] {
        let s = ua.counters.snapshot();
        assert_eq!((s.calls_ended, s.byes_answered, s.bye_timeouts), (1, 1, 0));
        assert_eq!(ua.live_media(), 0);
    }
    // The same BYE from a stranger's tag (a new transaction): not this dialog, 481.
    let tag = parse(&b_bye).unwrap().from().tag().unwrap().to_string();
    let forged = String::from_utf8(b_bye)
        .unwrap()
        .replace(&format!("tag={tag}"), "tag=stranger")
        .replace("z9hG4bK", "z9hG4bKforged");
    a.recv(forged.as_bytes(), b.addr, now);
    let answers: Vec<u16> = a.sent().iter().filter_map(|(m, _)| m.status()).collect();
    assert_eq!(answers, [481]);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(60),
        &mut keep_all(),
    );
    for ua in [&a, &b] {
        let left: Vec<_> = ua
            .core
            .table_sizes()
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .collect();
        assert!(left.is_empty(), "left in the core: {left:?}");
    }
}

#[test]
fn a_deferred_call_rings_until_decided_and_an_undecided_one_gets_408() {
    use crate::backend::sip_config::{CallDecision, IncomingCall};
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut b = Ua::new(5153, |c| c.decision_timeout = Duration::from_secs(5));
    *b.core.hooks.filter.write() = Some(Arc::new(|_: &IncomingCall| CallDecision::Defer));
    let caller = addr(6100);
    // The final answer to call `cid` in what was sent (a refusal is retransmitted until
    // ACKed, which this caller never does).
    let fin = |sent: &[(SipMessage, SocketAddr)], cid: &str| {
        let of: Vec<_> = sent
            .iter()
            .filter(|(m, _)| m.call_id() == cid)
            .cloned()
            .collect();
        final_status(&of)
    };

    // Answered when the application says so, not before.
    b.recv(plain_invite("d1", caller).as_bytes(), caller, t0);
    let sent = b.sent();
    assert_eq!(sent.last().and_then(|(m, _)| m.status()), Some(180));
    assert_eq!(fin(&sent, "d1"), None);
    b.tick(t0 + s(2));
    assert_eq!(fin(&b.sent(), "d1"), None, "undecided: still ringing");
    b.cmd(
        Command::Decide("d1".into(), CallDecision::Accept),
        t0 + s(2),
    );
    assert_eq!(fin(&b.sent(), "d1"), Some(200));

    // Refused when the application says so, with its status.
    b.recv(plain_invite("d2", caller).as_bytes(), caller, t0 + s(2));
    b.sent();
    b.cmd(
        Command::Decide("d2".into(), CallDecision::Reject(486)),
        t0 + s(3),
    );
    assert_eq!(fin(&b.sent(), "d2"), Some(486));

    // Undecided: refused with 408 at the deadline, and its media is released.
    b.recv(plain_invite("d3", caller).as_bytes(), caller, t0 + s(3));
    b.sent();
    b.tick(t0 + s(3) + Duration::from_millis(4900));
    assert_eq!(fin(&b.sent(), "d3"), None);
    b.tick(t0 + s(8));
    assert_eq!(fin(&b.sent(), "d3"), Some(408));

    // A late decision, or one about a call that was not deferred, changes nothing.
    b.cmd(
        Command::Decide("d3".into(), CallDecision::Accept),
        t0 + s(9),
    );
    b.cmd(
        Command::Decide("d1".into(), CallDecision::Reject(486)),
        t0 + s(9),
    );
    b.cmd(
        Command::Decide("nope".into(), CallDecision::Accept),
        t0 + s(9),
    );
    let sent = b.sent();
    assert!(sent
        .iter()
        .all(|(m, _)| m.call_id() == "d2" || m.call_id() == "d3"));
    assert!(
        sent.iter().all(|(m, _)| m.status() != Some(200)),
        "nothing answered"
    );
    assert_eq!(b.live_media(), 1, "only the answered call keeps media");
    assert_eq!(b.reserved(), 0);
}

#[test]
fn a_dial_offers_its_own_codecs_or_the_configured_ones() {
    use crate::sdp::AudioCodec;
    let t0 = Instant::now();
    let mut a = Ua::new(5154, |_| {});
    let peer = addr(6007);
    let offer_of = |a: &mut Ua, codecs: Vec<AudioCodec>| {
        let mut req = dial_to(SessionId::new_v4(), "sip:bob@127.0.0.1:6007", peer);
        req.audio_codecs = codecs;
        a.cmd(Command::Dial(Box::new(req)), t0);
        let invite = a.sent().remove(0).0;
        let body = String::from_utf8_lossy(invite.body()).into_owned();
        body.lines()
            .find(|l| l.starts_with("m=audio"))
            .map(|l| l.split(' ').skip(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    // roomkit's dial(codec=0): PCMU alone (and telephone-event).
    let one = offer_of(&mut a, vec![AudioCodec::Pcmu]);
    assert!(
        one.starts_with("0 ") && !one.contains(" 8") && !one.contains(" 9"),
        "{one}"
    );
    let configured = offer_of(&mut a, Vec::new());
    assert!(
        configured.contains(" 9 ") && configured.contains(" 0 "),
        "{configured}"
    );
}

#[test]
fn an_auth_resolver_turns_authentication_on_and_supplies_the_password() {
    let mut now = Instant::now();
    let mut a = Ua::new(5155, |_| {});
    let mut b = Ua::new(5156, |_| {});
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = asked.clone();
    *b.core.hooks.resolver.write() = Some(Arc::new(move |user: &str| {
        seen.lock().push(user.to_string());
        (user == "alice").then(|| "secret".to_string())
    }));
    // dial_to carries alice/secret: challenged (401), answered with credentials, answered.
    let uri = "sip:bob@127.0.0.1:5156";
    a.cmd(
        Command::Dial(Box::new(dial_to(SessionId::new_v4(), uri, b.addr))),
        now,
    );
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(5),
        &mut keep_all(),
    );
    assert_eq!(a.states().last(), Some(&CallState::Answered));
    assert!(asked.lock().iter().all(|u| u == "alice") && !asked.lock().is_empty());
    // A password the resolver does not give: refused.
    let mut wrong = dial_to(SessionId::new_v4(), uri, b.addr);
    wrong.call_id = "wrong@test".into();
    wrong.credentials = Some(Credentials::new("alice", "guess"));
    a.cmd(Command::Dial(Box::new(wrong)), now);
    run_for(
        &mut a,
        &mut b,
        &mut now,
        Duration::from_secs(5),
        &mut keep_all(),
    );
    let last = a.progress().pop().unwrap();
    assert_eq!((last.state, last.status), (CallState::Failed, 403));
}

/// A WHIP/WHEP offer (`Command::AcceptOffer`): answered through the same reserve, answer and
/// media start as an INVITE, announced with `on_call`, listed as a call; its hangup closes the
/// media and sends nothing (no dialog, no BYE, no failure counted). An offer we cannot take
/// is refused with the answerer's status and its ports go back.
#[test]
fn an_offer_without_sip_becomes_a_dialog_less_call() {
    use super::command::OfferRequest;
    use roomkit_media_proto::webrtc::WhipKind;
    let now = Instant::now();
    let mut ua = Ua::new(5090, |_| {});
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n\
                 m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                 a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\na=sendonly\r\n";
    let ask = |ua: &mut Ua, session: SessionId, offer: &str| {
        let (reply, answer) = crossbeam_channel::bounded(1);
        ua.cmd(
            Command::AcceptOffer(Box::new(OfferRequest {
                session,
                kind: WhipKind::Whip,
                offer: offer.to_string(),
                client: addr(8443),
                room_id: "whip-room".into(),
                reply,
            })),
            now,
        );
        answer.try_recv().expect("answered within the command")
    };
    let s = SessionId::from_u128(7);
    let sdp = ask(&mut ua, s, offer).expect("an answer");
    assert!(
        sdp.contains("a=recvonly") && sdp.contains("H264/90000"),
        "{sdp}"
    );
    assert!(ua.host_calls().contains(&HostCall::Start {
        session: s,
        has_video: true
    }));
    assert_eq!(ua.live_media(), 1);
    assert!(ua.dir.get(s).is_some());
    let info = ua
        .events
        .iter()
        .find_map(|e| match e {
            SipEvent::Call(i) => Some(i.clone()),
            _ => None,
        })
        .expect("on_call");
    assert_eq!(
        info.metadata.get("signalling").map(String::as_str),
        Some("whip")
    );
    assert_eq!(
        info.metadata.get("caller").map(String::as_str),
        Some("whip:127.0.0.1:8443")
    );
    assert!(ua.sent().is_empty(), "no SIP for a WHIP session");

    // The id is taken now; and an offer with nothing we can answer is refused, its ports freed.
    assert_eq!(ask(&mut ua, s, offer).unwrap_err().status, 500);
    let vp9 = offer.replace(
        "RTP/AVP 0\r\na=rtpmap:0 PCMU/8000",
        "RTP/AVP 98\r\na=rtpmap:98 X/8000",
    );
    assert_eq!(
        ask(&mut ua, SessionId::from_u128(8), &vp9)
            .unwrap_err()
            .status,
        488
    );
    assert_eq!(ua.reserved(), 0);

    ua.cmd(Command::Hangup(s), now);
    assert!(ua.host_calls().contains(&HostCall::Close(s)));
    assert_eq!(ua.live_media(), 0);
    assert!(ua.dir.get(s).is_none());
    assert!(ua.sent().is_empty());
    let st = ua.counters.snapshot();
    assert_eq!(
        (st.bye_failures, st.calls_answered, st.calls_refused),
        (0, 1, 2)
    );
}
