//! The 49 RFC 4475 torture messages through our parser, scored against `MANIFEST.tsv`.
//!
//! - valid: accepted, with Via/From/To/Call-ID/CSeq/Contact/Content-Length/body readable;
//! - invalid: refused (answered with an error status or dropped);
//! - semantic and compat: delivered to the application, or answered 400/416 where RFC 4475 says
//!   the message layer must refuse it (`EXPECTED_REFUSALS`).
//!
//! Score: all 49 (valid 13/13, invalid 19/19, semantic + compat 17/17), asserted below as the
//! exact set. The measured reference pipeline (ezk-sip-types + checks) got 47: it typed From/To
//! with ezk, whose quoted-string parser refuses `\"` (wsinv), so one valid message failed. Our
//! layer splits name-addr values itself and only hands the URI to ezk, which removes that gap.
//! Notes on choices the RFC leaves open: `baddn.dat` ends without the blank line and is refused
//! for that first (with the blank line added it is still refused for its display name, see the
//! unit tests); `inv2543.dat` (no Max-Forwards, no Content-Length, no branch) is delivered, the
//! body running to the end of the datagram as RFC 3261 §18.3 allows over UDP; `unksm2.dat`
//! (non-SIP URIs in To/From/Contact) is delivered with the URIs kept as raw text.

use std::collections::BTreeSet;
use std::path::PathBuf;

use roomkit_media::sip::{parse, ParseError, ResponseBuilder, SipMessage};

/// Semantic cases RFC 4475 wants refused before the application sees them, with the status.
const EXPECTED_REFUSALS: &[(&str, u16)] = &[
    // 3.3.1: missing To, From, Call-ID and Max-Forwards → 400.
    ("insuf.dat", 400),
    // 3.3.2 and 3.3.3: Request-URI schemes we do not serve → 416.
    ("unkscm.dat", 416),
    ("novelsc.dat", 416),
    // 3.3.8: repeated single-value headers → 400.
    ("multi01.dat", 400),
    // 3.3.9: two Content-Length values → 400.
    ("mcl01.dat", 400),
];

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475")
}

/// Checks a valid message exposes every core field as a typed value.
fn readable(msg: &SipMessage) -> Result<(), String> {
    if msg.vias().is_empty() || msg.top_via().host().is_empty() {
        return Err("no Via".into());
    }
    if msg.call_id().is_empty() {
        return Err("no Call-ID".into());
    }
    let _ = (msg.from().uri().as_str(), msg.to().uri().as_str());
    if msg.cseq().method.as_str().is_empty() {
        return Err("no CSeq method".into());
    }
    if msg.header("contact").is_some() && msg.contact().is_none() {
        return Err("Contact present but not typed".into());
    }
    if let Some(cl) = msg.header("content-length") {
        let n: usize = cl.trim().parse().map_err(|_| "Content-Length")?;
        if msg.body().len() != n {
            return Err(format!(
                "body is {} bytes, Content-Length {n}",
                msg.body().len()
            ));
        }
    }
    Ok(())
}

#[test]
fn rfc4475_torture_messages() {
    let dir = corpus_dir();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut passed = BTreeSet::new();
    let mut failed = Vec::new();
    let mut per_class: std::collections::BTreeMap<&str, (u32, u32)> = Default::default();
    let mut total = 0;
    for line in manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, class) = (cols[0], cols[2]);
        total += 1;
        let data = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let outcome = parse(&data);
        match &outcome {
            Ok(m) => println!(
                "{file:<16} {class:<9} accepted ({} {})",
                m.method(),
                m.call_id()
            ),
            Err(e) => println!("{file:<16} {class:<9} {e}"),
        }
        let verdict: Result<(), String> = match (class, &outcome) {
            ("valid", Ok(msg)) => readable(msg),
            ("valid", Err(e)) => Err(format!("refused: {e}")),
            ("invalid", Ok(_)) => Err("accepted".into()),
            ("invalid", Err(_)) => Ok(()),
            ("semantic" | "compat", _) => {
                let expected = EXPECTED_REFUSALS
                    .iter()
                    .find(|(f, _)| *f == file)
                    .map(|(_, s)| *s);
                match (expected, &outcome) {
                    (None, Ok(_)) => Ok(()),
                    (None, Err(e)) => Err(format!("should be delivered, got {e}")),
                    (Some(s), Err(ParseError::Reject(r))) if r.status == s => {
                        // The answer carries the status and copies the request's Via lines.
                        let text =
                            String::from_utf8(ResponseBuilder::rejection(r).to_tag("t1").build())
                                .unwrap();
                        let status_ok = text.starts_with(&format!("SIP/2.0 {s} "));
                        let via_ok = r
                            .echo
                            .via
                            .iter()
                            .all(|v| text.contains(&format!("Via: {v}\r\n")));
                        (status_ok && via_ok && !r.echo.via.is_empty())
                            .then_some(())
                            .ok_or_else(|| format!("bad answer: {text}"))
                    }
                    (Some(s), other) => Err(format!("should be answered {s}, got {other:?}")),
                }
            }
            (c, _) => panic!("unknown class {c}"),
        };
        let entry = per_class
            .entry(if class == "compat" { "semantic" } else { class })
            .or_default();
        entry.1 += 1;
        match verdict {
            Ok(()) => {
                entry.0 += 1;
                passed.insert(file.to_string());
            }
            Err(why) => failed.push(format!("{file} ({class}): {why}")),
        }
    }
    for (class, (ok, n)) in &per_class {
        println!("{class}: {ok}/{n}");
    }
    for f in &failed {
        println!("FAIL {f}");
    }
    assert_eq!(total, 49, "the manifest lists 49 messages");
    assert!(failed.is_empty(), "failures: {failed:#?}");
    assert_eq!(passed.len(), 49);
}
