//! Transactions and dialogs on virtual time: every instant is `t0 + offset`, and the machines are
//! driven only through `handle_timeout(next_timeout())`, as the SIP thread will drive them.

use std::time::{Duration, Instant};

use roomkit_media::sip::dialog::{Dialog, DialogError};
use roomkit_media::sip::transaction::{
    CancelOutcome, InviteServerTransaction, NonInviteClientTransaction, NonInviteServerTransaction,
    Timers, TransactionError, TransactionEvent, TransactionKey,
};
use roomkit_media::sip::{parse, Method, ResponseBuilder, SipMessage};

/// The common driving surface of the three state machines.
trait Machine {
    fn next_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    fn poll_event(&mut self) -> Option<TransactionEvent>;
}

macro_rules! machine {
    ($t:ty) => {
        impl Machine for $t {
            fn next_timeout(&self) -> Option<Instant> {
                <$t>::next_timeout(self)
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

/// What happened at one virtual instant.
#[derive(Debug, Default)]
struct Log {
    /// (offset from t0 in ms, first line of the datagram)
    sent: Vec<(u64, String)>,
    /// (offset from t0 in ms, event)
    events: Vec<(u64, String)>,
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
    }
    while let Some(e) = m.poll_event() {
        let name = match e {
            TransactionEvent::AckReceived => "ack".to_string(),
            TransactionEvent::AckTimeout { status } => format!("ack-timeout {status}"),
            TransactionEvent::Response(r) => format!("response {}", r.status().unwrap()),
            TransactionEvent::Timeout => "timeout".to_string(),
            TransactionEvent::Terminated => "terminated".to_string(),
        };
        log.events.push((at, name));
    }
}

/// Logs what is pending at `now`, then runs the machine's timers up to `until` (inclusive),
/// logging what it sends and reports.
fn run_until(m: &mut impl Machine, t0: Instant, now: Instant, until: Instant, log: &mut Log) {
    drain(m, t0, now, log);
    while let Some(t) = m.next_timeout().filter(|t| *t <= until) {
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
    assert_eq!(tx.next_timeout(), None);
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
        tx.next_timeout(),
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
