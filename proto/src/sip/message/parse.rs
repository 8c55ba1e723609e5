//! From one datagram to a checked [`SipMessage`]: framing (start line, header lines, folding,
//! Content-Length, body), then the strict checks, then the typed values.

use super::types::{
    CSeq, EchoHeaders, HeaderField, MessageKind, Method, NameAddr, ParseError, Rejection,
    SipMessage, Uri, Via,
};
use crate::sip::check::{self, StartLine, StartLineError};
use crate::sip::syntax;

/// Largest datagram we look at; anything bigger is dropped unread.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

struct Framed<'a> {
    start: &'a str,
    headers: Vec<HeaderField>,
    body: &'a [u8],
    /// First framing problem found (the message is still scanned for echo headers).
    error: Option<&'static str>,
}

fn find_head_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' {
            if data.get(i + 1) == Some(&b'\n') {
                return Some((i + 1, i + 2));
            }
            if data.get(i + 1) == Some(&b'\r') && data.get(i + 2) == Some(&b'\n') {
                return Some((i + 1, i + 3));
            }
        }
        i += 1;
    }
    None
}

fn split_head<'a>(head: &'a str, body: &'a [u8], mut error: Option<&'static str>) -> Framed<'a> {
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().unwrap_or_default();
    let mut headers: Vec<HeaderField> = Vec::with_capacity(16);
    // (name, value) of the header being assembled, to allow folded continuation lines.
    let mut current: Option<(String, String)> = None;
    let flush = |current: &mut Option<(String, String)>, headers: &mut Vec<HeaderField>| {
        if let Some((name, mut value)) = current.take() {
            let end = value.trim_end().len();
            value.truncate(end);
            headers.push(HeaderField {
                canonical: syntax::canonical_name(&name),
                name,
                value,
            });
        }
    };
    for line in lines {
        if line.is_empty() {
            continue;
        }
        // A CR that does not end the line could be read as a line end by a peer (and by us, in
        // whatever we echo); continuation lines get the same check as the line they continue.
        if line.contains('\r') {
            error.get_or_insert("bare CR in header line");
        }
        if line.starts_with([' ', '\t']) {
            match current.as_mut() {
                Some((_, value)) => {
                    let trimmed_len = value.trim_end().len();
                    value.truncate(trimmed_len);
                    if !value.is_empty() {
                        value.push(' ');
                    }
                    value.push_str(line.trim_start());
                }
                None => {
                    error.get_or_insert("continuation line without a header");
                }
            }
            continue;
        }
        flush(&mut current, &mut headers);
        let Some(colon) = line.find(':') else {
            error.get_or_insert("header line without ':'");
            continue;
        };
        let name = line[..colon].trim_end_matches([' ', '\t']);
        if !syntax::is_token(name) {
            error.get_or_insert("header name is not a token");
            continue;
        }
        current = Some((name.to_string(), line[colon + 1..].trim_start().to_string()));
    }
    flush(&mut current, &mut headers);
    Framed {
        start,
        headers,
        body,
        error,
    }
}

fn count(headers: &[HeaderField], canonical: &str) -> usize {
    headers.iter().filter(|h| h.canonical == canonical).count()
}

fn first<'a>(headers: &'a [HeaderField], canonical: &str) -> Option<&'a HeaderField> {
    headers.iter().find(|h| h.canonical == canonical)
}

/// Whether a raw To value has a tag, by the same definition as [`NameAddr::tag`]. A To we cannot
/// read has none we could honour: the request is refused, and the answer gets our tag.
fn raw_has_tag(to: &str) -> bool {
    syntax::parse_name_addr(to).is_ok_and(|n| syntax::tag(&n.params).is_some())
}

fn echo_of(headers: &[HeaderField]) -> EchoHeaders {
    let value = |n: &str| first(headers, n).map(|h| h.value.clone());
    let to = value("to");
    EchoHeaders {
        via: headers
            .iter()
            .filter(|h| h.canonical == "via")
            .map(|h| h.value.clone())
            .collect(),
        from: value("from"),
        to_has_tag: to.as_deref().is_some_and(raw_has_tag),
        to,
        call_id: value("call-id"),
        cseq: value("cseq"),
    }
}

/// A failed check, before we know whether it can be answered.
pub(super) struct Failure {
    status: u16,
    pub(super) reason: &'static str,
}

fn bad(reason: &'static str) -> Failure {
    Failure {
        status: 400,
        reason,
    }
}

