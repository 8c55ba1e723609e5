//! Property tests: no datagram makes the SIP layer panic, and whatever it accepts it can answer
//! with a response it would itself accept.

use std::path::PathBuf;
use std::time::Instant;

use proptest::prelude::*;
use roomkit_media::sip::auth::{parse_authorization, select_challenges, Credentials, DigestClient};
use roomkit_media::sip::dialog::Dialog;
use roomkit_media::sip::extensions::{unsupported_requirements, SUPPORTED_OPTION_TAGS};
use roomkit_media::sip::info_dtmf::parse_info_dtmf;
use roomkit_media::sip::redirect::redirect_targets;
use roomkit_media::sip::session_timer::{uac_session_timer, uas_session_timer, SessionTimerPolicy};
use roomkit_media::sip::transaction::{InviteClientTransaction, InviteServerTransaction, Timers};
use roomkit_media::sip::{parse, Method, ParseError, RequestBuilder, ResponseBuilder, SipMessage};

fn corpus() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("RFC 4475 corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// One edit applied to a message.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    DuplicateLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![
        b":".to_vec(),
        b";".to_vec(),
        b",".to_vec(),
        b"\"".to_vec(),
        b"<".to_vec(),
        b">".to_vec(),
        b"\r\n".to_vec(),
        b"\r\n ".to_vec(),
        b"\\".to_vec(),
        b"%".to_vec(),
        b"99999999999999999999".to_vec(),
        b"\xff\xfe".to_vec(),
        b" ".to_vec(),
        b"\0".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DuplicateLine),
    ]
}

