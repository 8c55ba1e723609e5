//! Choosing where a 3xx redirect sends us (RFC 3261 §8.1.3.4): the Contact addresses of the
//! response, best `q` first.

use super::message::{NameAddr, SipMessage};

/// A `q` value in thousandths (`1` → 1000, `0.5` → 500): `qvalue = "0" ["." 0*3DIGIT] / "1"
/// ["." 0*3("0")]`. `None` when malformed.
pub fn parse_qvalue(text: &str) -> Option<u16> {
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{frac:0<3}").parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The Contacts of a 3xx worth trying, best first: `sip:`/`sips:` URIs only, highest `q` first
/// (no `q` counts as 1), the response's order among equals. Contacts with a malformed `q` or
/// `expires=0` are left out.
pub fn redirect_targets(response: &SipMessage) -> Vec<&NameAddr> {
    let mut targets: Vec<(u16, &NameAddr)> = response
        .contacts()
        .iter()
        .filter(|c| c.uri().is_sip())
        .filter(|c| c.param("expires").flatten() != Some("0"))
        .filter_map(|c| match c.param("q") {
            None => Some((1000, c)),
            Some(q) => q.and_then(parse_qvalue).map(|q| (q, c)),
        })
        .collect();
    // A stable sort keeps the response's order among equal q values.
    targets.sort_by_key(|(q, _)| std::cmp::Reverse(*q));
    targets.into_iter().map(|(_, c)| c).collect()
}

/// The Contact a 3xx sends us to first (see [`redirect_targets`]), if any.
pub fn redirect_target(response: &SipMessage) -> Option<&NameAddr> {
    redirect_targets(response).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse;

    fn moved(contacts: &str) -> SipMessage {
        parse(
            format!(
                "SIP/2.0 302 Moved Temporarily\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKr\r\n\
From: <sip:me@example.com>;tag=a\r\n\
To: <sip:bob@example.com>;tag=b\r\n\
Call-ID: r@x\r\n\
CSeq: 1 INVITE\r\n\
{contacts}Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("0.5"), Some(500));
        assert_eq!(parse_qvalue("0.05"), Some(50));
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0."), Some(0));
        for bad in ["1.5", "2", "0.1234", "", ".5", "-0", "0.x", "01"] {
            assert_eq!(parse_qvalue(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn best_sip_contact_first() {
        let r = moved(
            "Contact: <tel:+15551234>, <sip:low@a.example>;q=0.2, <sip:first@b.example>;q=0.9\r\n\
Contact: <sips:second@c.example>;q=0.9, <sip:bad@d.example>;q=7, <sip:gone@e.example>;expires=0\r\n",
        );
        let targets: Vec<&str> = redirect_targets(&r)
            .iter()
            .map(|c| c.uri().as_str())
            .collect();
        assert_eq!(
            targets,
            [
                "sip:first@b.example",
                "sips:second@c.example",
                "sip:low@a.example"
            ]
        );
        assert_eq!(
            redirect_target(&moved("Contact: <sip:x@y>;q=0.1, <sip:z@w>\r\n"))
                .unwrap()
                .uri()
                .as_str(),
            "sip:z@w"
        );
        assert!(redirect_target(&moved("Contact: <tel:+1555>\r\n")).is_none());
        assert!(redirect_target(&moved("")).is_none());
    }
}
