//! Our own view of a session description: only what offer/answer needs, every field already
//! resolved (session-level defaults applied, connection addresses parsed, rtpmap and fmtp attached
//! to their payload types).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// What an m-line carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
    /// Anything else (`application`, `text`, `image`…), kept as written.
    Other(String),
}

impl MediaKind {
    /// Classifies an m-line's media field, case-insensitively.
    pub fn from_name(name: &str) -> MediaKind {
        if name.eq_ignore_ascii_case("audio") {
            MediaKind::Audio
        } else if name.eq_ignore_ascii_case("video") {
            MediaKind::Video
        } else {
            MediaKind::Other(name.to_string())
        }
    }

    /// The media field as it is written in an m-line.
    pub fn as_str(&self) -> &str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Other(name) => name,
        }
    }
}

/// The direction attribute of a stream (RFC 3264 §5.1), always from the point of view of the
/// side that wrote the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The attribute name (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Recognises a direction attribute name, case-insensitively.
    pub fn from_attribute(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| name.eq_ignore_ascii_case(d.as_str()))
    }

    /// The same stream seen from the other side: what one side sends, the other receives.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether the describing side sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the describing side receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// Builds a direction from whether the side sends and whether it receives.
    pub fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Keeps only what both directions allow.
    pub fn restrict(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `a=rtpmap` value: encoding name, clock rate and (audio) channel count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub encoding_name: String,
    pub clock_rate: u32,
    /// The third field of the rtpmap, when present (audio channels).
    pub channels: Option<u16>,
}

/// One payload type of an m-line with the attributes that refer to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadType {
    pub pt: u8,
    /// The `a=rtpmap` for this payload type; `None` for static types written without one.
    pub rtpmap: Option<RtpMap>,
    /// The parameter text of `a=fmtp:<pt> …`, trimmed.
    pub fmtp: Option<String>,
    /// The feedback types of `a=rtcp-fb:<pt> …` and `a=rtcp-fb:* …` (`nack`, `nack pli`, `ccm fir`…).
    pub rtcp_fb: Vec<String>,
}

impl PayloadType {
    /// The encoding name from the rtpmap or, for a static payload type without one, from the
    /// RFC 3551 table.
    pub fn encoding_name(&self) -> Option<&str> {
        match &self.rtpmap {
            Some(map) => Some(map.encoding_name.as_str()),
            None => static_payload(self.pt).map(|s| s.0),
        }
    }

    /// The clock rate from the rtpmap or the static table.
    pub fn clock_rate(&self) -> Option<u32> {
        match &self.rtpmap {
            Some(map) => Some(map.clock_rate),
            None => static_payload(self.pt).map(|s| s.1),
        }
    }

    /// The channel count from the rtpmap or the static table; 1 when neither says.
    pub fn channels(&self) -> u16 {
        match &self.rtpmap {
            Some(map) => map.channels.unwrap_or(1),
            None => static_payload(self.pt).map_or(1, |s| s.2),
        }
    }

    /// Whether the encoding name is `name`, ignoring case.
    pub fn is(&self, name: &str) -> bool {
        self.encoding_name()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    }

    /// The value of one `key=value` parameter of the fmtp (keys compared without case).
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        fmtp_param(self.fmtp.as_deref()?, key)
    }
}

/// Looks up one `key=value` parameter in fmtp parameter text (`a;b=c; d=e`).
pub(crate) fn fmtp_param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    params.split(';').find_map(|item| {
        let (k, v) = item.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// The static payload types of RFC 3551 (tables 4 and 5): name, clock rate, channels.
pub(crate) fn static_payload(pt: u8) -> Option<(&'static str, u32, u16)> {
    Some(match pt {
        0 => ("PCMU", 8000, 1),
        3 => ("GSM", 8000, 1),
        4 => ("G723", 8000, 1),
        5 => ("DVI4", 8000, 1),
        6 => ("DVI4", 16000, 1),
        7 => ("LPC", 8000, 1),
        8 => ("PCMA", 8000, 1),
        9 => ("G722", 8000, 1),
        10 => ("L16", 44100, 2),
        11 => ("L16", 44100, 1),
        12 => ("QCELP", 8000, 1),
        13 => ("CN", 8000, 1),
        14 => ("MPA", 90000, 1),
        15 => ("G728", 8000, 1),
        16 => ("DVI4", 11025, 1),
        17 => ("DVI4", 22050, 1),
        18 => ("G729", 8000, 1),
        25 => ("CelB", 90000, 1),
        26 => ("JPEG", 90000, 1),
        28 => ("nv", 90000, 1),
        31 => ("H261", 90000, 1),
        32 => ("MPV", 90000, 1),
        33 => ("MP2T", 90000, 1),
        34 => ("H263", 90000, 1),
        _ => return None,
    })
}

/// An `a=rtcp` attribute (RFC 3605): the port RTCP goes to, and optionally another address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpAttr {
    pub port: u16,
    pub address: Option<IpAddr>,
}

/// One m-line and its attributes, with session-level defaults already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub kind: MediaKind,
    /// 0 means the stream is rejected or disabled (or the port was unreadable).
    pub port: u16,
    /// The transport protocol as written (`RTP/AVP`, `RTP/AVPF`, `RTP/SAVP`, `UDP/BFCP`…).
    pub proto: String,
    /// Every format token of the m-line, in order, as written (payload types for RTP).
    pub formats: Vec<String>,
    /// The formats that are RTP payload types (0–127), in the offerer's order.
    pub payloads: Vec<PayloadType>,
    /// The media-level direction attribute, else the session-level one, else `sendrecv`.
    pub direction: Direction,
    /// `a=ptime`, in milliseconds.
    pub ptime: Option<u32>,
    /// `a=rtcp-mux` is present (RFC 5761).
    pub rtcp_mux: bool,
    /// `a=rtcp` (RFC 3605).
    pub rtcp: Option<RtcpAttr>,
    /// The media-level `c=` address, else the session-level one; `None` when neither is readable.
    pub connection: Option<IpAddr>,
    /// The usable `a=crypto` lines (SDES, RFC 4568), in order; lines we cannot honour are left
    /// out (see `sdp/crypto.rs`).
    pub crypto: Vec<super::crypto::CryptoAttr>,
    /// The `a=extmap` lines (RFC 8285) of the m-line, then the session-level ones whose ID the
    /// m-line does not use; at most [`super::MAX_EXTMAPS`].
    pub extmaps: Vec<super::extmap::ExtMap>,
    /// ICE, DTLS-SRTP and BUNDLE attributes (`sdp/transport.rs`), session-level ones applied.
    pub transport: super::transport::TransportAttrs,
    /// `a=bundle-only` (RFC 9143 §6): with port 0 the m-line is not rejected but meant to run
    /// on its BUNDLE group's transport.
    pub bundle_only: bool,
}

