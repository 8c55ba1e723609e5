//! SIP messages: one datagram in, a checked [`SipMessage`] or a [`ParseError`] out.
//!
//! Framing (start line, header lines, folding, Content-Length, body) and the strict checks that
//! RFC 3261's grammar asks for but no SIP crate does (see `check`) are ours; SIP URIs and Via
//! hosts are typed with `ezk-sip-types`. The raw text of Via, From, To, Call-ID and CSeq is kept
//! so that responses copy it verbatim (RFC 3261 §8.2.6.2) instead of re-serialising typed values.
//!
//! `types.rs` holds what a parsed message is (and its accessors); `parse.rs` turns a datagram
//! into one, or says why not. Only the parser builds a [`SipMessage`], so the fields it fills are
//! visible within this module and nowhere else.

mod parse;
mod types;

pub use parse::{parse, MAX_MESSAGE_SIZE};
pub use types::{
    CSeq, EchoHeaders, HeaderField, MessageKind, Method, NameAddr, ParseError, Rejection,
    SipMessage, Uri, Via,
};

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/rfc4475/");

    fn corpus(name: &str) -> Vec<u8> {
        std::fs::read(format!("{CORPUS}{name}")).expect("RFC 4475 corpus in tests/data")
    }

    fn invite(extra: &str, body: &str) -> Vec<u8> {
        format!(
            "INVITE sip:bob@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n\
             From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
             To: <sip:bob@example.com>\r\n\
             Call-ID: c1@example.com\r\n\
             CSeq: 1 INVITE\r\n\
             Max-Forwards: 70\r\n\
             {extra}\r\n{body}"
        )
        .into_bytes()
    }

    fn reject_status(data: &[u8]) -> Option<u16> {
        match parse(data) {
            Err(ParseError::Reject(r)) => Some(r.status),
            _ => None,
        }
    }

    #[test]
    fn tortuous_invite_is_fully_typed() {
        let m = parse(&corpus("wsinv.dat")).unwrap();
        assert_eq!(m.method(), &Method::Invite);
        assert_eq!(m.from().display_name(), Some("J Rosenberg \\\""));
        assert_eq!(m.from().tag(), Some("98asjd8"));
        assert_eq!(m.to().tag(), Some("1918181833n"));
        assert_eq!(m.vias().len(), 3);
        assert_eq!(m.vias()[1].branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(m.vias()[2].host(), "192.168.255.111");
        assert_eq!(m.max_forwards(), Some(68));
        assert_eq!(m.cseq().number, 9);
        assert_eq!(
            m.contact().unwrap().display_name(),
            Some("Quoted string \"\"")
        );
        assert_eq!(m.contact().unwrap().param("q"), Some(Some("0.33")));
        assert_eq!(m.body().len(), 150);
        assert_eq!(
            m.header("newfangledheader"),
            Some("newfangled value continued newfangled value")
        );
        assert_eq!(m.header("Subject"), Some(""));
        assert_eq!(m.routes().len(), 1);
        assert_eq!(
            m.echo().to.as_deref(),
            Some("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
        );
    }

    #[test]
    fn display_name_rules_hold_even_with_a_blank_line() {
        let mut data = corpus("baddn.dat");
        data.extend_from_slice(b"\r\n\r\n");
        assert_eq!(reject_status(&data), Some(400));
    }

    #[test]
    fn methods_match_exactly() {
        let data = String::from_utf8(invite("Content-Length: 0\r\n", "")).unwrap();
        let prefixed = data.replace("INVITE sip", "INVITEX sip");
        assert_eq!(reject_status(prefixed.as_bytes()), Some(400));
        let lower = data
            .replace("INVITE sip", "invite sip")
            .replace("1 INVITE", "1 invite");
        let m = parse(lower.as_bytes()).unwrap();
        assert_eq!(m.method(), &Method::Other("invite".into()));
        let unknown = data
            .replace("INVITE sip", "FOO sip")
            .replace("1 INVITE", "1 FOO");
        assert_eq!(parse(unknown.as_bytes()).unwrap().method().as_str(), "FOO");
    }

    #[test]
    fn content_length_is_enforced() {
        assert_eq!(
            reject_status(&invite("Content-Length: 10\r\n", "short")),
            Some(400)
        );
        let m = parse(&invite("Content-Length: 5\r\n", "hello, trailing")).unwrap();
        assert_eq!(m.body(), b"hello");
        let m = parse(&invite("", "no length header")).unwrap();
        assert_eq!(m.body(), b"no length header");
        assert_eq!(
            reject_status(&invite("Content-Length: 0x10\r\n", "")),
            Some(400)
        );
        assert_eq!(
            reject_status(&invite("Content-Length: 0\r\nl: 0\r\n", "")),
            Some(400)
        );
    }

    #[test]
    fn scalar_bounds() {
        assert_eq!(
            reject_status(&invite("Max-Forwards: 256\r\n", "")),
            Some(400)
        );
        assert_eq!(
            reject_status(&invite("Expires: 4294967296\r\n", "")),
            Some(400)
        );
        assert!(parse(&invite("Expires: 4294967295\r\n", "")).is_ok());
        assert_eq!(
            reject_status(&invite("Date: Sat, 15 Oct 2005 04:44:56 PST\r\n", "")),
            Some(400)
        );
    }

    #[test]
    fn non_sip_header_uris_fall_back_to_raw_text() {
        let data = String::from_utf8(invite("", "")).unwrap().replace(
            "To: <sip:bob@example.com>",
            "To: <tel:+1-201-555-0123;phone-context=example.com>",
        );
        let m = parse(data.as_bytes()).unwrap();
        assert!(!m.to().uri().is_sip());
        assert_eq!(m.to().uri().scheme(), "tel");
        assert_eq!(m.to().uri().user().as_deref(), Some("+1-201-555-0123"));
        assert_eq!(m.from().uri().user().as_deref(), Some("alice"));
        assert_eq!(m.from().uri().host().as_deref(), Some("example.com"));
    }

    #[test]
    fn compact_and_extension_headers() {
        let m = parse(&invite(
            "X-Room-ID: r1\r\nx-tenant: t\r\nc: application/sdp\r\n",
            "",
        ))
        .unwrap();
        assert_eq!(m.content_type(), Some("application/sdp"));
        assert_eq!(m.header("i"), Some("c1@example.com"));
        let x: Vec<_> = m.x_headers().collect();
        assert_eq!(x, vec![("X-Room-ID", "r1"), ("x-tenant", "t")]);
        assert_eq!(m.top_via().rport(), Some(None));
        assert_eq!(m.top_via().sent_by(), "192.0.2.1:5060");
    }

    #[test]
    fn unanswerable_messages_are_dropped() {
        assert!(matches!(parse(b"\r\n\r\n"), Err(ParseError::Drop { .. })));
        assert!(matches!(
            parse(&vec![b'a'; MAX_MESSAGE_SIZE + 1]),
            Err(ParseError::Drop { .. })
        ));
        let ack = String::from_utf8(invite("Content-Length: 9\r\n", ""))
            .unwrap()
            .replace("INVITE", "ACK");
        assert!(matches!(
            parse(ack.as_bytes()),
            Err(ParseError::Drop { .. })
        ));
        let no_via = String::from_utf8(invite("Content-Length: 9\r\n", ""))
            .unwrap()
            .replace(
                "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport\r\n",
                "",
            );
        assert!(matches!(
            parse(no_via.as_bytes()),
            Err(ParseError::Drop { .. })
        ));
        assert!(matches!(
            parse(b"\x00\x01garbage"),
            Err(ParseError::Drop { .. })
        ));
    }

    #[test]
    fn request_targets_pass_the_request_uri_check() {
        let target = |raw: &str| {
            Uri::parse(raw)
                .unwrap()
                .request_target()
                .map(|u| u.as_str().to_string())
        };
        assert_eq!(
            target("sip:a@h.example;method=BYE;maddr=192.0.2.1?Subject=x"),
            Ok("sip:a@h.example;maddr=192.0.2.1".into())
        );
        assert_eq!(
            target("sips:[2001:db8::1]:5061"),
            Ok("sips:[2001:db8::1]:5061".into())
        );
        assert_eq!(target("sip:h.example;METHOD"), Ok("sip:h.example".into()));
        assert!(target("tel:+15551234567").is_err());
    }

    /// The request-URI check moved out of the start line; it still refuses the same things.
    #[test]
    fn request_uri_whitespace_and_controls_are_400() {
        let data = String::from_utf8(invite("", "")).unwrap();
        for bad in ["sip:bob@exa\tmple.com", "sip:bob@exa\u{1}mple.com"] {
            let t = data.replace(
                "INVITE sip:bob@example.com SIP",
                &format!("INVITE {bad} SIP"),
            );
            assert_eq!(reject_status(t.as_bytes()), Some(400), "{bad:?}");
        }
    }

    #[test]
    fn rejection_answers_copy_the_request() {
        let data = String::from_utf8(invite("", ""))
            .unwrap()
            .replace("SIP/2.0\r\n", "SIP/3.0\r\n");
        let Err(ParseError::Reject(r)) = parse(data.as_bytes()) else {
            panic!("expected a rejection");
        };
        assert_eq!(r.status, 505);
        let text = String::from_utf8(
            crate::sip::ResponseBuilder::rejection(&r)
                .to_tag("x")
                .server("roomkit")
                .build(),
        )
        .unwrap();
        assert!(text.starts_with("SIP/2.0 505 Version Not Supported\r\n"));
        assert!(text.contains("To: <sip:bob@example.com>;tag=x\r\n"));
        assert!(text.contains("Server: roomkit\r\n"));
        assert!(parse(text.as_bytes()).is_ok());
    }
}
