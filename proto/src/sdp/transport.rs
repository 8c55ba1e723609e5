//! The transport attributes WebRTC-style peers put beside their media: ICE (`a=ice-ufrag`,
//! `a=ice-pwd`, `a=ice-lite`, `a=candidate`, `a=end-of-candidates`; RFC 8839), DTLS-SRTP
//! (`a=fingerprint`, RFC 8122; `a=setup`, RFC 4145 and RFC 8842) and BUNDLE (`a=group:BUNDLE`,
//! `a=mid`; RFC 9143).
//!
//! Reading is tolerant of what we cannot use (a line we cannot read is left out, as with
//! `a=crypto`) and bounded (the lines come from the network). Candidate lines are read and
//! written by the ICE agent's own grammar (`is::Candidate`), so there is one parser of them.
//! The session-level ICE credentials, `a=ice-lite`, fingerprints and `a=setup` apply to every
//! m-line that does not say otherwise (RFC 8839 §5.4, RFC 8122 §5).

use std::fmt;

use sdp_types::Attribute;

/// The most `a=candidate` lines of one m-line we read (a browser gathers a handful).
pub const MAX_CANDIDATES: usize = 32;
/// The most `a=fingerprint` lines of one m-line we read (RFC 8122 allows several).
const MAX_FINGERPRINTS: usize = 4;
/// The most `a=group:BUNDLE` groups and the most tags in one that we read.
const MAX_GROUPS: usize = 4;
const MAX_GROUP_TAGS: usize = 16;
/// The longest hash we read in a fingerprint (SHA-512).
const MAX_HASH_LEN: usize = 64;
/// RFC 8839 §5.4: ufrag 4 to 256 characters, password 22 to 256.
const UFRAG_LEN: std::ops::RangeInclusive<usize> = 4..=256;
const PWD_LEN: std::ops::RangeInclusive<usize> = 22..=256;
/// RFC 9143 §7.1 (via RFC 5888): a mid is a token; we keep it short (RTP MID header
/// extension elements carry it, 16 bytes at most).
const MAX_MID_LEN: usize = 16;

/// ICE credentials of one side: `a=ice-ufrag` and `a=ice-pwd`.
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password authenticates connectivity checks: not for logs.
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .finish_non_exhaustive()
    }
}

/// The `a=setup` value (RFC 4145 §4): which side opens the DTLS connection. `active` is the
/// DTLS client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupRole {
    Active,
    Passive,
    /// Either (what an offer must say, RFC 8842 §5.2).
    ActPass,
    /// No connection for now.
    HoldConn,
}

impl SetupRole {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            SetupRole::Active => "active",
            SetupRole::Passive => "passive",
            SetupRole::ActPass => "actpass",
            SetupRole::HoldConn => "holdconn",
        }
    }

    /// Reads an attribute value (case-insensitively).
    pub fn parse(value: &str) -> Option<SetupRole> {
        [
            SetupRole::Active,
            SetupRole::Passive,
            SetupRole::ActPass,
            SetupRole::HoldConn,
        ]
        .into_iter()
        .find(|r| value.trim().eq_ignore_ascii_case(r.as_str()))
    }

    /// The role an answer takes for an offer's `a=setup` (RFC 8842 §5.3). `actpass` gets
    /// `active`, so the answerer's ClientHello can leave with the answer (RFC 5763 §5); an
    /// offer without the attribute is `active` by RFC 4145's default, so we are `passive`.
    /// `holdconn` (or an answerer's role in an offer) cannot be answered: `None`.
    pub fn answer(offered: Option<SetupRole>) -> Option<SetupRole> {
        match offered {
            Some(SetupRole::ActPass) => Some(SetupRole::Active),
            Some(SetupRole::Active) | None => Some(SetupRole::Passive),
            Some(SetupRole::Passive) => Some(SetupRole::Active),
            Some(SetupRole::HoldConn) => None,
        }
    }

    /// Whether our side, having said `ours` while the peer said `theirs`, is the DTLS client;
    /// `None` when the pair does not decide it (both or neither active, `holdconn`).
    pub fn we_are_client(ours: SetupRole, theirs: SetupRole) -> Option<bool> {
        match (ours, theirs) {
            (SetupRole::Active, SetupRole::Passive | SetupRole::ActPass) => Some(true),
            // We offered either and the answer took the server's side.
            (SetupRole::ActPass, SetupRole::Passive) => Some(true),
            (SetupRole::Passive | SetupRole::ActPass, SetupRole::Active) => Some(false),
            _ => None,
        }
    }
}

