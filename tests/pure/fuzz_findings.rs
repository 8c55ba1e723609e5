//! Every input a fuzz target once failed on, replayed through the same checks the target runs
//! (`tests/fuzz_support`, shared with `fuzz/`), plus what each fix decided, asserted directly.
//! The files live in `tests/data/fuzz-findings/`; its README says what each one did.

use crate::fuzz_support;

use std::path::{Path, PathBuf};

use roomkit_media::sip::dialog::{Dialog, DialogError};
use roomkit_media::sip::{parse, Method, ParseError, ResponseBuilder};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-findings")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Which fuzz target an input belongs to, and the bytes that target reads.
fn target_of(name: &str, bytes: &[u8]) -> (fn(&[u8]), Vec<u8>) {
    let target: fn(&[u8]) = match name.split('_').next() {
        Some("f1" | "f2" | "f3" | "sip") => fuzz_support::sip::datagram,
        Some("sdp") => fuzz_support::sdp::offer_answer,
        Some("h264") => fuzz_support::video::h264,
        Some("vp8") => fuzz_support::video::vp8,
        Some("rtcp") => fuzz_support::rtcp::compound,
        Some("voice") => fuzz_support::voice::rx,
        Some("srtp") => fuzz_support::srtp::unprotect,
        Some("webrtc") => fuzz_support::webrtc::datagrams,
        // Findings of the `sip_stream` target are named `stream_*`.
        Some("stream") => fuzz_support::framing::stream,
        _ => panic!("{name}: no target for this prefix; name findings after their target"),
    };
    (target, stateful_datagram(name, bytes).to_vec())
}

/// `f1_min_uas_bye_416.bin` came from the stateful UAS driver: its first four bytes chose the
/// driver's steps; the datagram it delivered starts after them.
fn stateful_datagram<'a>(name: &str, bytes: &'a [u8]) -> &'a [u8] {
    if name == "f1_min_uas_bye_416.bin" {
        &bytes[4..]
    } else {
        bytes
    }
}

#[test]
fn every_finding_passes_its_target() {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("tests/data/fuzz-findings")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".sip") || n.ends_with(".bin"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "findings missing: {names:?}");
    for name in &names {
        let (target, input) = target_of(name, &read(name));
        target(&input);
    }
}

/// f1: a dialog-forming INVITE whose Contact is not a SIP URI is refused with 400 (RFC 3261
/// §8.1.1.8 wants exactly one SIP or SIPS URI there), so no dialog exists whose BYE we could not
/// send.
#[test]
fn f1_non_sip_contact_refuses_the_invite() {
    for name in ["f1_tel_contact.sip", "f1_min_bye_nonsip_contact.bin"] {
        let invite = parse(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(invite.method(), &Method::Invite);
        let err = Dialog::uas(&invite, "ours").expect_err(name);
        assert!(
            matches!(err, DialogError::UnusableContact(_)),
            "{name}: {err:?}"
        );
        assert_eq!(err.status(), 400);
    }
    let bytes = read("f1_min_uas_bye_416.bin");
    let invite = parse(stateful_datagram("f1_min_uas_bye_416.bin", &bytes)).unwrap();
    assert_eq!(Dialog::uas(&invite, "ours").unwrap_err().status(), 400);
}

/// f1: URI headers in the Contact are dropped from the remote target (RFC 3261 §19.1.1 table,
/// §19.1.5), and the BYE built from it is one we accept.
#[test]
fn f1_contact_headers_are_stripped_from_the_remote_target() {
    let invite = parse(&read("f1_contact_headers.sip")).unwrap();
    let mut d = Dialog::uas(&invite, "ours").unwrap();
    assert_eq!(d.remote_target(), "sip:alice@203.0.113.5");
    let bye = parse(&d.request(Method::Bye, "192.0.2.10:5060", "UDP").build()).unwrap();
    assert_eq!(bye.request_uri().unwrap().as_str(), "sip:alice@203.0.113.5");
    assert!(bye.header("Subject").is_none());
}

/// f2: a bare CR in a continuation line is refused like one in any header line, and since the
/// Via holding it would be copied into any answer, the request is dropped rather than answered.
#[test]
fn f2_bare_cr_in_a_folded_via_is_dropped() {
    for name in ["f2_bare_cr_fold.sip", "f2_min_bare_cr_echo.bin"] {
        match parse(&read(name)) {
            Err(ParseError::Drop { reason }) => assert!(reason.contains("bare CR"), "{reason}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// f2: a bare CR in a continuation of a header that answers do not copy gets a 400, whose
/// framing is clean.
#[test]
fn f2_bare_cr_in_another_folded_header_is_answered_400() {
    let text = String::from_utf8(read("f2_bare_cr_fold.sip")).unwrap();
    let moved = text
        .replace(" ,\rSIP/2.0/UDP 198.51.100.1;branch=z9hG4bK2\r\n", "")
        .replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nSubject: hi\r\n there\rInjected: 1\r\n",
        );
    let Err(ParseError::Reject(r)) = parse(moved.as_bytes()) else {
        panic!("expected a 400");
    };
    assert_eq!(r.status, 400);
    fuzz_support::sip::assert_framing(&ResponseBuilder::rejection(&r).to_tag("t").build());
}

/// f3: `;tag` without a value is refused with 400, so the typed accessor and the copied text
/// can never disagree about whether the request is in a dialog.
#[test]
fn f3_valueless_tag_is_a_400() {
    for name in ["f3_valueless_to_tag.sip", "f3_min_valueless_to_tag.bin"] {
        let Err(ParseError::Reject(r)) = parse(&read(name)) else {
            panic!("{name}: expected a rejection");
        };
        assert_eq!(r.status, 400, "{name}");
        assert!(!r.echo.to_has_tag, "{name}");
    }
}

/// The same decision for an empty quoted tag and for From.
#[test]
fn f3_empty_tags_are_refused_in_from_and_to() {
    let text = String::from_utf8(read("f3_valueless_to_tag.sip")).unwrap();
    for (from, to) in [(";tag=a1", ";tag=\"\""), (";tag", ""), (";tag=\"\"", "")] {
        let t = text
            .replace("203.0.113.5>;tag=a1", &format!("203.0.113.5>{from}"))
            .replace("192.0.2.10>;tag", &format!("192.0.2.10>{to}"));
        assert!(
            matches!(parse(t.as_bytes()), Err(ParseError::Reject(ref r)) if r.status == 400),
            "From {from:?} To {to:?}"
        );
    }
    // A real tag still works both ways.
    let ok = text.replace("192.0.2.10>;tag", "192.0.2.10>;tag=b2");
    let m = parse(ok.as_bytes()).unwrap();
    assert_eq!(m.to().tag(), Some("b2"));
    assert!(m.echo().to_has_tag);
}
