//! One SIP datagram through what our UAS does with it: the strict parser, then for an accepted
//! request the answers we would send (each parsed back: we must accept what we send), its server
//! transaction on virtual time, the dialog it forms or continues and the BYE built from that
//! dialog, and digest credentials; for a response, the UAC's dialog and its ACK and BYE.

use std::time::{Duration, Instant};

use roomkit_media::sip::auth::{
    authorization_value, parse_authorization, AuthOutcome, DigestAuthenticator,
};
use roomkit_media::sip::dialog::Dialog;
use roomkit_media::sip::transaction::{
    InviteServerTransaction, NonInviteClientTransaction, NonInviteServerTransaction, Timers,
    TransactionKey,
};
use roomkit_media::sip::{parse, Method, ParseError, ResponseBuilder, SipMessage};

/// The To tag our answers add.
pub const OUR_TAG: &str = "fz7tag";
const CONTACT: &str = "sip:room@192.0.2.10:5060";
const SENT_BY: &str = "192.0.2.10:5060";
const SERVER: &str = "roomkit-media";
const ANSWER_SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=roomkit-media\r\n\
c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
/// Statuses the UAS answers requests with.
const STATUSES: [u16; 10] = [100, 180, 200, 400, 401, 481, 486, 488, 500, 503];

/// Runs one datagram through the UAS paths; panics when a property breaks.
pub fn datagram(data: &[u8]) {
    let now = Instant::now();
    match parse(data) {
        Ok(msg) if msg.is_request() => request(&msg, now),
        Ok(msg) => response(&msg, now),
        Err(ParseError::Reject(r)) => {
            assert!(matches!(r.status, 400 | 416 | 505), "{}", r.status);
            // The answer copies the request's raw headers, which may be broken (that is why it is
            // refused), so it need not parse; it must still be framed as we meant it.
            assert_framing(
                &ResponseBuilder::rejection(&r)
                    .to_tag(OUR_TAG)
                    .server(SERVER)
                    .build(),
            );
        }
        Err(ParseError::Drop { .. }) => {}
    }
}

/// In the head of a message we send, every CR starts a CRLF and every LF ends one: nothing we
/// copied can start a line of its own at the peer.
pub fn assert_framing(msg: &[u8]) {
    let end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no blank line after the head of what we send");
    let head = &msg[..end + 2];
    for (i, &b) in head.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(head.get(i + 1), Some(&b'\n'), "bare CR in what we send");
        }
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF in what we send");
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A response we built for `req` parses back and answers it: same Vias, From tag, Call-ID and
/// CSeq, and the request's To tag or, past 100, ours.
fn assert_answers(req: &SipMessage, bytes: &[u8], status: u16) -> SipMessage {
    assert_framing(bytes);
    let resp = parse(bytes)
        .unwrap_or_else(|e| panic!("our {status} does not parse: {e}\n{}", text(bytes)));
    assert_eq!(resp.status(), Some(status));
    assert_eq!(resp.call_id(), req.call_id());
    assert_eq!(resp.cseq(), req.cseq());
    assert_eq!(resp.vias().len(), req.vias().len());
    assert_eq!(resp.top_via().branch(), req.top_via().branch());
    assert_eq!(resp.from().tag(), req.from().tag());
    let tag = req.to().tag().or((status > 100).then_some(OUR_TAG));
    assert_eq!(
        resp.to().tag(),
        tag,
        "To tag of our {status}\n{}",
        text(bytes)
    );
    resp
}

/// The response the UAS core would build for `req` with `status`.
fn build_answer(req: &SipMessage, status: u16) -> Vec<u8> {
    let mut b = ResponseBuilder::new(req.echo(), status).server(SERVER);
    if status > 100 {
        b = b.to_tag(OUR_TAG);
    }
    if (101..300).contains(&status) {
        b = b.contact(CONTACT);
    }
    if status == 200 && matches!(req.method(), Method::Invite) {
        b = b.body("application/sdp", ANSWER_SDP);
    }
    if status == 401 {
        b = b.www_authenticate("Digest realm=\"roomkit\", nonce=\"abc\", qop=\"auth\"");
    }
    b.build()
}