fn single<'a>(
    headers: &'a [HeaderField],
    name: &'static str,
    what: &'static str,
) -> Result<&'a str, Failure> {
    match count(headers, name) {
        1 => Ok(first(headers, name)
            .map(|h| h.value.as_str())
            .unwrap_or_default()),
        _ => Err(bad(what)),
    }
}

fn name_addr_list(values: &[&HeaderField]) -> Result<Vec<NameAddr>, Failure> {
    let mut out = Vec::new();
    for h in values {
        for part in syntax::split_list(&h.value).map_err(bad)? {
            out.push(NameAddr::parse(part).map_err(bad)?);
        }
    }
    Ok(out)
}

/// Parses and checks one datagram.
///
/// Leading CRLFs (keep-alives) are skipped. Without a Content-Length the body is the rest of the
/// datagram; with one, a shorter body is refused and extra trailing octets are ignored.
pub fn parse(datagram: &[u8]) -> Result<SipMessage, ParseError> {
    if datagram.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::Drop {
            reason: format!("datagram of {} bytes exceeds the size cap", datagram.len()),
        });
    }
    let skip = datagram
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let data = &datagram[skip..];
    if data.is_empty() {
        return Err(ParseError::Drop {
            reason: "empty datagram (keep-alive)".into(),
        });
    }
    let (head_bytes, body, mut error) = match find_head_end(data) {
        Some((head_end, body_start)) => (&data[..head_end], &data[body_start..], None),
        None => (
            data,
            &data[data.len()..],
            Some("no blank line after the headers"),
        ),
    };
    let head_owned;
    let head: &str = match std::str::from_utf8(head_bytes) {
        Ok(s) => s,
        Err(_) => {
            error.get_or_insert("header section is not UTF-8");
            head_owned = String::from_utf8_lossy(head_bytes).into_owned();
            &head_owned
        }
    };
    let framed = split_head(head, body, error);
    let echo = echo_of(&framed.headers);
    let start = check::start_line(framed.start);
    let request_method = match &start {
        Ok(StartLine::Request { method, .. }) => Some(method.to_string()),
        Err(StartLineError::Request(_) | StartLineError::RequestVersion) => Some(
            framed
                .start
                .split([' ', '\t'])
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        _ => None,
    };
    match build(framed, start, echo.clone()) {
        Ok(msg) => Ok(msg),
        Err(failure) => {
            // An answer copies Via, From, To, Call-ID and CSeq verbatim; one of them holding a
            // bare CR would carry it into our answer, where it could end a line for the peer.
            let answerable = request_method
                .as_deref()
                .is_some_and(|m| m != "ACK" && !m.is_empty())
                && !echo.via.is_empty()
                && !echo.contains_bare_cr();
            if answerable {
                Err(ParseError::Reject(Box::new(Rejection {
                    status: failure.status,
                    reason: failure.reason.to_string(),
                    method: request_method.unwrap_or_default(),
                    echo,
                })))
            } else {
                Err(ParseError::Drop {
                    reason: failure.reason.to_string(),
                })
            }
        }
    }
}

