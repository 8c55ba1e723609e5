//! Reading session descriptions from the network.
//!
//! sdp-types reads the text first. It is strict in places where real peers are not (a second
//! session-level `c=`, a stray CR inside a line, a non-token address type, bytes that are not
//! UTF-8, an `o=` with a missing field…), so when it refuses a body we read the same body again
//! with a tolerant line reader that builds the same sdp-types structure, skipping the lines it
//! cannot use. Both paths then go through one conversion into our model, so they cannot disagree
//! about what a field means.

use std::str::FromStr;

use sdp_types::{AddrType, Attribute, Connection, Media, NetType};

use super::model::{
    parse_ip, Direction, MediaDescription, MediaKind, Origin, PayloadType, RtcpAttr, RtpMap,
    SdpError, SessionDescription,
};

impl SessionDescription {
    /// Parses a session description. Never panics; fails only when the body has no `v=` line.
    pub fn parse(data: &[u8]) -> Result<SessionDescription, SdpError> {
        match sdp_types::Session::parse(data) {
            Ok(session) => Ok(convert(&session, false)),
            Err(_) => Ok(convert(&parse_tolerant(data)?, true)),
        }
    }
}

impl FromStr for SessionDescription {
    type Err = SdpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionDescription::parse(s.as_bytes())
    }
}

/// The tolerant reader: one line at a time, anything unreadable skipped.
pub(crate) fn parse_tolerant(data: &[u8]) -> Result<sdp_types::Session, SdpError> {
    let text = String::from_utf8_lossy(data);
    let mut saw_version = false;
    let mut origin = None;
    let mut name = None;
    let mut connection = None;
    let mut attributes = Vec::new();
    let mut medias: Vec<Media> = Vec::new();

    for raw in text.split('\n') {
        let line = raw.trim();
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_alphabetic() {
            continue;
        }
        // The first two bytes are ASCII, so index 2 is a character boundary.
        let value = line[2..].trim();
        match bytes[0] {
            b'v' => saw_version = true,
            b'o' if origin.is_none() && medias.is_empty() => origin = tolerant_origin(value),
            b's' if name.is_none() && medias.is_empty() => name = Some(value.to_string()),
            b'c' => {
                if let Some(conn) = tolerant_connection(value) {
                    match medias.last_mut() {
                        Some(media) => media.connections.push(conn),
                        None if connection.is_none() => connection = Some(conn),
                        None => {}
                    }
                }
            }
            b'm' => medias.push(tolerant_media(value)),
            b'a' => {
                let attr = match value.split_once(':') {
                    Some((n, v)) => Attribute::with_value(n.trim(), v.trim()),
                    None => Attribute::new(value),
                };
                match medias.last_mut() {
                    Some(media) => media.attributes.push(attr),
                    None => attributes.push(attr),
                }
            }
            _ => {}
        }
    }
    if !saw_version {
        return Err(SdpError::NotSdp);
    }
    let origin = origin
        .unwrap_or_else(|| sdp_types::Origin::new("0", 0, NetType::In, AddrType::Ip4, "0.0.0.0"));
    let mut session = sdp_types::Session::new(origin, name.unwrap_or_default());
    session.connection = connection;
    session.attributes = attributes;
    session.medias = medias;
    Ok(session)
}

fn tolerant_origin(value: &str) -> Option<sdp_types::Origin> {
    let f: Vec<&str> = value.split_whitespace().collect();
    if f.len() < 6 {
        return None;
    }
    let mut origin = sdp_types::Origin::new(
        f[1],
        f[2].parse().unwrap_or(0),
        NetType::from(f[3]),
        AddrType::new(f[4]),
        f[5],
    );
    origin.set_username(f[0]);
    Some(origin)
}

fn tolerant_connection(value: &str) -> Option<Connection> {
    let f: Vec<&str> = value.split_whitespace().collect();
    match f.as_slice() {
        [net, addrtype, addr, ..] => Some(Connection::new(
            NetType::from(*net),
            AddrType::new(addrtype),
            addr,
        )),
        // Some broken peers leave out the network type.
        [addrtype, addr] => Some(Connection::new(NetType::In, AddrType::new(addrtype), addr)),
        _ => None,
    }
}

