//! Transactions and dialogs on virtual time: every instant is `t0 + offset`, and the machines are
//! driven only through `handle_timeout(poll_timeout())`, as the SIP thread will drive them.

use std::time::{Duration, Instant};

use roomkit_media::sip::dialog::{Dialog, DialogError};
use roomkit_media::sip::transaction::{
    CancelOutcome, CancelProgress, InviteClientState, InviteClientTransaction,
    InviteServerTransaction, NonInviteClientTransaction, NonInviteServerTransaction, Timers,
    TransactionError, TransactionEvent, TransactionKey,
};
use roomkit_media::sip::{parse, Method, RequestBuilder, ResponseBuilder, SipMessage};

/// The common driving surface of the four state machines.
trait Machine {
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    fn poll_event(&mut self) -> Option<TransactionEvent>;
}

macro_rules! machine {
    ($t:ty) => {
        impl Machine for $t {
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_transmit(&mut self) -> Option<Vec<u8>> {
                <$t>::poll_transmit(self)
            }
            fn poll_event(&mut self) -> Option<TransactionEvent> {
                <$t>::poll_event(self)
            }
        }
    };
}
machine!(InviteServerTransaction);
machine!(NonInviteServerTransaction);
machine!(NonInviteClientTransaction);
machine!(InviteClientTransaction);

/// What happened at one virtual instant.
#[derive(Debug, Default)]
struct Log {
    /// (offset from t0 in ms, first line of the datagram)
    sent: Vec<(u64, String)>,
    /// (offset from t0 in ms, event)
    events: Vec<(u64, String)>,
    /// Every datagram sent, whole.
    raw: Vec<Vec<u8>>,
}