fn build(
    framed: Framed<'_>,
    start: Result<StartLine<'_>, StartLineError>,
    echo: EchoHeaders,
) -> Result<SipMessage, Failure> {
    let start = start.map_err(|e| match e {
        StartLineError::RequestVersion => Failure {
            status: 505,
            reason: "SIP version not supported",
        },
        StartLineError::Request(r) | StartLineError::Other(r) => bad(r),
    })?;
    if let Some(e) = framed.error {
        return Err(bad(e));
    }
    let h = &framed.headers;

    // Check 7: the core headers are present, and the single-valued ones are not repeated.
    if count(h, "via") == 0 {
        return Err(bad("missing Via"));
    }
    let from = single(h, "from", "missing or repeated From")?;
    let to = single(h, "to", "missing or repeated To")?;
    let call_id = single(h, "call-id", "missing or repeated Call-ID")?;
    let cseq_text = single(h, "cseq", "missing or repeated CSeq")?;
    if call_id.is_empty() || call_id.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(bad("malformed Call-ID"));
    }
    for (name, what) in [
        ("content-length", "repeated Content-Length"),
        ("max-forwards", "repeated Max-Forwards"),
        ("content-type", "repeated Content-Type"),
        ("expires", "repeated Expires"),
        ("date", "repeated Date"),
    ] {
        if count(h, name) > 1 {
            return Err(bad(what));
        }
    }

    // Via values, comma-separated ones counted one by one.
    let mut vias = Vec::new();
    for field in h.iter().filter(|f| f.canonical == "via") {
        for part in syntax::split_list(&field.value).map_err(bad)? {
            let v = syntax::parse_via(part).map_err(bad)?;
            vias.push(Via {
                raw: part.to_string(),
                transport: v.transport,
                host: v.host,
                port: v.port,
                params: v.params,
            });
        }
    }

    // Check 3: CSeq.
    let (cseq_number, cseq_method) = check::cseq(cseq_text).map_err(bad)?;
    if let StartLine::Request { method, .. } = &start {
        if *method != cseq_method {
            return Err(bad("CSeq method differs from the request method"));
        }
    }

    // Check 5: addresses.
    let from = single_name_addr(from)?;
    let to = single_name_addr(to)?;
    let contact_fields: Vec<&HeaderField> = h.iter().filter(|f| f.canonical == "contact").collect();
    let contact_wildcard = contact_fields.len() == 1 && contact_fields[0].value == "*";
    let contacts = if contact_wildcard {
        Vec::new()
    } else {
        name_addr_list(&contact_fields)?
    };
    let routes = name_addr_list(
        &h.iter()
            .filter(|f| f.canonical == "route")
            .collect::<Vec<_>>(),
    )?;
    let record_routes = name_addr_list(
        &h.iter()
            .filter(|f| f.canonical == "record-route")
            .collect::<Vec<_>>(),
    )?;

    // Check 3 and 6: scalar bounds and Date.
    let max_forwards = first(h, "max-forwards")
        .map(|f| check::max_forwards(&f.value))
        .transpose()
        .map_err(bad)?;
    let expires = first(h, "expires")
        .map(|f| check::expires(&f.value))
        .transpose()
        .map_err(bad)?;
    for f in h.iter().filter(|f| f.canonical == "retry-after") {
        check::retry_after(&f.value).map_err(bad)?;
    }
    for f in h.iter().filter(|f| f.canonical == "min-expires") {
        check::expires(&f.value).map_err(bad)?;
    }
    if let Some(f) = first(h, "date") {
        check::date(&f.value).map_err(bad)?;
    }

    // Check 4: Content-Length and the body.
    let body = match first(h, "content-length") {
        Some(f) => {
            let len = check::content_length(&f.value).map_err(bad)?;
            if framed.body.len() < len {
                return Err(bad("body shorter than Content-Length"));
            }
            &framed.body[..len]
        }
        None => framed.body,
    };

    // Check 2: the Request-URI (last, so that 416 is only given to otherwise sound requests).
    let kind = match start {
        StartLine::Request { method, uri } => MessageKind::Request {
            method: Method::from_token(method),
            uri: request_uri(uri)?,
        },
        StartLine::Response { code, reason } => MessageKind::Response {
            status: code,
            reason: reason.to_string(),
        },
    };

    let call_id = call_id.to_string();
    let cseq = CSeq {
        number: cseq_number,
        method: Method::from_token(cseq_method),
    };
    let body = body.to_vec();
    Ok(SipMessage {
        kind,
        body,
        headers: framed.headers,
        echo,
        vias,
        from,
        to,
        call_id,
        cseq,
        contacts,
        routes,
        record_routes,
        max_forwards,
        expires,
    })
}

/// Check 2: a Request-URI we serve: a well-formed `sip`/`sips` URI (416 for other schemes), not
/// in `<>`, without whitespace, control characters or headers. The same rule decides whether a
/// URI we were given can be the Request-URI of a request we send ([`Uri::request_target`]).
pub(super) fn request_uri(text: &str) -> Result<Uri, Failure> {
    if text.starts_with('<') {
        return Err(bad("Request-URI enclosed in <>"));
    }
    if text
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(bad("whitespace in Request-URI"));
    }
    let scheme = syntax::uri_scheme(text).ok_or(bad("Request-URI without a scheme"))?;
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return Err(Failure {
            status: 416,
            reason: "Request-URI scheme is not sip or sips",
        });
    }
    let uri = Uri::parse(text).map_err(bad)?;
    if uri.has_headers() {
        return Err(bad("headers in the Request-URI"));
    }
    Ok(uri)
}

fn single_name_addr(value: &str) -> Result<NameAddr, Failure> {
    let parts = syntax::split_list(value).map_err(bad)?;
    if parts.len() != 1 {
        return Err(bad("From/To must hold exactly one address"));
    }
    let addr = NameAddr::parse(parts[0]).map_err(bad)?;
    // `;tag` alone (or `tag=""`) says "in a dialog" without naming one: the typed value would
    // read as a new call while the sender meant an existing one (RFC 3261 §25.1: tag-param =
    // "tag" EQUAL token, and a token is never empty).
    if addr.param("tag").is_some() && addr.tag().is_none() {
        return Err(bad("tag parameter without a value"));
    }
    Ok(addr)
}