/// Reads an m-line. Always yields a media section, even from garbage, because the answer must
/// keep one m-line per offered one; an unreadable port reads as 0 (rejected).
fn tolerant_media(value: &str) -> Media {
    let mut fields = value.split_whitespace();
    let kind = fields.next().unwrap_or("");
    let port = fields
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let proto = fields.next().unwrap_or("");
    let fmt = fields.collect::<Vec<_>>().join(" ");
    Media {
        media: kind.to_string(),
        port,
        num_ports: None,
        proto: proto.to_string(),
        fmt,
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    }
}

/// How many distinct feedback types we keep per payload type. Real offers carry a handful; the
/// bound keeps a body stuffed with `a=rtcp-fb` lines from costing quadratic time.
const MAX_FEEDBACK: usize = 16;

/// Turns an sdp-types session (from either reader) into our model.
fn convert(session: &sdp_types::Session, lenient: bool) -> SessionDescription {
    let session_connection = session
        .connection
        .as_ref()
        .and_then(|c| parse_ip(&c.connection_address));
    let session_direction = last_direction(&session.attributes).unwrap_or_default();
    let origin = &session.origin;
    SessionDescription {
        origin: Origin {
            username: origin.username.clone().unwrap_or_else(|| "-".to_string()),
            session_id: origin.sess_id.clone(),
            session_version: origin.sess_version,
            address: origin.unicast_address.clone(),
        },
        session_name: session.session_name.clone(),
        connection: session_connection,
        direction: session_direction,
        media: session
            .medias
            .iter()
            .map(|m| {
                let mut media = convert_media(m, session_connection, session_direction);
                add_session_extmaps(&mut media.extmaps, &session.attributes);
                media.transport = super::transport::read(&session.attributes, &m.attributes);
                media
            })
            .collect(),
        parsed_leniently: lenient,
        bundle: super::transport::bundle_groups(&session.attributes),
    }
}

fn last_direction(attributes: &[Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .filter_map(|a| Direction::from_attribute(a.attribute.trim()))
        .next_back()
}

fn attr_values<'a>(media: &'a Media, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    media
        .attributes
        .iter()
        .filter(move |a| a.attribute.trim().eq_ignore_ascii_case(name))
        .filter_map(|a| a.value.as_deref())
        .map(str::trim)
}

/// Splits `<pt> <rest>` (rtpmap, fmtp, rtcp-fb); the payload part may be `*` for rtcp-fb.
fn split_pt(value: &str) -> Option<(&str, &str)> {
    let value = value.trim();
    match value.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((pt, rest)) => Some((pt, rest.trim())),
        None => Some((value, "")),
    }
}

fn parse_rtpmap(text: &str) -> Option<RtpMap> {
    let mut parts = text.split('/');
    let encoding_name = parts.next()?.trim();
    if encoding_name.is_empty() {
        return None;
    }
    let clock_rate = parts.next()?.trim().parse().ok()?;
    let channels = parts.next().and_then(|c| c.trim().parse().ok());
    Some(RtpMap {
        encoding_name: encoding_name.to_string(),
        clock_rate,
        channels,
    })
}

fn parse_ptime(text: &str) -> Option<u32> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u32>() {
        return Some(ms);
    }
    // Some peers write a fraction ("20.0"); a ptime of zero or beyond a second is nonsense.
    let ms = text.parse::<f64>().ok()?;
    (1.0..=1000.0).contains(&ms).then(|| ms.round() as u32)
}

fn parse_rtcp(text: &str) -> Option<RtcpAttr> {
    let mut f = text.split_whitespace();
    let port = f.next()?.parse().ok()?;
    let address = f.nth(2).and_then(parse_ip);
    Some(RtcpAttr { port, address })
}

