//! SIP option tags (RFC 3261 §8.2.2.3, §19.2): what a request `Require`s that we do not
//! support (answer 420 with `Unsupported`), and what a peer says it `Supported`s.

use super::message::{Method, SipMessage};
use super::syntax::is_token;

/// The option tags we implement: session timers (RFC 4028). Reliable provisional responses
/// (`100rel`) are not implemented, so a request requiring them is refused.
pub const SUPPORTED_OPTION_TAGS: &[&str] = &["timer"];

/// Most unknown tags listed in one `Unsupported` header.
const MAX_UNSUPPORTED_LISTED: usize = 16;

/// The option tags of every `name` header of `msg` (comma lists; compact names work, e.g. `k`
/// for Supported), trimmed, empty elements skipped.
pub fn option_tags<'a>(msg: &'a SipMessage, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    msg.header_values(name)
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// True when `msg` lists `tag` in `Supported` or `Require` (tags compared without case).
pub fn supports(msg: &SipMessage, tag: &str) -> bool {
    option_tags(msg, "Supported")
        .chain(option_tags(msg, "Require"))
        .any(|t| t.eq_ignore_ascii_case(tag))
}

/// The tags `request` requires that are not in `supported`, in order and without repeats (a
/// malformed tag counts as unsupported). Empty means go on; otherwise answer 420 (Bad
/// Extension) with [`unsupported_header`]. ACK and CANCEL are never refused for this
/// (RFC 3261 §8.2.2.3).
pub fn unsupported_requirements(request: &SipMessage, supported: &[&str]) -> Vec<String> {
    if matches!(request.method(), Method::Ack | Method::Cancel) {
        return Vec::new();
    }
    let mut unknown: Vec<String> = Vec::new();
    for tag in option_tags(request, "Require") {
        let known = is_token(tag) && supported.iter().any(|s| s.eq_ignore_ascii_case(tag));
        if !known && !unknown.iter().any(|u| u == tag) {
            unknown.push(tag.to_string());
        }
    }
    unknown
}

/// The `Unsupported` value of a 420 listing `tags` (only the well-formed ones, at most 16,
/// so a hostile request cannot make the answer grow or carry arbitrary text). When none is
/// well-formed the answer still needs a 420, and the header is left out (empty value).
pub fn unsupported_header(tags: &[String]) -> String {
    tags.iter()
        .filter(|t| is_token(t))
        .take(MAX_UNSUPPORTED_LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse;

    fn request(method: &str, extra: &str) -> SipMessage {
        parse(
            format!(
                "{method} sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKopt\r\n\
From: <sip:alice@example.com>;tag=a\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: opt@x\r\n\
CSeq: 1 {method}\r\n\
{extra}Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn unknown_requirements_are_listed_once() {
        let r = request(
            "INVITE",
            "Require: 100rel, timer\r\nRequire: foo,100rel , Timer\r\n",
        );
        let unknown = unsupported_requirements(&r, SUPPORTED_OPTION_TAGS);
        assert_eq!(unknown, ["100rel", "foo"]);
        assert_eq!(unsupported_header(&unknown), "100rel, foo");
        assert!(unsupported_requirements(
            &request("INVITE", "Require: timer\r\n"),
            SUPPORTED_OPTION_TAGS
        )
        .is_empty());
        assert!(unsupported_requirements(&request("INVITE", ""), SUPPORTED_OPTION_TAGS).is_empty());
        // ACK and CANCEL are not checked.
        assert!(
            unsupported_requirements(&request("CANCEL", "Require: 100rel\r\n"), &[]).is_empty()
        );
        // A tag that is not a token is unsupported, and not echoed.
        let odd = request("OPTIONS", "Require: a\"b, ok-tag\r\n");
        let unknown = unsupported_requirements(&odd, &[]);
        assert_eq!(unknown, ["a\"b", "ok-tag"]);
        assert_eq!(unsupported_header(&unknown), "ok-tag");
        let many: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        assert_eq!(unsupported_header(&many).split(", ").count(), 16);
    }

    #[test]
    fn supported_reads_both_forms() {
        assert!(supports(&request("INVITE", "k: 100rel,timer\r\n"), "timer"));
        assert!(supports(&request("INVITE", "Require: timer\r\n"), "TIMER"));
        assert!(!supports(
            &request("INVITE", "Supported: timers\r\n"),
            "timer"
        ));
    }
}
