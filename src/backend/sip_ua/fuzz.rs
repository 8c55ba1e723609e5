//! A stateful harness for fuzzing the user agent core: the input bytes are read as a script of
//! operations (raw datagrams, well-formed requests with fuzzed fields, answers to what the core
//! just sent, in-dialog requests built from its own dialogs, application commands, time
//! passing, a shutdown), played on virtual time against a [`FakeMediaHost`]. After every step
//! it checks what must always hold, and at the end that everything winds down.
//!
//! The cargo-fuzz target is one line around [`run`]; the unit test below plays random scripts
//! so the harness itself stays exercised in every test run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::command::{Command, DialRequest, RegisterRequest};
use super::events::SipCounters;
use super::host::{FakeHostState, FakeMediaHost};
use super::state::{SipCore, SipHooks};
use crate::backend::sip_config::SipBackendConfig;
use crate::engine::SessionId;
use crate::sdp::{answer, AnswerConfig, SessionDescription};
use crate::sip::auth::Credentials;
use crate::sip::transaction::Timers;
use crate::sip::{Method, Outbox, ResponseBuilder, SipMessage, SipPeer, SipRng, SipTransportKind};

/// Steps a script runs at most (the fuzzer's inputs are short anyway).
const MAX_STEPS: usize = 400;
/// Messages we sent that later steps may answer.
const KEEP_SENT: usize = 32;
/// Live calls the core may hold at once under this harness: every INVITE or dial of a script
/// is a call at most, and scripts are bounded.
const MAX_CALLS: usize = MAX_STEPS;
/// Transactions the core may hold: a few per step at most.
const MAX_TRANSACTIONS: usize = 4 * MAX_STEPS + 64;

/// Reads the script.
struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.byte()?) << 8 | u16::from(self.byte()?))
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }

    fn pick<'s, T>(&mut self, from: &'s [T]) -> Option<&'s T> {
        let b = self.byte()?;
        from.get(usize::from(b) % from.len().max(1))
    }
}

fn peer(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + u16::from(i % 3)))
}

const LOCAL_PORT: u16 = 5060;

const OFFERS: &[&str] = &[
    "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
     m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
     m=video 30002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n",
    "v=0\r\no=a 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
     m=audio 30010 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendonly\r\n",
    "v=0\r\no=a 1 3 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
     m=audio 30000 RTP/AVP 0\r\na=inactive\r\nm=video 0 RTP/AVP 96\r\n",
    "v=0\r\nm=audio 1 RTP/AVP 18\r\n",
    "",
];

const EXTRA_HEADERS: &[&str] = &[
    "",
    "Require: timer\r\nSession-Expires: 90;refresher=uac\r\nSupported: timer\r\n",
    "Session-Expires: 30\r\nSupported: timer\r\n",
    "Session-Expires: 1800;refresher=uas\r\nMin-SE: 120\r\n",
    "Require: 100rel\r\n",
    "Record-Route: <sip:127.0.0.1:7002;lr>, <sip:proxy.invalid;lr>\r\n",
    "Content-Type: application/dtmf-relay\r\n",
    "X-Room-ID: fuzz\r\n",
    "Authorization: Digest username=\"a\", realm=\"roomkit\", nonce=\"n\", uri=\"sip:x\", response=\"00\"\r\n",
];

const STATUSES: &[u16] = &[
    100, 180, 183, 200, 202, 301, 302, 401, 407, 408, 422, 423, 481, 486, 487, 491, 500, 503, 603,
];

const METHODS: &[&str] = &[
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "REGISTER", "PRACK", "FOO",
];

/// The state of one script.
struct Harness {
    core: SipCore,
    host: Arc<Mutex<FakeHostState>>,
    counters: Arc<SipCounters>,
    out: Outbox,
    now: Instant,
    /// What the core sent lately, parsed, with where it went.
    sent: Vec<(SipMessage, SocketAddr)>,
    sessions: Vec<SessionId>,
    next_cseq: u32,
    stopped: bool,
}

