//! Writing our session descriptions through sdp-types' serializer (CRLF line endings, and CR/LF/NUL
//! stripped from every field, so nothing a peer sent can inject a line into what we write).

use std::net::IpAddr;

use sdp_types::{Attribute, Connection, Media, Time};

/// The session-level part of every description we write.
pub(crate) struct SessionHeader<'a> {
    pub local_ip: IpAddr,
    pub session_id: u64,
    pub session_version: u64,
    pub session_name: &'a str,
    /// Session-level attributes (`name` or `name:value`), e.g. `ice-lite`.
    pub attributes: Vec<String>,
}

/// Builds the complete text: `v=`, `o=- <id> <version> IN IP4|IP6 <ip>`, `s=`, session `c=`,
/// `t=0 0`, then the media sections.
pub(crate) fn render(header: &SessionHeader<'_>, medias: Vec<Media>) -> String {
    let origin =
        sdp_types::Origin::with_ip_addr(header.session_id, header.session_version, header.local_ip);
    let name: String = header
        .session_name
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let name = match name.trim() {
        "" => "-".to_string(),
        n => n.to_string(),
    };
    let mut session = sdp_types::Session::new(origin, name);
    session.connection = Some(Connection::from_ip_addr(header.local_ip));
    session.times = vec![Time::new(0, 0)];
    session.attributes = header.attributes.iter().map(|a| attribute(a)).collect();
    session.medias = medias;
    session.to_string()
}

/// A media section with the given fields and attributes (`name` or `name:value`).
pub(crate) fn media(kind: &str, port: u16, proto: &str, fmt: &str, attrs: Vec<String>) -> Media {
    Media {
        media: kind.to_string(),
        port,
        num_ports: None,
        proto: proto.to_string(),
        fmt: fmt.to_string(),
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: attrs.iter().map(|a| attribute(a)).collect(),
    }
}

/// An attribute from its text (`name` or `name:value`).
fn attribute(a: &str) -> Attribute {
    match a.split_once(':') {
        Some((name, value)) => Attribute::with_value(name, value),
        None => Attribute::new(a),
    }
}

/// Keeps only visible ASCII (no spaces or control characters): what we echo back from a peer's
/// m-line must stay one well-formed token.
pub(crate) fn visible(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_graphic()).collect()
}

/// A rejected m-line (port 0), echoing the offered media type, protocol and formats (RFC 3264
/// §6: the answer keeps one m-line per offered one, with at least one format).
pub(crate) fn rejected(kind: &str, proto: &str, formats: &[String]) -> Media {
    let kind = match visible(kind) {
        k if k.is_empty() => "application".to_string(),
        k => k,
    };
    let proto = match visible(proto) {
        p if p.is_empty() => "RTP/AVP".to_string(),
        p => p,
    };
    let fmts: Vec<String> = formats
        .iter()
        .map(|f| visible(f))
        .filter(|f| !f.is_empty())
        .collect();
    let fmt = if fmts.is_empty() {
        "0".to_string()
    } else {
        fmts.join(" ")
    };
    media(&kind, 0, &proto, &fmt, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_rejected_line() {
        let text = render(
            &SessionHeader {
                local_ip: "::1".parse().unwrap(),
                session_id: 7,
                session_version: 8,
                session_name: "a\r\nb=evil",
                attributes: Vec::new(),
            },
            vec![rejected("appl ication", "", &["*".into(), "\u{7f}".into()])],
        );
        assert_eq!(
            text,
            "v=0\r\no=- 7 8 IN IP6 ::1\r\ns=ab=evil\r\nc=IN IP6 ::1\r\nt=0 0\r\n\
m=application 0 RTP/AVP *\r\n"
        );
    }
}
