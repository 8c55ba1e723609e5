//! DTMF carried in SIP INFO bodies: `application/dtmf-relay` (`Signal=5` and
//! `Duration=160` lines, the de facto format from Cisco gateways) and `application/dtmf` (the
//! digit alone). Strict about what a digit and a duration are, tolerant of line endings,
//! spaces, letter case and unknown lines.

use std::fmt;

use crate::codec::dtmf::{digit_to_event, event_to_digit};
use crate::frame::DtmfEvent;

/// The duration reported when a body gives none (milliseconds).
pub const DEFAULT_INFO_DTMF_DURATION_MS: u32 = 250;

/// Longest duration accepted (milliseconds); a longer one is malformed.
pub const MAX_INFO_DTMF_DURATION_MS: u32 = 60_000;

/// Largest body looked at.
const MAX_BODY: usize = 1024;

/// Why an INFO body is not a DTMF digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoDtmfError {
    /// The Content-Type is neither `application/dtmf-relay` nor `application/dtmf` (answer
    /// 415 Unsupported Media Type).
    NotDtmf,
    /// The body is not a valid DTMF description (answer 400).
    Malformed(&'static str),
}

impl fmt::Display for InfoDtmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoDtmfError::NotDtmf => f.write_str("not a DTMF content type"),
            InfoDtmfError::Malformed(why) => write!(f, "malformed DTMF body: {why}"),
        }
    }
}

impl std::error::Error for InfoDtmfError {}

/// True when `content_type` (parameters allowed) is one of the two DTMF types.
#[cfg(any(test, feature = "_internals"))]
pub fn is_dtmf_content_type(content_type: &str) -> bool {
    media_type(content_type).is_some()
}

#[derive(Clone, Copy)]
enum DtmfType {
    Relay,
    Plain,
}

fn media_type(content_type: &str) -> Option<DtmfType> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/dtmf-relay") {
        Some(DtmfType::Relay)
    } else if media.eq_ignore_ascii_case("application/dtmf") {
        Some(DtmfType::Plain)
    } else {
        None
    }
}

/// One digit: `0-9`, `*`, `#`, `A-D` (any case), or an RFC 4733 event code 0-15 in decimal.
fn digit(text: &str) -> Result<char, InfoDtmfError> {
    let t = text.trim();
    let mut chars = t.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        if digit_to_event(c).is_some() {
            return Ok(c.to_ascii_uppercase());
        }
    }
    // Event codes above 9 as numbers (`Signal=11` for `#`); 0-9 were taken above.
    if (1..=2).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Some(c) = t.parse::<u8>().ok().and_then(event_to_digit) {
            return Ok(c);
        }
    }
    Err(InfoDtmfError::Malformed("not a DTMF digit"))
}

fn duration(text: &str) -> Result<u32, InfoDtmfError> {
    let t = text.trim();
    if t.is_empty() || t.len() > 6 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InfoDtmfError::Malformed(
            "Duration is not a number of milliseconds",
        ));
    }
    let ms: u32 = t
        .parse()
        .map_err(|_| InfoDtmfError::Malformed("Duration is not a number of milliseconds"))?;
    if ms > MAX_INFO_DTMF_DURATION_MS {
        return Err(InfoDtmfError::Malformed("Duration is too long"));
    }
    Ok(ms)
}

/// Reads the DTMF digit of an INFO request from its Content-Type and body. Without a
/// `Duration` line the duration is [`DEFAULT_INFO_DTMF_DURATION_MS`].
pub fn parse_info_dtmf(content_type: &str, body: &[u8]) -> Result<DtmfEvent, InfoDtmfError> {
    let kind = media_type(content_type).ok_or(InfoDtmfError::NotDtmf)?;
    if body.len() > MAX_BODY {
        return Err(InfoDtmfError::Malformed("body too large"));
    }
    let text = std::str::from_utf8(body).map_err(|_| InfoDtmfError::Malformed("not UTF-8"))?;
    match kind {
        DtmfType::Plain => Ok(DtmfEvent {
            digit: digit(text)?,
            duration_ms: DEFAULT_INFO_DTMF_DURATION_MS,
        }),
        DtmfType::Relay => {
            let mut signal = None;
            let mut length = None;
            for line in text.split('\n') {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let Some((key, value)) = line.split_once('=') else {
                    return Err(InfoDtmfError::Malformed("line without '='"));
                };
                let key = key.trim();
                if key.eq_ignore_ascii_case("Signal") {
                    if signal.replace(digit(value)?).is_some() {
                        return Err(InfoDtmfError::Malformed("Signal given twice"));
                    }
                } else if key.eq_ignore_ascii_case("Duration")
                    && length.replace(duration(value)?).is_some()
                {
                    return Err(InfoDtmfError::Malformed("Duration given twice"));
                }
                // Other keys (vendors add some) are ignored.
            }
            Ok(DtmfEvent {
                digit: signal.ok_or(InfoDtmfError::Malformed("no Signal line"))?,
                duration_ms: length.unwrap_or(DEFAULT_INFO_DTMF_DURATION_MS),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(digit: char, duration_ms: u32) -> DtmfEvent {
        DtmfEvent { digit, duration_ms }
    }

    #[test]
    fn dtmf_relay_bodies() {
        let relay = "application/dtmf-relay";
        assert_eq!(
            parse_info_dtmf(relay, b"Signal=5\r\nDuration=160\r\n"),
            Ok(event('5', 160))
        );
        assert_eq!(
            parse_info_dtmf("Application/DTMF-Relay; x=1", b"signal= #\nduration =100"),
            Ok(event('#', 100))
        );
        assert_eq!(
            parse_info_dtmf(relay, b"Duration=80\r\nSignal=d\r\n"),
            Ok(event('D', 80))
        );
        assert_eq!(
            parse_info_dtmf(relay, b"Signal=11\r\n"),
            Ok(event('#', 250))
        );
        assert_eq!(
            parse_info_dtmf(relay, b"Signal=*\r\nVolume=10\r\n\r\n"),
            Ok(event('*', 250))
        );
        for bad in [
            &b""[..],
            b"Duration=100",
            b"Signal=",
            b"Signal=55",
            b"Signal=16",
            b"Signal=E",
            b"Signal=1\r\nSignal=2",
            b"Signal=1\r\nDuration=-5",
            b"Signal=1\r\nDuration=1e3",
            b"Signal=1\r\nDuration=600000",
            b"Signal=1\r\nDuration=99999999999999999999",
            b"Signal 1",
            b"Signal=\xff",
        ] {
            assert!(
                matches!(
                    parse_info_dtmf(relay, bad),
                    Err(InfoDtmfError::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_info_dtmf(relay, &[b' '; 2000]).is_err());
    }

    #[test]
    fn plain_dtmf_bodies() {
        assert_eq!(
            parse_info_dtmf("application/dtmf", b"5"),
            Ok(event('5', 250))
        );
        assert_eq!(
            parse_info_dtmf("application/dtmf", b" a\r\n"),
            Ok(event('A', 250))
        );
        assert!(parse_info_dtmf("application/dtmf", b"55").is_err());
        assert!(parse_info_dtmf("application/dtmf", b"").is_err());
        assert_eq!(
            parse_info_dtmf("application/sdp", b"5"),
            Err(InfoDtmfError::NotDtmf)
        );
        assert!(is_dtmf_content_type("application/dtmf"));
        assert!(!is_dtmf_content_type("application/dtmf-relayx"));
    }
}
