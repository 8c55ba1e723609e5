//! Lexical pieces of RFC 3261 grammar that our strict layer checks itself: tokens, quoted strings,
//! comma-separated lists, `;name=value` parameters, name-addr values and Via values.
//!
//! These work on header values that framing has already unfolded (line folds replaced by a space),
//! and they never allocate on the error path beyond the message text.

use std::borrow::Cow;
use std::str::FromStr;

use ezk_sip_types::host::Host;

/// One `;name[=value]` parameter. A quoted value is stored without its quotes and escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The parameter name as written.
    pub name: String,
    /// The value, if the parameter had `=`.
    pub value: Option<String>,
}

/// Finds a parameter by name (parameter names compare case-insensitively).
pub(crate) fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a Param> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// The tag of a From/To value: its first `tag` parameter, when that has a non-empty value. This
/// is the one definition of "has a tag", for typed values and for the raw text answers copy; a
/// `tag` with no value, or an empty quoted one, is no tag (and the parser refuses it in From/To).
pub(crate) fn tag(params: &[Param]) -> Option<&str> {
    find_param(params, "tag")
        .and_then(|p| p.value.as_deref())
        .filter(|v| !v.is_empty())
}

/// RFC 3261 `token` characters.
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// True when `s` is a non-empty RFC 3261 token.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// Reads a quoted string at the start of `s` (which must begin with `"`). Returns the unescaped
/// content and the text after the closing quote.
pub(crate) fn take_quoted(s: &str) -> Result<(String, &str), &'static str> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return Err("expected a quoted string");
    }
    let mut out = String::new();
    let mut i = 1;
    let mut run_start = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                out.push_str(&s[run_start..i]);
                return Ok((out, &s[i + 1..]));
            }
            b'\\' => {
                out.push_str(&s[run_start..i]);
                // quoted-pair: a backslash and one character other than CR or LF.
                let next = s[i + 1..]
                    .chars()
                    .next()
                    .ok_or("unterminated quoted string")?;
                if next == '\r' || next == '\n' {
                    return Err("line break in quoted-pair");
                }
                out.push(next);
                i += 1 + next.len_utf8();
                run_start = i;
            }
            b'\r' | b'\n' => return Err("line break inside quoted string"),
            _ => i += 1,
        }
    }
    Err("unterminated quoted string")
}

/// Writes `value` as a quoted string that [`take_quoted`] reads back as `value`: quotes around
/// it, `"` and `\` escaped as quoted-pairs (RFC 3261 §25.1). Line breaks cannot be quoted and
/// become spaces.
pub(crate) fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Splits a header value at commas that are outside quoted strings and `<...>`. Elements are
/// trimmed; an empty element is an error (RFC 3261 lists have no empty members).
pub(crate) fn split_list(value: &str) -> Result<Vec<&str>, &'static str> {
    let bytes = value.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_quotes {
            match b {
                b'\\' => i += 1,
                b'"' => in_quotes = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_quotes = true,
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    parts.push(value[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    if in_quotes {
        return Err("unterminated quoted string");
    }
    parts.push(value[start..].trim());
    if parts.iter().any(|p| p.is_empty()) {
        return Err("empty element in a comma-separated list");
    }
    Ok(parts)
}

fn skip_lws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// Characters allowed in an unquoted parameter value (`token`, or a `host` which may be an IPv6
/// reference).
fn is_gen_value_char(b: u8) -> bool {
    is_token_char(b) || matches!(b, b':' | b'[' | b']')
}

/// Parses `*( SEMI generic-param )` until the end of `s`. Any other text is an error.
pub(crate) fn parse_params(mut s: &str) -> Result<Vec<Param>, &'static str> {
    let mut params = Vec::new();
    loop {
        s = skip_lws(s);
        if s.is_empty() {
            return Ok(params);
        }
        s = s
            .strip_prefix(';')
            .ok_or("unexpected text after the value")?;
        s = skip_lws(s);
        let name_len = s.bytes().take_while(|&b| is_token_char(b)).count();
        if name_len == 0 {
            return Err("empty parameter");
        }
        let name = s[..name_len].to_string();
        s = skip_lws(&s[name_len..]);
        let value = if let Some(rest) = s.strip_prefix('=') {
            let rest = skip_lws(rest);
            if rest.starts_with('"') {
                let (v, after) = take_quoted(rest)?;
                s = after;
                Some(v)
            } else {
                let len = rest.bytes().take_while(|&b| is_gen_value_char(b)).count();
                if len == 0 {
                    return Err("parameter with '=' but no value");
                }
                s = &rest[len..];
                Some(rest[..len].to_string())
            }
        } else {
            None
        };
        params.push(Param { name, value });
    }
}

/// True when `s` starts with a URI scheme followed by `:`; returns the scheme.
pub(crate) fn uri_scheme(s: &str) -> Option<&str> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    if bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        Some(scheme)
    } else {
        None
    }
}