fn convert_media(
    media: &Media,
    session_connection: Option<std::net::IpAddr>,
    session_direction: Direction,
) -> MediaDescription {
    let formats: Vec<String> = media.fmt.split_whitespace().map(str::to_string).collect();
    let mut payloads: Vec<PayloadType> = Vec::new();
    for token in &formats {
        if let Ok(pt) = token.parse::<u8>() {
            if pt <= 127 && !payloads.iter().any(|p| p.pt == pt) {
                payloads.push(PayloadType {
                    pt,
                    rtpmap: None,
                    fmtp: None,
                    rtcp_fb: Vec::new(),
                });
            }
        }
    }
    for value in attr_values(media, "rtpmap") {
        let Some((pt, rest)) = split_pt(value) else {
            continue;
        };
        let Ok(pt) = pt.parse::<u8>() else { continue };
        if let Some(p) = payloads.iter_mut().find(|p| p.pt == pt) {
            if p.rtpmap.is_none() {
                p.rtpmap = parse_rtpmap(rest);
            }
        }
    }
    for value in attr_values(media, "fmtp") {
        let Some((pt, rest)) = split_pt(value) else {
            continue;
        };
        let Ok(pt) = pt.parse::<u8>() else { continue };
        if let Some(p) = payloads.iter_mut().find(|p| p.pt == pt) {
            if p.fmtp.is_none() {
                p.fmtp = Some(rest.to_string());
            }
        }
    }
    for value in attr_values(media, "rtcp-fb") {
        let Some((pt, rest)) = split_pt(value) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let feedback = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        for p in payloads.iter_mut() {
            if (pt == "*" || pt.parse::<u8>().ok() == Some(p.pt))
                && p.rtcp_fb.len() < MAX_FEEDBACK
                && !p.rtcp_fb.contains(&feedback)
            {
                p.rtcp_fb.push(feedback.clone());
            }
        }
    }
    let connection = media
        .connections
        .iter()
        .find_map(|c| parse_ip(&c.connection_address))
        .or(session_connection);
    MediaDescription {
        kind: MediaKind::from_name(media.media.trim()),
        port: media.port,
        proto: media.proto.trim().to_string(),
        formats,
        payloads,
        direction: last_direction(&media.attributes).unwrap_or(session_direction),
        ptime: attr_values(media, "ptime").find_map(parse_ptime),
        rtcp_mux: media
            .attributes
            .iter()
            .any(|a| a.attribute.trim().eq_ignore_ascii_case("rtcp-mux")),
        rtcp: attr_values(media, "rtcp").find_map(parse_rtcp),
        connection,
        // A bounded number: the lines come from the network.
        crypto: attr_values(media, "crypto")
            .take(MAX_CRYPTO_LINES)
            .filter_map(|v| super::crypto::parse_crypto(v).ok())
            .collect(),
        extmaps: extmaps(&media.attributes).collect(),
        transport: Default::default(),
        bundle_only: media
            .attributes
            .iter()
            .any(|a| a.attribute.trim().eq_ignore_ascii_case("bundle-only")),
    }
}

/// The `a=extmap` lines among `attributes`, at most [`super::MAX_EXTMAPS`].
fn extmaps<'a>(attributes: &'a [Attribute]) -> impl Iterator<Item = super::ExtMap> + 'a {
    attributes
        .iter()
        .filter(|a| a.attribute.trim().eq_ignore_ascii_case("extmap"))
        .filter_map(|a| a.value.as_deref())
        .filter_map(super::parse_extmap)
        .take(super::MAX_EXTMAPS)
}

/// Adds the session-level `a=extmap` lines whose ID the m-line does not use (RFC 8285 §5).
fn add_session_extmaps(media: &mut Vec<super::ExtMap>, session: &[Attribute]) {
    for e in extmaps(session) {
        if media.len() < super::MAX_EXTMAPS && !media.iter().any(|m| m.id == e.id) {
            media.push(e);
        }
    }
}