fn apply(mut data: Vec<u8>, m: &Mutation) -> Vec<u8> {
    if data.is_empty() {
        return data;
    }
    let at = |i: usize, len: usize| i % (len + 1);
    match m {
        Mutation::Flip(i, b) => {
            let n = data.len();
            data[i % n] = *b;
        }
        Mutation::Insert(i, s) => {
            let p = at(*i, data.len());
            data.splice(p..p, s.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let p = at(*i, data.len());
            let end = (p + n).min(data.len());
            data.drain(p..end);
        }
        Mutation::Truncate(i) => data.truncate(at(*i, data.len())),
        Mutation::DuplicateLine(i) => {
            let lines: Vec<usize> = std::iter::once(0)
                .chain(
                    data.iter()
                        .enumerate()
                        .filter(|(_, b)| **b == b'\n')
                        .map(|(k, _)| k + 1),
                )
                .filter(|k| *k < data.len())
                .collect();
            let start = lines[i % lines.len()];
            let end = data[start..]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(data.len(), |k| start + k + 1);
            let line = data[start..end].to_vec();
            data.splice(start..start, line);
        }
    }
    data
}

/// Exercises everything a SIP thread does with a datagram; panics are the failure.
fn exercise(data: &[u8]) {
    match parse(data) {
        Ok(msg) => use_message(&msg),
        Err(ParseError::Reject(r)) => {
            assert!(matches!(r.status, 400 | 416 | 505));
            let resp = ResponseBuilder::rejection(&r)
                .to_tag("tag1")
                .server("roomkit")
                .build();
            assert!(resp.starts_with(format!("SIP/2.0 {} ", r.status).as_bytes()));
        }
        Err(ParseError::Drop { .. }) => {}
    }
}

fn use_message(msg: &SipMessage) {
    let _ = (
        msg.method(),
        msg.request_uri().map(|u| (u.user(), u.host(), u.port())),
        msg.from().display_name(),
        msg.from().uri().user(),
        msg.to().tag(),
        msg.call_id(),
        msg.cseq(),
        msg.contact().map(|c| c.uri().host()),
        msg.top_via().branch(),
        msg.top_via().rport(),
        msg.max_forwards(),
        msg.content_type(),
        msg.body().len(),
        msg.x_headers().count(),
    );
    if msg.is_request() && msg.method() != &Method::Ack {
        // Whatever we accept, we can answer with something we accept ourselves.
        let resp = ResponseBuilder::new(msg.echo(), 200).to_tag("ours").build();
        let back = parse(&resp).unwrap_or_else(|e| {
            panic!(
                "our answer does not parse ({e}):\n{}",
                String::from_utf8_lossy(&resp)
            )
        });
        assert_eq!(back.call_id(), msg.call_id());
        assert_eq!(back.vias().len(), msg.vias().len());
        if msg.method() == &Method::Invite {
            let mut tx = InviteServerTransaction::new(msg, Instant::now(), Timers::default());
            assert!(tx.poll_transmit().is_some());
            if let Ok(mut d) = Dialog::uas(msg, "ours") {
                let _ = d.request(Method::Bye, "192.0.2.9:5060", "UDP").build();
            }
        }
    }
    use_softphone_pieces(msg);
}

/// The pure pieces a softphone core feeds received messages to.
fn use_softphone_pieces(msg: &SipMessage) {
    let policy = SessionTimerPolicy::default();
    let _ = (
        unsupported_requirements(msg, SUPPORTED_OPTION_TAGS),
        uas_session_timer(msg, &policy),
        uac_session_timer(msg),
        redirect_targets(msg).len(),
        select_challenges(msg).len(),
        parse_info_dtmf(msg.content_type().unwrap_or_default(), msg.body()),
    );
    let mut client = DigestClient::new(Credentials::new("alice", "pw"));
    if client.handle_challenge(msg).is_ok() {
        for (_, value) in client.authorize("INVITE", "sip:bob@example.com") {
            assert!(parse_authorization(&value).is_ok(), "{value}");
        }
    }
    // A response that answers an INVITE of ours (same branch) drives the INVITE client
    // transaction through whatever it says.
    let Some(branch) = msg.top_via().branch().filter(|_| !msg.is_request()) else {
        return;
    };
    let invite = RequestBuilder::new(Method::Invite, "sip:bob@example.com")
        .via(&format!("SIP/2.0/UDP 192.0.2.9:5060;branch={branch}"))
        .from("<sip:me@example.com>;tag=me")
        .to("<sip:bob@example.com>")
        .call_id("fuzz")
        .cseq(msg.cseq().number)
        .route("<sip:proxy.example.com;lr>")
        .build();
    let t0 = Instant::now();
    let Ok(mut tx) = InviteClientTransaction::new(invite, t0, Timers::default()) else {
        return;
    };
    tx.cancel(t0);
    if tx.handle_response(msg, t0) {
        while let Some(d) = tx.poll_transmit() {
            // The ACK or CANCEL we build from what the peer sent must parse.
            parse(&d).unwrap_or_else(|e| {
                panic!(
                    "our request does not parse ({e}):\n{}",
                    String::from_utf8_lossy(&d)
                )
            });
        }
        while tx.poll_event().is_some() {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&data);
    }

    #[test]
    fn random_sip_shaped_text_never_panics(
        lines in prop::collection::vec("[A-Za-z:;,<>\"@ =./\\-0-9\t]{0,60}", 0..20),
        start in prop::sample::select(vec![
            "INVITE sip:a@b SIP/2.0", "SIP/2.0 200 OK", "ACK sip:a@b SIP/2.0", "X y z",
        ]),
    ) {
        let text = format!("{start}\r\n{}\r\n\r\nbody", lines.join("\r\n"));
        exercise(text.as_bytes());
    }

    #[test]
    fn mutated_torture_messages_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(mutation(), 1..6),
    ) {
        let corpus = corpus();
        let mut data = corpus[pick.index(corpus.len())].clone();
        for m in &edits {
            data = apply(data, m);
        }
        exercise(&data);
    }
}

#[test]
fn unmutated_corpus_round_trips() {
    for data in corpus() {
        exercise(&data);
    }
}