/// A name-addr or addr-spec value split into its parts, before the URI is typed.
#[derive(Debug)]
pub(crate) struct RawNameAddr<'a> {
    pub display_name: Option<String>,
    pub uri: &'a str,
    pub params: Vec<Param>,
}

/// Parses one element of a From/To/Contact/Route/Record-Route value with the rules of check 5:
/// balanced quotes, display name made of tokens or one quoted string, no whitespace inside
/// `<>`, and a bare URI that contains neither `?` nor `,` (after a bare URI, `;` starts the
/// header parameters).
pub(crate) fn parse_name_addr(value: &str) -> Result<RawNameAddr<'_>, &'static str> {
    let s = value.trim();
    if s.is_empty() {
        return Err("empty address");
    }
    let (display_name, rest) = if s.starts_with('"') {
        let (name, rest) = take_quoted(s)?;
        let rest = skip_lws(rest);
        if !rest.starts_with('<') {
            return Err("quoted display name not followed by <URI>");
        }
        (Some(name), rest)
    } else {
        // A run of tokens and whitespace ending in '<' is a display name; anything else is a
        // bare addr-spec.
        let run = s
            .bytes()
            .take_while(|&b| is_token_char(b) || is_lws(b))
            .count();
        if s[run..].starts_with('<') {
            let name = s[..run].trim();
            let name = if name.is_empty() {
                None
            } else {
                Some(name.to_string())
            };
            (name, &s[run..])
        } else {
            return parse_addr_spec(s);
        }
    };
    // rest starts with '<'
    let close = rest.find('>').ok_or("missing '>'")?;
    let uri = &rest[1..close];
    if uri.is_empty() {
        return Err("empty <>");
    }
    if uri.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err("whitespace inside <>");
    }
    if uri.contains('<') {
        return Err("nested '<'");
    }
    if uri_scheme(uri).is_none() {
        return Err("URI without a scheme");
    }
    let params = parse_params(&rest[close + 1..])?;
    Ok(RawNameAddr {
        display_name,
        uri,
        params,
    })
}

fn parse_addr_spec(s: &str) -> Result<RawNameAddr<'_>, &'static str> {
    let end = s.find(';').unwrap_or(s.len());
    let uri = s[..end].trim_end();
    if uri
        .bytes()
        .any(|b| b.is_ascii_whitespace() || matches!(b, b'?' | b',' | b'"' | b'<' | b'>'))
    {
        return Err("bare URI with '?', ',', quotes or spaces must be enclosed in <>");
    }
    if uri_scheme(uri).is_none() {
        return Err("URI without a scheme");
    }
    let params = parse_params(&s[end..])?;
    Ok(RawNameAddr {
        display_name: None,
        uri,
        params,
    })
}