/// The most `a=crypto` lines of one m-line we read (RFC 4568 offers list a handful).
const MAX_CRYPTO_LINES: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 10.0.0.1\r\n\
s=-\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
a=sendonly\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:30\r\n\
a=rtcp:49999 IN IP4 10.0.0.9\r\n\
m=video 51372 RTP/AVPF 96 97\r\n\
c=IN IP6 2001:db8::2\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\n\
a=rtpmap:97 VP8/90000\r\n\
a=rtcp-fb:* nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtcp-mux\r\n\
a=recvonly\r\n";

    #[test]
    fn reads_everything_we_use() {
        let sd = SessionDescription::parse(OFFER.as_bytes()).unwrap();
        assert!(!sd.parsed_leniently);
        assert_eq!(sd.media.len(), 2);
        let a = &sd.media[0];
        assert_eq!(a.kind, MediaKind::Audio);
        assert_eq!(a.port, 49170);
        assert_eq!(a.direction, Direction::SendOnly, "session-level default");
        assert_eq!(a.ptime, Some(30));
        assert_eq!(a.connection, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(a.rtcp_addr(false), Some("10.0.0.9:49999".parse().unwrap()));
        assert!(a.payload(0).unwrap().is("PCMU"));
        assert_eq!(a.payload(101).unwrap().fmtp.as_deref(), Some("0-15"));
        let v = &sd.media[1];
        assert_eq!(v.kind, MediaKind::Video);
        assert_eq!(v.direction, Direction::RecvOnly);
        assert!(v.rtcp_mux);
        assert_eq!(v.connection, Some("2001:db8::2".parse().unwrap()));
        assert_eq!(
            v.payload(96).unwrap().fmtp_param("packetization-mode"),
            Some("1")
        );
        assert_eq!(v.payload(96).unwrap().rtcp_fb, vec!["nack", "nack pli"]);
        assert_eq!(v.payload(97).unwrap().rtcp_fb, vec!["nack"]);
    }

    #[test]
    fn both_readers_agree() {
        let strict = SessionDescription::parse(OFFER.as_bytes()).unwrap();
        let mut tolerant = convert(&parse_tolerant(OFFER.as_bytes()).unwrap(), true);
        tolerant.parsed_leniently = false;
        assert_eq!(strict, tolerant);
    }

    #[test]
    fn tolerant_reader_takes_what_strict_refuses() {
        // Two session-level c= lines, a bare CR inside a line, LF-only endings, Latin-1 bytes.
        let mut body =
            b"v=0\no=- 1 1 IN IP4 10.0.0.1\ns=caf\xe9\nc=IN IP4 10.0.0.1\nc=IN IP4 10.0.0.2\n\
t=0 0\nm=audio 4000 RTP/AVP 8\ra\na=rtpmap:8 PCMA/8000\nm=video x RTP/AVP 96\n"
                .to_vec();
        body.extend_from_slice(b"a=inactive\n");
        let sd = SessionDescription::parse(&body).unwrap();
        assert!(sd.parsed_leniently);
        assert_eq!(sd.connection, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(sd.media.len(), 2);
        assert_eq!(sd.media[1].port, 0, "unreadable port reads as rejected");
        assert_eq!(sd.media[1].direction, Direction::Inactive);
    }

    #[test]
    fn not_sdp() {
        assert_eq!(
            SessionDescription::parse(b"hello world"),
            Err(SdpError::NotSdp)
        );
        assert_eq!(SessionDescription::parse(b""), Err(SdpError::NotSdp));
    }

    #[test]
    fn many_feedback_lines_stay_cheap() {
        let mut body = String::from("v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP");
        for pt in 0..128 {
            body.push_str(&format!(" {pt}"));
        }
        body.push_str("\r\n");
        for i in 0..20_000 {
            body.push_str(&format!("a=rtcp-fb:* x{i}\r\n"));
        }
        let sd = SessionDescription::parse(body.as_bytes()).unwrap();
        assert_eq!(sd.media[0].payloads.len(), 128);
        assert!(sd.media[0]
            .payloads
            .iter()
            .all(|p| p.rtcp_fb.len() == MAX_FEEDBACK));
    }

    #[test]
    fn extmap_lines_media_level_first_then_session_level() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
a=extmap:3 urn:session-three\r\n\
a=extmap:9 urn:session-nine\r\n\
m=video 5004 RTP/AVPF 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:0 urn:bad-id\r\n\
a=extmap:5/recvonly urn:five\r\n";
        let sdp = SessionDescription::parse(body.as_bytes()).unwrap();
        let ids: Vec<(u16, &str)> = sdp.media[0]
            .extmaps
            .iter()
            .map(|e| (e.id, e.uri.as_str()))
            .collect();
        assert_eq!(
            ids,
            vec![
                (3, crate::rtp::hdrext::TRANSPORT_CC_URI),
                (5, "urn:five"),
                (9, "urn:session-nine")
            ]
        );
        assert_eq!(
            super::super::extmap_id(&sdp.media[0].extmaps, crate::rtp::hdrext::TRANSPORT_CC_URI),
            Some(3)
        );
    }

    #[test]
    fn ptime_forms() {
        assert_eq!(parse_ptime("20"), Some(20));
        assert_eq!(parse_ptime("20.0"), Some(20));
        assert_eq!(parse_ptime("0.0"), None);
        assert_eq!(parse_ptime("NaN"), None);
    }
}
