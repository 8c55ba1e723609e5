//! Strict checks on single header values and the start line that no SIP crate does for us:
//! the exact start-line shape (RFC 3261 §7.1, §7.2), the CSeq method and number limits (§20.16),
//! Max-Forwards and Expires ranges (§20.22, §20.19), a single all-digit Content-Length (§20.14)
//! and `GMT` dates (§20.17). Each returns a reason on failure;
//! the caller decides the status code.

/// The start line, split but not yet typed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StartLine<'a> {
    /// `Method SP Request-URI SP SIP/2.0`.
    Request { method: &'a str, uri: &'a str },
    /// `SIP/2.0 SP 3DIGIT SP reason`.
    Response { code: u16, reason: &'a str },
}

/// Why a start line was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StartLineError {
    /// A request line whose version is `SIP/x.y` other than 2.0: answer 505.
    RequestVersion,
    /// A request line that is malformed: answer 400.
    Request(&'static str),
    /// Not a request, and not a well-formed response: drop.
    Other(&'static str),
}

fn looks_like_version(v: &str) -> bool {
    let Some(rest) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .map(|_| &v[4..])
    else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    !major.is_empty()
        && !minor.is_empty()
        && major.bytes().all(|b| b.is_ascii_digit())
        && minor.bytes().all(|b| b.is_ascii_digit())
}

/// The start line, exactly. A request has single spaces between three parts and no
/// trailing space (the Request-URI itself is checked last, see `message::request_uri`); a
/// response has a three-digit code in 100..=699.
pub(crate) fn start_line(line: &str) -> Result<StartLine<'_>, StartLineError> {
    if line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        let mut it = line.splitn(3, ' ');
        let version = it.next().unwrap_or_default();
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(StartLineError::Other("unsupported version in status line"));
        }
        let code = it.next().ok_or(StartLineError::Other("no status code"))?;
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StartLineError::Other("status code is not three digits"));
        }
        let code: u16 = code
            .parse()
            .map_err(|_| StartLineError::Other("bad status code"))?;
        if !(100..=699).contains(&code) {
            return Err(StartLineError::Other("status code out of range"));
        }
        // A missing reason phrase (with or without the separating space) is tolerated.
        let reason = it.next().unwrap_or("");
        if reason.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(StartLineError::Other("line break in reason phrase"));
        }
        return Ok(StartLine::Response { code, reason });
    }
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(StartLineError::Request(
            "request line is not 'Method SP Request-URI SP SIP/2.0'",
        ));
    }
    let (method, uri, version) = (parts[0], parts[1], parts[2]);
    if !super::syntax::is_token(method) {
        return Err(StartLineError::Request("method is not a token"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        if looks_like_version(version) {
            return Err(StartLineError::RequestVersion);
        }
        return Err(StartLineError::Request("malformed SIP version"));
    }
    Ok(StartLine::Request { method, uri })
}

/// Parses `1*DIGIT` with an upper bound; leading zeros are fine, signs and spaces are not.
pub(crate) fn bounded_digits(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = s.trim_start_matches('0');
    if digits.len() > 19 {
        return None;
    }
    let v: u64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    (v <= max).then_some(v)
}

/// `CSeq: 1*DIGIT LWS Method`, number below 2^31. Returns the number and method.
pub(crate) fn cseq(value: &str) -> Result<(u32, &str), &'static str> {
    let v = value.trim();
    let split = v.find([' ', '\t']).ok_or("CSeq without method")?;
    let num = bounded_digits(&v[..split], (1 << 31) - 1).ok_or("CSeq number invalid or >= 2^31")?;
    let method = v[split..].trim_start();
    if !super::syntax::is_token(method) {
        return Err("CSeq method is not a token");
    }
    Ok((num as u32, method))
}

/// Max-Forwards is digits, at most 255.
pub(crate) fn max_forwards(value: &str) -> Result<u8, &'static str> {
    bounded_digits(value.trim(), 255)
        .map(|v| v as u8)
        .ok_or("Max-Forwards not a number in 0..=255")
}

/// Expires is delta-seconds no larger than 2^32-1.
pub(crate) fn expires(value: &str) -> Result<u32, &'static str> {
    bounded_digits(value.trim(), u32::MAX as u64)
        .map(|v| v as u32)
        .ok_or("Expires not a number in 0..=2^32-1")
}