fn request(req: &SipMessage, now: Instant) {
    if matches!(req.method(), Method::Ack) {
        // An ACK is never answered; it only confirms an INVITE transaction or a dialog.
        in_dialog(req, now);
        return;
    }
    for status in STATUSES {
        assert_answers(req, &build_answer(req, status), status);
    }
    server_transaction(req, now);
    if matches!(req.method(), Method::Invite) && req.to().tag().is_none() {
        new_dialog(req, now);
    } else {
        in_dialog(req, now);
    }
    if let Some(value) = req.header("Authorization") {
        digest(value, req.method().as_str(), now);
    }
}

/// Drains a transaction's datagrams, checking each is an answer to `req`.
fn check_sent(req: &SipMessage, sent: impl Iterator<Item = Vec<u8>>) {
    for bytes in sent {
        let status = parse(&bytes)
            .ok()
            .and_then(|m| m.status())
            .unwrap_or_else(|| panic!("transaction sent something unreadable:\n{}", text(&bytes)));
        assert_answers(req, &bytes, status);
    }
}

/// The server transaction: 100 (INVITE), 180 and 200 (or 486), a retransmitted request, then
/// virtual time until it ends. Every datagram it sends must answer the request.
fn server_transaction(req: &SipMessage, now: Instant) {
    let timers = Timers::default();
    let end = now + Duration::from_secs(120);
    if matches!(req.method(), Method::Invite) {
        let mut tx = InviteServerTransaction::new(req, now, timers);
        assert_eq!(tx.key(), &TransactionKey::server(req));
        let final_status = if req.cseq().number.is_multiple_of(2) {
            200
        } else {
            486
        };
        tx.respond(180, build_answer(req, 180), now).expect("180");
        tx.respond(final_status, build_answer(req, final_status), now)
            .expect("final");
        tx.handle_retransmission();
        check_sent(req, std::iter::from_fn(|| tx.poll_transmit()));
        let mut steps = 0;
        while let Some(t) = tx.poll_timeout().filter(|t| *t <= end) {
            steps += 1;
            assert!(steps < 100, "INVITE transaction keeps waking");
            tx.handle_timeout(t);
            check_sent(req, std::iter::from_fn(|| tx.poll_transmit()));
            while tx.poll_event().is_some() {}
        }
        assert!(
            tx.is_terminated(),
            "INVITE transaction still alive after 2 minutes"
        );
    } else {
        let mut tx = NonInviteServerTransaction::new(req, now, timers);
        tx.respond(200, build_answer(req, 200), now).expect("200");
        tx.handle_retransmission();
        check_sent(req, std::iter::from_fn(|| tx.poll_transmit()));
        let mut steps = 0;
        while let Some(t) = tx.poll_timeout().filter(|t| *t <= end) {
            steps += 1;
            assert!(steps < 100, "non-INVITE transaction keeps waking");
            tx.handle_timeout(t);
            check_sent(req, std::iter::from_fn(|| tx.poll_transmit()));
            while tx.poll_event().is_some() {}
        }
        assert!(
            tx.is_terminated(),
            "transaction still alive after 2 minutes"
        );
    }
}

/// A BYE built from `dialog` parses, goes to the dialog's target, and starts a client transaction.
fn check_bye(dialog: &mut Dialog, now: Instant) {
    let bytes = dialog
        .request(Method::Bye, SENT_BY, "UDP")
        .header("User-Agent", SERVER)
        .build();
    assert_framing(&bytes);
    let bye = parse(&bytes).unwrap_or_else(|e| {
        panic!(
            "our BYE does not parse: {e}\ntarget {}\n{}",
            dialog.remote_target(),
            text(&bytes)
        )
    });
    assert_eq!(bye.method(), &Method::Bye);
    assert_eq!(bye.call_id(), dialog.id().call_id);
    assert_eq!(bye.cseq().number, dialog.local_cseq());
    if dialog.route_set().is_empty() {
        let uri = bye.request_uri().expect("a request").as_str();
        assert_eq!(uri, dialog.remote_target());
    }
    NonInviteClientTransaction::new(bytes, now, Timers::default())
        .unwrap_or_else(|e| panic!("no transaction for our BYE: {e}"));
}

/// A new INVITE: the dialog our 200 forms, or the status that refuses it.
fn new_dialog(invite: &SipMessage, now: Instant) {
    match Dialog::uas(invite, OUR_TAG) {
        Ok(mut d) => {
            assert_eq!(d.id().local_tag, OUR_TAG);
            assert_eq!(d.id().call_id, invite.call_id());
            check_bye(&mut d, now);
        }
        Err(e) => {
            let status = e.status();
            assert!((400..500).contains(&status), "{e}: {status}");
            assert_answers(invite, &build_answer(invite, status), status);
        }
    }
}