/// An `a=fingerprint` line (RFC 8122 §5): a hash function's name (lower case) and the hash of
/// the certificate the side presents in its DTLS handshake.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Fingerprint {
    pub algorithm: String,
    pub hash: Vec<u8>,
}

impl Fingerprint {
    /// Reads `sha-256 AB:CD:…` (hex digits in either case). `None` for anything else.
    pub fn parse(value: &str) -> Option<Fingerprint> {
        let (algorithm, hex) = value.trim().split_once(' ')?;
        let algorithm = algorithm.trim();
        if algorithm.is_empty()
            || algorithm.len() > 16
            || !algorithm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return None;
        }
        let hex = hex.trim();
        if hex.len() > MAX_HASH_LEN * 3 {
            return None;
        }
        let hash = hex
            .split(':')
            // Two hex digits each (`from_str_radix` alone would take a sign).
            .map(|pair| match pair.as_bytes() {
                [a, b] if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
                    u8::from_str_radix(pair, 16).ok()
                }
                _ => None,
            })
            .collect::<Option<Vec<u8>>>()?;
        if hash.is_empty() {
            return None;
        }
        Some(Fingerprint {
            algorithm: algorithm.to_ascii_lowercase(),
            hash,
        })
    }
}

impl fmt::Display for Fingerprint {
    /// The attribute value: `sha-256 AB:CD:…` (upper-case hex, RFC 8122 §5).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.algorithm)?;
        for (i, b) in self.hash.iter().enumerate() {
            let sep = if i == 0 { ' ' } else { ':' };
            write!(f, "{sep}{b:02X}")?;
        }
        Ok(())
    }
}

/// The transport attributes of one m-line, with the session-level ones applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportAttrs {
    /// Both `a=ice-ufrag` and `a=ice-pwd`, when present and well-formed.
    pub ice: Option<IceCredentials>,
    /// `a=ice-lite` (a session-level attribute; RFC 8839 §5.3).
    pub ice_lite: bool,
    /// The readable `a=candidate` lines, at most [`MAX_CANDIDATES`].
    pub candidates: Vec<is::Candidate>,
    /// `a=end-of-candidates` (RFC 8838 §8.2): the peer gathers no more.
    pub end_of_candidates: bool,
    /// The readable `a=fingerprint` lines.
    pub fingerprints: Vec<Fingerprint>,
    pub setup: Option<SetupRole>,
    /// `a=mid` (RFC 9143 §7.1 via RFC 5888), when it is a short token.
    pub mid: Option<String>,
}

impl TransportAttrs {
    /// The media-level attribute lines (`name:value`, as `write::media` takes them), in the
    /// order RFC 8839 and browsers use. `a=ice-lite`, being session-level, is not among them
    /// (see [`session_lines`]).
    pub fn media_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(mid) = &self.mid {
            lines.push(format!("mid:{mid}"));
        }
        if let Some(ice) = &self.ice {
            lines.push(format!("ice-ufrag:{}", ice.ufrag));
            lines.push(format!("ice-pwd:{}", ice.pwd));
        }
        for fp in &self.fingerprints {
            lines.push(format!("fingerprint:{fp}"));
        }
        if let Some(setup) = self.setup {
            lines.push(format!("setup:{}", setup.as_str()));
        }
        for c in &self.candidates {
            lines.push(c.to_sdp_string());
        }
        if self.end_of_candidates {
            lines.push("end-of-candidates".to_string());
        }
        lines
    }
}

/// The session-level lines of a description that bundles `mids` (in that order) and, for an
/// ICE-lite agent, says so.
pub fn session_lines(ice_lite: bool, bundle: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    if ice_lite {
        lines.push("ice-lite".to_string());
    }
    if !bundle.is_empty() {
        lines.push(format!("group:BUNDLE {}", bundle.join(" ")));
    }
    lines
}