/// Retry-After starts with delta-seconds no larger than 2^32-1 (a comment and
/// parameters may follow).
pub(crate) fn retry_after(value: &str) -> Result<u32, &'static str> {
    let v = value.trim();
    let digits = v.bytes().take_while(|b| b.is_ascii_digit()).count();
    bounded_digits(&v[..digits], u32::MAX as u64)
        .map(|v| v as u32)
        .ok_or("Retry-After not a number in 0..=2^32-1")
}

/// Content-Length is digits only (surrounding whitespace allowed).
pub(crate) fn content_length(value: &str) -> Result<usize, &'static str> {
    bounded_digits(value.trim(), u32::MAX as u64)
        .map(|v| v as usize)
        .ok_or("Content-Length is not a non-negative number")
}

/// `Date` is an RFC 1123 date in GMT: `Sat, 15 Oct 2005 04:44:56 GMT`.
pub(crate) fn date(value: &str) -> Result<(), &'static str> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let err = "Date is not an RFC 1123 date in GMT";
    let v = value.trim();
    let (day, rest) = v.split_once(", ").ok_or(err)?;
    if !DAYS.contains(&day) {
        return Err(err);
    }
    let parts: Vec<&str> = rest.split(' ').collect();
    if parts.len() != 5 || parts[4] != "GMT" {
        return Err(err);
    }
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(parts[0])
        || !MONTHS.contains(&parts[1])
        || parts[2].len() != 4
        || !parts[2].bytes().all(|b| b.is_ascii_digit())
    {
        return Err(err);
    }
    let time: Vec<&str> = parts[3].split(':').collect();
    if time.len() != 3 || !time.iter().all(|t| two_digits(t)) {
        return Err(err);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            start_line("INVITE sip:a@b SIP/2.0"),
            Ok(StartLine::Request {
                method: "INVITE",
                uri: "sip:a@b"
            })
        );
        assert!(matches!(
            start_line("INVITE  sip:a@b  SIP/2.0"),
            Err(StartLineError::Request(_))
        ));
        assert!(matches!(
            start_line("OPTIONS sip:a@b SIP/2.0  "),
            Err(StartLineError::Request(_))
        ));
        assert!(matches!(
            start_line("INVITE sip:a@b; lr SIP/2.0"),
            Err(StartLineError::Request(_))
        ));
        assert_eq!(
            start_line("OPTIONS sip:a@b SIP/7.0"),
            Err(StartLineError::RequestVersion)
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            start_line("SIP/2.0 100 "),
            Ok(StartLine::Response {
                code: 100,
                reason: ""
            })
        );
        assert!(start_line("SIP/2.0 4294967301 better not break the receiver").is_err());
        assert!(start_line("SIP/2.0 099 Low").is_err());
        assert!(start_line("SIP/2.0 700 High").is_err());
        // Found by the property test: a multi-byte character across byte 4.
        assert!(start_line("5\u{e9}\u{e9}q5a").is_err());
    }

    #[test]
    fn scalars() {
        assert_eq!(cseq("0009\tINVITE"), Ok((9, "INVITE")));
        assert!(cseq("36893488147419103232 REGISTER").is_err());
        assert!(cseq("2147483648 INVITE").is_err());
        assert_eq!(cseq("2147483647 INVITE"), Ok((2147483647, "INVITE")));
        assert_eq!(max_forwards("0068"), Ok(68));
        assert!(max_forwards("300").is_err());
        assert_eq!(expires("4294967295"), Ok(u32::MAX));
        assert!(expires("4294967296").is_err());
        assert!(retry_after("949302838503028349304023988").is_err());
        assert_eq!(retry_after("120 (lunch);duration=60"), Ok(120));
        assert!(content_length("-999").is_err());
        assert!(content_length("1 2").is_err());
        assert_eq!(content_length(" 150 "), Ok(150));
    }

    #[test]
    fn dates() {
        assert!(date("Sat, 15 Oct 2005 04:44:56 GMT").is_ok());
        assert!(date("Fri, 01 Jan 2010 16:00:00 EST").is_err());
    }
}
