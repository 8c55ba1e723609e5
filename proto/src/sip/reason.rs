//! The `Reason` header (RFC 3326) with a Q.850 cause: why a call was ended, sent on the BYE or
//! CANCEL that ends it (`Reason: Q.850;cause=16;text="Normal call clearing"`), so carriers can
//! tell a deliberate rejection from a plain hang-up in their records.

use crate::error::{Error, Result};

use super::syntax::{find_param, parse_params, quoted};

/// The longest `text` accepted, in bytes: a reason is a short phrase, and a header this size
/// still fits a UDP datagram comfortably.
pub const MAX_REASON_TEXT: usize = 256;

/// The value of a `Reason` header for Q.850 `cause` (1 to 127) and an optional `text`; `None`
/// when `cause` is `None` (no header is sent, and `text` is ignored, as roomkit does). The text is
/// written as a quoted string, `"` and `\` escaped; it may not hold line breaks or other control
/// characters (a header cannot carry them), nor be longer than [`MAX_REASON_TEXT`] bytes.
pub fn q850_reason(cause: Option<u16>, text: Option<&str>) -> Result<Option<String>> {
    let Some(cause) = cause else {
        return Ok(None);
    };
    if !(1..=127).contains(&cause) {
        return Err(Error::InvalidArgument(format!(
            "Q.850 cause {cause} is outside 1..=127"
        )));
    }
    let mut value = format!("Q.850;cause={cause}");
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        if text.len() > MAX_REASON_TEXT {
            return Err(Error::InvalidArgument(format!(
                "reason text of {} bytes (at most {MAX_REASON_TEXT})",
                text.len()
            )));
        }
        if text.chars().any(|c| c.is_control() && c != '\t') {
            return Err(Error::InvalidArgument(
                "reason text holds a line break or another control character".into(),
            ));
        }
        value.push_str(";text=");
        value.push_str(&quoted(text));
    }
    Ok(Some(value))
}

/// A `Reason` header value read back: protocol (`Q.850`, `SIP`...), `cause` and `text`. `None`
/// when the value does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonValue {
    /// `Q.850`, `SIP`...
    pub protocol: String,
    /// The `cause` parameter.
    pub cause: Option<u16>,
    /// The `text` parameter, unquoted.
    pub text: Option<String>,
}

/// Reads one `Reason` header value (`protocol *(;param)`); `None` when it does not parse.
pub fn parse_reason(value: &str) -> Option<ReasonValue> {
    let value = value.trim();
    let split = value.find(';').unwrap_or(value.len());
    let protocol = value[..split].trim();
    if protocol.is_empty() {
        return None;
    }
    let params = parse_params(&value[split..]).ok()?;
    let get = |name: &str| find_param(&params, name).and_then(|p| p.value.clone());
    Some(ReasonValue {
        protocol: protocol.to_string(),
        cause: match get("cause") {
            Some(c) => Some(c.parse().ok()?),
            None => None,
        },
        text: get("text"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_cause_no_header() {
        assert_eq!(q850_reason(None, Some("ignored")).unwrap(), None);
    }

    #[test]
    fn cause_and_text_read_back() {
        let v = q850_reason(Some(16), Some("Normal call clearing"))
            .unwrap()
            .unwrap();
        assert_eq!(v, "Q.850;cause=16;text=\"Normal call clearing\"");
        let back = parse_reason(&v).unwrap();
        assert_eq!(back.protocol, "Q.850");
        assert_eq!(back.cause, Some(16));
        assert_eq!(back.text.as_deref(), Some("Normal call clearing"));
        assert_eq!(
            q850_reason(Some(21), None).unwrap().unwrap(),
            "Q.850;cause=21"
        );
        assert_eq!(
            q850_reason(Some(21), Some("")).unwrap().unwrap(),
            "Q.850;cause=21"
        );
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        let text = r#"say "no" \ twice; ok"#;
        let v = q850_reason(Some(21), Some(text)).unwrap().unwrap();
        assert_eq!(parse_reason(&v).unwrap().text.as_deref(), Some(text));
    }

    #[test]
    fn bad_input_is_refused() {
        for text in ["a\r\nVia: x", "a\nb", "a\rb", "nul\0", "del\u{7f}"] {
            assert!(
                matches!(
                    q850_reason(Some(16), Some(text)),
                    Err(Error::InvalidArgument(_))
                ),
                "{text:?}"
            );
        }
        assert!(q850_reason(Some(0), None).is_err());
        assert!(q850_reason(Some(128), None).is_err());
        let long = "x".repeat(MAX_REASON_TEXT + 1);
        assert!(q850_reason(Some(16), Some(&long)).is_err());
        assert!(q850_reason(Some(16), Some(&long[1..])).is_ok());
        assert!(q850_reason(Some(16), Some("tab\tis fine, ünïcode too")).is_ok());
    }

    #[test]
    fn parse_rejects_junk() {
        assert_eq!(parse_reason(""), None);
        assert_eq!(parse_reason("Q.850;cause=abc"), None);
        assert_eq!(parse_reason("Q.850;text=\"open"), None);
        assert_eq!(parse_reason("SIP;cause=200").unwrap().cause, Some(200));
    }
}