fn first_line(d: &[u8]) -> String {
    String::from_utf8_lossy(d)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn drain(m: &mut impl Machine, t0: Instant, now: Instant, log: &mut Log) {
    let at = (now - t0).as_millis() as u64;
    while let Some(d) = m.poll_transmit() {
        log.sent.push((at, first_line(&d)));
        log.raw.push(d);
    }
    while let Some(e) = m.poll_event() {
        let name = match e {
            TransactionEvent::AckReceived => "ack".to_string(),
            TransactionEvent::AckTimeout { status } => format!("ack-timeout {status}"),
            TransactionEvent::Response(r) => format!("response {}", r.status().unwrap()),
            TransactionEvent::Timeout => "timeout".to_string(),
            TransactionEvent::TransportError(r) => format!("transport-error {r}"),
            TransactionEvent::Terminated => "terminated".to_string(),
        };
        log.events.push((at, name));
    }
}

/// Logs what is pending at `now`, then runs the machine's timers up to `until` (inclusive),
/// logging what it sends and reports.
fn run_until(m: &mut impl Machine, t0: Instant, now: Instant, until: Instant, log: &mut Log) {
    drain(m, t0, now, log);
    while let Some(t) = m.poll_timeout().filter(|t| *t <= until) {
        m.handle_timeout(t);
        drain(m, t0, t, log);
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn request(method: &str, branch: &str, cseq: u32, to_tag: &str) -> SipMessage {
    let to_tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    parse(
        format!(
            "{method} sip:bob@192.0.2.9 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch};rport\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
To: <sip:bob@example.com>{to_tag}\r\n\
Call-ID: call-1@192.0.2.1\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:alice@192.0.2.1:5060>\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap()
}

fn response(req: &SipMessage, status: u16) -> Vec<u8> {
    ResponseBuilder::new(req.echo(), status)
        .to_tag("b1")
        .build()
}

/// Offsets (ms after the final response) of every retransmission of it.
fn retransmissions_after(log: &Log, from_ms: u64, line: &str) -> Vec<u64> {
    log.sent
        .iter()
        .filter(|(at, l)| *at > from_ms && l == line)
        .map(|(at, _)| at - from_ms)
        .collect()
}

#[test]
fn ok_is_retransmitted_at_t1_doubling_to_t2_until_the_ack_timeout() {
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKinv", 1, "");
    let mut tx = InviteServerTransaction::new(&inv, t0, Timers::default());
    let mut log = Log::default();
    run_until(&mut tx, t0, t0, t0, &mut log);
    assert_eq!(log.sent, vec![(0, "SIP/2.0 100 Trying".to_string())]);

    let answered = t0 + ms(1000);
    tx.respond(200, response(&inv, 200), answered).unwrap();
    run_until(&mut tx, t0, answered, t0 + ms(60_000), &mut log);

    let retx = retransmissions_after(&log, 1000, "SIP/2.0 200 OK");
    // Intervals 0.5, 1, 2, 4, 4, ... seconds, until 64×T1 = 32 s after the 200.
    assert_eq!(
        retx,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    let intervals: Vec<u64> = std::iter::once(retx[0])
        .chain(retx.windows(2).map(|w| w[1] - w[0]))
        .collect();
    assert_eq!(intervals[..5], [500, 1000, 2000, 4000, 4000]);
    assert_eq!(
        log.events,
        vec![
            (33_000, "ack-timeout 200".to_string()),
            (33_000, "terminated".to_string())
        ]
    );
    assert!(tx.is_terminated());
    assert_eq!(tx.poll_timeout(), None);
}

#[test]
fn ack_stops_the_ok_and_later_invite_copies_are_absorbed() {
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKinv", 1, "");
    let mut tx = InviteServerTransaction::new(&inv, t0, Timers::default());
    let mut log = Log::default();
    tx.respond(200, response(&inv, 200), t0).unwrap();
    run_until(&mut tx, t0, t0, t0 + ms(2000), &mut log);
    // The 2xx ACK is its own transaction; the dialog layer hands it to the INVITE transaction.
    let ack = request("ACK", "z9hG4bKack", 1, "b1");
    tx.handle_request(&ack, t0 + ms(2000));
    drain(&mut tx, t0, t0 + ms(2000), &mut log);
    tx.handle_request(&inv, t0 + ms(2100));
    run_until(&mut tx, t0, t0 + ms(2100), t0 + ms(40_000), &mut log);
    let oks: Vec<u64> = log
        .sent
        .iter()
        .filter(|(_, l)| l == "SIP/2.0 200 OK")
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(oks, vec![0, 500, 1500]);
    assert_eq!(
        log.events,
        vec![
            (2000, "ack".to_string()),
            (32_000, "terminated".to_string())
        ]
    );
}

#[test]
fn duplicate_invite_gets_the_last_provisional_again() {
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKinv", 1, "");
    let mut tx = InviteServerTransaction::new(&inv, t0, Timers::default());
    let mut log = Log::default();
    drain(&mut tx, t0, t0, &mut log);
    tx.handle_request(&inv, t0 + ms(100));
    drain(&mut tx, t0, t0 + ms(100), &mut log);
    tx.respond(180, response(&inv, 180), t0 + ms(200)).unwrap();
    drain(&mut tx, t0, t0 + ms(200), &mut log);
    // The peer's retransmitted INVITE (same branch) maps to this transaction.
    let copy = request("INVITE", "z9hG4bKinv", 1, "");
    assert_eq!(TransactionKey::server(&copy), *tx.key());
    tx.handle_request(&copy, t0 + ms(500));
    drain(&mut tx, t0, t0 + ms(500), &mut log);
    assert_eq!(
        log.sent,
        vec![
            (0, "SIP/2.0 100 Trying".to_string()),
            (100, "SIP/2.0 100 Trying".to_string()),
            (200, "SIP/2.0 180 Ringing".to_string()),
            (500, "SIP/2.0 180 Ringing".to_string()),
        ]
    );
    assert_eq!(
        tx.poll_timeout(),
        None,
        "provisional responses are not timed"
    );
}

#[test]
fn cancel_arriving_after_the_ok_changes_nothing() {
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKinv", 1, "");
    let mut invite_tx = InviteServerTransaction::new(&inv, t0, Timers::default());
    let mut log = Log::default();
    invite_tx
        .respond(200, response(&inv, 200), t0 + ms(1000))
        .unwrap();
    run_until(&mut invite_tx, t0, t0 + ms(1000), t0 + ms(1000), &mut log);

    // The CANCEL crossed the 200 on the wire.
    let cancel = request("CANCEL", "z9hG4bKinv", 1, "");
    let key = TransactionKey::server(&cancel);
    assert_eq!(key.with_method(Method::Invite), *invite_tx.key());
    let mut cancel_tx = NonInviteServerTransaction::new(&cancel, t0 + ms(1100), Timers::default());
    assert_eq!(invite_tx.cancel(), CancelOutcome::TooLate);
    cancel_tx
        .respond(200, response(&cancel, 200), t0 + ms(1100))
        .unwrap();
    assert_eq!(
        first_line(&cancel_tx.poll_transmit().unwrap()),
        "SIP/2.0 200 OK"
    );
    // No 487 may follow a 200.
    assert_eq!(
        invite_tx.respond(487, response(&inv, 487), t0 + ms(1100)),
        Err(TransactionError::FinalAlreadySent)
    );
    run_until(&mut invite_tx, t0, t0 + ms(1100), t0 + ms(1600), &mut log);
    invite_tx.handle_ack(t0 + ms(1700));
    run_until(&mut invite_tx, t0, t0 + ms(1700), t0 + ms(40_000), &mut log);
    assert!(log.sent.iter().all(|(_, l)| !l.contains("487")));
    assert_eq!(log.events[0], (1700, "ack".to_string()));
}

#[test]
fn cancel_before_the_answer_gives_487_and_the_ok_is_refused() {
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKinv", 1, "");
    let mut tx = InviteServerTransaction::new(&inv, t0, Timers::default());
    let mut log = Log::default();
    assert_eq!(tx.cancel(), CancelOutcome::Cancelled);
    drain(&mut tx, t0, t0, &mut log);
    tx.respond(487, response(&inv, 487), t0 + ms(300)).unwrap();
    assert_eq!(
        tx.respond(200, response(&inv, 200), t0 + ms(400)),
        Err(TransactionError::FinalAlreadySent)
    );
    run_until(&mut tx, t0, t0 + ms(300), t0 + ms(2000), &mut log);
    // Timer G: 487 repeated at 0.5 s then 1 s later until the ACK (same branch) arrives.
    assert_eq!(
        retransmissions_after(&log, 300, "SIP/2.0 487 Request Terminated"),
        vec![500, 1500]
    );
    let ack = request("ACK", "z9hG4bKinv", 1, "b1");
    assert_eq!(TransactionKey::server(&ack), *tx.key());
    tx.handle_request(&ack, t0 + ms(2000));
    run_until(&mut tx, t0, t0 + ms(2000), t0 + ms(10_000), &mut log);
    assert_eq!(
        log.events,
        vec![(2000, "ack".to_string()), (7000, "terminated".to_string())]
    );
}

#[test]
fn unacknowledged_error_response_gives_up_after_timer_h() {
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKinv", 1, "");
    let mut tx = InviteServerTransaction::new(&inv, t0, Timers::default());
    let mut log = Log::default();
    tx.respond(486, response(&inv, 486), t0).unwrap();
    run_until(&mut tx, t0, t0, t0 + ms(40_000), &mut log);
    let retx = retransmissions_after(&log, 0, "SIP/2.0 486 Busy Here");
    assert_eq!(&retx[..5], &[500, 1500, 3500, 7500, 11500]);
    assert_eq!(
        log.events,
        vec![
            (32_000, "ack-timeout 486".to_string()),
            (32_000, "terminated".to_string())
        ]
    );
}

#[test]
fn non_invite_server_absorbs_then_repeats_and_ends_with_timer_j() {
    let t0 = Instant::now();
    let bye = request("BYE", "z9hG4bKbye", 2, "b1");
    let mut tx = NonInviteServerTransaction::new(&bye, t0, Timers::default());
    let mut log = Log::default();
    tx.handle_retransmission();
    drain(&mut tx, t0, t0, &mut log);
    assert!(
        log.sent.is_empty(),
        "retransmission before any response is absorbed"
    );
    tx.respond(200, response(&bye, 200), t0 + ms(10)).unwrap();
    drain(&mut tx, t0, t0 + ms(10), &mut log);
    tx.handle_retransmission();
    run_until(&mut tx, t0, t0 + ms(600), t0 + ms(40_000), &mut log);
    assert_eq!(
        log.sent,
        vec![
            (10, "SIP/2.0 200 OK".to_string()),
            (600, "SIP/2.0 200 OK".to_string())
        ]
    );
    assert_eq!(log.events, vec![(32_010, "terminated".to_string())]);
}

fn our_bye() -> (Dialog, Vec<u8>) {
    let inv = request("INVITE", "z9hG4bKinv", 1, "");
    let mut dialog = Dialog::uas(&inv, "b1").unwrap();
    let bye = dialog.request(Method::Bye, "192.0.2.9:5060", "UDP").build();
    (dialog, bye)
}

#[test]
fn our_bye_is_retransmitted_with_timer_e_and_times_out_with_timer_f() {
    let t0 = Instant::now();
    let (_, bye) = our_bye();
    let mut tx = NonInviteClientTransaction::new(bye, t0, Timers::default()).unwrap();
    let mut log = Log::default();
    run_until(&mut tx, t0, t0, t0 + ms(40_000), &mut log);
    let at: Vec<u64> = log.sent.iter().map(|(at, _)| *at).collect();
    assert_eq!(
        at,
        vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(log
        .sent
        .iter()
        .all(|(_, l)| l.starts_with("BYE sip:alice@192.0.2.1:5060")));
    assert_eq!(
        log.events,
        vec![
            (32_000, "timeout".to_string()),
            (32_000, "terminated".to_string())
        ]
    );
}

/// Over TCP/TLS (RFC 3261 §17.1.2.2): no timer E, timer F still bounds the wait, and a final
/// response ends the transaction at once (timer K is zero).
#[test]
fn over_a_reliable_transport_our_bye_is_sent_once_and_ends_at_its_answer() {
    let t0 = Instant::now();
    let (_, bye) = our_bye();
    let mut tx = NonInviteClientTransaction::new(bye.clone(), t0, Timers::default())
        .unwrap()
        .over_reliable_transport();
    let mut log = Log::default();
    run_until(&mut tx, t0, t0, t0 + ms(40_000), &mut log);
    let at: Vec<u64> = log.sent.iter().map(|(at, _)| *at).collect();
    assert_eq!(at, vec![0]);
    assert_eq!(
        log.events,
        vec![
            (32_000, "timeout".to_string()),
            (32_000, "terminated".to_string())
        ]
    );
    let sent = parse(&bye).unwrap();
    let mut tx = NonInviteClientTransaction::new(bye, t0, Timers::default())
        .unwrap()
        .over_reliable_transport();
    let mut log = Log::default();
    let ok = parse(&ResponseBuilder::new(sent.echo(), 200).build()).unwrap();
    assert!(tx.handle_response(&ok, t0 + ms(100)));
    run_until(&mut tx, t0, t0 + ms(100), t0 + ms(40_000), &mut log);
    assert_eq!(
        log.events,
        vec![
            (100, "response 200".to_string()),
            (100, "terminated".to_string())
        ]
    );
}

/// A transport failure before any final response ends a client transaction at once with
/// `TransportError`; after the final response it changes nothing.
#[test]
fn a_transport_failure_ends_a_waiting_client_transaction() {
    let t0 = Instant::now();
    let mut tx = InviteClientTransaction::new(our_invite(), t0, Timers::default())
        .unwrap()
        .over_reliable_transport();
    let mut log = Log::default();
    run_until(&mut tx, t0, t0, t0 + ms(1000), &mut log);
    tx.transport_failed("connection reset");
    drain(&mut tx, t0, t0 + ms(1000), &mut log);
    assert_eq!(
        log.events,
        vec![
            (1000, "transport-error connection reset".to_string()),
            (1000, "terminated".to_string())
        ]
    );
    assert!(tx.is_terminated());
    let (_, bye) = our_bye();
    let sent = parse(&bye).unwrap();
    let mut tx = NonInviteClientTransaction::new(bye, t0, Timers::default()).unwrap();
    let ok = parse(&ResponseBuilder::new(sent.echo(), 200).build()).unwrap();
    assert!(tx.handle_response(&ok, t0));
    tx.transport_failed("connection reset");
    let mut log = Log::default();
    drain(&mut tx, t0, t0, &mut log);
    assert_eq!(log.events, vec![(0, "response 200".to_string())]);
}

#[test]
fn a_response_stops_our_bye() {
    let t0 = Instant::now();
    let (_, bye) = our_bye();
    let sent = parse(&bye).unwrap();
    let mut tx = NonInviteClientTransaction::new(bye, t0, Timers::default()).unwrap();
    let mut log = Log::default();
    run_until(&mut tx, t0, t0, t0 + ms(2000), &mut log);
    let ok = parse(&ResponseBuilder::new(sent.echo(), 200).build()).unwrap();
    // A response for some other transaction is not ours.
    let other =
        parse(&ResponseBuilder::new(request("BYE", "z9hG4bKzzz", 9, "b1").echo(), 200).build())
            .unwrap();
    assert!(!tx.handle_response(&other, t0 + ms(2000)));
    assert!(tx.handle_response(&ok, t0 + ms(2000)));
    drain(&mut tx, t0, t0 + ms(2000), &mut log);
    assert!(tx.handle_response(&ok, t0 + ms(2500)), "late copy absorbed");
    run_until(&mut tx, t0, t0 + ms(2500), t0 + ms(40_000), &mut log);
    let at: Vec<u64> = log.sent.iter().map(|(at, _)| *at).collect();
    assert_eq!(at, vec![0, 500, 1500]);
    assert_eq!(
        log.events,
        vec![
            (2000, "response 200".to_string()),
            (7000, "terminated".to_string())
        ]
    );
}

#[test]
fn provisional_response_slows_our_request_to_t2() {
    let t0 = Instant::now();
    let (_, bye) = our_bye();
    let sent = parse(&bye).unwrap();
    let mut tx = NonInviteClientTransaction::new(bye, t0, Timers::default()).unwrap();
    let mut log = Log::default();
    run_until(&mut tx, t0, t0, t0 + ms(600), &mut log);
    let trying = parse(&ResponseBuilder::new(sent.echo(), 100).build()).unwrap();
    tx.handle_response(&trying, t0 + ms(600));
    run_until(&mut tx, t0, t0 + ms(600), t0 + ms(14_000), &mut log);
    let at: Vec<u64> = log.sent.iter().map(|(at, _)| *at).collect();
    assert_eq!(at, vec![0, 500, 1500, 5500, 9500, 13500]);
}

#[test]
fn out_of_order_cseq_in_a_dialog_is_refused_with_500() {
    let inv = request("INVITE", "z9hG4bKinv", 5, "");
    let mut dialog = Dialog::uas(&inv, "b1").unwrap();
    // ACK for the 2xx carries the INVITE's number and is fine.
    dialog
        .accept_request(&request("ACK", "z9hG4bKack", 5, "b1"))
        .unwrap();
    dialog
        .accept_request(&request("INFO", "z9hG4bKi1", 7, "b1"))
        .unwrap();
    for stale in [7, 6, 5] {
        let err = dialog
            .accept_request(&request("INFO", "z9hG4bKi2", stale, "b1"))
            .unwrap_err();
        assert_eq!(
            err,
            DialogError::CSeqOutOfOrder {
                last: 7,
                got: stale
            }
        );
        assert_eq!(err.status(), 500);
    }
    dialog
        .accept_request(&request("BYE", "z9hG4bKbye", 8, "b1"))
        .unwrap();
    assert_eq!(
        dialog
            .accept_request(&request("BYE", "z9hG4bKx", 9, "other"))
            .unwrap_err()
            .status(),
        481
    );
}

/// Feeds a response to an INVITE client transaction at `t0 + at_ms` and logs what follows.
fn feed(tx: &mut InviteClientTransaction, r: &SipMessage, t0: Instant, at_ms: u64, log: &mut Log) {
    assert!(tx.handle_response(r, t0 + ms(at_ms)));
    drain(tx, t0, t0 + ms(at_ms), log);
}

/// Our INVITE, sent through an outbound proxy (a preloaded Route).
fn our_invite() -> Vec<u8> {
    RequestBuilder::new(Method::Invite, "sip:bob@example.com")
        .via("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport")
        .from("\"Me\" <sip:me@example.com>;tag=me1")
        .to("<sip:bob@example.com>")
        .call_id("out-call-1@192.0.2.9")
        .cseq(7)
        .route("<sip:proxy.example.com:5070;lr>")
        .contact("sip:me@192.0.2.9:5060")
        .body("application/sdp", b"v=0\r\n")
        .build()
}

/// A response to `our_invite` (or its CANCEL) as the far end would send it.
fn answer(request: &[u8], status: u16, to_tag: Option<&str>) -> SipMessage {
    let req = parse(request).unwrap();
    let mut b = ResponseBuilder::new(req.echo(), status);
    if let Some(tag) = to_tag {
        b = b.to_tag(tag).contact("sip:bob@203.0.113.5");
    }
    parse(&b.build()).unwrap()
}

#[test]
fn invite_is_retransmitted_with_timer_a_until_timer_b() {
    let t0 = Instant::now();
    let mut tx = InviteClientTransaction::new(our_invite(), t0, Timers::default()).unwrap();
    let mut log = Log::default();
    run_until(&mut tx, t0, t0, t0 + ms(60_000), &mut log);
    let at: Vec<u64> = log.sent.iter().map(|(at, _)| *at).collect();
    // T1 doubling with no T2 cap: 0.5, 1, 2, 4, 8, 16 s apart.
    assert_eq!(at, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert!(log
        .sent
        .iter()
        .all(|(_, l)| l == "INVITE sip:bob@example.com SIP/2.0"));
    assert_eq!(
        log.events,
        vec![
            (32_000, "timeout".to_string()),
            (32_000, "terminated".to_string())
        ]
    );
    assert!(tx.is_terminated());
}

#[test]
fn ringing_stops_retransmissions_and_every_2xx_is_passed_up() {
    let t0 = Instant::now();
    let invite = our_invite();
    let mut tx = InviteClientTransaction::new(invite.clone(), t0, Timers::default()).unwrap();
    let mut log = Log::default();
    run_until(&mut tx, t0, t0, t0 + ms(600), &mut log);
    feed(
        &mut tx,
        &answer(&invite, 180, Some("bob1")),
        t0,
        600,
        &mut log,
    );
    assert_eq!(tx.state(), InviteClientState::Proceeding);
    // Early media: a 183 is passed up too, and nothing times out while it rings.
    feed(
        &mut tx,
        &answer(&invite, 183, Some("bob1")),
        t0,
        700,
        &mut log,
    );
    run_until(&mut tx, t0, t0 + ms(700), t0 + ms(90_000), &mut log);
    assert_eq!(tx.poll_timeout(), None, "ringing is bounded by the TU");
    let ok = answer(&invite, 200, Some("bob1"));
    feed(&mut tx, &ok, t0, 90_000, &mut log);
    assert_eq!(tx.state(), InviteClientState::Accepted);
    assert_eq!(tx.final_status(), Some(200));
    // The 200 is retransmitted because our ACK (sent by the TU) was lost: passed up again.
    feed(&mut tx, &ok, t0, 90_500, &mut log);
    // A late provisional or error after the 2xx is absorbed.
    feed(
        &mut tx,
        &answer(&invite, 180, Some("bob1")),
        t0,
        90_600,
        &mut log,
    );
    feed(
        &mut tx,
        &answer(&invite, 500, Some("bob2")),
        t0,
        90_700,
        &mut log,
    );
    run_until(&mut tx, t0, t0 + ms(90_700), t0 + ms(200_000), &mut log);
    let at: Vec<u64> = log.sent.iter().map(|(at, _)| *at).collect();
    assert_eq!(at, vec![0, 500], "no ACK for a 2xx from the transaction");
    assert_eq!(
        log.events,
        vec![
            (600, "response 180".to_string()),
            (700, "response 183".to_string()),
            (90_000, "response 200".to_string()),
            (90_500, "response 200".to_string()),
            // Timer M: 64×T1 after the first 2xx.
            (122_000, "terminated".to_string()),
        ]
    );
}

#[test]
fn busy_is_acked_in_the_transaction_and_reacked_until_timer_d() {
    let t0 = Instant::now();
    let invite = our_invite();
    let mut tx = InviteClientTransaction::new(invite.clone(), t0, Timers::default()).unwrap();
    let mut log = Log::default();
    drain(&mut tx, t0, t0, &mut log);
    let busy = answer(&invite, 486, Some("bob1"));
    feed(&mut tx, &busy, t0, 1000, &mut log);
    assert_eq!(tx.state(), InviteClientState::Completed);
    let ack = parse(log.raw.last().unwrap()).unwrap();
    let sent = parse(&invite).unwrap();
    assert_eq!(ack.method(), &Method::Ack);
    assert_eq!(ack.request_uri().unwrap().as_str(), "sip:bob@example.com");
    assert_eq!(ack.vias().len(), 1);
    assert_eq!(ack.top_via().branch(), Some("z9hG4bKout1"));
    assert_eq!(ack.from().raw(), sent.from().raw());
    assert_eq!(ack.to().tag(), Some("bob1"));
    assert_eq!(ack.call_id(), "out-call-1@192.0.2.9");
    assert_eq!(ack.cseq().number, 7);
    assert_eq!(ack.cseq().method, Method::Ack);
    assert_eq!(ack.routes().len(), 1);
    assert_eq!(ack.routes()[0].raw(), "<sip:proxy.example.com:5070;lr>");
    assert!(ack.body().is_empty());
    // The ACK matches the server transaction of the INVITE at the far end.
    assert_eq!(TransactionKey::server(&ack), TransactionKey::server(&sent));

    // The far end did not get the ACK and repeats the 486: ACKed again, not passed up.
    feed(&mut tx, &busy, t0, 1500, &mut log);
    run_until(&mut tx, t0, t0 + ms(1500), t0 + ms(60_000), &mut log);
    assert_eq!(
        log.sent,
        vec![
            (0, "INVITE sip:bob@example.com SIP/2.0".to_string()),
            (1000, "ACK sip:bob@example.com SIP/2.0".to_string()),
            (1500, "ACK sip:bob@example.com SIP/2.0".to_string()),
        ]
    );
    assert_eq!(
        log.events,
        vec![
            (1000, "response 486".to_string()),
            // Timer D: 32 s after the final.
            (33_000, "terminated".to_string()),
        ]
    );
}

#[test]
fn cancel_waits_for_a_provisional_and_ends_with_487() {
    let t0 = Instant::now();
    let invite = our_invite();
    let mut tx = InviteClientTransaction::new(invite.clone(), t0, Timers::default()).unwrap();
    let mut log = Log::default();
    drain(&mut tx, t0, t0, &mut log);
    // Hung up before anything came back: RFC 3261 §9.1 forbids a CANCEL yet.
    assert_eq!(tx.cancel(t0 + ms(100)), CancelProgress::Deferred);
    assert!(tx.is_cancel_requested());
    run_until(&mut tx, t0, t0 + ms(100), t0 + ms(1000), &mut log);
    assert!(log.sent.iter().all(|(_, l)| l.starts_with("INVITE")));

    feed(&mut tx, &answer(&invite, 100, None), t0, 1000, &mut log);
    assert_eq!(
        log.sent.last().unwrap(),
        &(1000, "CANCEL sip:bob@example.com SIP/2.0".to_string()),
        "the CANCEL goes out with the first 1xx"
    );
    let cancel = log.raw.last().unwrap().clone();
    let c = parse(&cancel).unwrap();
    let sent = parse(&invite).unwrap();
    assert_eq!(c.method(), &Method::Cancel);
    assert_eq!(c.request_uri().unwrap().as_str(), "sip:bob@example.com");
    assert_eq!(c.top_via().branch(), Some("z9hG4bKout1"));
    assert_eq!(c.cseq().number, 7);
    assert_eq!(c.to().raw(), sent.to().raw());
    assert_eq!(c.to().tag(), None);
    assert_eq!(c.from().raw(), sent.from().raw());
    assert_eq!(c.routes()[0].raw(), "<sip:proxy.example.com:5070;lr>");
    assert_eq!(
        TransactionKey::server(&c).with_method(Method::Invite),
        TransactionKey::server(&sent)
    );
    assert_eq!(cancel, tx.cancel_request());
    assert_eq!(tx.cancel(t0 + ms(1100)), CancelProgress::Sent);
    assert!(tx.poll_transmit().is_none(), "one CANCEL only");

    // The CANCEL is retransmitted (timer E) until its 200 arrives.
    run_until(&mut tx, t0, t0 + ms(1000), t0 + ms(1600), &mut log);
    assert_eq!(
        log.sent.last().unwrap(),
        &(1500, "CANCEL sip:bob@example.com SIP/2.0".to_string())
    );
    assert!(tx.handle_response(&answer(&cancel, 200, Some("bob1")), t0 + ms(1600)));
    assert_eq!(tx.cancel_status(), Some(200));
    feed(
        &mut tx,
        &answer(&invite, 487, Some("bob1")),
        t0,
        1700,
        &mut log,
    );
    run_until(&mut tx, t0, t0 + ms(1600), t0 + ms(60_000), &mut log);
    assert_eq!(
        log.sent[log.sent.len() - 2..],
        [
            (1500, "CANCEL sip:bob@example.com SIP/2.0".to_string()),
            (1700, "ACK sip:bob@example.com SIP/2.0".to_string()),
        ]
    );
    assert_eq!(
        log.events,
        vec![
            (1000, "response 100".to_string()),
            (1700, "response 487".to_string()),
            (33_700, "terminated".to_string()),
        ]
    );
}

#[test]
fn cancelled_invite_without_a_final_response_gives_up_after_64_t1() {
    let t0 = Instant::now();
    let invite = our_invite();
    let mut tx = InviteClientTransaction::new(invite.clone(), t0, Timers::default()).unwrap();
    let mut log = Log::default();
    drain(&mut tx, t0, t0, &mut log);
    feed(
        &mut tx,
        &answer(&invite, 180, Some("bob1")),
        t0,
        200,
        &mut log,
    );
    assert_eq!(tx.cancel(t0 + ms(10_000)), CancelProgress::Sent);
    run_until(&mut tx, t0, t0 + ms(10_000), t0 + ms(60_000), &mut log);
    let cancels: Vec<u64> = log
        .sent
        .iter()
        .filter(|(_, l)| l.starts_with("CANCEL"))
        .map(|(at, _)| at - 10_000)
        .collect();
    assert_eq!(
        cancels,
        vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(
        log.events,
        vec![
            (200, "response 180".to_string()),
            (42_000, "timeout".to_string()),
            (42_000, "terminated".to_string()),
        ]
    );
    assert_eq!(tx.poll_timeout(), None);
}

#[test]
fn cancel_wanted_before_any_answer_never_sends_one_if_nothing_comes() {
    let t0 = Instant::now();
    let mut tx = InviteClientTransaction::new(our_invite(), t0, Timers::default()).unwrap();
    let mut log = Log::default();
    assert_eq!(tx.cancel(t0), CancelProgress::Deferred);
    run_until(&mut tx, t0, t0, t0 + ms(60_000), &mut log);
    assert!(log.sent.iter().all(|(_, l)| l.starts_with("INVITE")));
    assert_eq!(log.events[0], (32_000, "timeout".to_string()));
}

#[test]
fn cancel_after_the_answer_is_too_late_and_foreign_responses_are_refused() {
    let t0 = Instant::now();
    let invite = our_invite();
    let mut tx = InviteClientTransaction::new(invite.clone(), t0, Timers::default()).unwrap();
    let other = RequestBuilder::new(Method::Invite, "sip:bob@example.com")
        .via("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKother")
        .from("<sip:me@example.com>;tag=me1")
        .to("<sip:bob@example.com>")
        .call_id("x")
        .cseq(7)
        .build();
    assert!(!tx.handle_response(&answer(&other, 200, Some("b")), t0));
    assert!(
        !tx.matches(&parse(&invite).unwrap()),
        "requests never match"
    );
    assert!(tx.handle_response(&answer(&invite, 200, Some("bob1")), t0 + ms(100)));
    assert_eq!(tx.cancel(t0 + ms(200)), CancelProgress::TooLate);
    assert!(!tx.is_cancel_requested());
    assert!(InviteClientTransaction::new(tx.cancel_request(), t0, Timers::default()).is_err());
}

/// A call through two record-routing proxies: P1 (our outbound proxy) and P2 (the callee's).
/// The 200 carries `Record-Route: P2, P1` (each proxy adds itself on top).
#[test]
fn in_dialog_requests_follow_the_record_routed_path() {
    use roomkit_media::sip::dialog::Dialog;
    let invite = parse(&our_invite()).unwrap();
    let ok = parse(
        b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport=5060\r\n\
Record-Route: <sip:p2.example.net;lr>\r\n\
Record-Route: <sip:p1.example.com:5070;lr;transport=udp>\r\n\
From: \"Me\" <sip:me@example.com>;tag=me1\r\n\
To: <sip:bob@example.com>;tag=bob1\r\n\
Call-ID: out-call-1@192.0.2.9\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:bob@203.0.113.5:5062>\r\n\
Content-Length: 0\r\n\r\n",
    )
    .unwrap();
    let mut uac = Dialog::uac(&invite, &ok).unwrap();
    let hop = uac.next_hop().unwrap();
    assert_eq!(
        (hop.host.as_str(), hop.port, hop.transport.as_deref()),
        ("p1.example.com", Some(5070), Some("udp"))
    );
    for req in [
        uac.ack(7, "192.0.2.9:5060", "UDP").build(),
        uac.request(Method::Bye, "192.0.2.9:5060", "UDP").build(),
        uac.request(Method::Invite, "192.0.2.9:5060", "UDP").build(),
        uac.request(Method::Info, "192.0.2.9:5060", "UDP").build(),
    ] {
        let m = parse(&req).unwrap();
        assert_eq!(
            m.request_uri().unwrap().as_str(),
            "sip:bob@203.0.113.5:5062",
            "{} goes to the remote target",
            m.method()
        );
        let routes: Vec<&str> = m.routes().iter().map(|r| r.raw()).collect();
        assert_eq!(
            routes,
            [
                "<sip:p1.example.com:5070;lr;transport=udp>",
                "<sip:p2.example.net;lr>"
            ]
        );
    }

    // The callee's side of the same call: the INVITE arrives with the same Record-Route
    // headers and its route set keeps their order, so its BYE goes to P2 first.
    let at_callee = parse(
        b"INVITE sip:bob@203.0.113.5:5062 SIP/2.0\r\n\
Record-Route: <sip:p2.example.net;lr>\r\n\
Record-Route: <sip:p1.example.com:5070;lr;transport=udp>\r\n\
Via: SIP/2.0/UDP p2.example.net;branch=z9hG4bKp2\r\n\
Via: SIP/2.0/UDP p1.example.com:5070;branch=z9hG4bKp1\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport=5060\r\n\
From: \"Me\" <sip:me@example.com>;tag=me1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: out-call-1@192.0.2.9\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:me@192.0.2.9:5060>\r\n\
Content-Length: 0\r\n\r\n",
    )
    .unwrap();
    let mut uas = Dialog::uas(&at_callee, "bob1").unwrap();
    assert_eq!(uas.next_hop().unwrap().host, "p2.example.net");
    let bye = parse(&uas.request(Method::Bye, "203.0.113.5:5062", "UDP").build()).unwrap();
    assert_eq!(bye.request_uri().unwrap().as_str(), "sip:me@192.0.2.9:5060");
    let routes: Vec<&str> = bye.routes().iter().map(|r| r.raw()).collect();
    assert_eq!(
        routes,
        [
            "<sip:p2.example.net;lr>",
            "<sip:p1.example.com:5070;lr;transport=udp>"
        ]
    );

    // Without Record-Route, requests go straight to the Contact.
    let plain = parse(&at_callee_bytes_without_rr()).unwrap();
    let direct = Dialog::uas(&plain, "bob1").unwrap();
    let hop = direct.next_hop().unwrap();
    assert_eq!(hop.socket_addr(), Some("192.0.2.9:5060".parse().unwrap()));
}

fn at_callee_bytes_without_rr() -> Vec<u8> {
    b"INVITE sip:bob@203.0.113.5:5062 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport=5060\r\n\
From: <sip:me@example.com>;tag=me1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: out-call-2@192.0.2.9\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:me@192.0.2.9:5060>\r\n\
Content-Length: 0\r\n\r\n"
        .to_vec()
}