/// One Via value (`sent-protocol sent-by *(;via-params)`), parsed strictly.
#[derive(Debug, Clone)]
pub(crate) struct RawVia {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

fn take_token(s: &str) -> (&str, &str) {
    let len = s.bytes().take_while(|&b| is_token_char(b)).count();
    (&s[..len], &s[len..])
}

/// Parses one Via value. `SIP / 2.0 / transport` may carry whitespace around the slashes.
pub(crate) fn parse_via(value: &str) -> Result<RawVia, &'static str> {
    let s = value.trim();
    let (name, s) = take_token(s);
    if !name.eq_ignore_ascii_case("SIP") {
        return Err("Via protocol is not SIP");
    }
    let s = skip_lws(s)
        .strip_prefix('/')
        .ok_or("malformed Via protocol")?;
    let (version, s) = take_token(skip_lws(s));
    if version != "2.0" {
        return Err("Via version is not 2.0");
    }
    let s = skip_lws(s)
        .strip_prefix('/')
        .ok_or("malformed Via protocol")?;
    let (transport, s) = take_token(skip_lws(s));
    if transport.is_empty() {
        return Err("Via without transport");
    }
    if !s.starts_with([' ', '\t']) {
        return Err("Via sent-by not separated by whitespace");
    }
    let s = skip_lws(s);
    let host_len = if s.starts_with('[') {
        s.find(']').ok_or("unterminated IPv6 reference")? + 1
    } else {
        s.bytes()
            .take_while(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
            .count()
    };
    let host_text = &s[..host_len];
    if host_text.is_empty() || Host::from_str(host_text).is_err() {
        return Err("bad Via sent-by host");
    }
    let mut rest = &s[host_len..];
    let mut port = None;
    if let Some(after) = rest.strip_prefix(':') {
        let digits = after.bytes().take_while(|b| b.is_ascii_digit()).count();
        port = Some(
            after[..digits]
                .parse::<u16>()
                .map_err(|_| "bad Via sent-by port")?,
        );
        rest = &after[digits..];
    }
    let params = parse_params(rest)?;
    Ok(RawVia {
        transport: transport.to_string(),
        host: host_text.to_string(),
        port,
        params,
    })
}

/// Full names we see in almost every message, matched without allocating.
const COMMON_NAMES: [&str; 24] = [
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "max-forwards",
    "content-length",
    "content-type",
    "user-agent",
    "allow",
    "supported",
    "route",
    "record-route",
    "expires",
    "date",
    "require",
    "server",
    "accept",
    "authorization",
    "www-authenticate",
    "subject",
    "session-expires",
    "allow-events",
];

/// Maps a header name (full or compact form, any case) to its lowercase full name.
pub(crate) fn canonical_name(name: &str) -> Cow<'static, str> {
    if name.len() == 1 {
        let full = match name.as_bytes()[0].to_ascii_lowercase() {
            b'a' => "accept-contact",
            b'b' => "referred-by",
            b'c' => "content-type",
            b'd' => "request-disposition",
            b'e' => "content-encoding",
            b'f' => "from",
            b'i' => "call-id",
            b'j' => "reject-contact",
            b'k' => "supported",
            b'l' => "content-length",
            b'm' => "contact",
            b'n' => "identity-info",
            b'o' => "event",
            b'r' => "refer-to",
            b's' => "subject",
            b't' => "to",
            b'u' => "allow-events",
            b'v' => "via",
            b'x' => "session-expires",
            b'y' => "identity",
            _ => return Cow::Owned(name.to_ascii_lowercase()),
        };
        return Cow::Borrowed(full);
    }
    match COMMON_NAMES.iter().find(|n| n.eq_ignore_ascii_case(name)) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(name.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_unescape_and_detect_unterminated() {
        let (s, rest) = take_quoted(r#""J Rosenberg \\\"" <x>"#).unwrap();
        assert_eq!(s, r#"J Rosenberg \""#);
        assert_eq!(rest, " <x>");
        assert!(take_quoted("\"Mr. J. User <sip:j@x>").is_err());
    }

    #[test]
    fn quoted_strings_read_back_as_written() {
        for v in ["plain", "a \"b\" c", "back\\slash\\", "", "\u{e9}t\u{e9}"] {
            let q = quoted(v);
            assert_eq!(take_quoted(&q), Ok((v.to_string(), "")), "{q}");
        }
        assert_eq!(quoted("a\r\nb"), "\"a  b\"");
    }

    #[test]
    fn lists_split_outside_quotes_and_angles() {
        let parts = split_list(r#""a, b" <sip:x@y>, <sip:z@w;p=1,2>"#).unwrap();
        assert_eq!(parts, vec![r#""a, b" <sip:x@y>"#, "<sip:z@w;p=1,2>"]);
        assert!(split_list("a,,b").is_err());
        assert!(split_list("a, ").is_err());
    }

    #[test]
    fn params_parse_with_spaces_and_quotes() {
        let p = parse_params(r#" ;   tag    = 1918181833n ; q = 0.33;x="a\"b";lr"#).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].value.as_deref(), Some("1918181833n"));
        assert_eq!(p[2].value.as_deref(), Some("a\"b"));
        assert_eq!(p[3].value, None);
        assert!(parse_params(";;").is_err());
        assert!(parse_params(";a=").is_err());
        assert!(parse_params(" junk").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = parse_name_addr("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("caller"));
        assert_eq!(n.uri, "sip:caller@example.com");
        let n = parse_name_addr("sip:caller@example.org;tag=33242").unwrap();
        assert_eq!(n.uri, "sip:caller@example.org");
        assert_eq!(n.params[0].name, "tag");
        let n = parse_name_addr(r#""Quoted string \"\"" <sip:jdrosen@example.com> ; q = 0.33"#)
            .unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Quoted string \"\""));
        assert!(parse_name_addr("\"Watson, Thomas\" < sip:t.watson@example.org >").is_err());
        assert!(parse_name_addr("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
        assert!(parse_name_addr("Bell, Alexander <sip:a@b>").is_err());
        assert!(parse_name_addr("<sip:joe@example.org>;;;;").is_err());
        assert!(parse_name_addr("tel:+1234").is_ok());
    }

    #[test]
    fn via_forms() {
        let v = parse_via("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        let v = parse_via("SIP/2.0/TCP [2001:db8::1]:5070;rport;branch=z9hG4bKx").unwrap();
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.port, Some(5070));
        assert!(parse_via("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(parse_via("SIP/7.0/UDP c.example.com").is_err());
        assert!(parse_via("SIP/2.0/UDP").is_err());
    }

    #[test]
    fn compact_names() {
        assert_eq!(canonical_name("v"), "via");
        assert_eq!(canonical_name("I"), "call-id");
        assert_eq!(canonical_name("MaX-fOrWaRdS"), "max-forwards");
    }
}