/// An INVITE with the Call-ID and From of a message that came in, so that a dialog made from it
/// is the one that message belongs to (None when that text does not make a valid INVITE).
fn synthetic_invite(call_id: &str, from: &str) -> Option<SipMessage> {
    let text = format!(
        "INVITE sip:room@192.0.2.10 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsynthetic\r\n\
         From: {from}\r\n\
         To: <sip:room@192.0.2.10>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 0 INVITE\r\n\
         Contact: <sip:peer@192.0.2.1:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    parse(text.as_bytes()).ok()
}

/// A request with our tag in To: run it against the dialog our 200 made for its Call-ID and From;
/// if the dialog takes it, a BYE built afterwards (a re-INVITE may have moved the target) must
/// still be one we accept, and if it refuses it, the dialog is unchanged.
fn in_dialog(req: &SipMessage, now: Instant) {
    if req.to().tag() != Some(OUR_TAG) {
        return;
    }
    let Some(invite) = synthetic_invite(req.call_id(), req.from().raw()) else {
        return;
    };
    let mut d = Dialog::uas(&invite, OUR_TAG).expect("a clean INVITE forms a dialog");
    assert!(
        d.matches_request(req),
        "request does not match its own dialog"
    );
    let before = d.remote_target().to_string();
    match d.accept_request(req) {
        Ok(()) => check_bye(&mut d, now),
        Err(e) => {
            assert_eq!(
                d.remote_target(),
                before,
                "a refused request moved the target"
            );
            if !matches!(req.method(), Method::Ack) {
                let status = e.status();
                assert_answers(req, &build_answer(req, status), status);
            }
        }
    }
}

/// A response to one of our requests: the dialog a UAC forms from it, with its ACK and BYE.
fn response(resp: &SipMessage, now: Instant) {
    let _ = TransactionKey::client(resp);
    let status = resp.status().unwrap_or_default();
    // Only an answer to an INVITE of ours can form a dialog, and ours always carry a From tag.
    if !(matches!(resp.cseq().method, Method::Invite) && (101..300).contains(&status))
        || resp.from().tag().is_none()
    {
        return;
    }
    let Some(ours) = synthetic_invite(resp.call_id(), resp.from().raw()) else {
        return;
    };
    let Ok(mut d) = Dialog::uac(&ours, resp) else {
        return;
    };
    assert!(d.matches_response(resp));
    let ack = d.ack(resp.cseq().number, SENT_BY, "UDP").build();
    let ack_msg =
        parse(&ack).unwrap_or_else(|e| panic!("our ACK does not parse: {e}\n{}", text(&ack)));
    assert_eq!(ack_msg.method(), &Method::Ack);
    check_bye(&mut d, now);
}

/// Digest credentials: parsing and checking never panic, and the credentials our UAC would send
/// for the same user, realm and URI are accepted by our verifier.
fn digest(value: &str, method: &str, now: Instant) {
    let mut auth = DigestAuthenticator::new("roomkit", Duration::from_secs(30));
    let _ = auth.challenge(now, false);
    let _ = auth.verify(value, method, now, |_| Some("pw".to_string()));
    let Ok(creds) = parse_authorization(value) else {
        return;
    };
    let mut auth = DigestAuthenticator::new(&creds.realm, Duration::from_secs(30));
    let challenge = auth.challenge(now, false);
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("our challenge has a nonce");
    let ours = authorization_value(
        &creds.username,
        &creds.realm,
        "pw",
        method,
        &creds.uri,
        nonce,
        1,
        creds.cnonce.as_deref().unwrap_or("c0ffee"),
        creds.opaque.as_deref(),
    );
    let back = parse_authorization(&ours)
        .unwrap_or_else(|e| panic!("our Authorization does not parse: {e}\n{ours}"));
    assert_eq!(back.username, creds.username);
    assert_eq!(back.realm, creds.realm);
    assert_eq!(back.uri, creds.uri);
    let user = creds.username.clone();
    let outcome = auth.verify(&ours, method, now, |u| {
        (u == user).then(|| "pw".to_string())
    });
    assert!(
        matches!(outcome, AuthOutcome::Authorized { .. }),
        "our own credentials refused: {outcome:?}\n{ours}"
    );
}