/// Reads the transport attributes of an m-line, the session's applying where the m-line has
/// none.
pub(crate) fn read(session: &[Attribute], media: &[Attribute]) -> TransportAttrs {
    let ice = credentials(media).or_else(|| credentials(session));
    let mut fingerprints = fingerprints(media);
    if fingerprints.is_empty() {
        fingerprints = self::fingerprints(session);
    }
    TransportAttrs {
        ice,
        ice_lite: has(session, "ice-lite") || has(media, "ice-lite"),
        candidates: values(media, "candidate")
            .take(MAX_CANDIDATES * 2)
            .filter_map(|v| is::Candidate::from_sdp_string(&format!("candidate:{v}")).ok())
            .take(MAX_CANDIDATES)
            .collect(),
        end_of_candidates: has(media, "end-of-candidates") || has(session, "end-of-candidates"),
        fingerprints,
        setup: values(media, "setup")
            .chain(values(session, "setup"))
            .find_map(SetupRole::parse),
        mid: values(media, "mid").find_map(|v| {
            let v = v.trim();
            (!v.is_empty() && v.len() <= MAX_MID_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
                .then(|| v.to_string())
        }),
    }
}

/// The `a=group:BUNDLE` groups of a session: each the mids it lists, in order.
pub(crate) fn bundle_groups(session: &[Attribute]) -> Vec<Vec<String>> {
    values(session, "group")
        .filter_map(|v| {
            let mut words = v.split_whitespace();
            let semantics = words.next()?;
            semantics.eq_ignore_ascii_case("BUNDLE").then(|| {
                words
                    .filter(|m| m.len() <= MAX_MID_LEN)
                    .take(MAX_GROUP_TAGS)
                    .map(str::to_string)
                    .collect()
            })
        })
        .take(MAX_GROUPS)
        .collect()
}

fn has(attributes: &[Attribute], name: &str) -> bool {
    attributes
        .iter()
        .any(|a| a.attribute.trim().eq_ignore_ascii_case(name))
}

fn values<'a>(attributes: &'a [Attribute], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    attributes
        .iter()
        .filter(move |a| a.attribute.trim().eq_ignore_ascii_case(name))
        .filter_map(|a| a.value.as_deref())
}

fn credentials(attributes: &[Attribute]) -> Option<IceCredentials> {
    // RFC 8839 §5.4: ice-chars are ALPHA / DIGIT / "+" / "/".
    let token = |v: &str, len: &std::ops::RangeInclusive<usize>| {
        let v = v.trim();
        (len.contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'))
        .then(|| v.to_string())
    };
    Some(IceCredentials {
        ufrag: values(attributes, "ice-ufrag").find_map(|v| token(v, &UFRAG_LEN))?,
        pwd: values(attributes, "ice-pwd").find_map(|v| token(v, &PWD_LEN))?,
    })
}

fn fingerprints(attributes: &[Attribute]) -> Vec<Fingerprint> {
    values(attributes, "fingerprint")
        .take(MAX_FINGERPRINTS * 2)
        .filter_map(Fingerprint::parse)
        .take(MAX_FINGERPRINTS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_reads_and_writes() {
        let fp = Fingerprint::parse("SHA-256 0a:FF:10").unwrap();
        assert_eq!(fp.algorithm, "sha-256");
        assert_eq!(fp.hash, [0x0a, 0xff, 0x10]);
        assert_eq!(fp.to_string(), "sha-256 0A:FF:10");
        for bad in [
            "",
            "sha-256",
            "sha-256 ",
            "sha-256 0A:F",
            "sha-256 0A::FF",
            "sha 256 0A",
            "sha-256 0AFF",
            "sha-256 +A:FF",
        ] {
            assert_eq!(Fingerprint::parse(bad), None, "{bad:?}");
        }
        let long = vec!["AB"; MAX_HASH_LEN + 1].join(":");
        assert_eq!(Fingerprint::parse(&format!("sha-512 {long}")), None);
    }

    #[test]
    fn setup_roles_of_an_answer_rfc_8842() {
        use SetupRole::*;
        assert_eq!(SetupRole::answer(Some(ActPass)), Some(Active));
        assert_eq!(SetupRole::answer(Some(Active)), Some(Passive));
        assert_eq!(SetupRole::answer(Some(Passive)), Some(Active));
        assert_eq!(SetupRole::answer(None), Some(Passive));
        assert_eq!(SetupRole::answer(Some(HoldConn)), None);
        assert_eq!(SetupRole::we_are_client(Active, ActPass), Some(true));
        assert_eq!(SetupRole::we_are_client(ActPass, Active), Some(false));
        assert_eq!(SetupRole::we_are_client(Passive, Active), Some(false));
        assert_eq!(SetupRole::we_are_client(Active, Active), None);
        assert_eq!(SetupRole::we_are_client(Passive, Passive), None);
        assert_eq!(SetupRole::we_are_client(ActPass, Passive), Some(true));
        assert_eq!(SetupRole::we_are_client(ActPass, ActPass), None);
        assert_eq!(SetupRole::parse(" ACTPASS "), Some(ActPass));
        assert_eq!(SetupRole::parse("both"), None);
    }
}