impl Harness {
    fn new() -> Harness {
        let cfg = SipBackendConfig {
            local_sip_addr: SocketAddr::from(([127, 0, 0, 1], LOCAL_PORT)),
            local_rtp_ip: [127, 0, 0, 1].into(),
            max_sessions: 8,
            answer_after: Duration::from_millis(300),
            timers: Timers {
                t1: Duration::from_millis(100),
                t2: Duration::from_millis(400),
                t4: Duration::from_millis(500),
            },
            session_expires: 90,
            ..SipBackendConfig::default()
        };
        let (host, state) = FakeMediaHost::new(24);
        let counters = Arc::new(SipCounters::default());
        Harness {
            core: SipCore::new(
                cfg,
                true,
                Box::new(host),
                Arc::new(SipHooks::default()),
                SocketAddr::from(([127, 0, 0, 1], LOCAL_PORT)),
                // One seed for every script: a finding replays byte for byte.
                SipRng::seeded(0),
            ),
            host: state,
            counters,
            out: Outbox::default(),
            now: Instant::now(),
            sent: Vec::new(),
            sessions: Vec::new(),
            next_cseq: 1,
            stopped: false,
        }
    }

    /// Takes what the core sent: every message must be valid SIP.
    fn collect(&mut self) {
        while let Some(u) = self.core.poll_update() {
            self.counters.apply(&u);
        }
        while let Some(ev) = self.core.poll_event() {
            if let super::events::SipEvent::Call(info) = ev {
                self.sessions.push(info.id);
            }
        }
        for (data, to) in self.out.drain() {
            let msg = SipMessage::parse(&data).unwrap_or_else(|e| {
                panic!(
                    "we sent invalid SIP ({e}):\n{}",
                    String::from_utf8_lossy(&data)
                )
            });
            if self.sent.len() >= KEEP_SENT {
                self.sent.remove(0);
            }
            self.sent.push((msg, to.addr));
        }
    }

