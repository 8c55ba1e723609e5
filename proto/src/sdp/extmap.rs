//! `a=extmap` (RFC 8285 §7): which local ID an RTP header extension's URI travels under, and
//! what an answer keeps of an offer's list.
//!
//! `a=extmap:<id>[/<direction>] <uri> [<attributes>]`. IDs 1–14 fit the one-byte header form,
//! 15–255 need the two-byte form (`a=extmap-allow-mixed`), 4096–4351 are an offerer's "answerer
//! picks" range. An answer keeps the offered ID of each extension it supports and leaves the
//! others out (RFC 8285 §6).

use super::model::Direction;

/// The most `a=extmap` lines of one m-line we keep: they come from the network.
pub const MAX_EXTMAPS: usize = 32;

/// One `a=extmap` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtMap {
    /// The local ID.
    pub id: u16,
    /// The direction the line gives, if any.
    pub direction: Option<Direction>,
    /// The extension's URI.
    pub uri: String,
}

impl ExtMap {
    /// The attribute's text after `a=`: `extmap:<id>[/<direction>] <uri>`.
    pub fn attribute(&self) -> String {
        match self.direction {
            Some(d) => format!("extmap:{}/{} {}", self.id, d.as_str(), self.uri),
            None => format!("extmap:{} {}", self.id, self.uri),
        }
    }

    /// The ID as an RTP header extension carries it: 1–255, else `None`.
    pub fn rtp_id(&self) -> Option<u8> {
        u8::try_from(self.id).ok().filter(|&id| id != 0)
    }
}

/// Parses the value of an `a=extmap` attribute (after `extmap:`); `None` when it is not one.
pub fn parse_extmap(value: &str) -> Option<ExtMap> {
    let mut fields = value.split_whitespace();
    let head = fields.next()?;
    let uri = fields.next()?;
    let (id, direction) = match head.split_once('/') {
        Some((id, dir)) => (id, Some(Direction::from_attribute(dir)?)),
        None => (head, None),
    };
    let id: u16 = id.parse().ok()?;
    let valid = (1..=255).contains(&id) || (4096..=4351).contains(&id);
    valid.then(|| ExtMap {
        id,
        direction,
        uri: uri.to_string(),
    })
}

/// What an answer says to `offered`: the offered lines whose URI is in `supported`, each with
/// its offered ID (only IDs an RTP packet can carry, 1–255), once per URI and once per ID.
pub fn answer_extmaps(offered: &[ExtMap], supported: &[&str]) -> Vec<ExtMap> {
    let mut out: Vec<ExtMap> = Vec::new();
    for e in offered {
        let wanted = supported.iter().any(|u| *u == e.uri);
        let fresh = !out.iter().any(|o| o.uri == e.uri || o.id == e.id);
        if wanted && fresh && e.rtp_id().is_some() {
            out.push(ExtMap {
                id: e.id,
                direction: e.direction.map(Direction::reverse),
                uri: e.uri.clone(),
            });
        }
    }
    out
}

/// The RTP ID `extmaps` gives `uri`, if any.
pub fn extmap_id(extmaps: &[ExtMap], uri: &str) -> Option<u8> {
    extmaps.iter().find(|e| e.uri == uri)?.rtp_id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::hdrext::TRANSPORT_CC_URI;

    #[test]
    fn parses_ids_directions_and_attributes() {
        let e = parse_extmap(&format!("3 {TRANSPORT_CC_URI}")).unwrap();
        assert_eq!(
            (e.id, e.direction, e.uri.as_str()),
            (3, None, TRANSPORT_CC_URI)
        );
        assert_eq!(e.attribute(), format!("extmap:3 {TRANSPORT_CC_URI}"));
        let e = parse_extmap("4096/sendonly urn:x extra attrs").unwrap();
        assert_eq!((e.id, e.direction), (4096, Some(Direction::SendOnly)));
        assert_eq!(e.rtp_id(), None);
        assert_eq!(e.attribute(), "extmap:4096/sendonly urn:x");
        for bad in [
            "",
            "3",
            "0 urn:x",
            "256 urn:x",
            "x urn:y",
            "3/sideways urn:x",
            "70000 urn:x",
        ] {
            assert_eq!(parse_extmap(bad), None, "{bad}");
        }
    }

    #[test]
    fn answer_keeps_supported_offered_ids_once() {
        let offered: Vec<ExtMap> = [
            "1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            &format!("5/sendonly {TRANSPORT_CC_URI}"),
            &format!("6 {TRANSPORT_CC_URI}"),
            "4100 urn:y",
        ]
        .iter()
        .filter_map(|v| parse_extmap(v))
        .collect();
        let answer = answer_extmaps(&offered, &[TRANSPORT_CC_URI, "urn:y"]);
        assert_eq!(answer.len(), 1);
        assert_eq!(answer[0].id, 5);
        assert_eq!(answer[0].direction, Some(Direction::RecvOnly));
        assert_eq!(extmap_id(&answer, TRANSPORT_CC_URI), Some(5));
        assert_eq!(extmap_id(&answer, "urn:y"), None);
    }
}