impl MediaDescription {
    /// Whether this is plain RTP we can carry: `RTP/AVP` or `RTP/AVPF` (no SRTP, no DTLS).
    pub fn is_plain_rtp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF")
    }

    /// Whether this is RTP over SRTP: `RTP/SAVP` or `RTP/SAVPF`.
    pub fn is_secure_rtp(&self) -> bool {
        super::crypto::is_secure_proto(&self.proto)
    }

    /// The payload type `pt`, when it is in the m-line.
    pub fn payload(&self, pt: u8) -> Option<&PayloadType> {
        self.payloads.iter().find(|p| p.pt == pt)
    }

    /// Where RTP for this stream goes: connection address and m-line port.
    pub fn rtp_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.connection?, self.port))
    }

    /// Where RTCP for this stream goes: the RTP address when muxed, else `a=rtcp`, else the RTP
    /// port + 1 (RFC 3550 §11).
    pub fn rtcp_addr(&self, muxed: bool) -> Option<SocketAddr> {
        let rtp = self.rtp_addr()?;
        if muxed {
            return Some(rtp);
        }
        Some(match self.rtcp {
            Some(attr) => SocketAddr::new(attr.address.unwrap_or(rtp.ip()), attr.port),
            None => SocketAddr::new(rtp.ip(), rtp.port().checked_add(1).unwrap_or(rtp.port())),
        })
    }
}

/// The `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: u64,
    pub address: String,
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The `o=` line; a placeholder (session id 0, version 0, address 0.0.0.0) when there is none.
    pub origin: Origin,
    pub session_name: String,
    /// The session-level `c=` address, when readable.
    pub connection: Option<IpAddr>,
    /// The session-level direction attribute (`sendrecv` when absent).
    pub direction: Direction,
    /// One entry per m-line, in order.
    pub media: Vec<MediaDescription>,
    /// True when sdp-types refused the text and our tolerant reader was used instead.
    pub parsed_leniently: bool,
    /// The `a=group:BUNDLE` groups (RFC 9143), each the mids it lists.
    pub bundle: Vec<Vec<String>>,
}

/// A body that is not a session description at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// No `v=` line: the body is not SDP.
    NotSdp,
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::NotSdp => f.write_str("not a session description (no v= line)"),
        }
    }
}

impl std::error::Error for SdpError {}

/// Reads a connection address (`1.2.3.4`, `224.2.1.1/127`, `ff15::1/3`, `[::1]`) as an IP.
pub(crate) fn parse_ip(text: &str) -> Option<IpAddr> {
    let addr = text.trim().split('/').next()?.trim();
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    addr.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_reverse_and_restrict() {
        assert_eq!(Direction::SendOnly.reverse(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reverse(), Direction::SendOnly);
        assert_eq!(Direction::Inactive.reverse(), Direction::Inactive);
        assert_eq!(Direction::SendRecv.reverse(), Direction::SendRecv);
        assert_eq!(
            Direction::SendRecv.restrict(Direction::RecvOnly),
            Direction::RecvOnly
        );
        assert_eq!(
            Direction::SendOnly.restrict(Direction::RecvOnly),
            Direction::Inactive
        );
        assert_eq!(
            Direction::from_attribute("SENDONLY"),
            Some(Direction::SendOnly)
        );
        assert_eq!(Direction::from_attribute("rtcp-mux"), None);
    }

    #[test]
    fn ip_forms() {
        assert_eq!(parse_ip("10.0.0.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(
            parse_ip("224.2.1.1/127"),
            Some("224.2.1.1".parse().unwrap())
        );
        assert_eq!(
            parse_ip("[2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_ip("host.example.com"), None);
        assert_eq!(parse_ip(""), None);
    }

    #[test]
    fn fmtp_lookup() {
        let p = "profile-level-id=42e01f; Packetization-Mode = 1;foo";
        assert_eq!(fmtp_param(p, "packetization-mode"), Some("1"));
        assert_eq!(fmtp_param(p, "profile-level-id"), Some("42e01f"));
        assert_eq!(fmtp_param(p, "foo"), None);
    }

    #[test]
    fn static_table() {
        let p = PayloadType {
            pt: 9,
            rtpmap: None,
            fmtp: None,
            rtcp_fb: vec![],
        };
        assert!(p.is("g722"));
        assert_eq!(p.clock_rate(), Some(8000));
        let q = PayloadType { pt: 100, ..p };
        assert_eq!(q.encoding_name(), None);
    }
}