    fn deliver(&mut self, data: &[u8], from: SocketAddr) {
        self.core
            .handle_datagram(data, SipPeer::udp(from), self.now, &mut self.out);
        self.collect();
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        // Bounded: each round either runs due timers or jumps to the next one.
        for _ in 0..10_000 {
            match self.core.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.core.handle_timeout(self.now, &mut self.out);
                    self.collect();
                    if let Some(next) = self.core.poll_timeout() {
                        assert!(next > self.now, "a timer stays due after it ran");
                    }
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn command(&mut self, cmd: Command) {
        self.core.handle_command(cmd, self.now, &mut self.out);
        self.collect();
    }

    /// A request from a peer, well-formed but for the fuzzed fields.
    fn request(&mut self, r: &mut Reader<'_>) -> Option<()> {
        let method = *r.pick(METHODS)?;
        let call = r.byte()? % 4;
        let tag = r.byte()?;
        let to_tag = match r.byte()? % 3 {
            0 => String::new(),
            1 => format!(";tag=t{}", tag % 4),
            _ => self
                .sent
                .iter()
                .rev()
                .find_map(|(m, _)| m.to().tag().map(|t| format!(";tag={t}")))
                .unwrap_or_default(),
        };
        let branch = r.byte()?;
        let cseq = match r.byte()? % 3 {
            0 => 1,
            1 => self.next_cseq,
            _ => u32::from(r.byte()?),
        };
        self.next_cseq += 1;
        let extra = *r.pick(EXTRA_HEADERS)?;
        let body = *r.pick(OFFERS)?;
        let body = if method == "INFO" {
            match r.byte()? % 3 {
                0 => "Signal=5\r\nDuration=160\r\n",
                1 => "",
                _ => "Signal=#",
            }
        } else {
            body
        };
        let ctype = if body.is_empty() || extra.contains("Content-Type") {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let from = peer(tag);
        let msg = format!(
            "{method} sip:roomkit@127.0.0.1:{LOCAL_PORT} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {from};branch=z9hG4bKf{branch}\r\n\
             From: \"F\" <sip:f@127.0.0.1>;tag=f{call}\r\n\
             To: <sip:roomkit@127.0.0.1>{to_tag}\r\n\
             Call-ID: call{call}@fuzz\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:f@{from}>\r\nMax-Forwards: 70\r\n{extra}{ctype}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.deliver(msg.as_bytes(), from);
        Some(())
    }

    /// A response to one of the requests the core sent lately.
    fn reflect(&mut self, r: &mut Reader<'_>) -> Option<()> {
        let requests: Vec<usize> = (0..self.sent.len())
            .filter(|&i| self.sent[i].0.is_request() && self.sent[i].0.method() != &Method::Ack)
            .collect();
        let &i = r.pick(&requests)?;
        let (req, to) = self.sent[i].clone();
        let status = *r.pick(STATUSES)?;
        let flags = r.byte()?;
        let mut b = ResponseBuilder::new(req.echo(), status);
        if flags & 1 != 0 || status >= 200 {
            b = b.to_tag(&format!("r{}", flags >> 6));
        }
        if flags & 2 != 0 {
            b = b.contact(&format!("sip:callee@{to}"));
        }
        if flags & 4 != 0 {
            b = b.header("Record-Route", "<sip:127.0.0.1:7001;lr>");
        }
        match status {
            401 => {
                b = b.header(
                    "WWW-Authenticate",
                    "Digest realm=\"r\", nonce=\"abc\", qop=\"auth\", algorithm=MD5",
                )
            }
            407 => {
                b = b.header(
                    "Proxy-Authenticate",
                    "Digest realm=\"p\", nonce=\"def\", algorithm=SHA-256",
                )
            }
            422 => b = b.header("Min-SE", "300"),
            423 => b = b.header("Min-Expires", "7200"),
            300..=399 => b = b.contact("sip:moved@127.0.0.1:7002"),
            200 if req.method() == &Method::Register => {
                if let Some(c) = req.contact() {
                    b = b.header("Contact", &format!("<{}>;expires=60", c.uri()));
                }
            }
            _ => {}
        }
        if flags & 8 != 0 {
            b = b.header("Session-Expires", "90;refresher=uac");
        }
        if flags & 16 != 0 && matches!(status, 183 | 200) {
            // A real answer to the offer, or one that does not fit it.
            let sdp = match SessionDescription::parse(req.body()) {
                Ok(offer) if flags & 32 == 0 => answer(
                    &offer,
                    &AnswerConfig::new([127, 0, 0, 1].into(), 31000, 31002),
                )
                .map(|a| a.sdp)
                .unwrap_or_default(),
                _ => OFFERS[usize::from(flags) % OFFERS.len()].to_string(),
            };
            b = b.body("application/sdp", sdp.as_bytes());
        }
        let data = b.build();
        self.deliver(&data, to);
        Some(())
    }

    /// An in-dialog request from the far end of one of our dialogs (its identifiers taken from
    /// what we sent).
    fn in_dialog(&mut self, r: &mut Reader<'_>) -> Option<()> {
        let &i = r.pick(&(0..self.sent.len()).collect::<Vec<_>>())?;
        let (m, to) = self.sent[i].clone();
        // Our side's tag and theirs, seen from the far end.
        let (ours, theirs) = if m.is_request() {
            (m.echo().from.clone()?, m.echo().to.clone()?)
        } else {
            (m.echo().to.clone()?, m.echo().from.clone()?)
        };
        let method = *r.pick(&["BYE", "INFO", "INVITE", "UPDATE", "ACK", "OPTIONS"])?;
        let cseq = 1000 + u32::from(r.byte()?);
        let body = if method == "INVITE" || method == "UPDATE" {
            *r.pick(OFFERS)?
        } else {
            ""
        };
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let branch = r.u16()?;
        let msg = format!(
            "{method} sip:roomkit@127.0.0.1:{LOCAL_PORT} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {to};branch=z9hG4bKd{branch}\r\n\
             From: {theirs}\r\nTo: {ours}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:far@{to}>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            m.call_id(),
            body.len()
        );
        self.deliver(msg.as_bytes(), to);
        Some(())
    }

    fn app(&mut self, r: &mut Reader<'_>) -> Option<()> {
        let b = r.byte()?;
        let session = |h: &Harness, k: u8| {
            h.sessions
                .get(usize::from(k) % h.sessions.len().max(1))
                .copied()
        };
        match b % 7 {
            0 | 1 => {
                // Numbered, not random: the Call-ID is made of it, and a finding must replay.
                let s = SessionId::from_u128(self.sessions.len() as u128 + 1);
                self.sessions.push(s);
                let target = peer(b);
                self.command(Command::Dial(Box::new(DialRequest {
                    session: s,
                    call_id: format!("{s}@dial"),
                    target: format!("sip:callee@{target}"),
                    from_uri: String::new(),
                    display_name: (b & 8 != 0).then(|| "Q\"uote\\d".to_string()),
                    contact_user: "me".into(),
                    // Bit 7: over TCP (no retransmissions; a transport error may end it).
                    next_hop: if b & 128 != 0 {
                        SipPeer::new(target, SipTransportKind::Tcp)
                    } else {
                        SipPeer::udp(target)
                    },
                    route: (b & 16 != 0).then(|| "<sip:127.0.0.1:7001;lr>".to_string()),
                    credentials: (b & 32 != 0).then(|| Credentials::new("u", "p")),
                    headers: vec![("X-Fuzz".into(), "1".into())],
                    video: b & 64 != 0,
                    ring_timeout: Duration::from_secs(2),
                    room_id: "r".into(),
                    audio_codecs: Vec::new(),
                })));
            }
            2 => {
                if let Some(s) = session(self, r.byte()?) {
                    // Half the hang-ups carry a Reason (on a BYE, a CANCEL, or a BYE after an
                    // answer that beat the CANCEL).
                    self.command(if b & 8 != 0 {
                        Command::HangupWithReason(s, "Q.850;cause=16;text=\"fuzz\"".into())
                    } else {
                        Command::Hangup(s)
                    });
                }
            }
            3 => {
                if let Some(s) = session(self, r.byte()?) {
                    self.command(Command::Hold(s, b & 8 != 0));
                }
            }
            6 => {
                if let Some(s) = session(self, r.byte()?) {
                    self.command(Command::Video(s, b & 8 != 0));
                }
            }
            4 => self.command(Command::Register(
                u64::from(b >> 4),
                Box::new(RegisterRequest {
                    aor: format!("sip:me{}@127.0.0.1", b >> 4),
                    registrar: String::new(),
                    next_hop: SipPeer::udp(peer(b)),
                    route: None,
                    credentials: Some(Credentials::new("me", "pw")),
                    expires: 60,
                }),
            )),
            _ => self.command(Command::Unregister(u64::from(b >> 4))),
        }
        Some(())
    }

    /// What holds after every step.
    fn check(&self) {
        assert!(self.core.call_count() <= MAX_CALLS);
        assert!(
            self.core.transaction_count() <= MAX_TRANSACTIONS,
            "{} transactions",
            self.core.transaction_count()
        );
        assert!(self.core.registration_count() <= super::state::MAX_REGISTRATIONS);
        assert_eq!(
            self.counters.snapshot().bye_failures,
            0,
            "a BYE could not be sent"
        );
        let host = self.host.lock();
        // Every live media session and every reservation belongs to a call, and back.
        let started: Vec<SessionId> = self
            .core
            .calls
            .values()
            .filter(|c| c.media.started)
            .map(|c| c.session)
            .collect();
        for s in &started {
            assert!(host.live.contains_key(s), "a call's media is not running");
        }
        for s in host.live.keys() {
            // A session the setup worker started runs before the core hears of it.
            let unreported = host.deferred.iter().any(|(d, _)| d == s);
            assert!(
                started.contains(s) || unreported,
                "media running without its call"
            );
        }
        // A call waits for its media only while the host has the report to give.
        for c in self.core.calls.values().filter(|c| c.media.starting) {
            assert!(
                host.deferred.iter().any(|(d, _)| *d == c.session),
                "a call waits for a setup nobody will report"
            );
        }
        for s in &host.video {
            assert!(host.live.contains_key(s), "video without its session");
        }
        // A call holds a reservation until its media starts, and another for video its
        // re-INVITE offers until answered.
        let reserved: usize = self
            .core
            .calls
            .values()
            .map(|c| {
                usize::from(c.media.reservation.is_some())
                    + usize::from(matches!(
                        c.reinvite.pending_video,
                        Some(super::reinvite::VideoChange::Add { .. })
                    ))
            })
            .sum();
        assert_eq!(
            reserved,
            host.reserved.len(),
            "reservations and calls disagree"
        );
    }

    /// Deferred starts on: the oldest report of the host's setup worker reaches the core.
    fn report_setup(&mut self) {
        let report = {
            let mut host = self.host.lock();
            host.defer_start = true;
            (!host.deferred.is_empty()).then(|| host.deferred.remove(0))
        };
        if let Some((session, result)) = report {
            self.core.handle_command(
                Command::MediaStarted(session, result),
                self.now,
                &mut self.out,
            );
            self.collect();
        }
    }

    /// The end of a script: the backend stops, time runs on, and nothing may be left.
    fn finish(&mut self) {
        if !self.stopped {
            self.core.shutdown(self.now, &mut self.out);
            self.collect();
        }
        self.advance(Duration::from_secs(600));
        {
            // Started by the setup worker but never reported: the engine host closes them as
            // it is dropped (the core has stopped listening).
            let mut host = self.host.lock();
            let orphans: Vec<SessionId> = host.deferred.drain(..).map(|(s, _)| s).collect();
            for s in orphans {
                host.live.remove(&s);
                host.video.remove(&s);
            }
        }
        self.check();
        assert_eq!(self.core.call_count(), 0, "calls left after stopping");
        assert_eq!(self.core.transaction_count(), 0, "transactions left");
        assert_eq!(self.core.registration_count(), 0, "registrations left");
        assert_eq!(self.core.poll_timeout(), None, "timers left");
        let host = self.host.lock();
        assert!(
            host.live.is_empty() && host.reserved.is_empty(),
            "media left"
        );
    }
}

/// Plays `data` as a script against a fresh core and checks it (panics on a violation).
pub fn run(data: &[u8]) {
    play(data, false);
}

/// [`run`] with a host that starts every session as the engine's setup worker does: reported
/// later, by the script's steps (or never, when the script ends first).
pub fn run_deferred(data: &[u8]) {
    play(data, true);
}

fn play(data: &[u8], deferred: bool) {
    let mut h = Harness::new();
    h.host.lock().defer_start = deferred;
    let mut r = Reader { data };
    for _ in 0..MAX_STEPS {
        let Some(op) = r.byte() else { break };
        let done = match op % 9 {
            0 => {
                let n = usize::from(r.u16().unwrap_or(0) % 1600);
                let from = peer(r.byte().unwrap_or(0));
                let raw = r.bytes(n).to_vec();
                h.deliver(&raw, from);
                Some(())
            }
            1 | 2 => h.request(&mut r),
            3 | 4 => h.reflect(&mut r),
            5 => h.in_dialog(&mut r),
            6 => h.app(&mut r),
            7 => {
                let ms = u64::from(r.u16().unwrap_or(0));
                h.advance(Duration::from_millis(ms * 4));
                Some(())
            }
            _ => {
                let b = r.byte().unwrap_or(0);
                if !h.stopped && b == 0 {
                    h.stopped = true;
                    h.core.shutdown(h.now, &mut h.out);
                    h.collect();
                } else if b & 3 == 2 {
                    // The host's setup worker reports its oldest session; the first such step
                    // makes the host start sessions that way from now on.
                    h.report_setup();
                } else if b & 1 == 1 {
                    // The engine could not reach a TCP peer (the calls dialled over TCP).
                    let dest = SipPeer::new(peer(b), SipTransportKind::Tcp);
                    h.core
                        .handle_transport_error(dest, "connection refused", h.now, &mut h.out);
                    h.collect();
                }
                Some(())
            }
        };
        h.check();
        if done.is_none() {
            break;
        }
    }
    h.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Fuzzer findings, kept: each once broke an invariant.
    #[test]
    fn findings_stay_fixed() {
        // A call answered, our hold re-INVITE got only a 100, then the backend stopped: the
        // re-INVITE's transaction waited for ever (now it is cancelled when its call ends).
        run(&[
            0xa3, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0xf2, 0x73, 0x04, 0x8d, 0x84, 0xff,
            0x8d, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0xe6, 0xf9, 0x00, 0x5d, 0x30, 0x30, 0x0a, 0x60,
        ]);
        // A dialed call answered, then video added: the re-INVITE's port reservation was not
        // counted by the invariant, and a call ending before the answer leaked it (end_call now
        // releases it).
        run(&[
            6, 0, 42, 122, 22, 255, 206, 60, 22, 255, 255, 255, 255, 255, 206, 60, 111, 6, 111, 63,
            0,
        ]);
        // The same, hung up while the video re-INVITE is unanswered.
        run(&[
            6, 0, 42, 122, 22, 255, 206, 60, 22, 255, 255, 255, 255, 255, 206, 60, 111, 6, 111, 63,
            6, 2, 0,
        ]);
    }

    #[test]
    fn random_scripts_hold_the_invariants() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(0x005e_ed0f_5a17);
        for _ in 0..300 {
            let len = rng.random_range(0..1500);
            let script: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            run(&script);
            run_deferred(&script);
        }
    }
}
